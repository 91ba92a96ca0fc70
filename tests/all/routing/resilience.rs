//! Upstreams that fail, stall, throttle or die mid-stream, and what the
//! client sees: retries, `Retry-After`, fallbacks, circuit breakers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::Client;

use super::{ask, ask_stream, model, quick_retries};
use crate::openai::sse_data;
use crate::support::Setup;

#[tokio::test]
async fn a_5xx_is_retried_with_backoff_until_it_answers() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("flaky", "mock-flaky2", 1.0, &[]));
        quick_retries(c);
    })
    .await;
    let client = Client::new();
    let reply = client.post_json(&s.gateway.url("/v1/chat/completions"), &ask("flaky", "hi")).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("x-sluice-model"), Some("flaky"));
    assert_eq!(s.mock.calls("mock-flaky2"), 3, "two failures, then the answer");
    let metrics = String::from_utf8_lossy(&client.get(&s.gateway.url("/metrics")).await.body).into_owned();
    assert!(metrics.lines().any(|l| l.starts_with("sluice_upstream_retries_total") && l.contains("upstream=\"oa\"")));
}

#[tokio::test]
async fn a_429_is_retried_after_the_upstream_s_retry_after() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("throttled", "mock-throttled1-retryafter1", 1.0, &[]));
        quick_retries(c);
    })
    .await;
    let started = Instant::now();
    let reply = Client::new().post_json(&s.gateway.url("/v1/chat/completions"), &ask("throttled", "hi")).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(s.mock.calls("mock-throttled1-retryafter1"), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "the retry waited for Retry-After: 1");
}

#[tokio::test]
async fn a_long_retry_after_moves_on_to_the_fallback_at_once() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("throttled", "mock-throttled9-retryafter30", 1.0, &["priced"]));
        quick_retries(c);
    })
    .await;
    let reply = Client::new().post_json(&s.gateway.url("/v1/chat/completions"), &ask("throttled", "hi")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-sluice-model"), Some("priced"), "the fallback answered");
    assert_eq!(s.mock.calls("mock-throttled9-retryafter30"), 1, "no retry into a 30 s Retry-After");
}

#[tokio::test]
async fn a_429_that_outlasts_the_retries_reaches_the_client_with_retry_after() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("throttled", "mock-throttled9-retryafter1", 1.0, &[]));
        c.gateway.routing.policy_mut("oa").retry.max_retries = 1;
    })
    .await;
    let reply = Client::new().post_json(&s.gateway.url("/v1/chat/completions"), &ask("throttled", "hi")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded", "the upstream's own error body");
    assert_eq!(s.mock.calls("mock-throttled9-retryafter1"), 2);
}

#[tokio::test]
async fn a_stalled_upstream_times_out_and_falls_back_whole_and_streamed() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("stalls", "mock-slow5000", 1.0, &["priced"]));
        c.gateway.models.push(model("stalls-streaming", "mock-stall5000", 1.0, &["priced"]));
        c.gateway.upstreams[0].first_byte_timeout = Duration::from_millis(200);
        c.gateway.routing.policy_mut("oa").retry.max_retries = 0;
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let reply = client.post_json(&url, &ask("stalls", "hi")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-sluice-model"), Some("priced"));

    let response =
        client.send(Method::POST, &url, Bytes::from(ask_stream("stalls-streaming", "hi there").to_string()), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-sluice-model").and_then(|v| v.to_str().ok()), Some("priced"));
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events.iter().any(|e| e.contains("there")), "{events:?}");
}

#[tokio::test]
async fn a_stream_that_dies_before_its_first_chunk_falls_back() {
    let s = Setup::with(|c| {
        c.gateway.models.push(model("dies", "mock-die0", 1.0, &["priced"]));
        c.gateway.routing.policy_mut("oa").retry.max_retries = 0;
    })
    .await;
    let response = Client::new()
        .send(
            Method::POST,
            &s.gateway.url("/v1/chat/completions"),
            Bytes::from(ask_stream("dies", "one two").to_string()),
            &[],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-sluice-model").and_then(|v| v.to_str().ok()), Some("priced"));
    let events = sse_data(response).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "echo: one two");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_stream_that_dies_after_its_first_chunk_ends_with_an_error_event() {
    let s = Setup::with(|c| c.gateway.models.push(model("dies", "mock-die", 1.0, &["priced"]))).await;
    let response = Client::new()
        .send(
            Method::POST,
            &s.gateway.url("/v1/chat/completions"),
            Bytes::from(ask_stream("dies", "one two three").to_string()),
            &[],
        )
        .await;
    assert_eq!(response.status(), 200, "the stream had started");
    let events = sse_data(response).await;
    let last: serde_json::Value = serde_json::from_str(events.last().expect("events")).expect("JSON");
    assert_eq!(last["error"]["code"], "upstream_protocol", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "a failed stream does not claim success");
    assert_eq!(s.mock.calls("mock-priced"), 0, "no fallback once the client saw output");
}

#[tokio::test]
async fn an_open_circuit_skips_a_dead_upstream_then_probes_it() {
    let s = Setup::with(|c| {
        // Nothing listens on port 1.
        let dead = UpstreamConfig::new("dead", UpstreamKind::OpenAi, "http://127.0.0.1:1/v1");
        let policy = c.gateway.routing.policy_mut("dead");
        policy.retry.max_retries = 0;
        policy.breaker.failures = 2;
        policy.breaker.open_for = Duration::from_millis(1000);
        c.gateway.upstreams.push(dead);
        let mut gone = model("gone", "gone", 1.0, &["priced"]);
        gone.upstream = "dead".into();
        c.gateway.models.push(gone);
        let mut alone = model("alone", "alone", 1.0, &[]);
        alone.upstream = "dead".into();
        c.gateway.models.push(alone);
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let stats = || async { client.get(&s.gateway.url("/admin/routing/stats")).await.json() };
    for _ in 0..3 {
        let reply = client.post_json(&url, &ask("gone", "hi")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-sluice-model"), Some("priced"));
    }
    let v = stats().await;
    assert_eq!(v["upstreams"]["dead"]["circuit"], "open", "{v}");
    assert_eq!(v["models"]["gone"]["calls"], 2, "the third request skipped the open circuit: {v}");

    // No fallback: 503 with Retry-After, in the client's API shape.
    let reply = client.post_json(&url, &ask("alone", "hi")).await;
    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(reply.json()["error"]["code"], "circuit_open");
    let reply = client
        .post_json(
            &s.gateway.url("/v1/messages"),
            &serde_json::json!({"model": "alone", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["type"], "error");

    // After the open period one probe goes through (and fails: open again).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = client.post_json(&url, &ask("gone", "hi")).await;
    assert_eq!(reply.status, 200);
    let v = stats().await;
    assert_eq!(v["models"]["gone"]["calls"], 3, "{v}");
    assert_eq!(v["upstreams"]["dead"]["circuit"], "open");
}
