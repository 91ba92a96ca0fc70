//! The bundled engine as the gateway's upstream, with the real default model:
//! what `sluice serve` with no flags runs. The model loads once, into one
//! gateway shared by these tests on its own runtime.

use std::sync::OnceLock;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice_testkit::{Client, TestGateway};

use crate::openai::sse_data;

struct Shared {
    _runtime: tokio::runtime::Runtime,
    gateway: TestGateway,
}

fn models_present() -> bool {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let defaults = sluice_engine::EngineConfig::default();
    let present = std::path::Path::new(root).join(&defaults.model_path).exists();
    if !present {
        assert!(std::env::var_os("SLUICE_REQUIRE_MODELS").is_none(), "models missing: run engine/fetch-models.sh");
        eprintln!("skipping: the default model is not fetched (engine/fetch-models.sh)");
    }
    present
}

/// The gateway in front of the bundled engine, started on first use.
fn gateway() -> &'static TestGateway {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            // The engine's default paths are relative to the repository root.
            let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            let mut config = Config::default().with_engine(None);
            let engine = &mut config.gateway.upstreams[0].engine;
            engine.model_path = root.join(&engine.model_path);
            engine.embedding_model_dir = engine.embedding_model_dir.as_ref().map(|d| root.join(d));
            // Its own runtime, built off the test's, outlives every test.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let gateway = runtime.block_on(TestGateway::start(config));
                Shared { _runtime: runtime, gateway }
            })
            .join()
            .expect("engine gateway starts")
        })
        .gateway
}

fn ask(text: &str, extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 12});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[tokio::test]
async fn engine_answers_whole_and_streamed_identically() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let client = Client::new();
    let reply = client.post_json(&gw.url("/v1/chat/completions"), &ask("Name the capital of France.", json!({}))).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("x-sluice-upstream"), Some("engine"));
    assert_eq!(reply.header("x-sluice-model"), Some("SmolLM2-135M-Instruct"), "the model really used");
    let body = reply.json();
    let text = body["choices"][0]["message"]["content"].as_str().expect("text").to_owned();
    assert!(text.contains("Paris"), "{text}");
    assert_eq!(body["usage"]["completion_tokens"].as_u64().map(|n| n <= 12), Some(true));
    assert!(body["usage"]["prompt_tokens"].as_u64().is_some_and(|n| n > 5));

    let request =
        ask("Name the capital of France.", json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response =
        client.send(Method::POST, &gw.url("/v1/chat/completions"), Bytes::from(request.to_string()), &[]).await;
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk")).collect();
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, text, "greedy decoding streams the same tokens");
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(usage["completion_tokens"], body["usage"]["completion_tokens"]);
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"].as_u64().is_some_and(|n| n > 0),
        "prefix cache hit: {usage}"
    );
}

#[tokio::test]
async fn engine_serves_anthropic_clients_and_stops_on_max_tokens() {
    if !models_present() {
        return;
    }
    let reply = Client::new()
        .post_json(
            &gateway().url("/v1/messages"),
            &json!({"model": "claude-any", "max_tokens": 3, "temperature": 0,
                    "messages": [{"role": "user", "content": "Count from one to twenty."}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn engine_lists_models_embeds_and_refuses_tools() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let client = Client::new();
    let models = client.get(&gw.url("/v1/models")).await.json();
    let ids: Vec<&str> = models["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"SmolLM2-135M-Instruct"), "{ids:?}");

    let reply = client
        .post_json(&gw.url("/v1/embeddings"), &json!({"model": "all-MiniLM-L6-v2", "input": ["a cat", "a dog"]}))
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let data = reply.json()["data"].clone();
    assert_eq!(data[0]["embedding"].as_array().map(Vec::len), Some(384));
    assert_eq!(data[1]["index"], 1);

    let tools = json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    let reply = client.post_json(&gw.url("/v1/chat/completions"), &ask("hi", tools)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("tools")));
}
