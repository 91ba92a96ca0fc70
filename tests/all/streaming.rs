//! Streaming behaviour: true pass-through (no buffering), keep-alive
//! comments on long pauses, cancellation reaching the upstream, and a clean
//! error event when the upstream dies mid-stream.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_testkit::Client;

use crate::openai::sse_data;
use crate::support::{Setup, eventually};

fn stream_request(model: &str, words: usize) -> Bytes {
    let text = vec!["w"; words].join(" ");
    Bytes::from(json!({"model": model, "stream": true, "messages": [{"role": "user", "content": text}]}).to_string())
}

#[tokio::test]
async fn first_chunk_reaches_the_client_before_the_upstream_finishes() {
    let s = Setup::new().await;
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), stream_request("m-drip150", 6), &[])
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.expect("a first frame").expect("readable");
    assert!(first.starts_with(b"data: "), "{first:?}");
    let (started, completed, _) = s.mock.stream_counts();
    assert_eq!((started, completed), (1, 0), "the first chunk arrived while the upstream was still streaming");
    let mut rest = Vec::new();
    while let Some(frame) = body.next().await {
        rest.extend_from_slice(&frame.expect("readable"));
    }
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(s.mock.stream_counts().1, 1);
}

#[tokio::test]
async fn long_pauses_get_keep_alive_comments() {
    let s = Setup::with(|c| c.gateway.server.sse_keepalive = Duration::from_millis(50)).await;
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), stream_request("m-pause400", 2), &[])
        .await;
    let raw = response.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let s = Setup::new().await;
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), stream_request("m-drip100", 50), &[])
        .await;
    let mut body = response.into_body().into_data_stream();
    body.next().await.expect("first frame").expect("readable");
    drop(body);
    let mock = &s.mock;
    assert!(
        eventually(Duration::from_secs(5), || mock.stream_counts().2 == 1).await,
        "the upstream stream was abandoned: {:?}",
        mock.stream_counts()
    );
    assert_eq!(mock.stream_counts().1, 0, "the upstream never finished its 5 s stream");
}

#[tokio::test]
async fn a_stream_that_dies_midway_ends_with_an_error_event() {
    let s = Setup::new().await;
    let response =
        Client::new().send(Method::POST, &s.gateway.url("/v1/chat/completions"), stream_request("m-die", 5), &[]).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(response).await;
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("JSON error event");
    assert_eq!(last["error"]["code"], "upstream_protocol", "{last}");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("`oa`")));
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // The Anthropic shape of the same failure.
    let request =
        json!({"model": "m-die", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "a b c"}]});
    let response =
        Client::new().send(Method::POST, &s.gateway.url("/v1/messages"), Bytes::from(request.to_string()), &[]).await;
    let raw = response.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("event: error\ndata: {\"error\":{\"message\""), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
}
