//! The request pipeline: what happens between a parsed request and the
//! response, stage by stage. See `docs/pipeline.md` for the phase chart.
//!
//! 1. stage plugins: compress the messages, decide the cache policy, plan
//!    the route (primary model, fallbacks);
//! 2. resolve each planned model to a route (upstream + upstream model id);
//! 3. prepare the upstream request (model id, usage reporting for streams);
//! 4. call the upstream (`routing::execute`: breaker, budget, retries with
//!    back-off, then the plan's next model); with cascade tiers, the cheaper
//!    tiers first, judged, escalating while the score is low (`cascade`);
//! 5. judge a complete answer (stage plugins);
//! 6. account usage (reported, or counted) and cost;
//! 7. answer in the client's API: a whole body, or a relayed stream.
//!
//! The pipeline does not parse HTTP or shape errors (that is `ingress`).

mod cascade;
mod context;
mod relay;
mod stages;

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde_json::{Map, Value};

pub use context::{RequestContext, X_COST, X_MODEL, X_OVERHEAD, X_UPSTREAM};

use crate::accounting::{count_prompt_tokens, count_tokens};
use crate::api::anthropic::response_from_chat;
use crate::api::chat::{ChatRequest, ChatResponse, Usage};
use crate::body::{Body, full};
use crate::cache::{CacheOutcome, Provenance};
use crate::error::{ApiFlavor, GatewayError};
use crate::gateway::Gateway;
use crate::upstream::ChatReply;

/// Checks what serde cannot: constraints between and within fields.
fn validate(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.model.is_empty() {
        return Err(GatewayError::invalid("`model` must not be empty", Some("model")));
    }
    if req.messages.is_empty() {
        return Err(GatewayError::invalid("`messages` must contain at least one message", Some("messages")));
    }
    if req.n == Some(0) {
        return Err(GatewayError::invalid("`n` must be at least 1", Some("n")));
    }
    if let Some(t) = req.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(GatewayError::invalid(
            format!("`temperature` must be between 0 and 2, got {t}"),
            Some("temperature"),
        ));
    }
    if let Some(p) = req.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
        return Err(GatewayError::invalid(format!("`top_p` must be between 0 and 1, got {p}"), Some("top_p")));
    }
    Ok(())
}

/// A chat request, from either API, through to its response.
pub async fn chat(
    gw: &Gateway,
    ctx: &mut RequestContext,
    mut req: ChatRequest,
) -> Result<Response<Body>, GatewayError> {
    validate(&req)?;
    let client_wants_usage = req.wants_stream_usage();
    let models = stages::before_upstream(gw, ctx, &mut req).await?;
    if let Some(hit) = cache_lookup(gw, ctx, &req, &models).await {
        return relay::cached(gw, ctx, &req, hit, client_wants_usage);
    }
    if let Some(cascade) = cascade::planned(ctx) {
        return cascade::run(gw, ctx, req, cascade, &models, client_wants_usage).await;
    }
    let reply = crate::routing::execute::call(gw, ctx, &mut req, &models).await?;
    answer(gw, ctx, req, reply, client_wants_usage).await
}

/// Answers with an upstream's reply: a whole body, or the relayed stream.
async fn answer(
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
            Ok(relay::respond(gw, ctx, stream, req, client_wants_usage))
        }
    }
}

/// Looks the request up in the response cache (the first planned model is
/// the model as routed); on a miss, notes where its answer will be stored.
async fn cache_lookup(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    models: &[String],
) -> Option<crate::cache::Hit> {
    let cache = gw.cache.as_ref()?;
    let model = models.first()?;
    let Some(mut plan) = cache.plan(ctx.cache_decision.as_ref(), &ctx.cache_controls, req, model) else {
        cache.note_bypass();
        ctx.cache_outcome = Some(CacheOutcome::Bypass);
        return None;
    };
    match cache.lookup(&mut plan).await {
        Some(hit) => Some(hit),
        None => {
            ctx.cache_outcome = Some(if plan.lookup { CacheOutcome::Miss } else { CacheOutcome::Bypass });
            ctx.cache_plan = Some(plan);
            None
        }
    }
}

async fn complete(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    response: ChatResponse,
    raw: Option<Bytes>,
) -> Result<Response<Body>, GatewayError> {
    stages::judge(gw, ctx, req, &response).await?;
    let usage = response.usage.unwrap_or_else(|| {
        let completion: u64 = response.choices.iter().map(|c| count_tokens(&c.message.text_content())).sum();
        Usage::new(count_prompt_tokens(req), completion)
    });
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
    let mut out = Response::new(full(body));
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(out)
}

/// `POST /v1/embeddings`: forwarded with the upstream's model id; the
/// upstream's body comes back as it is.
pub async fn embeddings(
    gw: &Gateway,
    ctx: &mut RequestContext,
    mut body: Map<String, Value>,
) -> Result<Response<Body>, GatewayError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(GatewayError::invalid("`model` must be a non-empty string", Some("model")));
        }
        None => {
            return Err(GatewayError::invalid("missing field `model`", Some("model")));
        }
    };
    match body.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        Some(_) => {
            return Err(GatewayError::invalid("`input` must be a string or an array", Some("input")));
        }
        None => {
            return Err(GatewayError::invalid("missing field `input`", Some("input")));
        }
    }
    let route = gw.models.resolve(&model)?;
    ctx.route = Some(route.clone());
    body.insert("model".to_owned(), Value::String(route.upstream_model.clone()));

    let sent = Instant::now();
    let reply = route.upstream.embeddings(&body).await;
    ctx.upstream_time += sent.elapsed();
    let raw = reply?;

    let prompt_tokens = serde_json::from_slice::<Value>(&raw)
        .ok()
        .and_then(|v| v.pointer("/usage/prompt_tokens").and_then(Value::as_u64))
        .unwrap_or(0);
    let usage = Usage::new(prompt_tokens, 0);
    ctx.usage = Some(usage);
    ctx.cost = route.pricing.map(|p| p.cost(usage));
    let mut out = Response::new(full(raw));
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(out)
}
