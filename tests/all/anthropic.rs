//! The Anthropic Messages API both ways: Anthropic clients reaching an
//! OpenAI upstream, OpenAI clients reaching an Anthropic upstream, whole and
//! streamed, with tools.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_testkit::Client;

use crate::openai::sse_data;
use crate::support::Setup;

#[tokio::test]
async fn anthropic_client_reaches_an_openai_upstream() {
    let s = Setup::new().await;
    let reply = Client::new()
        .post_json(
            &s.gateway.url("/v1/messages"),
            &json!({"model": "gpt-mock", "max_tokens": 64, "system": "be kind", "stop_sequences": ["END"],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hello claude"}]}]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][0]["text"], "echo: hello claude");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["output_tokens"], 3);
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("msg_")));

    let sent = s.mock.last_request().expect("upstream request");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["messages"][0], json!({"role": "system", "content": "be kind"}));
    assert_eq!(sent.body["max_tokens"], 64);
    assert_eq!(sent.body["stop"], json!(["END"]));
}

#[tokio::test]
async fn anthropic_client_streams_from_an_openai_upstream() {
    let s = Setup::new().await;
    let request = json!({"model": "gpt-mock", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "stream me"}]});
    let response =
        Client::new().send(Method::POST, &s.gateway.url("/v1/messages"), Bytes::from(request.to_string()), &[]).await;
    assert_eq!(response.status(), 200);
    let events: Vec<(String, Value)> = response
        .into_body()
        .into_data_stream()
        .eventsource()
        .map(|e| {
            let e = e.expect("well-formed SSE");
            (e.event, serde_json::from_str(&e.data).expect("JSON event"))
        })
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "event name matches its type");
    }
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: stream me");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn openai_client_reaches_an_anthropic_upstream() {
    let s = Setup::new().await;
    let reply = Client::new()
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "claude", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi anthropic"}],
                    "stop": "END"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi anthropic");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(reply.header("x-sluice-upstream"), Some("an"));

    let sent = s.mock.last_request().expect("upstream request");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["model"], "claude-mock");
    assert_eq!(sent.body["system"], "sys");
    assert_eq!(sent.body["max_tokens"], 4096, "default max_tokens filled in");
    assert_eq!(sent.body["stop_sequences"], json!(["END"]));
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
}

#[tokio::test]
async fn openai_client_streams_from_an_anthropic_upstream() {
    let s = Setup::new().await;
    let request = json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "a b c"}]});
    let response = Client::new()
        .send(Method::POST, &s.gateway.url("/v1/chat/completions"), Bytes::from(request.to_string()), &[])
        .await;
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk")).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "echo: a b c");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(chunks.last().expect("usage chunk")["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn tools_translate_to_an_anthropic_upstream_and_back() {
    let s = Setup::with(|c| c.gateway.models[1].upstream_model = "claude-tools".into()).await;
    let reply = Client::new()
        .post_json(
            &s.gateway.url("/v1/chat/completions"),
            &json!({"model": "claude", "messages": [{"role": "user", "content": "weather in Oslo"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "wx",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        )
        .await;
    let body = reply.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().expect("string")).expect("json"),
        json!({"city": "Oslo"})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let sent = s.mock.last_request().expect("upstream request").body;
    assert_eq!(sent["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
}

#[tokio::test]
async fn anthropic_errors_keep_their_shape() {
    let s = Setup::new().await;
    let client = Client::new();
    // Missing max_tokens: a 400 in Anthropic's shape.
    let reply = client.post_json(&s.gateway.url("/v1/messages"), &json!({"model": "m", "messages": []})).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("max_tokens")), "{body}");

    // An OpenAI upstream's 4xx reaches an Anthropic client in Anthropic's shape.
    let reply = client
        .post_json(
            &s.gateway.url("/v1/messages"),
            &json!({"model": "m-fail422", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(reply.status, 422);
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["message"], "mock failure 422");
}
