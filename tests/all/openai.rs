//! The OpenAI API through the gateway: chat (whole and streamed), models,
//! embeddings, pass-through of parameters, headers, usage, cost, metrics.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_testkit::Client;

use crate::support::Setup;

/// Reads an SSE response with a real SSE parser: the `data` of each event.
pub async fn sse_data(response: http::Response<hyper::body::Incoming>) -> Vec<String> {
    let stream = response.into_body().into_data_stream().eventsource();
    stream.map(|e| e.expect("well-formed SSE").data).collect().await
}

#[tokio::test]
async fn chat_passes_through_body_parameters_and_headers() {
    let s = Setup::new().await;
    let request = json!({
        "model": "priced",
        "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi there"}],
        "temperature": 0.2, "top_p": 0.9, "n": 1, "stop": ["\n\n"], "seed": 7, "logprobs": true, "top_logprobs": 2,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "parallel_tool_calls": false, "frequency_penalty": 0.5,
    });
    let reply = Client::new().post_json(&s.gateway.url("/v1/chat/completions"), &request).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
    assert_eq!(body["system_fingerprint"], "fp_mock", "unknown response fields survive");

    let sent = s.mock.last_request().expect("upstream saw the request").body;
    assert_eq!(sent["model"], "mock-priced", "public name mapped to the upstream model id");
    for key in [
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "frequency_penalty",
    ] {
        assert_eq!(sent[key], request[key], "`{key}` passed through");
    }

    assert_eq!(reply.header("x-sluice-upstream"), Some("oa"));
    assert_eq!(reply.header("x-sluice-model"), Some("priced"));
    let overhead: u64 = reply.header("x-sluice-overhead-us").expect("overhead header").parse().expect("a number");
    assert!(overhead < 5_000_000);
    // usage from the mock: prompt 12, completion 3 → 12*1 + 3*2 per million.
    let cost: f64 = reply.header("x-sluice-cost-usd").expect("cost header").parse().expect("a number");
    assert!((cost - 18e-6).abs() < 1e-12, "cost {cost}");
}

#[tokio::test]
async fn tool_calls_come_back_unchanged() {
    let s = Setup::new().await;
    let reply = Client::new()
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "m-tools", "messages": [{"role": "user", "content": "weather"}]}),
        )
        .await;
    let body = reply.json();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(reply.header("x-sluice-cost-usd"), None, "no price for a pass-through model");
}

#[tokio::test]
async fn usage_is_counted_when_the_upstream_reports_none() {
    let s = Setup::with(|c| c.gateway.models[0].upstream_model = "mock-nousage".into()).await;
    let reply = Client::new()
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "priced", "messages": [{"role": "user", "content": "count these words please"}]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.json().get("usage").is_none(), "the body is the upstream's own");
    let cost: f64 = reply.header("x-sluice-cost-usd").expect("cost from counted tokens").parse().expect("number");
    assert!(cost > 0.0);
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_usage_then_done() {
    let s = Setup::new().await;
    let request = json!({"model": "priced", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "one two three"}]});
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), Bytes::from(request.to_string()), &[])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-sluice-model"], "priced");
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|d| serde_json::from_str(d).expect("JSON chunk")).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "echo: one two three");
    let usage = &chunks.last().expect("chunks")["usage"];
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(chunks.last().expect("chunks")["choices"], json!([]));
}

#[tokio::test]
async fn stream_without_include_usage_hides_the_usage_chunk_but_accounts_it() {
    let s = Setup::new().await;
    let request = json!({"model": "priced", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), Bytes::from(request.to_string()), &[])
        .await;
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for data in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(data).expect("JSON chunk");
        assert!(chunk["usage"].is_null(), "no usage for a client that did not ask: {data}");
    }
    let sent = s.mock.last_request().expect("upstream request").body;
    assert_eq!(sent["stream_options"]["include_usage"], true, "usage requested upstream for accounting");

    let metrics = Client::new().get(&s.gateway.url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("sluice_requests_total{api=\"openai\",model=\"priced\",upstream=\"oa\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("sluice_time_to_first_token_seconds_bucket"), "{text}");
    assert!(text.contains("sluice_gateway_overhead_seconds_bucket"), "{text}");
    assert!(text.contains("sluice_tokens_total{model=\"priced\",upstream=\"oa\",direction=\"output\"}"), "{text}");
    assert!(text.contains("sluice_cost_usd{model=\"priced\",upstream=\"oa\"}"), "{text}");
}

#[tokio::test]
async fn models_lists_configured_and_upstream_models() {
    let s = Setup::new().await;
    let reply = Client::new().get(&s.gateway.url("/v1/models")).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["priced", "claude", "mock-a", "mock-b"]);
}

#[tokio::test]
async fn embeddings_are_forwarded_with_the_upstream_model() {
    let s = Setup::new().await;
    let reply = Client::new()
        .post_json(&s.gateway.url("/v1/embeddings"), &json!({"model": "priced", "input": ["a", "b"], "dimensions": 3}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"].as_array().map(Vec::len), Some(2));
    let sent = s.mock.last_request().expect("upstream request");
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.body["model"], "mock-priced");
    assert_eq!(sent.body["dimensions"], 3);
    assert_eq!(reply.header("x-sluice-upstream"), Some("oa"));
}

#[tokio::test]
async fn health_and_http2_prior_knowledge() {
    let s = Setup::new().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "over h2"}]});
    let req = http::Request::post(s.gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(request.to_string())))
        .expect("request");
    let response = client.request(req).await.expect("h2 request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: over h2");

    let health = Client::new().get(&s.gateway.url("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
}

#[tokio::test]
async fn upstream_key_is_sent_as_bearer() {
    let s = Setup::with(|c| c.gateway.upstreams[0].api_key = Some("sk-test".into())).await;
    Client::new()
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "x", "messages": [{"role": "user", "content": "k"}]}),
        )
        .await;
    let sent = s.mock.last_request().expect("upstream request");
    assert_eq!(sent.headers["authorization"], "Bearer sk-test");
}
