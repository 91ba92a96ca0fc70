//! Per-request state: one [`RequestContext`] follows a request from ingress
//! to the last byte of its response. Every phase writes what it decided here
//! (client key, A/B arm, stage decisions, route, cascade tiers, time spent
//! upstream, usage, cost); `finish.rs` turns it into the response headers,
//! metrics, the end of its trace and the settlement of statistics and
//! budgets.
//!
//! The context holds the routing state it settles into (a model's and an
//! upstream's statistics, the arm's) as the handles themselves, taken when
//! the route is known, so a stream that outlives its handler settles
//! without reaching back into the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accounting::{Pricing, count_prompt_tokens};
use crate::api::chat::ChatRequest;
use crate::api::chat::Usage;
use crate::cache::{CacheControls, CacheOutcome, StorePlan};
use crate::error::{ApiFlavor, GatewayError};
use crate::limits::{BudgetHold, ClientKey};
use crate::live::Live;
use crate::models::ModelRoute;
use crate::routing::{Routing, Stats, UpstreamHealth};
use crate::stage::{CacheDecision, JudgeVerdict, RoutePlan};
use crate::telemetry;
use crate::traces::RequestTrace;
use crate::upstream::Caller;

/// Output tokens a budget reservation assumes when neither the request
/// (`max_tokens`) nor the model (`context_window`) bounds them.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 4096;

/// One cascade tier tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub model: String,
    /// The judges' score of its answer (`None`: failed, or not judged).
    pub score: Option<f32>,
    /// The tier failed instead of answering.
    pub failed: bool,
}

/// The routing state a routed request settles into when it ends.
#[derive(Clone)]
pub struct RouteState {
    /// The public model's statistics.
    pub model: Arc<Stats>,
    /// The upstream's breaker and budgets.
    pub upstream: Arc<UpstreamHealth>,
}

#[derive(Clone)]
pub struct RequestContext {
    pub api: ApiFlavor,
    pub started: Instant,
    /// Time spent waiting on upstreams (headers, and bodies read whole).
    pub upstream_time: Duration,
    pub route: Option<Arc<ModelRoute>>,
    pub usage: Option<Usage>,
    pub cost: Option<f64>,
    /// A streamed response records its own metrics when the stream ends.
    pub streaming: bool,
    /// The client asked to bypass routing (`x-sluice-route: pinned`).
    pub pinned: bool,
    /// Prompt tokens the compress stage saved.
    pub tokens_saved: u32,
    /// The cache-policy stage's decision.
    pub cache_decision: Option<CacheDecision>,
    /// The route stage's plan.
    pub plan: Option<RoutePlan>,
    /// The judge stage's verdict on the answer.
    pub verdict: Option<JudgeVerdict>,
    /// The client's cache controls (headers).
    pub cache_controls: CacheControls,
    /// How the cache answered (the `x-sluice-cache` header).
    pub cache_outcome: Option<CacheOutcome>,
    /// A semantic hit's similarity.
    pub cache_similarity: Option<f32>,
    /// Where a miss's answer will be stored.
    pub cache_plan: Option<StorePlan>,
    /// The virtual key the client authenticated with.
    pub client: Option<Arc<ClientKey>>,
    /// What the request holds of the client's spend budget, settled when it
    /// ends.
    pub budget_hold: BudgetHold,
    /// A model of the route plan failed and the next one was called.
    pub fell_back: bool,
    /// The prices of the model the client asked for, when a router plan
    /// replaced it (for what routing saved).
    pub requested_pricing: Option<Pricing>,
    /// The live dashboard's counters, which the finished request adds to.
    pub live: Option<Arc<Live>>,
    /// The prompt's token count for budget estimates, counted once for every
    /// model of a fallback plan or cascade.
    prompt_estimate: Option<u64>,
    /// The `x-sluice-user` header.
    pub user_header: Option<String>,
    /// The A/B arm the request landed in, with its statistics.
    pub arm: Option<(String, Arc<Stats>)>,
    /// Where a routed chat request settles (`None`: not routed, e.g.
    /// embeddings, or no model resolved).
    pub route_state: Option<RouteState>,
    /// Cascade tiers tried, in order; the last one answered.
    pub steps: Vec<Step>,
    /// Spend and tokens on answers tried and discarded (escalated tiers).
    pub discarded_cost: f64,
    pub discarded_tokens: u64,
    pub(super) error_kind: Option<&'static str>,
    /// The request's span and its upstream attempts; empty with tracing off.
    pub trace: RequestTrace,
}

impl RequestContext {
    /// Who upstream calls are for: the client key and its tenant.
    pub fn caller(&self) -> Caller {
        match &self.client {
            Some(key) => Caller { key: Some(key.name.clone()), tenant: Some(key.tenant.clone()), traceparent: None },
            None => Caller::default(),
        }
    }

    pub fn new(api: ApiFlavor, started: Instant) -> Self {
        RequestContext {
            api,
            started,
            upstream_time: Duration::ZERO,
            route: None,
            usage: None,
            cost: None,
            streaming: false,
            pinned: false,
            tokens_saved: 0,
            cache_decision: None,
            plan: None,
            verdict: None,
            cache_controls: CacheControls::default(),
            cache_outcome: None,
            cache_similarity: None,
            cache_plan: None,
            client: None,
            budget_hold: BudgetHold::default(),
            fell_back: false,
            requested_pricing: None,
            live: None,
            prompt_estimate: None,
            user_header: None,
            arm: None,
            route_state: None,
            steps: Vec::new(),
            discarded_cost: 0.0,
            discarded_tokens: 0,
            error_kind: None,
            trace: RequestTrace::default(),
        }
    }

    pub fn api_label(&self) -> &'static str {
        match self.api {
            ApiFlavor::OpenAi => "openai",
            ApiFlavor::Anthropic => "anthropic",
        }
    }

    pub fn note_error(&mut self, error: &GatewayError) {
        self.error_kind = Some(error.kind());
        if let (Some(route), true) = (&self.route, error.kind().starts_with("upstream")) {
            metrics::counter!(telemetry::UPSTREAM_ERRORS, "upstream" => route.upstream.name().to_owned(), "kind" => error.kind())
                .increment(1);
        }
    }

    /// Whether the answer came from the cache.
    pub fn cache_hit(&self) -> bool {
        matches!(self.cache_outcome, Some(CacheOutcome::Hit | CacheOutcome::SemanticHit))
    }

    /// The route a chat request is answered by (or `None`), with the
    /// routing state it settles into.
    pub fn set_route(&mut self, route: Option<Arc<ModelRoute>>, routing: &Routing) {
        self.route_state = route.as_ref().map(|route| RouteState {
            model: routing.model(&route.label),
            upstream: routing.upstream(route.upstream.name()),
        });
        self.route = route;
    }

    /// Refuses a model without prices for a client key with a spend budget
    /// (it could never be charged): 403.
    pub fn require_priced(&self, route: &ModelRoute) -> Result<(), GatewayError> {
        match &self.client {
            Some(client) if client.has_budget() && route.pricing.is_none() => Err(GatewayError::Forbidden(format!(
                "The model `{}` has no configured price, and key `{}` has a spend budget: it may use priced \
                 models only",
                route.public, client.name
            ))),
            _ => Ok(()),
        }
    }

    /// Before `route` is called: for a client key with a spend budget,
    /// refuses an unpriced model and reserves the request's estimated cost
    /// (prompt tokens at the input price, plus `max_tokens` — else the
    /// model's context window, else [`DEFAULT_OUTPUT_ESTIMATE`] — at the
    /// output price, for each of `n` choices). The hold is settled when the
    /// request ends.
    pub async fn hold_budget(&mut self, route: &ModelRoute, req: &ChatRequest) -> Result<(), GatewayError> {
        let Some(client) = self.client.clone().filter(|c| c.has_budget()) else { return Ok(()) };
        self.require_priced(route)?;
        let Some(pricing) = route.pricing else { return Ok(()) };
        let output = req.max_output_tokens().or(route.context_window).unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
        let output = u64::from(output).saturating_mul(u64::from(req.n.unwrap_or(1).max(1)));
        let prompt = *self.prompt_estimate.get_or_insert_with(|| count_prompt_tokens(req));
        let (estimate, prompt) = (pricing.cost(Usage::new(prompt, output)), pricing.cost(Usage::new(prompt, 0)));
        client.reserve(&mut self.budget_hold, estimate, prompt).await
    }

    /// The A/B arm's name.
    pub fn arm_name(&self) -> Option<&str> {
        self.arm.as_ref().map(|(name, _)| name.as_str())
    }

    /// Whether the request escalated through cascade tiers.
    pub fn escalated(&self) -> bool {
        self.steps.len() > 1
    }

    /// `x-sluice-cascade`: `small:0.42>large:0.91` (`small:error` for a
    /// failed tier; a streamed last tier has no score).
    pub fn cascade_header(&self, final_score: Option<f32>) -> Option<String> {
        if self.steps.is_empty() {
            return None;
        }
        let last = self.steps.len() - 1;
        let parts: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| match (s.failed, s.score.or(if i == last { final_score } else { None })) {
                (true, _) => format!("{}:error", s.model),
                (false, Some(score)) => format!("{}:{score:.2}", s.model),
                (false, None) => s.model.clone(),
            })
            .collect();
        Some(parts.join(">"))
    }

    /// The upstream label of headers and metrics: `cache` for cache hits.
    pub(super) fn upstream_label(&self) -> Option<&str> {
        if self.cache_hit() {
            return Some("cache");
        }
        self.route.as_ref().map(|r| r.upstream.name())
    }

    /// Time spent in the gateway so far, upstream time excluded.
    pub fn overhead(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.upstream_time)
    }

    /// The request's whole spend: the answer, plus answers tried and
    /// discarded (escalated cascade tiers).
    pub fn total_cost(&self) -> Option<f64> {
        match (self.cost, self.discarded_cost) {
            (cost, 0.0) => cost,
            (cost, discarded) => Some(cost.unwrap_or(0.0) + discarded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_header_lists_tiers_and_scores() {
        let mut ctx = RequestContext::new(ApiFlavor::OpenAi, Instant::now());
        assert_eq!(ctx.cascade_header(None), None);
        ctx.steps.push(Step { model: "small".into(), score: Some(0.42), failed: false });
        ctx.steps.push(Step { model: "large".into(), score: None, failed: false });
        assert_eq!(ctx.cascade_header(Some(0.91)).as_deref(), Some("small:0.42>large:0.91"));
        assert_eq!(ctx.cascade_header(None).as_deref(), Some("small:0.42>large"));
        ctx.steps[0].failed = true;
        assert_eq!(ctx.cascade_header(None).as_deref(), Some("small:error>large"));
    }
}
