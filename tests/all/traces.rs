//! OpenTelemetry traces: real requests through a gateway (the example
//! plugins, the cache, the mock upstream with a failing model and its
//! fallback), exported over OTLP/HTTP to a receiver that decodes the real
//! protobuf messages (`sluice_testkit::otlp`). A request is one trace: its
//! server span, and under it each stage call, cache lookup and upstream
//! attempt; the `traceparent` sent upstream names the attempt's span.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice::cache::CacheConfig;
use sluice::config::Config;
use sluice::plugin::PluginConfig;
use sluice::traces::TracingConfig;
use sluice_testkit::otlp::ReceivedSpan;
use sluice_testkit::{Client, MockUpstream, OtlpReceiver, TestGateway};

use crate::plugins::support::{Folder, TEST_DEADLINE, built, cache_dir};
use crate::support::config_for;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn tracing_to(receiver: &OtlpReceiver) -> TracingConfig {
    TracingConfig { service_name: "sluice-test".into(), ..TracingConfig::new(&receiver.endpoint()) }
}

fn chat_url(gateway: &TestGateway) -> String {
    gateway.url("/v1/chat/completions")
}

async fn post(gateway: &TestGateway, body: &Value, headers: &[(&str, &str)]) -> sluice_testkit::client::Reply {
    Client::new().call(Method::POST, &chat_url(gateway), Bytes::from(body.to_string()), headers).await
}

/// The spans of `trace`, once the gateway has exported them.
async fn trace_of(gateway: &TestGateway, receiver: &OtlpReceiver, trace: &str) -> Vec<ReceivedSpan> {
    gateway.flush_traces().await;
    receiver.spans().into_iter().filter(|s| s.trace_id == trace).collect()
}

fn server_span(spans: &[ReceivedSpan]) -> &ReceivedSpan {
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == "server").collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    servers[0]
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan, kind: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.parent_span_id == parent.span_id && s.kind == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_of_its_stages_cache_lookups_and_upstream_attempts() {
    built();
    let folder = Folder::new();
    folder.add_example("compressor", "compressor").add_example("router", "router").add_example("judge", "judge");
    folder.add_example("cache-policy", "cache-policy");
    let receiver = OtlpReceiver::start().await;
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c: &mut Config| {
        // The routed model's upstream answers 503: retried twice, then the
        // router's fallback (`claude`, the Anthropic upstream) answers.
        c.gateway.models[0].upstream_model = "mock-fail503".into();
        let mut plugins = PluginConfig::new(&folder.path);
        plugins.cache_dir = Some(cache_dir());
        plugins.defaults.deadline = TEST_DEADLINE;
        c.gateway.plugins = Some(plugins);
        c.gateway.cache = Some(CacheConfig { semantic: false, embedding_model_dir: None, ..CacheConfig::default() });
        c.gateway.tracing = Some(tracing_to(&receiver));
    }))
    .await;
    // Deterministic (temperature 0): the example cache policy lets it be cached.
    let body = json!({"model": "priced", "messages": [{"role": "user", "content": "hello"}], "temperature": 0});
    // The client joins its own trace; its "not sampled" flag changes nothing.
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let reply = post(&gateway, &body, &[("traceparent", &traceparent), ("tracestate", "vendor=secret")]).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("x-sluice-model"), Some("claude"));

    let spans = trace_of(&gateway, &receiver, CLIENT_TRACE).await;
    let request = server_span(&spans);
    assert_eq!(request.parent_span_id, CLIENT_SPAN, "the client's span is the parent");
    assert_eq!(request.name, "POST /v1/chat/completions");
    assert_eq!(request.service.as_deref(), Some("sluice-test"));
    assert_eq!(request.str("http.route"), Some("/v1/chat/completions"));
    assert_eq!(request.str("http.request.method"), Some("POST"));
    assert_eq!(request.int("http.response.status_code"), Some(200));
    assert_eq!(request.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(request.str("gen_ai.request.model"), Some("priced"));
    assert_eq!(request.str("gen_ai.response.model"), Some("claude-mock"));
    assert_eq!(request.str("sluice.model"), Some("claude"));
    assert_eq!(request.str("sluice.upstream"), Some("an"));
    assert_eq!(request.attr("gen_ai.request.temperature").and_then(Value::as_f64), Some(0.0));
    assert!(request.int("gen_ai.usage.input_tokens").is_some_and(|n| n > 0), "{request:#?}");
    assert!(request.int("gen_ai.usage.output_tokens").is_some_and(|n| n > 0), "{request:#?}");
    assert!(request.attr("sluice.cost_usd").and_then(Value::as_f64).is_some_and(|c| c > 0.0), "{request:#?}");
    assert_eq!(request.str("sluice.cache.outcome"), Some("miss"));
    assert_eq!(request.str("sluice.route.plugin"), Some("router"));
    assert_eq!(request.int("sluice.upstream.attempts"), Some(4));
    assert_eq!(request.status, "unset");
    // Nothing of the prompt, the answer or a secret.
    let recorded = format!("{spans:?}");
    for leak in ["hello", "echo", "secret"] {
        assert!(!recorded.contains(leak), "`{leak}` in the spans: {recorded}");
    }

    // One span per stage call, each naming its plugin and version.
    let stages = children(&spans, request, "internal");
    let called: BTreeSet<&str> = stages.iter().filter_map(|s| s.str("sluice.stage")).collect();
    assert_eq!(called, BTreeSet::from(["cache-policy", "compressor", "judge", "router"]), "{stages:#?}");
    for stage in stages.iter().filter(|s| s.attr("sluice.stage").is_some()) {
        assert_eq!(stage.str("sluice.plugin.outcome"), Some("ok"), "{stage:#?}");
        assert!(stage.str("sluice.plugin.hash").is_some_and(|h| h.len() == 64), "{stage:#?}");
        assert_eq!(stage.str("sluice.plugin.name"), stage.str("sluice.stage"), "{stage:#?}");
        assert!(stage.duration() > Duration::ZERO);
    }

    // The exact lookup missed.
    let lookups: Vec<_> = stages.iter().filter(|s| s.str("sluice.cache.kind").is_some()).collect();
    assert_eq!(lookups.len(), 1, "{lookups:#?}");
    assert_eq!((lookups[0].name.as_str(), lookups[0].attr("sluice.cache.hit")), ("cache exact", Some(&json!(false))));

    // One span per upstream attempt: three 503s (two retries), then the fallback.
    let mut attempts = children(&spans, request, "client");
    attempts.sort_by_key(|s| s.int("sluice.attempt"));
    let numbers: Vec<_> = attempts.iter().filter_map(|s| s.int("sluice.attempt")).collect();
    assert_eq!(numbers, [1, 2, 3, 4], "{attempts:#?}");
    for (retry, failed) in attempts[..3].iter().enumerate() {
        assert_eq!(failed.name, "chat mock-fail503");
        assert_eq!(failed.str("sluice.upstream"), Some("oa"));
        assert_eq!(failed.str("gen_ai.provider.name"), Some("openai"));
        assert_eq!(failed.int("sluice.attempt.retry"), Some(retry as i64));
        assert_eq!(failed.str("sluice.retry.reason"), (retry > 0).then_some("upstream_status"));
        assert_eq!(failed.str("error.type"), Some("upstream_status"));
        assert_eq!(failed.int("http.response.status_code"), Some(503));
        assert_eq!(failed.status, "error");
    }
    let fallback = attempts[3];
    assert_eq!(fallback.name, "chat claude-mock");
    assert_eq!(fallback.str("gen_ai.provider.name"), Some("anthropic"));
    assert_eq!(fallback.str("sluice.attempt.outcome"), Some("ok"));
    assert_eq!(fallback.str("sluice.fallback.from"), Some("priced"));
    assert_eq!(fallback.str("sluice.fallback.reason"), Some("upstream_status"));
    assert!(fallback.str("error.type").is_none());

    // Each upstream request carried its attempt's span, not the client's state.
    let sent = mock.requests();
    assert_eq!(sent.len(), 4);
    for (request, attempt) in sent.iter().zip(&attempts) {
        let header = request.headers.get("traceparent").and_then(|v| v.to_str().ok());
        assert_eq!(header, Some(format!("00-{CLIENT_TRACE}-{}-01", attempt.span_id).as_str()));
        assert!(request.headers.get("tracestate").is_none());
    }

    // The same question again: a cache hit, a trace of its own, no attempt.
    let reply = post(&gateway, &body, &[]).await;
    assert_eq!(reply.header("x-sluice-cache"), Some("hit"));
    gateway.flush_traces().await;
    let hit = receiver
        .spans()
        .into_iter()
        .find(|s| s.kind == "server" && s.trace_id != CLIENT_TRACE)
        .expect("the second request's span");
    assert!(hit.parent_span_id.is_empty(), "a root span: {hit:#?}");
    assert_eq!(hit.str("sluice.cache.outcome"), Some("hit"));
    assert_eq!(hit.str("sluice.upstream"), Some("cache"));
    let spans = trace_of(&gateway, &receiver, &hit.trace_id).await;
    assert!(children(&spans, &hit, "client").is_empty(), "{spans:#?}");
    let lookup = spans.iter().find(|s| s.name == "cache exact").expect("the lookup");
    assert_eq!((lookup.attr("sluice.cache.hit"), lookup.str("sluice.cache.tier")), (Some(&json!(true)), Some("local")));
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_s_span_ends_with_the_stream_and_carries_its_usage() {
    let receiver = OtlpReceiver::start().await;
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c| c.gateway.tracing = Some(tracing_to(&receiver)))).await;
    let body = json!({"model": "mock-drip40", "stream": true,
        "messages": [{"role": "user", "content": "one two three four five"}]});
    let sent = unix_nanos();
    let response = Client::new().send(Method::POST, &chat_url(&gateway), Bytes::from(body.to_string()), &[]).await;
    assert_eq!(response.status(), 200);
    let mut frames = response.into_body().into_data_stream();
    let mut text = String::new();
    while let Some(frame) = frames.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.expect("a chunk")));
    }
    let read = unix_nanos();
    assert!(text.contains("[DONE]"), "{text}");

    gateway.flush_traces().await;
    let request = receiver.spans().into_iter().find(|s| s.kind == "server").expect("the request's span");
    assert_eq!(request.attr("sluice.stream"), Some(&json!(true)));
    assert_eq!(request.int("http.response.status_code"), Some(200));
    assert!(request.int("gen_ai.usage.input_tokens").is_some_and(|n| n > 0), "{request:#?}");
    assert!(request.int("gen_ai.usage.output_tokens").is_some_and(|n| n >= 5), "{request:#?}");
    assert!(request.attr("sluice.time_to_first_token_s").is_some(), "{request:#?}");
    // It lasted as long as the stream (five chunks 40 ms apart), and ended
    // before the client read the end.
    assert!(request.duration() >= Duration::from_millis(150), "{:?}", request.duration());
    assert!(request.start_unix_nano >= sent && request.end_unix_nano <= read, "{request:#?}");

    let spans = trace_of(&gateway, &receiver, &request.trace_id).await;
    let attempts = children(&spans, &request, "client");
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.str("sluice.attempt.outcome"), Some("ok"));
    assert!(attempt.attr("sluice.time_to_first_chunk_s").is_some());
    assert!(attempt.duration() >= Duration::from_millis(150), "the attempt follows the stream to its end");
    assert!(attempt.end_unix_nano <= request.end_unix_nano);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_switch_sampling_on_and_tracing_off_sends_nothing() {
    let receiver = OtlpReceiver::start().await;
    let mock = MockUpstream::start().await;
    let unsampled = TestGateway::start(config_for(&mock, |c| {
        c.gateway.tracing = Some(TracingConfig { sample_ratio: 0.0, ..tracing_to(&receiver) });
    }))
    .await;
    let body = json!({"model": "priced", "messages": [{"role": "user", "content": "hi"}]});
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = post(&unsampled, &body, &[("traceparent", &sampled)]).await;
    assert_eq!(reply.status, 200);
    unsampled.flush_traces().await;
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
    // The trace still propagates, marked as not sampled.
    let header = mock.last_request().and_then(|r| r.headers.get("traceparent").cloned()).expect("a traceparent");
    let header = header.to_str().expect("ascii");
    assert!(header.starts_with(&format!("00-{CLIENT_TRACE}-")) && header.ends_with("-00"), "{header}");
    assert!(!header.contains(CLIENT_SPAN), "{header}");

    // With tracing off, a client's traceparent is not passed on either.
    let off = TestGateway::start(config_for(&mock, |_| {})).await;
    let reply = post(&off, &body, &[("traceparent", &sampled)]).await;
    assert_eq!(reply.status, 200);
    assert!(mock.last_request().is_some_and(|r| r.headers.get("traceparent").is_none()));
}
