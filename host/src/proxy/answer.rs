//! The last phases of a chat request: judge a whole answer, account its
//! usage and cost, store it in the cache, and answer in the client's API —
//! a whole body, or a stream (`relay.rs`), live or replayed. Cache hits are
//! answered here too.
//!
//! Nothing here calls an upstream or decides a route.

use bytes::Bytes;
use http::{HeaderValue, Response, header};

use super::context::RequestContext;
use super::relay::{self, Origin};
use super::stages;
use crate::accounting::usage_of;
use crate::api::anthropic::response_from_chat;
use crate::api::chat::{ChatRequest, ChatResponse};
use crate::body::{Body, full};
use crate::cache::{Hit, Provenance};
use crate::error::{ApiFlavor, GatewayError};
use crate::gateway::Gateway;
use crate::upstream::ChatReply;

/// Answers with an upstream's reply: a whole body, or the relayed stream.
pub async fn answer(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: ChatRequest,
    reply: ChatReply,
    client_wants_usage: bool,
) -> Result<Response<Body>, GatewayError> {
    match reply {
        ChatReply::Complete { response, raw } => complete(gw, ctx, &req, response, raw).await,
        ChatReply::Stream(stream) => {
            ctx.streaming = true;
            Ok(relay::respond(gw, ctx, stream, req, client_wants_usage, Origin::Upstream))
        }
    }
}

/// Answers with a whole answer of this request's (judged already or now),
/// streamed when the client asked for a stream.
pub async fn answer_whole(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: ChatRequest,
    response: ChatResponse,
    raw: Option<Bytes>,
    client_stream: bool,
    client_wants_usage: bool,
) -> Result<Response<Body>, GatewayError> {
    if client_stream {
        ctx.streaming = true;
        let stream = relay::whole(&response, usage_of(&req, &response));
        return Ok(relay::respond(gw, ctx, stream, req, client_wants_usage, Origin::Replay));
    }
    complete(gw, ctx, &req, response, raw).await
}

/// A whole answer: judged, accounted, stored in the cache unless the judges
/// failed it, and written in the client's API.
pub async fn complete(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    response: ChatResponse,
    raw: Option<Bytes>,
) -> Result<Response<Body>, GatewayError> {
    stages::judge(gw, ctx, req, &response).await?;
    let usage = usage_of(req, &response);
    ctx.usage = Some(usage);
    ctx.cost = ctx.route.as_ref().and_then(|r| r.pricing).map(|p| p.cost(usage));
    // An answer the judges failed is not kept.
    if let (Some(cache), Some(plan), Some(route)) = (&gw.cache, ctx.cache_plan.take(), &ctx.route)
        && ctx.verdict.as_ref().is_none_or(|v| v.pass)
    {
        let made = Provenance { model: route.public.clone(), usage, cost: ctx.cost, upstream: ctx.upstream_time };
        cache.store(plan, &response, raw.as_deref(), made);
    }
    let body = match ctx.api {
        ApiFlavor::OpenAi => match raw {
            Some(raw) => raw,
            None => Bytes::from(serde_json::to_vec(&response).map_err(|e| GatewayError::Internal(e.to_string()))?),
        },
        ApiFlavor::Anthropic => Bytes::from(
            serde_json::to_vec(&response_from_chat(&response, usage))
                .map_err(|e| GatewayError::Internal(e.to_string()))?,
        ),
    };
    Ok(json_body(body))
}

/// A cache hit, answered in the client's API: whole, or replayed as a
/// well-formed stream (role, content, finish reason, usage when asked, end).
pub fn cached(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: ChatRequest,
    hit: Hit,
    client_wants_usage: bool,
) -> Result<Response<Body>, GatewayError> {
    let entry = hit.entry;
    ctx.cache_outcome = Some(hit.outcome);
    ctx.cache_similarity = hit.similarity;
    ctx.set_route(gw.models.resolve(&entry.model).ok(), &gw.routing);
    ctx.cost = Some(0.0);
    let usage = entry.usage;
    let unreadable = || GatewayError::Internal("a cached answer could not be read".to_owned());
    match (req.stream, ctx.api) {
        (false, ApiFlavor::OpenAi) => Ok(json_body(entry.body())),
        (false, ApiFlavor::Anthropic) => {
            let response = entry.chat_response().ok_or_else(unreadable)?;
            let translated = response_from_chat(&response, usage);
            let body = serde_json::to_vec(&translated).map_err(|e| GatewayError::Internal(e.to_string()))?;
            Ok(json_body(Bytes::from(body)))
        }
        (true, _) => {
            let response = entry.chat_response().ok_or_else(unreadable)?;
            ctx.streaming = true;
            let stream = relay::whole(&response, usage);
            let origin = Origin::Cache { prompt_tokens: usage.prompt_tokens };
            Ok(relay::respond(gw, ctx, stream, req, client_wants_usage, origin))
        }
    }
}

fn json_body(body: Bytes) -> Response<Body> {
    let mut out = Response::new(full(body));
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}
