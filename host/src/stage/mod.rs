//! The optimisation stages' contracts: what a compressor, a cache policy, a
//! router and a judge take and return, as plain Rust traits and types.
//!
//! This module has no WebAssembly in it: the gateway's request pipeline is
//! written against these traits, and [`crate::plugin::PluginHost`] implements
//! them by calling WebAssembly plugins. A native (Rust) implementation or a
//! test double can implement them just as well.

mod types;

pub use types::{
    CacheDecision, Cascade, CompressOutcome, FaultKind, Health, JudgeVerdict, JudgeVote, RouteCandidate, RoutePlan,
    StageContext, StageKind,
};

use crate::api::chat::{ChatRequest, ChatResponse};

/// Why a stage did not produce an answer.
///
/// `Rejected` is policy: a plugin looked at the request and refused it (the
/// gateway answers the client with a 4xx carrying the reason). `Fault` is a
/// plugin that broke (trap, deadline overrun, out of memory, disabled) in a
/// stage whose failure mode is `closed` (the gateway answers with a 5xx naming
/// the plugin). Faults in `open` stages never surface: the plugin is skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StageError {
    /// A plugin refused the request (a WIT `result::err`).
    #[error("plugin `{plugin}` ({stage}) refused the request: {reason}")]
    Rejected { plugin: String, stage: StageKind, reason: String },
    /// A plugin faulted and its failure mode is `closed`.
    #[error("plugin `{plugin}` ({stage}) failed: {kind}: {detail}")]
    Fault { plugin: String, stage: StageKind, kind: FaultKind, detail: String },
}

impl StageError {
    /// The plugin that refused or failed.
    pub fn plugin(&self) -> &str {
        match self {
            StageError::Rejected { plugin, .. } | StageError::Fault { plugin, .. } => plugin,
        }
    }

    /// The stage it happened in.
    pub fn stage(&self) -> StageKind {
        match self {
            StageError::Rejected { stage, .. } | StageError::Fault { stage, .. } => *stage,
        }
    }

    /// Whether this is a fault (5xx) rather than a policy refusal (4xx).
    pub fn is_fault(&self) -> bool {
        matches!(self, StageError::Fault { .. })
    }

    /// The HTTP status the gateway should answer with: 400 for a refusal,
    /// 500 for a fault.
    pub fn http_status(&self) -> u16 {
        if self.is_fault() { 500 } else { 400 }
    }
}

/// Rewrites a request's messages to save tokens. Several compressors chain.
pub trait Compressor: Send + Sync {
    /// The request to send upstream (unchanged when no compressor is loaded).
    fn compress(&self, request: &ChatRequest) -> Result<CompressOutcome, StageError>;
}

/// Decides whether and how an answer is cached.
pub trait CachePolicyStage: Send + Sync {
    /// `Ok(None)`: no policy loaded (the gateway's default applies).
    fn cache_policy(&self, request: &ChatRequest) -> Result<Option<CacheDecision>, StageError>;
}

/// Chooses the model(s) that serve a request.
pub trait Router: Send + Sync {
    /// `Ok(None)`: no router decided (the gateway's default applies).
    fn route(&self, request: &ChatRequest, candidates: &[RouteCandidate]) -> Result<Option<RoutePlan>, StageError>;
}

/// Scores an answer.
pub trait Judge: Send + Sync {
    /// `Ok(None)`: no judge loaded (or every judge skipped in `open` mode).
    fn judge(&self, request: &ChatRequest, response: &ChatResponse) -> Result<Option<JudgeVerdict>, StageError>;
}
