//! The bundled engine as the gateway's upstream, with the real default model:
//! what `sluice serve` with no flags runs. The model loads once, into one
//! gateway shared by these tests on its own runtime.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::gateway::Gateway;
use sluice::server::Server;
use sluice_testkit::Client;
use tokio::io::AsyncWriteExt;

use crate::openai::sse_data;

/// The gateway serving, and its state, to reach the engine's statistics.
pub struct Shared {
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    gateway: Arc<Gateway>,
}

impl Shared {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The bundled engine behind the gateway.
    fn engine(&self) -> &sluice_engine::Engine {
        self.gateway.upstreams.iter().find_map(|u| u.engine()).expect("an engine upstream")
    }
}

pub fn models_present() -> bool {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let defaults = sluice_engine::EngineConfig::default();
    let present = std::path::Path::new(root).join(&defaults.model_path).exists();
    if !present {
        assert!(std::env::var_os("SLUICE_REQUIRE_MODELS").is_none(), "models missing: run engine/fetch-models.sh");
        eprintln!("skipping: the default model is not fetched (engine/fetch-models.sh)");
    }
    present
}

/// A gateway in front of the bundled engine, on its own runtime (built off
/// the test's) that outlives every test.
fn start(tweak: impl FnOnce(&mut Config)) -> Shared {
    // The engine's default paths are relative to the repository root.
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut config = Config::default().with_engine(None);
    let engine = &mut config.gateway.upstreams[0].engine;
    engine.model_path = root.join(&engine.model_path);
    engine.embedding_model_dir = engine.embedding_model_dir.as_ref().map(|d| root.join(d));
    config.gateway.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    tweak(&mut config);
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (addr, gateway) = runtime.block_on(async {
            let gateway = Gateway::new(config.gateway).expect("gateway builds");
            let server = Server::bind(gateway.clone()).await.expect("gateway binds");
            let addr = server.local_addr();
            tokio::spawn(server.run(std::future::pending()));
            (addr, gateway)
        });
        Shared { _runtime: runtime, addr, gateway }
    })
    .join()
    .expect("engine gateway starts")
}

/// The gateway in front of the bundled engine, started on first use (also
/// by `monitoring`, so the model loads once per test run).
pub fn gateway() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| start(|_| {}))
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

/// The `error` object of a 400 answer.
fn invalid(reply: &sluice_testkit::client::Reply) -> Value {
    assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
    let error = reply.json()["error"].clone();
    assert_eq!(error["type"], "invalid_request_error", "{error}");
    error
}

#[tokio::test]
async fn engine_encodes_special_token_text_in_content_as_text() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let client = Client::new();
    let prompt_tokens = |reply: sluice_testkit::client::Reply| {
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        reply.json()["usage"]["prompt_tokens"].as_u64().expect("prompt tokens")
    };
    let one = json!({"max_tokens": 1});
    let plain = prompt_tokens(client.post_json(&gw.url("/v1/chat/completions"), &ask("x", one.clone())).await);
    // A client's `<|im_end|>` is ten tokens of text, not the one control
    // token that would close its turn.
    let marker = prompt_tokens(client.post_json(&gw.url("/v1/chat/completions"), &ask("<|im_end|>", one)).await);
    assert!(marker > plain, "`<|im_end|>` in content became a control token: {marker} vs {plain} prompt tokens");
}

#[tokio::test]
async fn engine_refuses_max_tokens_0_and_too_many_or_too_long_stop_sequences() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let client = Client::new();
    let url = gw.url("/v1/chat/completions");
    let error = invalid(&client.post_json(&url, &ask("Count to a million.", json!({"max_tokens": 0}))).await);
    assert_eq!(error["param"], "max_tokens", "{error}");
    let error =
        invalid(&client.post_json(&url, &ask("hi", json!({"max_completion_tokens": 0, "max_tokens": null}))).await);
    assert_eq!(error["param"], "max_tokens", "{error}");

    let five = json!({"stop": ["a", "b", "c", "d", "e"]});
    let error = invalid(&client.post_json(&url, &ask("hi", five)).await);
    assert_eq!(error["param"], "stop", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("at most 4")), "{error}");
    let long = json!({"stop": ["x".repeat(100_000)]});
    let error = invalid(&client.post_json(&url, &ask("hi", long)).await);
    assert_eq!(error["param"], "stop", "{error}");

    // Anthropic clients get the same refusal in their own format.
    let reply = client
        .post_json(
            &gw.url("/v1/messages"),
            &json!({"model": "claude-any", "max_tokens": 3, "stop_sequences": ["1", "2", "3", "4", "5"],
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    // Four short ones are fine.
    let four = json!({"stop": ["a", "b", "c", "d"], "max_tokens": 2});
    let reply = client.post_json(&url, &ask("hi", four)).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
}

#[tokio::test]
async fn engine_refuses_too_many_or_too_long_embedding_inputs() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let client = Client::new();
    let url = gw.url("/v1/embeddings");
    let many = vec!["a"; sluice_engine::MAX_EMBED_INPUTS + 1];
    let error = invalid(&client.post_json(&url, &json!({"model": "all-MiniLM-L6-v2", "input": many})).await);
    assert_eq!(error["param"], "input", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("2048")), "{error}");

    let long = "word ".repeat(1000);
    let error = invalid(&client.post_json(&url, &json!({"model": "all-MiniLM-L6-v2", "input": ["short", long]})).await);
    assert!(error["message"].as_str().is_some_and(|m| m.contains("input[1]")), "{error}");

    let empty: [&str; 0] = [];
    let error = invalid(&client.post_json(&url, &json!({"model": "all-MiniLM-L6-v2", "input": empty})).await);
    assert_eq!(error["param"], "input", "{error}");

    // Usage counts the embedding model's tokens.
    let reply = client.post_json(&url, &json!({"model": "all-MiniLM-L6-v2", "input": ["a cat", "a dog"]})).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn engine_stops_embedding_for_a_client_that_went_away() {
    if !models_present() {
        return;
    }
    let gw = gateway();
    let engine = gw.engine();
    let inputs: Vec<String> = (0..sluice_engine::MAX_EMBED_INPUTS)
        .map(|i| format!("Sentence {i} tells at some length of the sea, the sky and the ships that sail between them."))
        .collect();
    let body = json!({"model": "all-MiniLM-L6-v2", "input": inputs}).to_string();
    let before = engine.embedded_inputs();
    let mut socket = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST /v1/embeddings HTTP/1.1\r\nhost: sluice\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("send head");
    socket.write_all(body.as_bytes()).await.expect("send body");
    // Once the work has begun, the client goes away.
    let started = std::time::Instant::now();
    while engine.embedded_inputs() == before {
        assert!(started.elapsed() < Duration::from_secs(300), "embedding never started (hang guard)");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(socket);
    // The embedding thread runs one request at a time: once a later one is
    // answered, the first has ended, finished or stopped.
    let reply = Client::new()
        .post_json(&gw.url("/v1/embeddings"), &json!({"model": "all-MiniLM-L6-v2", "input": "after"}))
        .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let embedded = engine.embedded_inputs() - before;
    assert!(
        embedded < inputs.len() as u64,
        "all {} inputs of a client that went away were embedded ({embedded} in all)",
        inputs.len()
    );
}

#[test]
fn engine_default_max_tokens_0_is_a_config_error() {
    let text = "[upstreams.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\ndefault_max_tokens = 0\n";
    let Err(error) = Config::parse(text, "sluice.toml", &|_| None) else { panic!("default_max_tokens = 0 accepted") };
    assert_eq!(error.key, "upstreams.local.default_max_tokens", "{error}");
}

#[tokio::test]
async fn engine_prefix_cache_and_cached_tokens_are_scoped_by_tenant() {
    if !models_present() {
        return;
    }
    let key = |name: &str, tenant: Option<&str>| sluice::limits::KeyConfig {
        name: name.into(),
        key: format!("sk-{name}"),
        tenant: tenant.map(str::to_owned),
        ..Default::default()
    };
    // Its own small engine (no embeddings, a small KV pool), never dropped:
    // a runtime cannot be dropped inside the test's.
    static KEYED: OnceLock<Shared> = OnceLock::new();
    let gw = KEYED.get_or_init(|| {
        start(|c| {
            // No response cache: every answer comes from the engine.
            c.gateway.cache = None;
            c.gateway.upstreams[0].engine.embedding_model_dir = None;
            c.gateway.upstreams[0].engine.kv_blocks = 128;
            c.gateway.keys = vec![key("alice", Some("acme")), key("bob", Some("acme")), key("eve", None)];
        })
    });
    let client = Client::new();
    let prompt = "Here is a long and particular preamble that only this test sends, so that the \
        prefix cache holds several whole blocks of it: the quick brown fox jumps over the lazy dog \
        while the five boxing wizards jump quickly. Now answer: what is two plus two?";
    let cached = |who: &'static str| {
        let (client, url) = (&client, gw.url("/v1/chat/completions"));
        async move {
            let auth = format!("Bearer sk-{who}");
            let body = Bytes::from(ask(prompt, json!({"max_tokens": 1})).to_string());
            let reply = client.call(Method::POST, &url, body, &[("authorization", &auth)]).await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            reply.json()["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached_tokens")
        }
    };
    assert_eq!(cached("alice").await, 0, "a new prompt");
    assert!(cached("alice").await > 16, "alice's own prefix is cached");
    assert!(cached("bob").await > 16, "bob shares alice's tenant");
    assert_eq!(cached("eve").await, 0, "eve's tenant never sees acme's prefix");
    assert!(cached("eve").await > 16, "but has her own");
}
