//! The request pipeline: what happens between a parsed, admitted request
//! and the response, phase by phase, read top to bottom in [`chat`]. See
//! `docs/pipeline.md` for the phase chart. One file per phase:
//!
//! 1. `stages.rs`: the stages before the upstream — compress the messages,
//!    decide the cache policy, plan the route (primary model, fallbacks);
//! 2. cache lookup (here): a hit is answered at once (`answer.rs`);
//! 3. `call.rs`: resolve each planned model to a route, prepare the
//!    upstream request, and call it (breaker, budget, retries with
//!    back-off, then the plan's next model); with cascade tiers,
//!    `cascade.rs` asks the cheaper tiers first, judged, escalating while
//!    the score is low;
//! 4. `answer.rs`: judge a whole answer, account usage (reported, or
//!    counted) and cost, store it in the cache, and answer in the client's
//!    API: a whole body, or a stream relayed by `relay.rs`;
//! 5. `finish.rs`: response headers, metrics, settlement of statistics and
//!    budgets, from the one per-request state in `context.rs`.
//!
//! The pipeline does not parse HTTP or shape errors (that is `ingress`),
//! and decides no policy itself: routing policies come from
//! `crate::routing`, stage decisions from the stages.

mod answer;
mod call;
mod cascade;
mod context;
mod finish;
mod relay;
mod stages;

use std::time::Instant;

use http::{HeaderValue, Response, header};
use serde_json::{Map, Value};

pub use context::{RequestContext, RouteState, Step};
pub use finish::{X_COST, X_MODEL, X_OVERHEAD, X_UPSTREAM};

use crate::api::chat::{ChatRequest, Usage};
use crate::body::{Body, full};
use crate::cache::CacheOutcome;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::traces::GenAiRequest;

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

/// A chat request, from either API, through to its response. With tracing
/// on, the request's span is current while the phases run, so the stage
/// calls and cache lookups beneath it are its children.
pub async fn chat(gw: &Gateway, ctx: &mut RequestContext, req: ChatRequest) -> Result<Response<Body>, GatewayError> {
    ctx.trace.requested(&GenAiRequest {
        operation: "chat",
        model: &req.model,
        stream: req.stream,
        max_tokens: req.max_output_tokens(),
        temperature: req.temperature,
        top_p: req.top_p,
    });
    ctx.trace.scope().run(phases(gw, ctx, req)).await
}

/// The phases of [`chat`], top to bottom.
async fn phases(gw: &Gateway, ctx: &mut RequestContext, mut req: ChatRequest) -> Result<Response<Body>, GatewayError> {
    validate(&req)?;
    let client_wants_usage = req.wants_stream_usage();
    let models = stages::before_upstream(gw, ctx, &mut req).await?;
    if let Some(hit) = cache_lookup(gw, ctx, &req, &models).await {
        return answer::cached(gw, ctx, req, hit, client_wants_usage);
    }
    if let Some(cascade) = cascade::planned(ctx) {
        return cascade::run(gw, ctx, req, cascade, &models, client_wants_usage).await;
    }
    let reply = call::call(&gw.routing, &gw.models, ctx, &mut req, &models).await?;
    answer::answer(gw, ctx, req, reply, client_wants_usage).await
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
    let tenant = ctx.client.as_ref().map(|c| c.tenant.as_str());
    let Some(mut plan) = cache.plan(ctx.cache_decision.as_ref(), &ctx.cache_controls, tenant, req, model) else {
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
    let request = GenAiRequest { operation: "embeddings", model: &model, stream: false, ..GenAiRequest::default() };
    ctx.trace.requested(&request);
    let route = gw.models.resolve(&model)?;
    ctx.require_priced(&route)?;
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
