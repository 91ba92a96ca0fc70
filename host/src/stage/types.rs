//! The data the stages exchange with the gateway: compress outcomes, cache
//! decisions, route candidates and plans, judge verdicts, and the names of
//! stages and faults.
//!
//! Plain data only; no behaviour beyond small helpers.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::chat::ChatRequest;

/// The four stage kinds a plugin can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    Compressor,
    CachePolicy,
    Router,
    Judge,
}

impl StageKind {
    pub const ALL: [StageKind; 4] =
        [StageKind::Compressor, StageKind::CachePolicy, StageKind::Router, StageKind::Judge];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Compressor => "compressor",
            StageKind::CachePolicy => "cache-policy",
            StageKind::Router => "router",
            StageKind::Judge => "judge",
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a plugin call broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The guest trapped (panic, unreachable, bad memory access, ...).
    Trap,
    /// The call ran past its deadline.
    Deadline,
    /// The guest tried to grow its memory past its limit.
    OutOfMemory,
    /// A fresh instance could not be created.
    Instantiate,
    /// The plugin was disabled after too many consecutive faults of its own
    /// (it is retried after a back-off, see `plugin/fault.rs`).
    Disabled,
    /// The plugin was at its concurrency cap and no call finished within
    /// the wait: the host's load, never counted as the plugin's fault.
    Busy,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::OutOfMemory => "out-of-memory",
            FaultKind::Instantiate => "instantiate",
            FaultKind::Disabled => "disabled",
            FaultKind::Busy => "busy",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compressors' result.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressOutcome {
    /// The request to send upstream.
    pub request: ChatRequest,
    /// Prompt tokens saved, summed over the compressors (their estimates).
    pub tokens_saved: u32,
    /// One `plugin: note` line per compressor that ran.
    pub notes: Vec<String>,
}

/// How a request's answer may be cached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheDecision {
    /// Whether the answer may be stored and served from cache.
    pub cacheable: bool,
    /// Normalised text the cache key is derived from.
    pub key_text: String,
    /// Cache namespace; entries of different namespaces never match.
    pub namespace: String,
    /// How long an entry lives.
    pub ttl: Duration,
    /// Whether semantic (similarity) matching is allowed.
    pub semantic: bool,
    /// Minimum similarity in [0, 1] for a semantic hit.
    pub similarity_threshold: f32,
    /// Why (for logs).
    pub reason: String,
    /// The plugin that decided.
    pub plugin: String,
}

/// A model's live health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Down,
}

/// A model a router may choose, with its price and live statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteCandidate {
    pub model: String,
    pub provider: String,
    /// USD per million prompt tokens.
    pub input_price_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_price_per_mtok: f64,
    /// Context window in tokens.
    pub context_window: u32,
    /// Live median latency, milliseconds (0 = unknown).
    pub p50_latency_ms: f64,
    /// Live 95th percentile latency, milliseconds (0 = unknown).
    pub p95_latency_ms: f64,
    /// Live error rate in [0, 1].
    pub error_rate: f64,
    pub health: Health,
}

/// Try cheap tiers first; escalate while the judges score below the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cascade {
    /// Models, cheapest first.
    pub tiers: Vec<String>,
    /// Judge score in [0, 1] below which the next tier is tried.
    pub judge_threshold: f32,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutePlan {
    /// The model to call first.
    pub primary: String,
    /// Models to try, in order, when the primary fails.
    pub fallbacks: Vec<String>,
    /// Optional cascade (its first tier replaces the primary).
    pub cascade: Option<Cascade>,
    /// A/B bucket label, if the router split traffic.
    pub ab_bucket: Option<String>,
    /// Why (for logs).
    pub reason: String,
    /// The router that decided: the plugin's name (the built-in default
    /// router's plans say `default`).
    pub plugin: String,
}

impl RoutePlan {
    /// The models to try, in order: the first cascade tier (or the primary),
    /// then the fallbacks, each once.
    pub fn models(&self) -> Vec<String> {
        let first = self.cascade.as_ref().and_then(|c| c.tiers.first()).unwrap_or(&self.primary);
        model_order(first, &self.fallbacks)
    }
}

/// `first`, then each of `rest` not already listed, in order: the one way a
/// list of models to try is built.
pub fn model_order<S: AsRef<str>>(first: &str, rest: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut order = vec![first.to_owned()];
    for model in rest {
        let model = model.as_ref();
        if !order.iter().any(|m| m == model) {
            order.push(model.to_owned());
        }
    }
    order
}

/// One judge's vote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeVote {
    pub plugin: String,
    pub score: f32,
    pub pass: bool,
    pub reason: String,
}

/// The judges' combined verdict: the mean score, failing if any judge fails.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeVerdict {
    /// Mean of the judges' scores, in [0, 1].
    pub score: f32,
    /// False if any judge failed the answer.
    pub pass: bool,
    /// The failing judges' reasons (`plugin: reason`, `; `-joined), or "ok".
    pub reason: String,
    /// Every judge's vote, in order.
    pub votes: Vec<JudgeVote>,
}

impl JudgeVerdict {
    /// Combine votes (none empty): mean score, fail if any fails.
    pub fn combine(votes: Vec<JudgeVote>) -> Option<JudgeVerdict> {
        if votes.is_empty() {
            return None;
        }
        let score = votes.iter().map(|v| v.score).sum::<f32>() / votes.len() as f32;
        let pass = votes.iter().all(|v| v.pass);
        let failing: Vec<String> =
            votes.iter().filter(|v| !v.pass).map(|v| format!("{}: {}", v.plugin, v.reason)).collect();
        let reason = if failing.is_empty() { "ok".to_owned() } else { failing.join("; ") };
        Some(JudgeVerdict { score, pass, reason, votes })
    }
}

/// What the gateway knows about a request beyond its body, shown to plugins
/// as `metadata` and `headers` (a request's own OpenAI `metadata` object is
/// shown too, before these entries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageContext {
    /// Gateway metadata: tenant, API key name, route, request id, ...
    pub metadata: Vec<(String, String)>,
    /// The client's HTTP headers. Names are lowercased and credentials
    /// (`authorization`, `proxy-authorization`, `cookie`, `x-api-key`,
    /// `api-key`) removed before a plugin sees them. The gateway's pipeline
    /// passes none today (an empty list); callers of the stage traits may.
    pub headers: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(primary: &str, fallbacks: &[&str], tiers: Option<&[&str]>) -> RoutePlan {
        RoutePlan {
            primary: primary.to_owned(),
            fallbacks: fallbacks.iter().map(|m| (*m).to_owned()).collect(),
            cascade: tiers
                .map(|t| Cascade { tiers: t.iter().map(|m| (*m).to_owned()).collect(), judge_threshold: 0.5 }),
            ab_bucket: None,
            reason: String::new(),
            plugin: "test".to_owned(),
        }
    }

    #[test]
    fn model_order_lists_first_then_the_rest_once_each() {
        assert_eq!(model_order("a", ["b", "a", "c", "b"]), ["a", "b", "c"]);
        assert_eq!(model_order("a", Vec::<String>::new()), ["a"]);
    }

    #[test]
    fn a_plan_s_models_start_with_its_first_cascade_tier_or_its_primary() {
        assert_eq!(plan("tiny", &["small", "tiny", "large"], None).models(), ["tiny", "small", "large"]);
        assert_eq!(plan("tiny", &["small", "large"], Some(&["cheap", "large"])).models(), ["cheap", "small", "large"]);
        assert_eq!(plan("tiny", &[], Some(&[])).models(), ["tiny"]);
    }
}
