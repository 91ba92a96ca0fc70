//! The optimisation stages' contracts: what a compressor, a cache policy, a
//! router and a judge take and return, as plain Rust traits and types.
//!
//! This module has no WebAssembly in it: the gateway's request pipeline
//! (`proxy/stages.rs`) calls every stage through these traits, and only
//! through them. [`crate::plugin::PluginHost`] implements all four by calling
//! WebAssembly plugins; the built-in default router
//! (`routing/default_router.rs`) implements [`Router`] natively. A test
//! double can implement them just as well.
//!
//! The traits are async and dyn-compatible (`&dyn Router`): their methods
//! return boxed futures, written with `#[async_trait]`, so that the pipeline
//! can hold any implementation behind one pointer type. The boxed future is
//! `Send`, as the gateway's request tasks need.

mod types;

pub use types::{
    CacheDecision, Cascade, CompressOutcome, FaultKind, Health, JudgeVerdict, JudgeVote, RouteCandidate, RoutePlan,
    StageContext, StageKind, model_order,
};

use async_trait::async_trait;

use crate::api::chat::{ChatRequest, ChatResponse};

/// Why a stage did not produce an answer.
///
/// `Rejected` is policy: a plugin looked at the request and refused it (the
/// gateway answers the client with a 4xx carrying the reason). `Fault` is a
/// plugin that broke (trap, deadline overrun, out of memory, disabled) in a
/// stage whose failure mode is `closed` (the gateway answers with a 5xx naming
/// the plugin). Faults in `open` stages never surface: the plugin is skipped.
/// The status itself is decided in one place, `GatewayError::status`.
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

    /// Whether this is a closed-mode plugin at its concurrency cap: the
    /// gateway is busy (503), the plugin did nothing wrong.
    pub fn is_busy(&self) -> bool {
        matches!(self, StageError::Fault { kind: FaultKind::Busy, .. })
    }
}

/// Rewrites a request's messages to save tokens. Several compressors chain.
#[async_trait]
pub trait Compressor: Send + Sync {
    /// The request to send upstream (unchanged when no compressor is loaded).
    async fn compress(&self, request: &ChatRequest, ctx: &StageContext) -> Result<CompressOutcome, StageError>;
}

/// Decides whether and how an answer is cached.
#[async_trait]
pub trait CachePolicy: Send + Sync {
    /// `Ok(None)`: no policy loaded (the gateway's default applies).
    async fn cache_policy(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
    ) -> Result<Option<CacheDecision>, StageError>;
}

/// Chooses the model(s) that serve a request.
#[async_trait]
pub trait Router: Send + Sync {
    /// `Ok(None)`: this router has no plan (the next router, or the
    /// gateway's default, decides).
    async fn route(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
        candidates: &[RouteCandidate],
    ) -> Result<Option<RoutePlan>, StageError>;
}

/// Scores an answer.
#[async_trait]
pub trait Judge: Send + Sync {
    /// `Ok(None)`: no judge loaded (or every judge skipped in `open` mode).
    async fn judge(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
        response: &ChatResponse,
    ) -> Result<Option<JudgeVerdict>, StageError>;
}
