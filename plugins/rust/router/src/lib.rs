//! Example router plugin: scores a request's complexity with cheap heuristics
//! and sends simple ones to the cheapest healthy model and complex ones to the
//! strongest, with ordered fallbacks, an optional cheap-then-strong cascade and
//! a consistent-hash A/B split.
//!
//! It never refuses a request: when no candidate is usable it returns no plan
//! and the gateway's default routing applies. The JavaScript router in
//! `plugins/js/router` implements the same rules and passes the same tests.

wit_bindgen::generate!({ world: "router", path: "../../../wit" });

use exports::sluice::plugin::routing::{Cascade, Guest, RoutePlan};
use sluice::plugin::host;
use sluice::plugin::types::{Candidate, ChatRequest, Health, Role};

/// Words that suggest a request needs a strong model.
const HARD_WORDS: &[&str] = &[
    "prove",
    "analyze",
    "analyse",
    "step by step",
    "explain why",
    "derive",
    "optimize",
    "optimise",
    "refactor",
    "debug",
    "architecture",
    "theorem",
    "trade-off",
    "tradeoff",
];

struct Router;

fn cfg_num(key: &str, default: f64) -> f64 {
    host::config_get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn price(c: &Candidate) -> f64 {
    c.input_price_per_mtok + c.output_price_per_mtok
}

/// FNV-1a, 32 bits, over UTF-8 bytes: stable across languages.
fn fnv1a32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The complexity score of a request: higher means harder.
fn complexity(req: &ChatRequest, tokens: u32) -> u32 {
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.to_lowercase())
        .unwrap_or_default();
    let mut score = 0;
    if f64::from(tokens) > cfg_num("long_prompt_tokens", 1000.0) {
        score += 2;
    }
    if last_user.contains("```") {
        score += 2;
    }
    let hits = HARD_WORDS.iter().filter(|w| last_user.contains(*w)).count() as u32;
    score += hits.min(3);
    if req.has_tools {
        score += 1;
    }
    if req.wants_json {
        score += 1;
    }
    if req.messages.len() > 6 {
        score += 1;
    }
    if last_user.split_whitespace().count() > 150 {
        score += 1;
    }
    score
}

impl Guest for Router {
    fn route(req: ChatRequest, candidates: Vec<Candidate>) -> Result<Option<RoutePlan>, String> {
        let prompt: Vec<&str> = req.messages.iter().map(|m| m.content.as_str()).collect();
        let tokens = host::count_tokens(&prompt.join("\n"));
        let needed = u64::from(tokens) + u64::from(req.sampling.max_tokens.unwrap_or(0));
        let mut usable: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.health != Health::Down && u64::from(c.context_window) >= needed)
            .collect();
        if usable.is_empty() {
            return Ok(None);
        }
        usable.sort_by(|a, b| price(a).total_cmp(&price(b)).then_with(|| a.model.cmp(&b.model)));
        let pick = |key: &str, default: &Candidate| -> String {
            match host::config_get(key) {
                Some(m) if usable.iter().any(|c| c.model == m) => m,
                _ => default.model.clone(),
            }
        };
        let cheap = pick("cheap_model", usable[0]);
        let strong = pick("strong_model", usable[usable.len() - 1]);
        let score = complexity(&req, tokens);
        let complex = f64::from(score) >= cfg_num("complexity_threshold", 3.0);
        let mut primary = if complex { strong.clone() } else { cheap.clone() };

        let mut ab_bucket = None;
        let ab_percent = cfg_num("ab_percent", 0.0);
        if ab_percent > 0.0 {
            let key = req
                .user
                .clone()
                .or_else(|| {
                    req.metadata.iter().find(|(k, _)| k == "tenant").map(|(_, v)| v.clone())
                })
                .or_else(|| {
                    req.messages.iter().find(|m| m.role == Role::User).map(|m| m.content.clone())
                })
                .unwrap_or_default();
            let in_b = f64::from(fnv1a32(&key) % 100) < ab_percent;
            ab_bucket = Some(if in_b { "b" } else { "a" }.to_owned());
            if in_b
                && let Some(m) = host::config_get("ab_model")
                && usable.iter().any(|c| c.model == m)
            {
                primary = m;
            }
        }

        let mut fallbacks: Vec<String> =
            usable.iter().map(|c| c.model.clone()).filter(|m| *m != primary).collect();
        if complex {
            fallbacks.reverse();
        }
        let cascade = (!complex
            && host::config_get("cascade").as_deref() == Some("true")
            && cheap != strong
            && primary == cheap)
            .then(|| Cascade {
                tiers: vec![cheap.clone(), strong.clone()],
                judge_threshold: cfg_num("cascade_threshold", 0.7) as f32,
            });
        let kind = if complex { "complex" } else { "simple" };
        Ok(Some(RoutePlan {
            primary,
            fallbacks,
            cascade,
            ab_bucket,
            reason: format!("complexity {score}: {kind}"),
        }))
    }
}

export!(Router);
