//! Every error case answers in the client's API shape with the right status.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::json;
use sluice::config::Config;
use sluice::gateway::GatewayConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, TestGateway};

use crate::support::Setup;

#[tokio::test]
async fn bad_requests_are_400_naming_the_problem() {
    let s = Setup::new().await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");

    let reply = client.call(Method::POST, &url, Bytes::from_static(b"{\"model\": "), &[]).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("not valid JSON")), "{body}");
    for key in ["message", "type", "param", "code"] {
        assert!(body["error"].get(key).is_some(), "error.{key} present");
    }

    let reply = client.post_json(&url, &json!({"model": "m"})).await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("messages")));

    let reply = client
        .post_json(&url, &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "temperature");

    let reply = client.post_json(&url, &json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "messages[0].role");

    let reply = client.post_json(&url, &json!({"model": "m", "messages": []})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["param"], "messages");
    assert!(s.mock.requests().is_empty(), "nothing invalid reached the upstream");
}

#[tokio::test]
async fn unknown_model_is_404_and_unknown_route_is_404() {
    let s = Setup::with(|c| c.gateway.upstreams[0].passthrough = false).await;
    let client = Client::new();
    let reply = client
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert_eq!(reply.json()["error"]["param"], "model");

    let reply = client
        .post_json(
            &s.gateway.url("/v1/messages"),
            &json!({"model": "nope", "max_tokens": 3, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["type"], "not_found_error");

    let reply = client.get(&s.gateway.url("/v1/nothing-here")).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let s = Setup::with(|c| c.gateway.server.max_body_bytes = 1024).await;
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let reply = Client::new().post_json(&s.gateway.url("/v1/chat/completions"), &big).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_and_pass_4xx_through() {
    let s = Setup::with(|c| c.gateway.upstreams[0].first_byte_timeout = Duration::from_millis(200)).await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});

    let reply = client.post_json(&url, &ask("m-fail429")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["message"], "mock failure 429", "the upstream's own body");
    assert_eq!(reply.header("x-sluice-upstream"), Some("oa"));

    let reply = client.post_json(&url, &ask("m-fail503")).await;
    assert_eq!(reply.status, 502);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("`oa`")));

    let reply = client.post_json(&url, &ask("m-slow1000")).await;
    assert_eq!(reply.status, 504);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("`oa`") && m.contains("timed out")));

    // Nothing listens on the upstream's port: connection refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let mut gone = UpstreamConfig::new("gone", UpstreamKind::OpenAi, &format!("http://{dead}/v1"));
    gone.passthrough = true;
    let config =
        Config { gateway: GatewayConfig { upstreams: vec![gone], ..GatewayConfig::default() }, ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let reply = client.post_json(&gateway.url("/v1/chat/completions"), &ask("m")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], "upstream_unreachable");
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("`gone`")));

    let health = client.get(&gateway.url("/health")).await;
    assert_eq!(health.status, 200, "the gateway stays up");
}

#[tokio::test]
async fn a_full_upstream_answers_429_with_retry_after() {
    let s = Setup::with(|c| {
        c.gateway.upstreams[0].max_in_flight = 1;
        c.gateway.upstreams[0].queue_timeout = Duration::from_millis(50);
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let slow = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client.post_json(&url, &json!({"model": "m-slow800", "messages": [{"role": "user", "content": "x"}]})).await
        }
    });
    let mock = &s.mock;
    assert!(crate::support::eventually(Duration::from_secs(5), || mock.requests().len() == 1).await);
    let reply = client.post_json(&url, &json!({"model": "m", "messages": [{"role": "user", "content": "y"}]})).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(slow.await.expect("joined").status, 200);
}
