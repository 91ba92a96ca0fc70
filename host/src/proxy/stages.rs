//! The stage plugins' part of the pipeline: compress, cache policy and route
//! before the upstream call, judge after it. With no plugin host, or no
//! plugin for a stage, each step leaves the request as it is.
//!
//! A stage's refusal or closed-mode fault becomes a [`GatewayError::Plugin`]
//! (400 or 500 naming the plugin); open-mode faults never reach here.

use crate::api::chat::{ChatRequest, ChatResponse};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::routing::Arm;
use crate::stage::{JudgeVerdict, StageContext};
use crate::telemetry;

use super::context::RequestContext;

/// Runs compress, cache policy and route; returns the models to try, in
/// order: the router's plan (primary or first cascade tier, then
/// fallbacks), or the built-in default (the requested model, or the A/B
/// arm's, then its configured fallbacks). A pinned request gets exactly the
/// model it asked for.
pub async fn before_upstream(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
) -> Result<Vec<String>, GatewayError> {
    let arm = assign_arm(gw, ctx, req);
    let planned = match &gw.plugins {
        Some(_) => plan(gw, ctx, req, arm.as_ref()).await?,
        None => None,
    };
    Ok(planned.unwrap_or_else(|| default_order(gw, ctx, req, arm.as_ref())))
}

/// Puts the request in its A/B arm, by its user key.
fn assign_arm(gw: &Gateway, ctx: &mut RequestContext, req: &ChatRequest) -> Option<Arm> {
    let user =
        req.user.clone().or_else(|| ctx.user_header.clone()).or_else(|| ctx.client.as_ref().map(|c| c.name.clone()));
    let arm = gw.routing.config.arm_for(user.as_deref())?.clone();
    ctx.arm = Some((arm.name.clone(), gw.routing.arm(&arm.name).cloned().unwrap_or_default()));
    Some(arm)
}

/// The built-in route when no router decides.
fn default_order(gw: &Gateway, ctx: &RequestContext, req: &ChatRequest, arm: Option<&Arm>) -> Vec<String> {
    if ctx.pinned {
        return vec![req.model.clone()];
    }
    let first = arm.and_then(|a| a.model.clone()).unwrap_or_else(|| req.model.clone());
    let mut order = vec![first];
    if let Ok(route) = gw.models.resolve(&order[0]) {
        for model in &route.fallbacks {
            if !order.contains(model) {
                order.push(model.clone());
            }
        }
    }
    order
}

async fn plan(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
    arm: Option<&Arm>,
) -> Result<Option<Vec<String>>, GatewayError> {
    let Some(plugins) = &gw.plugins else { return Ok(None) };

    let none = StageContext::default();
    let outcome = plugins.compress_async(req, &none).await?;
    if outcome.tokens_saved > 0 {
        metrics::counter!(telemetry::TOKENS_SAVED).increment(u64::from(outcome.tokens_saved));
        ctx.tokens_saved = outcome.tokens_saved;
        *req = outcome.request;
    }

    ctx.cache_decision = plugins.cache_policy_async(req, &none).await?;

    if ctx.pinned || arm.is_some_and(|a| a.model.is_some() || !a.route) {
        return Ok(None);
    }
    let candidates = gw.routing.candidates(&gw.models);
    let stage_ctx = StageContext { metadata: route_metadata(gw, ctx, req), headers: Vec::new() };
    let Some(plan) = plugins.route_async(req, &stage_ctx, &candidates).await? else { return Ok(None) };
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
    let Some(plugins) = &gw.plugins else { return Ok(None) };
    Ok(plugins.judge_async(req, &StageContext::default(), response).await?)
}
