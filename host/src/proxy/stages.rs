//! The stage plugins' part of the pipeline: compress, cache policy and route
//! before the upstream call, judge after it. With no plugin host, or no
//! plugin for a stage, each step leaves the request as it is.
//!
//! A stage's refusal or closed-mode fault becomes a [`GatewayError::Plugin`]
//! (400 or 500 naming the plugin); open-mode faults never reach here.

use crate::api::chat::{ChatRequest, ChatResponse};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::stage::{Health, RouteCandidate};
use crate::telemetry;

use super::RequestContext;

/// Runs `f` (plugin calls) with the async worker handed off once: each
/// plugin call needs to leave the async context, and a hand-off per call
/// costs more than the call itself.
fn off_async<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // Elsewhere each call leaves the async context by itself.
        _ => f(),
    }
}

/// Runs compress, cache policy and route; returns the models to try, in
/// order (the plan's primary and fallbacks, or the requested model).
pub fn before_upstream(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
) -> Result<Vec<String>, GatewayError> {
    if gw.plugins.is_none() {
        return Ok(vec![req.model.clone()]);
    }
    off_async(|| plan(gw, ctx, req))
}

fn plan(gw: &Gateway, ctx: &mut RequestContext, req: &mut ChatRequest) -> Result<Vec<String>, GatewayError> {
    let Some(plugins) = &gw.plugins else { return Ok(vec![req.model.clone()]) };

    let outcome = plugins.compress(req)?;
    if outcome.tokens_saved > 0 {
        metrics::counter!(telemetry::TOKENS_SAVED).increment(u64::from(outcome.tokens_saved));
        ctx.tokens_saved = outcome.tokens_saved;
        *req = outcome.request;
    }

    ctx.cache_decision = plugins.cache_policy(req)?;

    if ctx.pinned {
        return Ok(vec![req.model.clone()]);
    }
    let candidates = gw.models.candidates();
    let Some(plan) = plugins.route(req, &candidates)? else { return Ok(vec![req.model.clone()]) };
    let first = plan.cascade.as_ref().and_then(|c| c.tiers.first()).unwrap_or(&plan.primary).clone();
    let mut order = vec![first];
    for model in &plan.fallbacks {
        if !order.contains(model) {
            order.push(model.clone());
        }
    }
    tracing::debug!(plugin = %plan.plugin, reason = %plan.reason, models = ?order, "route plan");
    if let Some(bucket) = &plan.ab_bucket {
        metrics::counter!(telemetry::AB_REQUESTS, "bucket" => bucket.clone()).increment(1);
    }
    ctx.plan = Some(plan);
    Ok(order)
}

/// Asks the judges about a complete answer.
pub fn judge(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    response: &ChatResponse,
) -> Result<(), GatewayError> {
    let Some(plugins) = &gw.plugins else { return Ok(()) };
    ctx.verdict = off_async(|| plugins.judge(req, response))?;
    Ok(())
}

/// Whether a failed call should move on to the plan's next model.
pub fn is_retryable(error: &GatewayError) -> bool {
    match error {
        GatewayError::UpstreamUnreachable { .. }
        | GatewayError::UpstreamTimeout { .. }
        | GatewayError::UpstreamProtocol { .. }
        | GatewayError::UpstreamBusy { .. } => true,
        GatewayError::UpstreamStatus { status, .. } => status.is_server_error() || status.as_u16() == 429,
        _ => false,
    }
}

impl crate::models::ModelRegistry {
    /// The configured models as a router sees them.
    pub fn candidates(&self) -> Vec<RouteCandidate> {
        self.routes()
            .map(|route| RouteCandidate {
                model: route.public.clone(),
                provider: route.upstream.name().to_owned(),
                input_price_per_mtok: route.pricing.map_or(0.0, |p| p.input_per_mtok),
                output_price_per_mtok: route.pricing.map_or(0.0, |p| p.output_per_mtok),
                context_window: route.context_window.unwrap_or(0),
                p50_latency_ms: 0.0,
                p95_latency_ms: 0.0,
                error_rate: 0.0,
                health: Health::Healthy,
            })
            .collect()
    }
}
