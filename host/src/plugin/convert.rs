//! Conversions between the gateway's chat types and the plugins' WIT types.
//!
//! A plugin sees a text-only view of a request; when a compressor returns
//! messages, [`apply_messages`] maps them back by their `index`, so fields the
//! plugin could not see (tool calls, image parts, extensions) survive.

use serde_json::Value;

use super::bindings::{caching, judging, routing, types};
use crate::api::chat::{ChatRequest, ChatResponse, Content, Message, Role};
use crate::stage::{CacheDecision, Cascade, Health, JudgeVote, RouteCandidate, RoutePlan, StageContext};

fn role_to_wit(role: Role) -> types::Role {
    match role {
        Role::System => types::Role::System,
        Role::Developer => types::Role::Developer,
        Role::User => types::Role::User,
        Role::Assistant => types::Role::Assistant,
        Role::Tool | Role::Function => types::Role::Tool,
    }
}

fn role_from_wit(role: types::Role) -> Role {
    match role {
        types::Role::System => Role::System,
        types::Role::Developer => Role::Developer,
        types::Role::User => Role::User,
        types::Role::Assistant => Role::Assistant,
        types::Role::Tool => Role::Tool,
    }
}

fn has_non_text(m: &Message) -> bool {
    let parts = matches!(&m.content, Some(Content::Parts(p)) if p.iter().any(|p| p.kind != "text"));
    parts || m.tool_calls.as_ref().is_some_and(|c| !c.is_empty())
}

/// Metadata keys only the gateway sets: a client's `metadata` may not carry
/// them, whether or not the gateway set them on this request.
const HOST_KEYS: [&str; 3] = ["client", "user", "ab_arm"];

/// Prefixes of metadata keys only the gateway sets.
const HOST_PREFIXES: [&str; 1] = ["candidate."];

/// Whether only the gateway may set metadata `key`.
fn host_key(key: &str) -> bool {
    HOST_KEYS.contains(&key) || HOST_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The plugins' metadata: the request's `metadata` object (OpenAI's field),
/// as string pairs, then the gateway's own pairs (`host`). A client key that
/// is the gateway's (see [`host_key`]) or that the gateway set is dropped,
/// so a plugin never mistakes a client's value for the gateway's.
fn metadata(req: &ChatRequest, host: &[(String, String)]) -> Vec<(String, String)> {
    let client: Vec<(String, String)> = match req.extra.get("metadata") {
        Some(Value::Object(map)) => map
            .iter()
            .filter(|(k, _)| !host_key(k) && !host.iter().any(|(h, _)| h == *k))
            .map(|(k, v)| match v {
                Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    };
    client.into_iter().chain(host.iter().cloned()).collect()
}

/// Headers a plugin never sees.
const SECRET_HEADERS: [&str; 5] = ["authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"];

fn headers(ctx: &StageContext) -> Vec<(String, String)> {
    ctx.headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| !SECRET_HEADERS.contains(&k.as_str()))
        .collect()
}

/// The plugins' view of a request.
pub fn request_to_wit(req: &ChatRequest, ctx: &StageContext) -> types::ChatRequest {
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| types::Message {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            role: role_to_wit(m.role),
            content: m.text_content(),
            name: m.name.clone(),
            has_non_text: has_non_text(m),
        })
        .collect();
    let wants_json = req
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema");
    types::ChatRequest {
        model: req.model.clone(),
        messages,
        sampling: types::Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_output_tokens(),
            seed: req.seed,
            n: req.n,
            stop: req.stop_sequences(),
        },
        streaming: req.stream,
        has_tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
        wants_json,
        user: req.user.clone(),
        metadata: metadata(req, &ctx.metadata),
        headers: headers(ctx),
    }
}

/// The plugins' view of a response (its first choice).
pub fn response_to_wit(resp: &ChatResponse) -> types::ChatResponse {
    let first = resp.choices.first();
    types::ChatResponse {
        model: resp.model.clone(),
        content: first.map(|c| c.message.text_content()).unwrap_or_default(),
        finish_reason: first.and_then(|c| c.finish_reason.clone()),
        usage: resp.usage.map(|u| types::TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }),
        has_tool_calls: first.is_some_and(|c| c.message.tool_calls.as_ref().is_some_and(|t| !t.is_empty())),
    }
}

/// Replace `req`'s messages by a compressor's, keeping what the plugin could
/// not see for every message whose `index` it kept.
pub fn apply_messages(req: &ChatRequest, messages: Vec<types::Message>) -> ChatRequest {
    let mut out = req.clone();
    out.messages = messages
        .into_iter()
        .map(|m| match req.messages.get(m.index as usize) {
            Some(orig) => {
                let mut kept = orig.clone();
                kept.role = role_from_wit(m.role);
                kept.name = m.name;
                if orig.text_content() != m.content {
                    kept.content = Some(Content::Text(m.content));
                }
                kept
            }
            None => {
                let mut new = Message::text(role_from_wit(m.role), m.content);
                new.name = m.name;
                new
            }
        })
        .collect();
    out
}

pub fn candidate_to_wit(c: &RouteCandidate) -> types::Candidate {
    types::Candidate {
        model: c.model.clone(),
        provider: c.provider.clone(),
        input_price_per_mtok: c.input_price_per_mtok,
        output_price_per_mtok: c.output_price_per_mtok,
        context_window: c.context_window,
        p50_latency_ms: c.p50_latency_ms,
        p95_latency_ms: c.p95_latency_ms,
        error_rate: c.error_rate,
        health: match c.health {
            Health::Healthy => types::Health::Healthy,
            Health::Degraded => types::Health::Degraded,
            Health::Down => types::Health::Down,
        },
    }
}

/// Scores outside [0, 1] are clamped; NaN counts as 0.
fn clamp_unit(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

pub fn plan_from_wit(p: routing::RoutePlan, plugin: &str) -> RoutePlan {
    RoutePlan {
        primary: p.primary,
        fallbacks: p.fallbacks,
        cascade: p.cascade.map(|c| Cascade { tiers: c.tiers, judge_threshold: clamp_unit(c.judge_threshold) }),
        ab_bucket: p.ab_bucket,
        reason: p.reason,
        plugin: plugin.to_owned(),
    }
}

pub fn decision_from_wit(d: caching::CacheDecision, plugin: &str) -> CacheDecision {
    CacheDecision {
        cacheable: d.cacheable,
        key_text: d.key_text,
        namespace: d.namespace,
        ttl: std::time::Duration::from_secs(u64::from(d.ttl_seconds)),
        semantic: d.semantic,
        similarity_threshold: clamp_unit(d.similarity_threshold),
        reason: d.reason,
        plugin: plugin.to_owned(),
    }
}

pub fn vote_from_wit(v: judging::Verdict, plugin: &str) -> JudgeVote {
    JudgeVote { plugin: plugin.to_owned(), score: clamp_unit(v.score), pass: v.pass, reason: v.reason }
}
