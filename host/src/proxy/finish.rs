//! The end of a request: the `x-sluice-*` response headers, the request's
//! metrics and the end of its span, and the settlement of what it did into
//! the shared state — the model's and A/B arm's statistics, the upstream's
//! token budget, the client key's token and spend budgets. A whole answer
//! is finished by [`RequestContext::finish`]; a stream records itself when
//! it ends or is dropped (`relay.rs`), so every request is counted once.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Response};

use super::context::RequestContext;
use crate::accounting::format_cost;
use crate::body::Body;
use crate::cache::CacheOutcome;
use crate::live::{CacheResult, Finished};
use crate::telemetry;
use crate::traces::RequestEnd;

pub const X_UPSTREAM: HeaderName = HeaderName::from_static("x-sluice-upstream");
pub const X_MODEL: HeaderName = HeaderName::from_static("x-sluice-model");
pub const X_OVERHEAD: HeaderName = HeaderName::from_static("x-sluice-overhead-us");
pub const X_COST: HeaderName = HeaderName::from_static("x-sluice-cost-usd");

impl RequestContext {
    /// Adds the `x-sluice-*` headers and, unless the response streams,
    /// records the request's metrics.
    pub fn finish(self, mut response: Response<Body>) -> Response<Body> {
        let overhead = self.overhead();
        let headers = response.headers_mut();
        if let Some(upstream) = self.upstream_label()
            && let Ok(v) = HeaderValue::from_str(upstream)
        {
            headers.insert(X_UPSTREAM, v);
        }
        if let Some(route) = &self.route
            && let Ok(v) = HeaderValue::from_str(&route.public)
        {
            headers.insert(X_MODEL, v);
        }
        if let Some(cost) = self.total_cost()
            && let Ok(v) = HeaderValue::from_str(&format_cost(cost))
        {
            headers.insert(X_COST, v);
        }
        if let Ok(v) = HeaderValue::from_str(&overhead.as_micros().to_string()) {
            headers.insert(X_OVERHEAD, v);
        }
        self.stage_headers(headers);
        metrics::histogram!(telemetry::GATEWAY_OVERHEAD).record(overhead.as_secs_f64());
        if !self.streaming {
            let status = response.status().as_u16();
            self.record(status, self.started.elapsed(), None);
        }
        response
    }

    /// What the stages decided, as `x-sluice-*` headers.
    fn stage_headers(&self, headers: &mut http::HeaderMap) {
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        if self.tokens_saved > 0 {
            put("x-sluice-tokens-saved", self.tokens_saved.to_string());
        }
        if let Some(plan) = &self.plan {
            put("x-sluice-router", plan.plugin.clone());
        }
        if let Some(bucket) = self.arm_name().or(self.plan.as_ref().and_then(|p| p.ab_bucket.as_deref())) {
            put("x-sluice-ab-bucket", bucket.to_owned());
        }
        if let Some(cascade) = self.cascade_header(self.verdict.as_ref().map(|v| v.score)) {
            put("x-sluice-cascade", cascade);
        }
        if let Some(decision) = &self.cache_decision {
            let verdict = if decision.cacheable { "cacheable" } else { "no-store" };
            put(
                "x-sluice-cache-policy",
                format!("{verdict}; ttl={}; namespace={}", decision.ttl.as_secs(), decision.namespace),
            );
        }
        if let Some(outcome) = self.cache_outcome {
            put("x-sluice-cache", outcome.as_str().to_owned());
        }
        if let Some(similarity) = self.cache_similarity {
            put("x-sluice-cache-similarity", format!("{similarity:.3}"));
        }
        if let Some(verdict) = &self.verdict {
            put("x-sluice-judge-score", format!("{:.3}", verdict.score));
            put("x-sluice-judge-pass", verdict.pass.to_string());
        }
    }

    /// Records the request's counters and histograms, settles it, and ends
    /// its trace.
    pub fn record(&self, status: u16, latency: Duration, ttft: Option<Duration>) {
        self.settle(status, latency, ttft);
        self.record_live(status, latency, ttft);
        if self.trace.is_on() {
            self.end_trace(status, ttft);
        }
        let (model, upstream) = match &self.route {
            Some(r) => (r.label.clone(), self.upstream_label().unwrap_or_default().to_owned()),
            None => (String::new(), String::new()),
        };
        let status = status.to_string();
        let api = self.api_label();
        metrics::counter!(telemetry::REQUESTS, "api" => api, "model" => model.clone(), "upstream" => upstream.clone(), "status" => status)
            .increment(1);
        if self.route.is_none() {
            return;
        }
        metrics::histogram!(telemetry::REQUEST_DURATION, "model" => model.clone(), "upstream" => upstream.clone())
            .record(latency.as_secs_f64());
        if let Some(ttft) = ttft {
            metrics::histogram!(telemetry::TIME_TO_FIRST_TOKEN, "model" => model.clone(), "upstream" => upstream.clone())
                .record(ttft.as_secs_f64());
        }
        if let Some(verdict) = &self.verdict {
            metrics::histogram!(telemetry::JUDGE_SCORE, "model" => model.clone()).record(f64::from(verdict.score));
        }
        if let Some(usage) = self.usage {
            metrics::counter!(telemetry::TOKENS, "model" => model.clone(), "upstream" => upstream.clone(), "direction" => "input")
                .increment(usage.prompt_tokens);
            metrics::counter!(telemetry::TOKENS, "model" => model.clone(), "upstream" => upstream.clone(), "direction" => "output")
                .increment(usage.completion_tokens);
        }
        if let Some(cost) = self.total_cost() {
            metrics::gauge!(telemetry::COST, "model" => model, "upstream" => upstream).increment(cost);
        }
    }

    /// Adds the request to the live dashboard's current second.
    fn record_live(&self, status: u16, latency: Duration, ttft: Option<Duration>) {
        let Some(live) = &self.live else { return };
        let cache = match self.cache_outcome {
            Some(CacheOutcome::Hit) => Some(CacheResult::Hit),
            Some(CacheOutcome::SemanticHit) => Some(CacheResult::SemanticHit),
            Some(CacheOutcome::Miss) => Some(CacheResult::Miss),
            Some(CacheOutcome::Bypass) | None => None,
        };
        live.record(&Finished {
            status,
            latency,
            ttft,
            tokens_in: self.usage.map_or(0, |u| u.prompt_tokens),
            tokens_out: self.usage.map_or(0, |u| u.completion_tokens),
            cost_usd: self.total_cost().unwrap_or(0.0),
            cache,
            tokens_saved: u64::from(self.tokens_saved),
            escalated: self.escalated(),
            fell_back: self.fell_back,
            routing_saved_usd: self.routing_saved(),
        });
    }

    /// The requested model's price for this usage less what the answering
    /// model cost, when a router plan decided (0 when it cost more).
    fn routing_saved(&self) -> f64 {
        match (self.requested_pricing, self.usage) {
            (Some(requested), Some(usage)) => (requested.cost(usage) - self.cost.unwrap_or(0.0)).max(0.0),
            _ => 0.0,
        }
    }

    /// Ends the request's span with what it did.
    fn end_trace(&self, status: u16, ttft: Option<Duration>) {
        self.trace.end(&RequestEnd {
            status,
            model: self.route.as_ref().map(|r| r.public.as_str()),
            response_model: self.route.as_ref().map(|r| r.upstream_model.as_str()),
            upstream: self.upstream_label(),
            usage: self.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            cost_usd: self.total_cost(),
            cache: self.cache_outcome.map(|o| o.as_str()),
            client_key: self.client.as_ref().map(|c| c.name.as_str()),
            arm: self.arm_name(),
            router: self.plan.as_ref().map(|p| p.plugin.as_str()),
            tokens_saved: self.tokens_saved,
            judge_score: self.verdict.as_ref().map(|v| v.score),
            error: self.error_kind,
            ttft,
        });
    }

    /// Files the finished request into statistics and budgets: the model's
    /// settled cost and score, the upstream's and the client's tokens, the
    /// arm's latency, cost and score.
    fn settle(&self, status: u16, latency: Duration, ttft: Option<Duration>) {
        let total_cost = self.cost.unwrap_or(0.0) + self.discarded_cost;
        let tokens = self.usage.map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens));
        let failed = status >= 500;
        let score = self.verdict.as_ref().map(|v| v.score);
        if let Some(state) = &self.route_state {
            if !failed {
                state.model.settle(self.cost.unwrap_or(0.0), score, false);
            }
            state.upstream.limits.charge_tokens(tokens);
        }
        if let Some((arm, stats)) = &self.arm {
            stats.observe(latency, ttft, failed);
            stats.settle(total_cost, score, self.escalated());
            metrics::counter!(telemetry::ARM_REQUESTS, "arm" => arm.clone(), "status" => status.to_string())
                .increment(1);
            metrics::histogram!(telemetry::ARM_DURATION, "arm" => arm.clone()).record(latency.as_secs_f64());
            metrics::gauge!(telemetry::ARM_COST, "arm" => arm.clone()).increment(total_cost);
            if let Some(score) = score {
                metrics::histogram!(telemetry::ARM_JUDGE_SCORE, "arm" => arm.clone()).record(f64::from(score));
            }
            if self.escalated() {
                metrics::counter!(telemetry::ARM_ESCALATIONS, "arm" => arm.clone()).increment(1);
            }
        }
        if let Some(client) = &self.client {
            client.charge(tokens.saturating_add(self.discarded_tokens), total_cost, &self.budget_hold);
        }
    }
}
