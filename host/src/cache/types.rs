//! The cache's vocabulary: its settings, the client's controls, an entry,
//! a lookup's outcome, the plan of where an answer is looked up and stored,
//! and how a stored answer was made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::chat::{ChatResponse, Usage};

/// `[cache]`: what the cache holds and for how long when the cache-policy
/// stage does not say.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes the in-process tier may hold; 0 turns the tier off (every
    /// lookup goes to Redis).
    pub max_bytes: u64,
    /// Entry lifetime when the policy sets none.
    pub ttl: Duration,
    /// Namespace when the policy and the request set none.
    pub namespace: String,
    /// Whether semantic hits are allowed at all.
    pub semantic: bool,
    /// Similarity a semantic hit needs when the policy sets none.
    pub similarity_threshold: f32,
    /// The sentence-embedding model; `None` turns semantic matching off.
    pub embedding_model_dir: Option<PathBuf>,
    /// Entries the semantic index holds per replica.
    pub max_semantic_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
            namespace: "default".to_owned(),
            semantic: true,
            similarity_threshold: 0.85,
            embedding_model_dir: Some(PathBuf::from("models/all-minilm-l6-v2")),
            max_semantic_entries: 100_000,
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The client's cache controls: `Cache-Control: no-cache` / `no-store`,
/// `x-sluice-cache-ttl` (seconds) and `x-sluice-cache-namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControls {
    /// Do not look up (the answer may still be stored).
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    pub ttl: Option<Duration>,
    pub namespace: Option<String>,
}

impl CacheControls {
    pub fn from_headers(headers: &http::HeaderMap) -> CacheControls {
        let mut controls = CacheControls::default();
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            for directive in value.to_str().unwrap_or("").split(',') {
                match directive.trim().to_ascii_lowercase().as_str() {
                    "no-cache" => controls.no_cache = true,
                    "no-store" => controls.no_store = true,
                    _ => {}
                }
            }
        }
        controls.ttl = headers
            .get("x-sluice-cache-ttl")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        controls.namespace = headers
            .get("x-sluice-cache-namespace")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        controls
    }
}

/// A cached answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The answer, an OpenAI chat completion (JSON).
    pub response: String,
    /// The public model that answered.
    pub model: String,
    pub namespace: String,
    pub usage: Usage,
    /// What the answer cost when it was made, USD.
    pub cost: Option<f64>,
    /// How long the upstream took to make it, ms.
    pub upstream_ms: u64,
    /// Unix time in ms after which the entry is gone.
    pub expires_at_ms: u64,
}

impl Entry {
    pub(super) fn weight(&self) -> u32 {
        u32::try_from(self.response.len() + self.model.len() + self.namespace.len() + 128).unwrap_or(u32::MAX)
    }

    pub(super) fn ttl_left(&self) -> Duration {
        Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()))
    }

    pub fn body(&self) -> Bytes {
        Bytes::copy_from_slice(self.response.as_bytes())
    }

    pub fn chat_response(&self) -> Option<ChatResponse> {
        serde_json::from_str(&self.response).ok()
    }
}

/// How a lookup was answered (the `x-sluice-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    SemanticHit,
    Miss,
    Bypass,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::SemanticHit => "semantic-hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

/// How a stored answer was made.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The public model that answered.
    pub model: String,
    pub usage: Usage,
    pub cost: Option<f64>,
    /// Time the upstream took.
    pub upstream: Duration,
}

/// A hit.
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: Arc<Entry>,
    pub outcome: CacheOutcome,
    /// `local` or `redis`.
    pub tier: &'static str,
    /// Cosine similarity of a semantic hit.
    pub similarity: Option<f32>,
}

/// What the cache does for one request, worked out before the upstream call.
#[derive(Debug, Clone)]
pub struct StorePlan {
    pub key: String,
    pub namespace: String,
    pub ttl: Duration,
    pub lookup: bool,
    pub store: bool,
    /// Whether the answer may replace an entry already stored under its key.
    /// A `Cache-Control: no-cache` request's answer may not: it only fills a
    /// gap, so a client cannot overwrite an answer others are served.
    pub overwrite: bool,
    pub semantic: Option<SemanticPlan>,
}

#[derive(Debug, Clone)]
pub struct SemanticPlan {
    pub scope: String,
    pub question: String,
    pub threshold: f32,
    /// Computed by the lookup, reused by the store.
    pub embedding: Option<Box<[f32]>>,
}
