//! Per-request state: one [`RequestContext`] follows a request from ingress
//! to the last byte of its response and records what happened (route, time
//! spent upstream, usage, cost) into the response headers and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Response};

use crate::accounting::format_cost;
use crate::api::chat::Usage;
use crate::body::Body;
use crate::cache::{CacheControls, CacheOutcome, StorePlan};
use crate::error::{ApiFlavor, GatewayError};
use crate::models::ModelRoute;
use crate::stage::{CacheDecision, JudgeVerdict, RoutePlan};
use crate::telemetry;

pub const X_UPSTREAM: HeaderName = HeaderName::from_static("x-sluice-upstream");
pub const X_MODEL: HeaderName = HeaderName::from_static("x-sluice-model");
pub const X_OVERHEAD: HeaderName = HeaderName::from_static("x-sluice-overhead-us");
pub const X_COST: HeaderName = HeaderName::from_static("x-sluice-cost-usd");

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
    /// What routing did: client key, A/B arm, cascade tiers, discarded spend.
    pub trace: crate::routing::Trace,
    error_kind: Option<&'static str>,
}

impl RequestContext {
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
            trace: crate::routing::Trace::default(),
            error_kind: None,
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

    /// The upstream label of headers and metrics: `cache` for cache hits.
    fn upstream_label(&self) -> Option<&str> {
        if self.cache_hit() {
            return Some("cache");
        }
        self.route.as_ref().map(|r| r.upstream.name())
    }

    /// Time spent in the gateway so far, upstream time excluded.
    pub fn overhead(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.upstream_time)
    }

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

    /// What the stage plugins decided, as `x-sluice-*` headers.
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
        if let Some(bucket) = self.trace.arm.as_ref().or(self.plan.as_ref().and_then(|p| p.ab_bucket.as_ref())) {
            put("x-sluice-ab-bucket", bucket.clone());
        }
        if let Some(cascade) = self.trace.cascade_header(self.verdict.as_ref().map(|v| v.score)) {
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

    /// The request's whole spend: the answer, plus answers tried and
    /// discarded (escalated cascade tiers).
    pub fn total_cost(&self) -> Option<f64> {
        match (self.cost, self.trace.discarded_cost) {
            (cost, 0.0) => cost,
            (cost, discarded) => Some(cost.unwrap_or(0.0) + discarded),
        }
    }

    /// Records the request's counters and histograms.
    pub fn record(&self, status: u16, latency: Duration, ttft: Option<Duration>) {
        self.trace.settle(crate::routing::trace::Outcome {
            route: self.route.as_deref(),
            status,
            latency,
            ttft,
            usage: self.usage,
            cost: self.cost,
            score: self.verdict.as_ref().map(|v| v.score),
        });
        let (model, upstream) = match &self.route {
            Some(r) => (r.public.clone(), self.upstream_label().unwrap_or_default().to_owned()),
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
}
