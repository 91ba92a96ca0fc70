//! The cascade phase: when the route plan has cascade tiers, the cheaper
//! tiers are asked first, each answer is judged, and the request escalates
//! to the next tier while the judges' score is under the plan's threshold
//! (or the tier failed). The first accepted answer is returned; the last
//! tier's answer is accepted as it is, and if it fails the plan's fallbacks
//! serve it. If they fail too, the best-scored rejected answer is served
//! (a weak answer beats an error; it is never cached, and
//! `x-sluice-cascade` shows the failed tier as `large:error`).
//!
//! Streaming trade-off: a cheaper tier's answer must be whole to be judged,
//! so for `stream: true` requests it is fetched whole and, once accepted,
//! replayed to the client as a stream (the time to first token is the
//! tier's whole latency); the last tier is streamed live, as it arrives,
//! and so is not judged before the client sees it.
//!
//! Spend on escalated answers is counted in the request's cost and the
//! tier's statistics; `x-sluice-cascade` lists the tiers tried with their
//! scores (`small:0.42>large:0.91`).

use bytes::Bytes;
use http::Response;

use super::answer::{answer, answer_whole};
use super::call::call;
use super::context::{RequestContext, Step};
use super::stages;
use crate::accounting::usage_of;
use crate::api::chat::{ChatRequest, ChatResponse};
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::routing::retry::falls_back;
use crate::stage::{Cascade, model_order};
use crate::telemetry;
use crate::upstream::ChatReply;

/// The plan's cascade, when it has tiers to escalate through.
pub fn planned(ctx: &RequestContext) -> Option<Cascade> {
    ctx.plan.as_ref().and_then(|p| p.cascade.clone()).filter(|c| c.tiers.len() >= 2)
}

/// Runs the cascade; `models` is the plan's order (first tier, fallbacks).
pub async fn run(
    gw: &Gateway,
    ctx: &mut RequestContext,
    req: ChatRequest,
    cascade: Cascade,
    models: &[String],
    client_wants_usage: bool,
) -> Result<Response<Body>, GatewayError> {
    let Some((last, cheaper)) = cascade.tiers.split_last() else {
        return Err(GatewayError::Internal("a cascade without tiers".to_owned()));
    };
    // The best-scored rejected answer, served when every later tier fails.
    let mut rejected: Option<Rejected> = None;
    for tier in cheaper {
        let mut tier_req = req.clone();
        tier_req.stream = false;
        tier_req.stream_options = None;
        let reply = call(&gw.routing, &gw.models, ctx, &mut tier_req, std::slice::from_ref(tier)).await;
        let (response, raw) = match reply {
            Ok(ChatReply::Complete { response, raw }) => (response, raw),
            Ok(ChatReply::Stream(_)) => {
                return Err(GatewayError::Internal("a whole answer was asked for, a stream came".to_owned()));
            }
            Err(e) if falls_back(&e) => {
                ctx.steps.push(Step { model: tier.clone(), score: None, failed: true });
                metrics::counter!(telemetry::CASCADE_ESCALATIONS, "from" => tier.clone(), "reason" => "error")
                    .increment(1);
                continue;
            }
            Err(e) => return Err(e),
        };
        let verdict = stages::verdict(gw, &tier_req, &response).await?;
        let score = verdict.as_ref().map(|v| v.score);
        // No judge loaded: nothing can reject the answer.
        if verdict.as_ref().is_none_or(|v| v.score >= cascade.judge_threshold) {
            ctx.steps.push(Step { model: tier.clone(), score, failed: false });
            ctx.verdict = verdict;
            return answer_whole(gw, ctx, tier_req, response, raw, req.stream, client_wants_usage).await;
        }
        let cost = escalate(gw, ctx, tier, &tier_req, &response, score);
        if rejected.as_ref().is_none_or(|r| score.unwrap_or(0.0) > r.score.unwrap_or(0.0)) {
            rejected = Some(Rejected { tier: tier.clone(), req: tier_req, response, raw, score, cost });
        }
    }

    ctx.steps.push(Step { model: last.clone(), score: None, failed: false });
    let order = model_order(last, models.iter().filter(|m| !cascade.tiers.contains(*m)));
    let mut req = req;
    match call(&gw.routing, &gw.models, ctx, &mut req, &order).await {
        Ok(reply) => answer(gw, ctx, req, reply, client_wants_usage).await,
        // A weak answer beats none: the last tier and its fallbacks failed.
        Err(e) if falls_back(&e) && rejected.is_some() => {
            let Some(r) = rejected else { return Err(e) };
            tracing::warn!(tier = %r.tier, error = %e, "cascade: every later tier failed; serving the rejected answer");
            metrics::counter!(telemetry::CASCADE_ESCALATIONS, "from" => last.clone(), "reason" => "degraded")
                .increment(1);
            if let Some(step) = ctx.steps.last_mut() {
                step.failed = true;
            }
            ctx.discarded_cost -= r.cost;
            ctx.set_route(gw.models.resolve(&r.tier).ok(), &gw.routing);
            // Served, not accepted: never cached.
            ctx.cache_plan = None;
            answer_whole(gw, ctx, r.req, r.response, r.raw, req.stream, client_wants_usage).await
        }
        Err(e) => Err(e),
    }
}

/// An answer the judges rejected, kept in case no later tier answers.
struct Rejected {
    tier: String,
    req: ChatRequest,
    response: ChatResponse,
    raw: Option<Bytes>,
    score: Option<f32>,
    cost: f64,
}

/// Books a rejected answer: its spend, its score, the escalation. Returns
/// its cost.
fn escalate(
    gw: &Gateway,
    ctx: &mut RequestContext,
    tier: &str,
    req: &ChatRequest,
    response: &ChatResponse,
    score: Option<f32>,
) -> f64 {
    let usage = usage_of(req, response);
    let cost = ctx.route.as_ref().and_then(|r| r.pricing).map_or(0.0, |p| p.cost(usage));
    ctx.discarded_cost += cost;
    let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
    ctx.discarded_tokens = ctx.discarded_tokens.saturating_add(tokens);
    if let Some(route) = &ctx.route {
        gw.routing.upstream(route.upstream.name()).limits.charge_tokens(tokens);
    }
    gw.routing.model(tier).discard(cost, score);
    ctx.steps.push(Step { model: tier.to_owned(), score, failed: false });
    metrics::counter!(telemetry::CASCADE_ESCALATIONS, "from" => tier.to_owned(), "reason" => "score").increment(1);
    tracing::debug!(tier, ?score, "cascade escalates");
    cost
}
