//! What routing did for one request, carried in its `RequestContext`: the
//! client key, the user key and A/B arm, the cascade tiers tried with their
//! judge scores, and the spend on answers that were not returned. When the
//! request ends, [`Trace::settle`] files it into the per-model and per-arm
//! statistics and charges the client's and upstream's token and spend budgets.

use std::sync::Arc;
use std::time::Duration;

use super::Routing;
use crate::api::chat::Usage;
use crate::limits::ClientKey;
use crate::models::ModelRoute;
use crate::telemetry;

/// One cascade tier tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub model: String,
    /// The judges' score of its answer (`None`: failed, or not judged).
    pub score: Option<f32>,
    /// The tier failed instead of answering.
    pub failed: bool,
}

#[derive(Clone, Default)]
pub struct Trace {
    pub routing: Option<Arc<Routing>>,
    /// The virtual key the client authenticated with.
    pub client: Option<Arc<ClientKey>>,
    /// The `x-sluice-user` header.
    pub user_header: Option<String>,
    /// The A/B arm the request landed in.
    pub arm: Option<String>,
    /// Cascade tiers tried, in order; the last one answered.
    pub steps: Vec<Step>,
    /// Spend and tokens on answers tried and discarded (escalated tiers).
    pub discarded_cost: f64,
    pub discarded_tokens: u64,
}

/// How a request ended, for [`Trace::settle`].
pub struct Outcome<'a> {
    pub route: Option<&'a ModelRoute>,
    pub status: u16,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
    /// The returned answer's cost.
    pub cost: Option<f64>,
    pub score: Option<f32>,
}

impl Trace {
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

    pub fn escalated(&self) -> bool {
        self.steps.len() > 1
    }

    /// Files the finished request into statistics and budgets.
    pub fn settle(&self, outcome: Outcome<'_>) {
        let total_cost = outcome.cost.unwrap_or(0.0) + self.discarded_cost;
        let tokens = outcome.usage.map_or(0, |u| u.prompt_tokens + u.completion_tokens);
        let failed = outcome.status >= 500;
        if let Some(routing) = &self.routing {
            if let Some(route) = outcome.route {
                if !failed {
                    routing.model(&route.public).settle(outcome.cost.unwrap_or(0.0), outcome.score, false);
                }
                routing.upstream(route.upstream.name()).limits.charge_tokens(tokens);
            }
            if let Some(arm) = &self.arm
                && let Some(stats) = routing.arm(arm)
            {
                stats.observe(outcome.latency, outcome.ttft, failed);
                stats.settle(total_cost, outcome.score, self.escalated());
                let arm = arm.clone();
                metrics::counter!(telemetry::ARM_REQUESTS, "arm" => arm.clone(), "status" => outcome.status.to_string())
                    .increment(1);
                metrics::histogram!(telemetry::ARM_DURATION, "arm" => arm.clone())
                    .record(outcome.latency.as_secs_f64());
                metrics::gauge!(telemetry::ARM_COST, "arm" => arm.clone()).increment(total_cost);
                if let Some(score) = outcome.score {
                    metrics::histogram!(telemetry::ARM_JUDGE_SCORE, "arm" => arm.clone()).record(f64::from(score));
                }
                if self.escalated() {
                    metrics::counter!(telemetry::ARM_ESCALATIONS, "arm" => arm).increment(1);
                }
            }
        }
        if let Some(client) = &self.client {
            client.charge(tokens + self.discarded_tokens, total_cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_header_lists_tiers_and_scores() {
        let mut t = Trace::default();
        assert_eq!(t.cascade_header(None), None);
        t.steps.push(Step { model: "small".into(), score: Some(0.42), failed: false });
        t.steps.push(Step { model: "large".into(), score: None, failed: false });
        assert_eq!(t.cascade_header(Some(0.91)).as_deref(), Some("small:0.42>large:0.91"));
        assert_eq!(t.cascade_header(None).as_deref(), Some("small:0.42>large"));
        t.steps[0].failed = true;
        assert_eq!(t.cascade_header(None).as_deref(), Some("small:error>large"));
    }
}
