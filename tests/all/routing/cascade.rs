//! Cascades with the real example plugins: the router plans `small` then
//! `large`, the judge scores each answer, and a low score escalates.

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use sluice::config::Config;
use sluice::plugin::PluginConfig;
use sluice_testkit::{Client, MockUpstream, TestGateway};

use super::{ask, ask_stream, model};
use crate::openai::sse_data;
use crate::plugins::support::{Folder, TEST_DEADLINE, built, cache_dir};
use crate::support::config_for;

/// The example router's manifest cascading `small` → `large`.
pub const ROUTER: &str = r#"
order = 10
[config]
cascade = true
cascade_threshold = 0.7
cheap_model = "small"
strong_model = "large"
"#;

/// A gateway whose router cascades `small` (served by `small_model` on the
/// mock) → `large` (a strong answer), with the example judge.
async fn cascading(small_model: &str) -> (Folder, MockUpstream, TestGateway) {
    cascading_to(small_model, "mock-strong").await
}

/// As [`cascading`], with `large` served by `large_model` on the mock.
async fn cascading_to(small_model: &str, large_model: &str) -> (Folder, MockUpstream, TestGateway) {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    folder.put_wasm("router", &crate::plugins::support::dist().join("router.wasm"));
    folder.put_toml("router", ROUTER);
    let mock = MockUpstream::start().await;
    let config = config_for(&mock, |c: &mut Config| {
        c.gateway.models.push(model("small", small_model, 0.1, &[]));
        c.gateway.models.push(model("large", large_model, 5.0, &[]));
        if large_model.contains("fail") {
            // Nothing else for the router to fall back on.
            c.gateway.models.retain(|m| m.name == "small" || m.name == "large");
        }
        let mut plugins = PluginConfig::new(&folder.path);
        plugins.cache_dir = Some(cache_dir());
        plugins.defaults.deadline = TEST_DEADLINE;
        plugins.watch = false;
        c.gateway.plugins = Some(plugins);
    });
    let gateway = TestGateway::start(config).await;
    (folder, mock, gateway)
}

/// Asks `gateway` for a streamed answer to "name a colour".
async fn stream_colour(gateway: &TestGateway) -> http::Response<hyper::body::Incoming> {
    let body = Bytes::from(ask_stream("auto", "name a colour").to_string());
    Client::new().send(Method::POST, &gateway.url("/v1/chat/completions"), body, &[]).await
}

fn cost(v: Option<&str>) -> f64 {
    v.and_then(|c| c.parse().ok()).expect("x-sluice-cost-usd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_rejects_the_small_answer_and_the_large_one_is_returned() {
    let (_folder, mock, gateway) = cascading("mock-refuse").await;
    let client = Client::new();
    let reply = client.post_json(&gateway.url("/v1/chat/completions"), &ask("auto", "What is a prime number?")).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("x-sluice-cascade"), Some("small:0.10>large:1.00"));
    assert_eq!(reply.header("x-sluice-model"), Some("large"));
    let text = reply.json()["choices"][0]["message"]["content"].as_str().expect("text").to_owned();
    assert!(text.starts_with("Here is a careful answer"), "{text}");
    assert_eq!((mock.calls("mock-refuse"), mock.calls("mock-strong")), (1, 1));

    // The rejected answer is paid for: the cost covers both tiers.
    let alone = client
        .call(
            Method::POST,
            &gateway.url("/v1/chat/completions"),
            Bytes::from(ask("large", "What is a prime number?").to_string()),
            &[("x-sluice-route", "pinned")],
        )
        .await;
    assert!(alone.header("x-sluice-cascade").is_none(), "pinned requests skip routing");
    assert!(cost(reply.header("x-sluice-cost-usd")) > cost(alone.header("x-sluice-cost-usd")));

    let stats = client.get(&gateway.url("/admin/routing/stats")).await.json();
    let small = &stats["models"]["small"];
    assert_eq!(small["escalations"], 1, "{stats}");
    assert!((small["mean_judge_score"].as_f64().expect("score") - 0.1).abs() < 1e-6);
    assert_eq!(stats["models"]["large"]["requests"], 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_last_tier_fails_the_rejected_answer_is_served_not_an_error() {
    let (_folder, mock, gateway) = cascading_to("mock-refuse", "mock-fail503").await;
    let client = Client::new();
    for stream in [false, true] {
        let body =
            if stream { ask_stream("auto", "What is a prime number?") } else { ask("auto", "What is a prime number?") };
        let reply = client.post_json(&gateway.url("/v1/chat/completions"), &body).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("x-sluice-cascade"), Some("small:0.10>large:error"), "stream: {stream}");
        assert_eq!(reply.header("x-sluice-model"), Some("small"));
        let text = String::from_utf8_lossy(&reply.body);
        assert!(text.contains("can't help"), "the small tier's answer: {text}");
    }
    assert!(mock.calls("mock-fail503") >= 2, "the large tier was tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_small_answer_is_replayed_as_a_stream() {
    let (_folder, mock, gateway) = cascading("mock-small").await;
    let response = stream_colour(&gateway).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-sluice-cascade").as_deref(), Some("small:1.00"));
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    let events = sse_data(response).await;
    let chunks: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "echo: name a colour");
    assert!(chunks.iter().all(|c| c["usage"].is_null()), "no usage chunk for a client that did not ask");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(mock.calls("mock-strong"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_small_answer_escalates_to_a_live_stream_of_the_large_one() {
    let (_folder, mock, gateway) = cascading("mock-refuse").await;
    let response = stream_colour(&gateway).await;
    assert_eq!(response.status(), 200);
    let cascade = response.headers().get("x-sluice-cascade").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(cascade.as_deref(), Some("small:0.10>large"), "the live tier is not judged");
    let events = sse_data(response).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(text.starts_with("Here is a careful answer"), "{text}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(mock.stream_counts().0, 1, "the small tier was asked for a whole answer, the large one streamed");
}
