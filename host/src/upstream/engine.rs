//! The bundled engine as an upstream: internal chat requests become engine
//! generate calls, and the engine's token events become OpenAI-shaped
//! responses and chunks. Dropping a stream drops the engine's receiver, which
//! cancels the sequence and frees its KV blocks.
//!
//! The engine serves text chat: tool definitions and `n > 1` are refused
//! with a clear 400 rather than silently ignored, as are the engine's own
//! bounds (`max_tokens` of at least 1, at most 4 stop sequences, at most
//! 2048 embedding inputs of at most the model's length); `max_tokens` beyond
//! the context window is capped to it.

use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sluice_engine::{
    ChatMessage, Engine, EngineError, FinishReason, GenerateRequest, GenerationEvent, Owner, Prompt, SamplingParams,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::caller::Caller;
use super::config::UpstreamConfig;
use super::reply::{ChatReply, ChunkEvent, Slot, unix_now};
use crate::api::chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Message, PromptTokensDetails, Role, Usage,
};
use crate::error::GatewayError;
use crate::telemetry;

/// Loads the engine's models and starts its actor.
pub fn start(cfg: &UpstreamConfig) -> Result<Engine, String> {
    Engine::start(cfg.engine.clone()).map_err(|e| format!("loading {}: {e}", cfg.engine.model_path.display()))
}

/// The id clients see for the engine's model: the GGUF file's name without
/// its quantisation suffix (`SmolLM2-135M-Instruct.Q4_1.gguf` →
/// `SmolLM2-135M-Instruct`), falling back to the model's own name.
pub fn model_id(cfg: &UpstreamConfig, engine: &Engine) -> String {
    let stem = cfg.engine.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let id = match stem.rsplit_once('.') {
        Some((name, quant)) if quant.starts_with(['Q', 'q', 'F', 'f', 'I', 'i', 'B', 'b']) => name.to_owned(),
        _ => stem,
    };
    if id.is_empty() { engine.model_name().to_owned() } else { id }
}

/// Sets the engine's scheduler metrics from a snapshot of its state (when
/// `/metrics` is scraped: the actor keeps the numbers, this only copies them).
pub fn record_stats(upstream: &str, engine: &Engine) {
    let stats = engine.stats();
    let label = || ("upstream", upstream.to_owned());
    metrics::gauge!(telemetry::ENGINE_RUNNING, &[label()]).set(stats.running as f64);
    metrics::gauge!(telemetry::ENGINE_WAITING, &[label()]).set(stats.waiting as f64);
    metrics::gauge!(telemetry::ENGINE_KV_FREE, &[label()]).set(stats.free_blocks as f64);
    metrics::gauge!(telemetry::ENGINE_KV_CAPACITY, &[label()]).set(stats.total_blocks as f64);
    metrics::counter!(telemetry::ENGINE_PREFIX_HIT_TOKENS, &[label()]).absolute(stats.prefix_cache_hit_tokens);
    metrics::counter!(telemetry::ENGINE_PREEMPTIONS, &[label()]).absolute(stats.preemptions);
    metrics::counter!(telemetry::ENGINE_STEPS, &[label()]).absolute(stats.steps);
}

fn engine_error(cfg: &UpstreamConfig, e: EngineError) -> GatewayError {
    match e {
        EngineError::InvalidRequest(message) => GatewayError::invalid(message, Some("messages")),
        EngineError::InvalidParameter { param, message } => GatewayError::invalid(message, Some(param)),
        EngineError::NoEmbeddingModel => GatewayError::Unsupported { upstream: cfg.name.clone(), what: "embeddings" },
        other => GatewayError::UpstreamUnreachable { upstream: cfg.name.clone(), detail: other.to_string() },
    }
}

fn request(cfg: &UpstreamConfig, req: &ChatRequest, caller: &Caller) -> Result<GenerateRequest, GatewayError> {
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::Unsupported { upstream: cfg.name.clone(), what: "tools" });
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::Unsupported { upstream: cfg.name.clone(), what: "n > 1" });
    }
    let messages = req
        .messages
        .iter()
        .map(|m| ChatMessage { role: m.role.as_str().to_owned(), content: m.text_content() })
        .collect();
    let top_k = req.extra.get("top_k").and_then(Value::as_u64).unwrap_or(0) as usize;
    let sampling = SamplingParams {
        // OpenAI's defaults: temperature 1, top_p 1.
        temperature: req.temperature.unwrap_or(1.0) as f32,
        top_p: req.top_p.unwrap_or(1.0) as f32,
        top_k,
        seed: req.seed.map(|s| s as u64),
        max_tokens: req.max_output_tokens().unwrap_or(cfg.default_max_tokens) as usize,
        stop: req.stop_sequences(),
    };
    // The prefix cache is scoped like the response cache (by tenant), the
    // batch shared fairly by key.
    let owner = Owner { scope: caller.tenant.clone(), client: caller.key.clone() };
    Ok(GenerateRequest { prompt: Prompt::Chat(messages), sampling, owner })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn completion_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("chatcmpl-sluice-{:x}-{}", unix_now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn usage_of(prompt_tokens: usize, completion_tokens: usize, cached: usize) -> Usage {
    Usage {
        prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: cached as u64 }),
        ..Usage::new(prompt_tokens as u64, completion_tokens as u64)
    }
}

/// Serves one chat request: starts generating, then either collects the whole
/// answer or streams it as chunks.
pub async fn chat(
    engine: &Engine,
    model: &str,
    cfg: &UpstreamConfig,
    req: &ChatRequest,
    caller: &Caller,
    permit: Slot,
) -> Result<ChatReply, GatewayError> {
    let generate = request(cfg, req, caller)?;
    let events = engine.generate(generate).map_err(|e| engine_error(cfg, e))?;
    let completion = Completion { id: completion_id(), created: unix_now(), model: model.to_owned() };
    if req.stream {
        Ok(stream(events, completion, cfg.name.clone(), permit))
    } else {
        collect(events, completion, &cfg.name, permit).await
    }
}

/// What the response or every chunk of one completion repeats.
struct Completion {
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    /// The whole answer.
    fn response(self, text: String, reason: FinishReason, usage: Usage) -> ChatResponse {
        ChatResponse {
            id: self.id,
            object: "chat.completion".to_owned(),
            created: self.created,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: Message::text(Role::Assistant, text),
                finish_reason: Some(finish_reason(reason).to_owned()),
                extra: Map::new(),
            }],
            usage: Some(usage),
            extra: Map::new(),
        }
    }

    /// One streamed chunk.
    fn chunk(&self, delta: Delta, finish: Option<&str>, usage: Option<Usage>) -> Result<ChunkEvent, GatewayError> {
        // The usage chunk has no choices, as OpenAI sends it.
        let choices = match usage {
            Some(_) => Vec::new(),
            None => vec![ChunkChoice { index: 0, delta, finish_reason: finish.map(str::to_owned), extra: Map::new() }],
        };
        let chunk = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            extra: Map::new(),
        };
        Ok(ChunkEvent { chunk, raw: None })
    }
}

/// The engine's event channel closed before `Done` or `Error`.
fn stopped(upstream: &str) -> GatewayError {
    GatewayError::UpstreamProtocol { upstream: upstream.to_owned(), detail: "the engine stopped".to_owned() }
}

/// Collects the whole answer; the slot is released once the engine is done.
async fn collect(
    mut events: UnboundedReceiver<GenerationEvent>,
    completion: Completion,
    upstream: &str,
    permit: Slot,
) -> Result<ChatReply, GatewayError> {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            GenerationEvent::Token { text: piece, .. } => text.push_str(&piece),
            GenerationEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_prompt_tokens } => {
                drop(permit);
                let usage = usage_of(prompt_tokens, completion_tokens, cached_prompt_tokens);
                let response = completion.response(text, reason, usage);
                return Ok(ChatReply::Complete { response, raw: None });
            }
            GenerationEvent::Error(message) => {
                return Err(GatewayError::UpstreamProtocol { upstream: upstream.to_owned(), detail: message });
            }
        }
    }
    Err(stopped(upstream))
}

/// Streams the answer as chunks: the assistant role first, then one chunk per
/// piece of text, the finish reason and the usage. The stream holds the slot.
fn stream(
    events: UnboundedReceiver<GenerationEvent>,
    completion: Completion,
    upstream: String,
    permit: Slot,
) -> ChatReply {
    let first = completion.chunk(
        Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Default::default() },
        None,
        None,
    );
    let stream = async_stream::stream! {
        let _permit = permit;
        yield first;
        let mut events = UnboundedReceiverStream::new(events);
        while let Some(event) = events.next().await {
            match event {
                GenerationEvent::Token { text, .. } if text.is_empty() => {}
                GenerationEvent::Token { text, .. } => {
                    yield completion.chunk(Delta { content: Some(text), ..Default::default() }, None, None);
                }
                GenerationEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_prompt_tokens } => {
                    yield completion.chunk(Delta::default(), Some(finish_reason(reason)), None);
                    yield completion.chunk(Delta::default(), None, Some(usage_of(prompt_tokens, completion_tokens, cached_prompt_tokens)));
                    return;
                }
                GenerationEvent::Error(message) => {
                    yield Err(GatewayError::UpstreamProtocol { upstream: upstream.clone(), detail: message });
                    return;
                }
            }
        }
        yield Err(stopped(&upstream));
    };
    ChatReply::Stream(Box::pin(stream))
}

/// `/v1/embeddings` served by the engine's embedding model, in OpenAI's shape.
pub async fn embeddings(
    engine: &Engine,
    cfg: &UpstreamConfig,
    body: &Map<String, Value>,
) -> Result<Value, GatewayError> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| GatewayError::invalid("the bundled engine embeds strings only", Some("input")))?,
        _ => return Err(GatewayError::invalid("`input` must be a string or an array of strings", Some("input"))),
    };
    // Counted, checked and embedded on the engine's embedding thread, which
    // stops when this future is dropped (the client went away).
    let embeddings = engine.embed_inputs(inputs).await.map_err(|e| engine_error(cfg, e))?;
    let tokens = embeddings.tokens;
    let data: Vec<Value> = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    Ok(json!({
        "object": "list", "data": data,
        "model": engine.embedding_model_name().unwrap_or_default(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// The models the engine serves, as `/v1/models` entries.
pub fn models(engine: &Engine, model: &str) -> Vec<Value> {
    let created = unix_now();
    let mut out = vec![json!({"id": model, "object": "model", "created": created, "owned_by": "sluice-engine",
        "context_window": engine.context_window()})];
    if let Some(name) = engine.embedding_model_name() {
        out.push(json!({"id": name, "object": "model", "created": created, "owned_by": "sluice-engine"}));
    }
    out
}
