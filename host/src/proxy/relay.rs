//! Relays an upstream stream to the client as Server-Sent Events, in the
//! client's API: each upstream chunk is written as soon as it arrives (OpenAI
//! clients of OpenAI upstreams get the upstream's bytes unchanged), a
//! `: keep-alive` comment fills long pauses, and the stream ends with usage
//! and `[DONE]` (OpenAI) or `message_delta`/`message_stop` (Anthropic).
//!
//! A client that goes away drops this stream, which drops the upstream
//! response and so closes the upstream request. Metrics for the request are
//! recorded when the stream ends, whichever way it ends.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, Response, header};
use serde_json::Map;

use super::RequestContext;
use crate::accounting::{count_prompt_tokens, count_tokens, format_cost};
use crate::api::anthropic::response_from_chat;
use crate::api::anthropic_stream::AnthropicEncoder;
use crate::api::chat::{ChatChunk, ChatRequest, Usage};
use crate::body::{Body, full, streaming};
use crate::cache::replay::{Assembler, chunks_of};
use crate::cache::{Hit, Provenance};
use crate::error::{ApiFlavor, GatewayError};
use crate::gateway::Gateway;
use crate::upstream::ChunkStream;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

fn sse_data(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// Records the request's metrics when the stream ends or is dropped.
struct StreamRecord {
    ctx: RequestContext,
    ttft: Option<Duration>,
    status: Option<u16>,
}

impl StreamRecord {
    fn end(&mut self, status: u16) {
        self.status = Some(status);
    }

    fn account(&mut self, usage: Usage, cost: Option<f64>) {
        self.ctx.usage = Some(usage);
        self.ctx.cost = cost;
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        // No status means the client went away before the end.
        let status = self.status.unwrap_or(499);
        self.ctx.record(status, self.ctx.started.elapsed(), self.ttft);
    }
}

/// The streamed response for `upstream`.
pub fn respond(
    gw: &Gateway,
    ctx: &RequestContext,
    mut upstream: ChunkStream,
    req: ChatRequest,
    client_wants_usage: bool,
) -> Response<Body> {
    let keepalive = gw.config.server.sse_keepalive;
    let api = ctx.api;
    let pricing = ctx.route.as_ref().and_then(|r| r.pricing);
    let public_model = ctx.route.as_ref().map(|r| r.public.clone()).unwrap_or_default();
    let mut record = StreamRecord { ctx: ctx.clone(), ttft: None, status: None };
    // A miss's answer is stored once the stream has finished cleanly.
    let mut store = match (&gw.cache, record.ctx.cache_plan.take()) {
        (Some(cache), Some(plan)) => Some((cache.clone(), plan, Assembler::default())),
        _ => None,
    };

    let body = async_stream::stream! {
        let mut encoder = (api == ApiFlavor::Anthropic).then(|| AnthropicEncoder::new(&public_model));
        let mut usage: Option<Usage> = None;
        let mut text = String::new();
        let mut template: Option<ChatChunk> = None;
        loop {
            let next = match tokio::time::timeout(keepalive, upstream.next()).await {
                Err(_) => {
                    yield Bytes::from_static(KEEP_ALIVE);
                    continue;
                }
                Ok(next) => next,
            };
            let event = match next {
                None => break,
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    record.ctx.note_error(&error);
                    record.end(error.status().as_u16());
                    yield error_event(api, &error);
                    return;
                }
            };
            let chunk = &event.chunk;
            let mut has_output = false;
            for choice in &chunk.choices {
                if let Some(content) = choice.delta.content.as_deref().filter(|c| !c.is_empty()) {
                    text.push_str(content);
                    has_output = true;
                }
                has_output |= choice.delta.tool_calls.is_some();
            }
            if has_output && record.ttft.is_none() {
                record.ttft = Some(record.ctx.started.elapsed());
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            if let Some((_, _, assembler)) = store.as_mut() {
                assembler.push(chunk);
            }
            if template.is_none() {
                template = Some(ChatChunk { choices: Vec::new(), usage: None, extra: Map::new(), ..chunk.clone() });
            }
            let usage_only = chunk.choices.is_empty() && chunk.usage.is_some();
            match encoder.as_mut() {
                None if usage_only && !client_wants_usage => {}
                None => match &event.raw {
                    Some(raw) => yield sse_data(raw),
                    None => yield sse_data(&serde_json::to_vec(chunk).unwrap_or_default()),
                },
                Some(encoder) => {
                    let events = encoder.chunk(chunk, 0);
                    if !events.is_empty() {
                        yield events.concat().into();
                    }
                }
            }
        }

        let reported = usage.is_some();
        let usage = usage.unwrap_or_else(|| Usage::new(count_prompt_tokens(&req), count_tokens(&text)));
        let cost = pricing.map(|p| p.cost(usage));
        record.account(usage, cost);
        if let Some((cache, plan, assembler)) = store.take()
            && let Some(response) = assembler.finish(usage)
        {
            let upstream = record.ctx.started.elapsed();
            let made = Provenance { model: public_model.clone(), usage, cost, upstream };
            cache.store(plan, &response, None, made);
        }
        let mut tail = BytesMut::new();
        if let Some(cost) = cost {
            tail.extend_from_slice(format!(": x-sluice-cost-usd={}\n\n", format_cost(cost)).as_bytes());
        }
        match encoder.as_mut() {
            None => {
                if client_wants_usage && !reported
                    && let Some(mut chunk) = template.take() {
                        chunk.usage = Some(usage);
                        tail.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).unwrap_or_default()));
                    }
                tail.extend_from_slice(b"data: [DONE]\n\n");
            }
            Some(encoder) => {
                let id = template.as_ref().map(|c| c.id.as_str()).unwrap_or("msg");
                for event in encoder.finish(usage, id) {
                    tail.extend_from_slice(&event);
                }
            }
        }
        record.end(200);
        yield tail.freeze();
    };

    let mut response = Response::new(streaming(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A cache hit, answered in the client's API: whole, or replayed as a
/// well-formed stream (role, content, finish reason, usage when asked, end).
pub fn cached(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    hit: Hit,
    client_wants_usage: bool,
) -> Result<Response<Body>, GatewayError> {
    let entry = hit.entry;
    ctx.cache_outcome = Some(hit.outcome);
    ctx.cache_similarity = hit.similarity;
    ctx.route = gw.models.resolve(&entry.model).ok();
    ctx.cost = Some(0.0);
    let usage = entry.usage;
    let unreadable = || GatewayError::Internal("a cached answer could not be read".to_owned());
    let (body, content_type) = match (req.stream, ctx.api) {
        (false, ApiFlavor::OpenAi) => (entry.body(), "application/json"),
        (false, ApiFlavor::Anthropic) => {
            let response = entry.chat_response().ok_or_else(unreadable)?;
            let translated = response_from_chat(&response, usage);
            (
                Bytes::from(serde_json::to_vec(&translated).map_err(|e| GatewayError::Internal(e.to_string()))?),
                "application/json",
            )
        }
        (true, api) => {
            let response = entry.chat_response().ok_or_else(unreadable)?;
            let mut out = BytesMut::new();
            let chunks = chunks_of(&response);
            match api {
                ApiFlavor::OpenAi => {
                    for chunk in &chunks {
                        out.extend_from_slice(&sse_data(&serde_json::to_vec(chunk).unwrap_or_default()));
                    }
                    if client_wants_usage && let Some(first) = chunks.first() {
                        let tail = ChatChunk { choices: Vec::new(), usage: Some(usage), ..first.clone() };
                        out.extend_from_slice(&sse_data(&serde_json::to_vec(&tail).unwrap_or_default()));
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                }
                ApiFlavor::Anthropic => {
                    let mut encoder = AnthropicEncoder::new(&entry.model);
                    for chunk in &chunks {
                        for event in encoder.chunk(chunk, usage.prompt_tokens) {
                            out.extend_from_slice(&event);
                        }
                    }
                    for event in encoder.finish(usage, &response.id) {
                        out.extend_from_slice(&event);
                    }
                }
            }
            (out.freeze(), "text/event-stream")
        }
    };
    let mut response = Response::new(full(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if req.stream {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(response)
}

/// The event that ends a stream that failed after it started.
fn error_event(api: ApiFlavor, error: &GatewayError) -> Bytes {
    let body = error.body_json(api);
    match api {
        ApiFlavor::OpenAi => sse_data(body.to_string().as_bytes()),
        ApiFlavor::Anthropic => crate::api::anthropic_stream::sse_event("error", &body),
    }
}
