//! Routing and resilience through a running gateway: retries, `Retry-After`,
//! timeouts, fallbacks, circuit breakers, stream failures (`resilience`);
//! judge-driven cascades with the real router and judge plugins (`cascade`);
//! the A/B split (`ab`); client keys, budgets and limits shared by two
//! replicas through a real Redis (`limits`).

mod ab;
pub mod cascade;
mod limits;
mod resilience;

use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::models::ModelConfig;

/// A `[[models]]` entry on upstream `oa` (the mock) with prices.
pub fn model(name: &str, upstream_model: &str, price: f64, fallbacks: &[&str]) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        upstream: "oa".into(),
        upstream_model: upstream_model.into(),
        input_price_per_mtok: Some(price),
        output_price_per_mtok: Some(price * 4.0),
        context_window: Some(8192),
        fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
        ..ModelConfig::default()
    }
}

/// Quick retries for tests: 10 ms back-off.
pub fn quick_retries(config: &mut Config) {
    let gateway = &mut config.gateway;
    for u in &gateway.upstreams {
        gateway.routing.policy_mut(&u.name).retry.base = Duration::from_millis(10);
    }
}

pub fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn ask_stream(model: &str, text: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": text}]})
}
