//! Routing and resilience policy: where a request may go and what happens
//! when upstreams misbehave.
//!
//! - [`Routing`] holds the host's live view of every model and upstream:
//!   statistics ([`stats`]), a circuit breaker ([`breaker`]), request and
//!   token budgets ([`crate::limits`]) and a retry policy ([`retry`]) per
//!   upstream, and the A/B arms ([`ab`]). Routers receive the statistics as
//!   candidate inputs.
//! - [`RoutingConfig`] and [`UpstreamPolicy`] are the checked settings it
//!   is built from.
//!
//! This module decides policy and keeps state; it calls nothing. The loop
//! that calls a route plan's models in order (breaker check, budget,
//! retries, next fallback) and the cascade phase live in the pipeline
//! (`proxy/call.rs`, `proxy/cascade.rs`), which use this module; choosing
//! models is the router stage's job.

pub mod ab;
pub mod breaker;
mod config;
pub mod default_router;
mod policy;
pub mod retry;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

pub use breaker::{Breaker, BreakerConfig, Circuit};
pub use config::{Arm, RoutingConfig};
pub use policy::UpstreamPolicy;
pub use retry::RetryPolicy;
pub use stats::Stats;

use crate::limits::UpstreamLimits;
use crate::models::ModelRegistry;
use crate::redis_client::SharedRedis;
use crate::stage::{Health, RouteCandidate};
use crate::upstream::Upstreams;

/// An upstream's breaker, budgets and retry policy.
pub struct UpstreamHealth {
    pub breaker: Breaker,
    pub limits: UpstreamLimits,
    pub retry: RetryPolicy,
}

/// The host's live routing state, shared by every request.
pub struct Routing {
    pub config: RoutingConfig,
    upstreams: HashMap<String, Arc<UpstreamHealth>>,
    models: RwLock<HashMap<String, Arc<Stats>>>,
    arms: HashMap<String, Arc<Stats>>,
    /// Model public name → tier label (from `[[models]] tier`).
    tiers: HashMap<String, String>,
}

impl Routing {
    pub fn build(
        config: RoutingConfig,
        upstreams: &Upstreams,
        models: &ModelRegistry,
        redis: Option<Arc<SharedRedis>>,
    ) -> Routing {
        let upstreams = upstreams
            .iter()
            .map(|u| {
                let policy = config.policy(u.name());
                let health = UpstreamHealth {
                    breaker: Breaker::new(u.name(), policy.breaker),
                    limits: UpstreamLimits::new(u.name(), policy.rpm, policy.tpm, redis.clone()),
                    retry: policy.retry,
                };
                (u.name().to_owned(), Arc::new(health))
            })
            .collect();
        let model_stats = models.routes().map(|r| (r.public.clone(), Arc::new(Stats::default()))).collect();
        let tiers = models.routes().filter_map(|r| Some((r.public.clone(), r.tier.clone()?))).collect();
        let arms = config.arms.iter().map(|a| (a.name.clone(), Arc::new(Stats::default()))).collect();
        Routing { config, upstreams, models: RwLock::new(model_stats), arms, tiers }
    }

    /// An upstream's breaker and budgets (a fresh, unlimited one for an
    /// unknown name, which cannot happen for configured routes).
    pub fn upstream(&self, name: &str) -> Arc<UpstreamHealth> {
        self.upstreams.get(name).cloned().unwrap_or_else(|| {
            Arc::new(UpstreamHealth {
                breaker: Breaker::new(name, BreakerConfig::default()),
                limits: UpstreamLimits::default(),
                retry: RetryPolicy::default(),
            })
        })
    }

    /// A model's statistics, created on first use (pass-through names).
    pub fn model(&self, name: &str) -> Arc<Stats> {
        if let Ok(models) = self.models.read()
            && let Some(s) = models.get(name)
        {
            return s.clone();
        }
        match self.models.write() {
            Ok(mut models) => models.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::new(Stats::default()),
        }
    }

    pub fn arm(&self, name: &str) -> Option<&Arc<Stats>> {
        self.arms.get(name)
    }

    /// The configured models as a router sees them, with live statistics.
    pub fn candidates(&self, registry: &ModelRegistry) -> Vec<RouteCandidate> {
        registry
            .routes()
            .map(|route| {
                let snap = self.model(&route.public).live();
                let circuit = self.upstream(route.upstream.name()).breaker.circuit();
                let health = match circuit {
                    Circuit::Open => Health::Down,
                    Circuit::HalfOpen => Health::Degraded,
                    Circuit::Closed if snap.error_rate > 0.2 => Health::Degraded,
                    Circuit::Closed => Health::Healthy,
                };
                RouteCandidate {
                    model: route.public.clone(),
                    provider: route.upstream.name().to_owned(),
                    input_price_per_mtok: route.pricing.map_or(0.0, |p| p.input_per_mtok),
                    output_price_per_mtok: route.pricing.map_or(0.0, |p| p.output_per_mtok),
                    context_window: route.context_window.unwrap_or(0),
                    p50_latency_ms: snap.p50_ms,
                    p95_latency_ms: snap.p95_ms,
                    error_rate: snap.error_rate,
                    health,
                }
            })
            .collect()
    }

    /// Statistics WIT 0.1's candidate record has no field for, as plugin
    /// metadata: `candidate.MODEL.{ewma_ms,ttft_p50_ms,in_flight,circuit,tier}`.
    pub fn candidate_metadata(&self, registry: &ModelRegistry) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for route in registry.routes() {
            let snap = self.model(&route.public).live();
            let key = |stat: &str| format!("candidate.{}.{stat}", route.public);
            out.push((key("ewma_ms"), format!("{:.1}", snap.ewma_ms)));
            out.push((key("ttft_p50_ms"), format!("{:.1}", snap.ttft_p50_ms)));
            out.push((key("in_flight"), snap.in_flight.to_string()));
            out.push((key("circuit"), self.upstream(route.upstream.name()).breaker.circuit().as_str().to_owned()));
            if let Some(tier) = self.tiers.get(&route.public) {
                out.push((key("tier"), tier.clone()));
            }
        }
        out
    }

    /// `GET /admin/routing/stats`.
    pub fn admin_json(&self, registry: &ModelRegistry) -> Value {
        let models: serde_json::Map<String, Value> = match self.models.read() {
            Ok(models) => models
                .iter()
                .map(|(name, s)| {
                    let mut v = s.snapshot().json();
                    if let Ok(route) = registry.resolve(name) {
                        v["upstream"] = json!(route.upstream.name());
                        v["circuit"] = json!(self.upstream(route.upstream.name()).breaker.circuit().as_str());
                    }
                    if let Some(tier) = self.tiers.get(name) {
                        v["tier"] = json!(tier);
                    }
                    (name.clone(), v)
                })
                .collect(),
            Err(_) => serde_json::Map::new(),
        };
        let arms: serde_json::Map<String, Value> = self
            .config
            .arms
            .iter()
            .filter_map(|a| {
                let mut v = self.arms.get(&a.name)?.snapshot().json();
                v["weight"] = json!(a.weight);
                Some((a.name.clone(), v))
            })
            .collect();
        let upstreams: serde_json::Map<String, Value> = self
            .upstreams
            .iter()
            .map(|(name, h)| (name.clone(), json!({"circuit": h.breaker.circuit().as_str()})))
            .collect();
        json!({"window": stats::WINDOW, "models": models, "arms": arms, "upstreams": upstreams})
    }
}
