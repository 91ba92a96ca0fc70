//! Relays an upstream stream to the client as Server-Sent Events, in the
//! client's API: each upstream chunk is written as soon as it arrives (OpenAI
//! clients of OpenAI upstreams get the upstream's bytes unchanged), a
//! `: keep-alive` comment fills long pauses, and the stream ends with usage
//! and `[DONE]` (OpenAI) or `message_delta`/`message_stop` (Anthropic).
//!
//! A client that goes away drops this stream, which drops the upstream
//! response and so closes the upstream request. So does a client that stays
//! but stops reading: a chunk it has not taken within `sse_send_timeout`
//! ends the stream (see [`send_bounded`]). Metrics for the request are
//! recorded when the stream ends, whichever way it ends.
//!
//! Whole answers streamed to a client that asked for a stream (an accepted
//! cascade tier, a cache hit) come through here too, as a [`whole`] stream:
//! there is one way to write a stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderValue, Response, header};
use serde_json::Map;

use super::context::RequestContext;
use crate::accounting::{Pricing, format_cost, usage_or_count};
use crate::api::anthropic_stream::AnthropicEncoder;
use crate::api::chat::{ChatChunk, ChatRequest, ChatResponse, Usage};
use crate::body::{Body, streaming};
use crate::cache::replay::{Assembler, chunks_of};
use crate::cache::{Provenance, ResponseCache, StorePlan};
use crate::error::{ApiFlavor, GatewayError};
use crate::gateway::Gateway;
use crate::stage::{Judge, StageContext};
use crate::upstream::{ChunkEvent, ChunkStream};

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

fn sse_data(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// Where a relayed stream's chunks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An upstream, live.
    Upstream,
    /// A whole answer of this request's, replayed (an accepted cascade tier).
    Replay,
    /// A cache hit: free, its usage already paid for when it was stored, and
    /// its prompt tokens known up front (`message_start` carries them).
    Cache { prompt_tokens: u64 },
}

/// A whole answer as a stream of chunks (see `cache::replay::chunks_of`),
/// then a usage chunk.
pub fn whole(response: &ChatResponse, usage: Usage) -> ChunkStream {
    let mut chunks = chunks_of(response);
    let tail = chunks.first().map(|first| ChatChunk { choices: Vec::new(), usage: Some(usage), ..first.clone() });
    chunks.extend(tail);
    let events: Vec<Result<ChunkEvent, GatewayError>> =
        chunks.into_iter().map(|chunk| Ok(ChunkEvent { chunk, raw: None::<Bytes> })).collect();
    Box::pin(futures_util::stream::iter(events))
}

/// Records the request's metrics when the stream ends or is dropped.
struct StreamRecord {
    ctx: RequestContext,
    ttft: Option<Duration>,
    status: Option<u16>,
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
    origin: Origin,
) -> Response<Body> {
    let keepalive = gw.config.server.sse_keepalive;
    let send_timeout = gw.config.server.sse_send_timeout;
    let mut relay = Relay::new(gw, ctx, req, client_wants_usage, origin);
    let body = async_stream::stream! {
        loop {
            let next = match tokio::time::timeout(keepalive, upstream.next()).await {
                Err(_) => {
                    yield Bytes::from_static(KEEP_ALIVE);
                    continue;
                }
                Ok(next) => next,
            };
            match next {
                None => break,
                Some(Ok(event)) => {
                    if let Some(bytes) = relay.chunk(&event) {
                        yield bytes;
                    }
                }
                Some(Err(error)) => {
                    yield relay.fail(&error);
                    return;
                }
            }
        }
        yield relay.finish();
    };

    let mut response = Response::new(streaming(send_bounded(body, send_timeout)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Runs `body` in a task of its own and hands its chunks over one at a time:
/// when the connection has not taken a chunk for `timeout` (hyper stops
/// asking for more once the client's socket is full), the task ends and
/// drops `body`, and with it the upstream request and its in-flight slot.
/// A client that goes away ends it at once.
fn send_bounded<S>(body: S, timeout: Duration) -> impl Stream<Item = Bytes> + Send + 'static
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        pump(body, &tx, timeout).await;
        // Only now, with `body` and its records dropped, does the client
        // see the end.
        drop(tx);
    });
    async_stream::stream! {
        while let Some(bytes) = rx.recv().await {
            yield bytes;
        }
    }
}

/// Sends `body`'s chunks to `tx` until it ends, the client goes away, or a
/// chunk waits longer than `timeout`.
async fn pump<S: Stream<Item = Bytes>>(body: S, tx: &tokio::sync::mpsc::Sender<Bytes>, timeout: Duration) {
    let mut body = std::pin::pin!(body);
    loop {
        let next = tokio::select! {
            next = body.next() => next,
            () = tx.closed() => return,
        };
        let Some(bytes) = next else { return };
        match tokio::time::timeout(timeout, tx.send(bytes)).await {
            Ok(Ok(())) => {}
            // The client went away.
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(?timeout, "the client stopped reading its stream; dropping it");
                return;
            }
        }
    }
}

/// One stream being relayed: what has been seen so far, and how to write
/// each chunk and the end in the client's API.
struct Relay {
    record: StreamRecord,
    req: ChatRequest,
    client_wants_usage: bool,
    origin: Origin,
    api: ApiFlavor,
    pricing: Option<Pricing>,
    public_model: String,
    /// Translates chunks for Anthropic clients; `None` for OpenAI clients.
    encoder: Option<AnthropicEncoder>,
    usage: Option<Usage>,
    text: String,
    /// The first chunk without its choices, for a usage chunk of our own.
    template: Option<ChatChunk>,
    /// A miss's answer, assembled to be stored once the stream has
    /// finished cleanly.
    store: Option<(Arc<ResponseCache>, StorePlan, Assembler)>,
    /// The judges, asked about the assembled answer before it is stored.
    judges: Option<Arc<dyn Judge>>,
}

impl Relay {
    fn new(gw: &Gateway, ctx: &RequestContext, req: ChatRequest, client_wants_usage: bool, origin: Origin) -> Relay {
        let mut record = StreamRecord { ctx: ctx.clone(), ttft: None, status: None };
        let store = match (&gw.cache, record.ctx.cache_plan.take()) {
            (Some(cache), Some(plan)) => Some((cache.clone(), plan, Assembler::default())),
            _ => None,
        };
        let public_model = ctx.route.as_ref().map(|r| r.public.clone()).unwrap_or_default();
        Relay {
            record,
            req,
            client_wants_usage,
            origin,
            api: ctx.api,
            pricing: ctx.route.as_ref().and_then(|r| r.pricing),
            encoder: (ctx.api == ApiFlavor::Anthropic).then(|| AnthropicEncoder::new(&public_model)),
            public_model,
            usage: None,
            text: String::new(),
            template: None,
            store,
            judges: gw.plugins.clone().map(|host| host as Arc<dyn Judge>),
        }
    }

    /// Notes one upstream chunk; returns what the client gets for it.
    fn chunk(&mut self, event: &ChunkEvent) -> Option<Bytes> {
        let chunk = &event.chunk;
        let mut has_output = false;
        for choice in &chunk.choices {
            if let Some(content) = choice.delta.content.as_deref().filter(|c| !c.is_empty()) {
                self.text.push_str(content);
                has_output = true;
            }
            has_output |= choice.delta.tool_calls.is_some();
        }
        if has_output && self.record.ttft.is_none() {
            self.record.ttft = Some(self.record.ctx.started.elapsed());
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if let Some((_, _, assembler)) = self.store.as_mut() {
            assembler.push(chunk);
        }
        if self.template.is_none() {
            self.template = Some(ChatChunk { choices: Vec::new(), usage: None, extra: Map::new(), ..chunk.clone() });
        }
        let usage_only = chunk.choices.is_empty() && chunk.usage.is_some();
        match self.encoder.as_mut() {
            None if usage_only && !self.client_wants_usage => None,
            None => match &event.raw {
                Some(raw) => Some(sse_data(raw)),
                None => Some(sse_data(&serde_json::to_vec(chunk).unwrap_or_default())),
            },
            Some(encoder) => {
                let prompt_tokens = match self.origin {
                    Origin::Cache { prompt_tokens } => prompt_tokens,
                    Origin::Upstream | Origin::Replay => 0,
                };
                let events = encoder.chunk(chunk, prompt_tokens);
                (!events.is_empty()).then(|| events.concat().into())
            }
        }
    }

    /// Stores a streamed answer as a whole one is stored: only if the
    /// judges pass it. An answer judged already (an accepted cascade tier)
    /// keeps its verdict; otherwise the judges are asked off the stream's
    /// path, and a judge's fault keeps the answer out too.
    fn store_judged(&self, cache: Arc<ResponseCache>, plan: StorePlan, response: ChatResponse, made: Provenance) {
        if let Some(verdict) = &self.record.ctx.verdict {
            if verdict.pass {
                cache.store(plan, &response, None, made);
            }
            return;
        }
        let Some(judges) = self.judges.clone() else {
            cache.store(plan, &response, None, made);
            return;
        };
        let req = self.req.clone();
        tokio::spawn(async move {
            if let Ok(verdict) = judges.judge(&req, &StageContext::default(), &response).await
                && verdict.is_none_or(|v| v.pass)
            {
                cache.store(plan, &response, None, made);
            }
        });
    }

    /// The stream failed after it started: the final error event.
    fn fail(&mut self, error: &GatewayError) -> Bytes {
        self.record.ctx.note_error(error);
        self.record.status = Some(error.status().as_u16());
        error_event(self.api, error)
    }

    /// The stream ended cleanly: usage and cost accounted, the answer
    /// stored, and the end written (usage, `[DONE]` or `message_stop`).
    fn finish(&mut self) -> Bytes {
        let reported = self.usage.is_some();
        let usage = usage_or_count(self.usage, &self.req, [self.text.as_str()]);
        let cost = match self.origin {
            // Paid for when it was stored: the context already says so.
            Origin::Cache { .. } => None,
            Origin::Upstream | Origin::Replay => {
                let cost = self.pricing.map(|p| p.cost(usage));
                self.record.ctx.usage = Some(usage);
                self.record.ctx.cost = cost;
                cost
            }
        };
        if let Some((cache, plan, assembler)) = self.store.take()
            && let Some(response) = assembler.finish(usage)
        {
            let upstream = self.record.ctx.started.elapsed();
            let made = Provenance { model: self.public_model.clone(), usage, cost, upstream };
            self.store_judged(cache, plan, response, made);
        }
        let mut tail = BytesMut::new();
        if let Some(cost) = cost {
            tail.extend_from_slice(format!(": x-sluice-cost-usd={}\n\n", format_cost(cost)).as_bytes());
        }
        match self.encoder.as_mut() {
            None => {
                if self.client_wants_usage
                    && !reported
                    && let Some(mut chunk) = self.template.take()
                {
                    chunk.usage = Some(usage);
                    tail.extend_from_slice(&sse_data(&serde_json::to_vec(&chunk).unwrap_or_default()));
                }
                tail.extend_from_slice(b"data: [DONE]\n\n");
            }
            Some(encoder) => {
                let id = self.template.as_ref().map(|c| c.id.as_str()).unwrap_or("msg");
                for event in encoder.finish(usage, id) {
                    tail.extend_from_slice(&event);
                }
            }
        }
        self.record.status = Some(200);
        tail.freeze()
    }
}

/// A stream that ends without [`Relay::finish`] (the client went away, or
/// the upstream failed mid-stream) still pays for what was streamed: the
/// prompt plus the tokens sent so far, recorded before the record drops.
impl Drop for Relay {
    fn drop(&mut self) {
        if matches!(self.origin, Origin::Cache { .. }) || self.record.ctx.usage.is_some() {
            return;
        }
        let sent = crate::accounting::count_tokens(&self.text);
        let usage = match self.usage {
            Some(u) => Usage::new(u.prompt_tokens, u.completion_tokens.max(sent)),
            None => Usage::new(crate::accounting::count_prompt_tokens(&self.req), sent),
        };
        self.record.ctx.usage = Some(usage);
        self.record.ctx.cost = self.pricing.map(|p| p.cost(usage));
    }
}

/// The event that ends a stream that failed after it started.
fn error_event(api: ApiFlavor, error: &GatewayError) -> Bytes {
    let body = error.body_json(api);
    match api {
        ApiFlavor::OpenAi => sse_data(body.to_string().as_bytes()),
        ApiFlavor::Anthropic => crate::api::anthropic_stream::sse_event("error", &body),
    }
}
