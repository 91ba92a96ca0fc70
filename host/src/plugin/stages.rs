//! The four stages over a registry snapshot: compressors chain, the first
//! cache policy and the first router that answer win, judges combine (mean
//! score, fail if any fails). A plugin's `err` is policy; a fault applies the
//! plugin's failure mode (open: skip it; closed: fail with its name). Each
//! call is a span of the request's trace, when one is current.
//!
//! It does not load plugins or classify faults: see `registry.rs` and
//! `fault.rs`. `PluginHost` (`mod.rs`) implements the stage traits with these.

use std::sync::atomic::Ordering;

use super::convert::{
    apply_messages, candidate_to_wit, decision_from_wit, plan_from_wit, request_to_wit, response_to_wit, vote_from_wit,
};
use super::fault::CallFault;
use super::loaded::{LoadedPlugin, StageIndices};
use super::manifest::FailureMode;
use super::registry::Registry;
use crate::api::chat::{ChatRequest, ChatResponse};
use crate::stage::{
    CacheDecision, CompressOutcome, FaultKind, JudgeVerdict, RouteCandidate, RoutePlan, StageContext, StageError,
    StageKind,
};
use crate::traces::StageSpan;

/// A fault: skip the plugin (`Ok`) or fail the request (`Err`).
fn on_fault(p: &LoadedPlugin, fault: CallFault) -> Result<(), StageError> {
    match p.meta.manifest.failure {
        FailureMode::Open => Ok(()),
        FailureMode::Closed => Err(StageError::Fault {
            plugin: p.name().to_owned(),
            stage: p.stage,
            kind: fault.kind,
            detail: fault.detail,
        }),
    }
}

/// A plugin call, traced as a span of the current request's (if any): its
/// plugin, version and outcome.
async fn traced<T>(
    p: &LoadedPlugin,
    call: impl Future<Output = Result<Result<T, String>, CallFault>>,
) -> Result<Result<T, String>, CallFault> {
    let span = StageSpan::start(p.name(), p.stage.as_str(), &p.hash);
    let result = call.await;
    match &result {
        Ok(Ok(_)) => span.end("ok", None),
        Ok(Err(_)) => span.end("error", None),
        Err(fault) => {
            let outcome = match fault.kind {
                FaultKind::Deadline => "deadline",
                FaultKind::Trap | FaultKind::OutOfMemory | FaultKind::Instantiate => "trap",
                FaultKind::Disabled | FaultKind::Busy => "skipped",
            };
            span.end(outcome, Some(fault.kind.as_str()));
        }
    }
    result
}

fn rejected(p: &LoadedPlugin, reason: String) -> StageError {
    p.stats.errors.fetch_add(1, Ordering::Relaxed);
    StageError::Rejected { plugin: p.name().to_owned(), stage: p.stage, reason }
}

pub async fn compress(reg: &Registry, req: &ChatRequest, ctx: &StageContext) -> Result<CompressOutcome, StageError> {
    let mut out = CompressOutcome { request: req.clone(), tokens_saved: 0, notes: Vec::new() };
    for p in reg.stage(StageKind::Compressor) {
        let StageIndices::Compressor(idx) = &p.indices else {
            continue;
        };
        let wit = request_to_wit(&out.request, ctx);
        let res =
            traced(p, p.call(async |store, inst| idx.load(&mut *store, inst)?.call_compress(&mut *store, &wit).await))
                .await;
        match res {
            Ok(Ok(o)) => {
                out.request = apply_messages(&out.request, o.messages);
                out.tokens_saved = out.tokens_saved.saturating_add(o.tokens_saved);
                out.notes.push(format!("{}: {}", p.name(), o.note));
            }
            Ok(Err(reason)) => return Err(rejected(p, reason)),
            Err(fault) => on_fault(p, fault)?,
        }
    }
    Ok(out)
}

pub async fn cache_policy(
    reg: &Registry,
    req: &ChatRequest,
    ctx: &StageContext,
) -> Result<Option<CacheDecision>, StageError> {
    let plugins = reg.stage(StageKind::CachePolicy);
    if plugins.is_empty() {
        return Ok(None);
    }
    let wit = request_to_wit(req, ctx);
    for p in plugins {
        let StageIndices::CachePolicy(idx) = &p.indices else {
            continue;
        };
        let res =
            traced(p, p.call(async |store, inst| idx.load(&mut *store, inst)?.call_decide(&mut *store, &wit).await))
                .await;
        match res {
            Ok(Ok(d)) => return Ok(Some(decision_from_wit(d, p.name()))),
            Ok(Err(reason)) => return Err(rejected(p, reason)),
            Err(fault) => on_fault(p, fault)?,
        }
    }
    Ok(None)
}

pub async fn route(
    reg: &Registry,
    req: &ChatRequest,
    ctx: &StageContext,
    candidates: &[RouteCandidate],
) -> Result<Option<RoutePlan>, StageError> {
    let plugins = reg.stage(StageKind::Router);
    if plugins.is_empty() {
        return Ok(None);
    }
    let wit = request_to_wit(req, ctx);
    let cands: Vec<_> = candidates.iter().map(candidate_to_wit).collect();
    for p in plugins {
        let StageIndices::Router(idx) = &p.indices else {
            continue;
        };
        let res = traced(
            p,
            p.call(async |store, inst| idx.load(&mut *store, inst)?.call_route(&mut *store, &wit, &cands).await),
        )
        .await;
        match res {
            Ok(Ok(Some(plan))) => return Ok(Some(plan_from_wit(plan, p.name()))),
            Ok(Ok(None)) => {}
            Ok(Err(reason)) => return Err(rejected(p, reason)),
            Err(fault) => on_fault(p, fault)?,
        }
    }
    Ok(None)
}

pub async fn judge(
    reg: &Registry,
    req: &ChatRequest,
    ctx: &StageContext,
    resp: &ChatResponse,
) -> Result<Option<JudgeVerdict>, StageError> {
    let plugins = reg.stage(StageKind::Judge);
    if plugins.is_empty() {
        return Ok(None);
    }
    let wit_req = request_to_wit(req, ctx);
    let wit_resp = response_to_wit(resp);
    let mut votes = Vec::with_capacity(plugins.len());
    for p in plugins {
        let StageIndices::Judge(idx) = &p.indices else {
            continue;
        };
        let res = traced(
            p,
            p.call(async |store, inst| idx.load(&mut *store, inst)?.call_judge(&mut *store, &wit_req, &wit_resp).await),
        )
        .await;
        match res {
            Ok(Ok(v)) => votes.push(vote_from_wit(v, p.name())),
            // A judge's `err` refuses the answer: a failing vote.
            Ok(Err(reason)) => {
                p.stats.errors.fetch_add(1, Ordering::Relaxed);
                votes.push(crate::stage::JudgeVote { plugin: p.name().to_owned(), score: 0.0, pass: false, reason });
            }
            Err(fault) => on_fault(p, fault)?,
        }
    }
    Ok(JudgeVerdict::combine(votes))
}
