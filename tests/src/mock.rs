//! An in-process OpenAI- and Anthropic-compatible upstream on port 0.
//!
//! Behaviour is chosen by the requested model name, so one mock serves many
//! cases at once. Words in the name (separated by `-`) switch modes:
//!
//! | word          | effect                                                   |
//! |---------------|----------------------------------------------------------|
//! | `fail<NNN>`   | answer status NNN with an error body of the API's shape  |
//! | `flaky<N>`    | answer 503 to the first N requests for this model name   |
//! | `throttled<N>`| answer 429 to the first N requests for this model name   |
//! | `retryafter<S>`| send `Retry-After: S` with those 429s                   |
//! | `retryafterhuge`| send `Retry-After: 1e20` with those 429s               |
//! | `hugeusage`   | report `u64::MAX` prompt and completion tokens           |
//! | `slow<MS>`    | wait MS ms before the response headers                   |
//! | `stall<MS>`   | wait MS ms after the headers, before the first chunk     |
//! | `drip<MS>`    | wait MS ms between streamed chunks                       |
//! | `pause<MS>`   | wait MS ms once, after the first streamed chunk          |
//! | `nousage`     | report no usage                                          |
//! | `die`         | end a stream after two chunks, without finishing         |
//! | `die<N>`      | end a stream after N chunks (`die0`: before any)         |
//! | `tools`       | answer with a tool call instead of text                  |
//! | `refuse`      | answer with a refusal (judges score it low)              |
//! | `strong`      | answer at length, as a strong model would                |
//! | `cost<N>`     | as Sluice would: `x-sluice-cost-usd` N µUSD (streams: a final `: x-sluice-cost-usd=` comment) |
//! | `score<N>`    | as Sluice would: `x-sluice-judge-score` N/100            |
//! | `cache<KIND>` | as Sluice would: `x-sluice-cache` `hit`, `semantic-hit` (`cachesemantic`), `miss`, `bypass` |
//!
//! [`MockUpstream::set_down`] makes every request fail with 503 (an outage).
//! Otherwise the answer is `echo: <last user message>`, streamed a word per
//! chunk. Every request is recorded for inspection; `calls(model)` counts
//! the chat requests per model name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct State {
    record: bool,
    requests: Mutex<Vec<Recorded>>,
    streams_started: AtomicUsize,
    streams_completed: AtomicUsize,
    streams_dropped: AtomicUsize,
    calls: Mutex<std::collections::HashMap<String, usize>>,
    /// An outage: every request is answered 503 at once.
    down: std::sync::atomic::AtomicBool,
}

/// A running mock upstream; it stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Starts a mock on 127.0.0.1 and a free port.
    pub async fn start() -> MockUpstream {
        Self::start_with(true).await
    }

    /// Starts a mock that keeps no record of requests, for load tests.
    pub async fn start_unrecorded() -> MockUpstream {
        Self::start_with(false).await
    }

    /// Starts an unrecording mock on a given port (0: any free one).
    pub async fn start_unrecorded_on(port: u16) -> MockUpstream {
        Self::start_on(false, port).await
    }

    async fn start_with(record: bool) -> MockUpstream {
        Self::start_on(record, 0).await
    }

    async fn start_on(record: bool, port: u16) -> MockUpstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind mock upstream");
        let addr = listener.local_addr().expect("mock address");
        let state = Arc::new(State { record, ..State::default() });
        let served = state.clone();
        let task = tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = served.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        MockUpstream { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure in Sluice (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.requests().pop()
    }

    /// Starts (`true`) or ends an outage: while down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Chat requests received for `model` (the upstream model id).
    pub fn calls(&self, model: &str) -> usize {
        self.state.calls.lock().map(|c| c.get(model).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Streams begun, finished, and abandoned by the reader before the end.
    pub fn stream_counts(&self) -> (usize, usize, usize) {
        (
            self.state.streams_started.load(Ordering::SeqCst),
            self.state.streams_completed.load(Ordering::SeqCst),
            self.state.streams_dropped.load(Ordering::SeqCst),
        )
    }
}

/// The numeric argument of a mode word such as `slow250`.
fn mode(model: &str, word: &str) -> Option<u64> {
    model.split('-').find_map(|w| w.strip_prefix(word).and_then(|n| n.parse().ok()))
}

fn has(model: &str, word: &str) -> bool {
    model.split('-').any(|w| w == word)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let bytes = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if state.record
        && let Ok(mut log) = state.requests.lock()
    {
        log.push(Recorded { path: path.clone(), headers, body: body.clone() });
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
    let anthropic = path.ends_with("/messages");
    if state.down.load(Ordering::SeqCst) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": {"message": "mock outage", "type": "server_error"}}),
        );
    }
    let call = match state.calls.lock() {
        Ok(mut calls) if path.ends_with("/chat/completions") || anthropic => {
            let n = calls.entry(model.clone()).or_insert(0);
            *n += 1;
            *n as u64
        }
        _ => 0,
    };
    if let Some(ms) = mode(&model, "slow") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if mode(&model, "flaky").is_some_and(|n| call <= n) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": {"message": format!("mock outage (call {call})"), "type": "server_error"}}),
        );
    }
    if mode(&model, "throttled").is_some_and(|n| call <= n) {
        let mut r = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": {"message": "mock rate limit", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}),
        );
        if let Some(s) = mode(&model, "retryafter") {
            r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
        } else if has(&model, "retryafterhuge") {
            r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1e20"));
        }
        return r;
    }
    if let Some(code) = mode(&model, "fail") {
        let status = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!("mock failure {code}");
        let v = if anthropic {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        } else {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "mock"}})
        };
        return json_response(status, &v);
    }
    match path.as_str() {
        "/v1/models" => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": "mock-a", "object": "model", "created": 1, "owned_by": "mock"},
                                                {"id": "mock-b", "object": "model", "created": 1, "owned_by": "mock"}]}),
        ),
        "/v1/embeddings" => {
            let inputs = match body.get("input") {
                Some(Value::Array(a)) => a.len(),
                _ => 1,
            };
            let data: Vec<Value> = (0..inputs)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, i as f64]}))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3 * inputs, "total_tokens": 3 * inputs}}),
            )
        }
        "/v1/chat/completions" | "/v1/messages" => {
            let answer = Answer::for_request(&body, &model);
            let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let mut response = match (anthropic, stream) {
                (false, false) => json_response(StatusCode::OK, &answer.openai_completion()),
                (true, false) => json_response(StatusCode::OK, &answer.anthropic_message()),
                (_, true) => stream_response(state, answer, anthropic),
            };
            sluice_headers(&model, stream, response.headers_mut());
            response
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": {"message": "no such mock route"}})),
    }
}

/// The `x-sluice-*` headers the `cost`, `score` and `cache` words ask for.
fn sluice_headers(model: &str, stream: bool, headers: &mut HeaderMap) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    };
    if let (Some(micro), false) = (mode(model, "cost"), stream) {
        put("x-sluice-cost-usd", format!("{:.8}", micro as f64 / 1e6));
    }
    if let Some(score) = mode(model, "score") {
        put("x-sluice-judge-score", format!("{:.3}", score as f64 / 100.0));
    }
    let cache = model.split('-').find_map(|w| w.strip_prefix("cache")).and_then(|k| match k {
        "hit" | "miss" | "bypass" => Some(k.to_owned()),
        "semantic" => Some("semantic-hit".to_owned()),
        _ => None,
    });
    if let Some(kind) = cache {
        put("x-sluice-cache", kind);
    }
}

/// What the mock answers to one request.
struct Answer {
    model: String,
    words: Vec<String>,
    tool_call: bool,
    usage: bool,
    prompt_tokens: u64,
    drip: Duration,
    pause: Duration,
    stall: Duration,
    /// End the stream after this many events, unfinished.
    die: Option<usize>,
    include_usage: bool,
    cost_micro_usd: Option<u64>,
}

impl Answer {
    fn for_request(body: &Value, model: &str) -> Answer {
        let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| match m.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(parts)) => {
                    parts.iter().find_map(|p| p.get("text").and_then(Value::as_str).map(str::to_owned))
                }
                _ => None,
            })
            .unwrap_or_default();
        let text = if has(model, "refuse") {
            "I'm sorry, but I can't help with that.".to_owned()
        } else if has(model, "strong") {
            format!(
                "Here is a careful answer to your question ({last_user}). First, consider what is being asked \
                 and the facts that bear on it. Second, work through the reasoning step by step, checking each \
                 step. Finally, the result follows, with the caveats that matter in practice."
            )
        } else {
            format!("echo: {last_user}")
        };
        Answer {
            model: model.to_owned(),
            words: text.split_inclusive(' ').map(str::to_owned).collect(),
            tool_call: has(model, "tools"),
            usage: !has(model, "nousage"),
            prompt_tokens: if has(model, "hugeusage") { u64::MAX } else { 10 + messages.len() as u64 },
            drip: Duration::from_millis(mode(model, "drip").unwrap_or(0)),
            pause: Duration::from_millis(mode(model, "pause").unwrap_or(0)),
            stall: Duration::from_millis(mode(model, "stall").unwrap_or(0)),
            die: if has(model, "die") { Some(2) } else { mode(model, "die").map(|n| n as usize) },
            include_usage: body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
            cost_micro_usd: mode(model, "cost"),
        }
    }

    fn text(&self) -> String {
        self.words.concat()
    }

    fn completion_tokens(&self) -> u64 {
        if has(&self.model, "hugeusage") { u64::MAX } else { self.words.len() as u64 }
    }

    fn openai_completion(&self) -> Value {
        let (message, finish) = if self.tool_call {
            (
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
                "tool_calls",
            )
        } else {
            (json!({"role": "assistant", "content": self.text()}), "stop")
        };
        let mut v = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "system_fingerprint": "fp_mock"});
        if self.usage {
            v["usage"] = json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens(),
                "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens())});
        }
        v
    }

    fn anthropic_message(&self) -> Value {
        let content = if self.tool_call {
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}])
        } else {
            json!([{"type": "text", "text": self.text()}])
        };
        json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": self.model, "content": content,
            "stop_reason": if self.tool_call { "tool_use" } else { "end_turn" }, "stop_sequence": null,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens()}})
    }

    /// The stream's events, in order, as SSE text.
    fn events(&self, anthropic: bool) -> Vec<String> {
        let mut out = Vec::new();
        if anthropic {
            let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
            out.push(ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
                "role": "assistant", "model": self.model, "content": [], "stop_reason": null,
                "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1}}}),
            ));
            out.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for w in &self.words {
                out.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
                ));
            }
            out.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
            out.push(ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": self.completion_tokens()}}),
            ));
            out.push(ev("message_stop", json!({"type": "message_stop"})));
        } else {
            let chunk = |delta: Value, finish: Value| {
                let mut c = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                if self.include_usage {
                    c["usage"] = Value::Null;
                }
                format!("data: {c}\n\n")
            };
            out.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            if self.tool_call {
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                ));
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Oslo\"}"}}]}),
                    Value::Null,
                ));
                out.push(chunk(json!({}), json!("tool_calls")));
            } else {
                for w in &self.words {
                    out.push(chunk(json!({"content": w}), Value::Null));
                }
                out.push(chunk(json!({}), json!("stop")));
            }
            if self.include_usage && self.usage {
                let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": self.model, "choices": [],
                    "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens(),
                        "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens())}});
                out.push(format!("data: {u}\n\n"));
            }
            if let Some(micro) = self.cost_micro_usd {
                out.push(format!(": x-sluice-cost-usd={:.8}\n\n", micro as f64 / 1e6));
            }
            out.push("data: [DONE]\n\n".to_owned());
        }
        out
    }
}

/// Counts a stream as dropped unless it was marked complete.
struct StreamGuard {
    state: Arc<State>,
    complete: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.complete { &self.state.streams_completed } else { &self.state.streams_dropped };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn stream_response(state: Arc<State>, answer: Answer, anthropic: bool) -> Response<Body> {
    state.streams_started.fetch_add(1, Ordering::SeqCst);
    let mut events = answer.events(anthropic);
    if let Some(n) = answer.die {
        events.truncate(n);
    }
    let (drip, pause, stall, die) = (answer.drip, answer.pause, answer.stall, answer.die.is_some());
    let mut guard = StreamGuard { state, complete: false };
    let stream = async_stream::stream! {
        if !stall.is_zero() {
            tokio::time::sleep(stall).await;
        }
        for (i, event) in events.into_iter().enumerate() {
            if i == 1 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            } else if i > 0 && !drip.is_zero() {
                tokio::time::sleep(drip).await;
            }
            yield Ok::<_, Infallible>(Frame::data(Bytes::from(event)));
        }
        if !die {
            guard.complete = true;
        }
        drop(guard);
    };
    let mut r = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    r
}
