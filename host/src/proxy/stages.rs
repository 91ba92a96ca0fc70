//! The stages' part of the pipeline: compress, cache policy and route before
//! the upstream call, judge after it. Every stage is called through its
//! trait (`crate::stage`): the plugin host's implementations when a plugin
//! folder is configured, and the built-in default router
//! (`routing/default_router.rs`) when no router plugin plans the route. With
//! no plugin host, or no plugin for a stage, each step leaves the request as
//! it is.
//!
//! A stage's refusal or closed-mode fault becomes a [`GatewayError::Plugin`]
//! (400 or 500 naming the plugin); open-mode faults never reach here.

use crate::api::chat::{ChatRequest, ChatResponse};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::routing::Arm;
use crate::routing::default_router::DefaultRouter;
use crate::stage::{CachePolicy, Compressor, Judge, JudgeVerdict, Router, StageContext};
use crate::telemetry;

use super::context::RequestContext;

/// Runs compress, cache policy and route; returns the models to try, in
/// order: the router plugin's plan (primary or first cascade tier, then
/// fallbacks), or the default router's (the requested model, or the A/B
/// arm's, then its configured fallbacks). A pinned request gets exactly the
/// model it asked for.
pub async fn before_upstream(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
) -> Result<Vec<String>, GatewayError> {
    let arm = assign_arm(gw, ctx, req);
    if let Some(host) = gw.plugins.as_deref() {
        compress(host, ctx, req).await?;
        let policy: &dyn CachePolicy = host;
        ctx.cache_decision = policy.cache_policy(req, &StageContext::default()).await?;
        if let Some(models) = plugin_route(host, gw, ctx, req, arm.as_ref()).await? {
            return Ok(models);
        }
    }
    let default = DefaultRouter::new(&gw.models, ctx.pinned, arm.as_ref().and_then(|a| a.model.as_deref()));
    let router: &dyn Router = &default;
    let plan = router.route(req, &StageContext::default(), &[]).await?;
    // The default router always has a plan; without one, the requested model.
    Ok(plan.map_or_else(|| vec![req.model.clone()], |p| p.models()))
}

/// Puts the request in its A/B arm, by its user key.
fn assign_arm(gw: &Gateway, ctx: &mut RequestContext, req: &ChatRequest) -> Option<Arm> {
    let user =
        req.user.clone().or_else(|| ctx.user_header.clone()).or_else(|| ctx.client.as_ref().map(|c| c.name.clone()));
    let arm = gw.routing.config.arm_for(user.as_deref())?.clone();
    ctx.arm = Some((arm.name.clone(), gw.routing.arm(&arm.name).cloned().unwrap_or_default()));
    Some(arm)
}

/// Runs the compressors; keeps their output when they saved tokens.
async fn compress(
    compressor: &dyn Compressor,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
) -> Result<(), GatewayError> {
    let outcome = compressor.compress(req, &StageContext::default()).await?;
    if outcome.tokens_saved > 0 {
        metrics::counter!(telemetry::TOKENS_SAVED).increment(u64::from(outcome.tokens_saved));
        ctx.tokens_saved = outcome.tokens_saved;
        *req = outcome.request;
    }
    Ok(())
}

/// Asks the router plugins for a plan, unless the request is pinned or its
/// A/B arm fixes the model or skips routing. A plan is kept in `ctx.plan`
/// (its router named in `x-sluice-router`, its cascade run by
/// `proxy/cascade.rs`); `None`: the default router decides.
async fn plugin_route(
    router: &dyn Router,
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    arm: Option<&Arm>,
) -> Result<Option<Vec<String>>, GatewayError> {
    if ctx.pinned || arm.is_some_and(|a| a.model.is_some() || !a.route) {
        return Ok(None);
    }
    let candidates = gw.routing.candidates(&gw.models);
    let stage_ctx = StageContext { metadata: route_metadata(gw, ctx, req), headers: Vec::new() };
    let Some(plan) = router.route(req, &stage_ctx, &candidates).await? else { return Ok(None) };
    let order = plan.models();
    tracing::debug!(plugin = %plan.plugin, reason = %plan.reason, models = ?order, "route plan");
    if let Some(bucket) = &plan.ab_bucket {
        metrics::counter!(telemetry::AB_REQUESTS, "bucket" => bucket.clone()).increment(1);
    }
    ctx.plan = Some(plan);
    ctx.requested_pricing = gw.models.resolve(&req.model).ok().and_then(|r| r.pricing);
    Ok(Some(order))
}

/// What a router is told besides the request and candidates: the user key,
/// the client, the A/B arm, and the live statistics the candidate record
/// has no field for.
fn route_metadata(gw: &Gateway, ctx: &RequestContext, req: &ChatRequest) -> Vec<(String, String)> {
    let mut metadata = Vec::new();
    if let Some(user) = req.user.as_ref().or(ctx.user_header.as_ref()) {
        metadata.push(("user".to_owned(), user.clone()));
    }
    if let Some(client) = &ctx.client {
        metadata.push(("client".to_owned(), client.name.clone()));
    }
    if let Some(arm) = ctx.arm_name() {
        metadata.push(("ab_arm".to_owned(), arm.to_owned()));
    }
    metadata.extend(gw.routing.candidate_metadata(&gw.models));
    metadata
}

/// Asks the judges about a complete answer.
pub async fn judge(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &ChatRequest,
    response: &ChatResponse,
) -> Result<(), GatewayError> {
    if ctx.verdict.is_some() {
        // A cascade tier's answer, judged already.
        return Ok(());
    }
    ctx.verdict = verdict(gw, req, response).await?;
    Ok(())
}

/// Asks the judges about a cascade tier's answer, without recording it.
pub async fn verdict(
    gw: &Gateway,
    req: &ChatRequest,
    response: &ChatResponse,
) -> Result<Option<JudgeVerdict>, GatewayError> {
    let Some(host) = gw.plugins.as_deref() else { return Ok(None) };
    let judges: &dyn Judge = host;
    Ok(judges.judge(req, &StageContext::default(), response).await?)
}
