//! Shared set-up for the integration tests.

use std::time::Duration;

use sluice::config::Config;
use sluice::models::ModelConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{MockUpstream, TestGateway};

/// A mock upstream and a gateway in front of it: the mock is reachable as an
/// OpenAI upstream `oa` and as an Anthropic upstream `an`. Models:
/// `priced` (→ `oa`, model `mock-priced`, $1/$2 per Mtok), `claude` (→ `an`),
/// and anything else passes through to `oa`.
pub struct Setup {
    pub mock: MockUpstream,
    pub gateway: TestGateway,
}

pub fn config_for(mock: &MockUpstream, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    let mut oa = UpstreamConfig::new("oa", UpstreamKind::OpenAi, &mock.base_url());
    oa.passthrough = true;
    oa.list_models = true;
    let an = UpstreamConfig::new("an", UpstreamKind::Anthropic, &mock.base_url());
    config.gateway.upstreams = vec![oa, an];
    config.gateway.models = vec![
        priced("priced", "oa", "mock-priced"),
        ModelConfig {
            name: "claude".into(),
            upstream: "an".into(),
            upstream_model: "claude-mock".into(),
            input_price_per_mtok: Some(3.0),
            output_price_per_mtok: Some(15.0),
            context_window: Some(200_000),
            ..ModelConfig::default()
        },
    ];
    tweak(&mut config);
    config
}

/// A `[[models]]` entry priced $1 in, $2 out per million tokens, with an
/// 8192-token window.
pub fn priced(name: &str, upstream: &str, upstream_model: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        upstream: upstream.into(),
        upstream_model: upstream_model.into(),
        input_price_per_mtok: Some(1.0),
        output_price_per_mtok: Some(2.0),
        context_window: Some(8192),
        ..ModelConfig::default()
    }
}

impl Setup {
    pub async fn new() -> Setup {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Setup {
        let mock = MockUpstream::start().await;
        let gateway = TestGateway::start(config_for(&mock, tweak)).await;
        Setup { mock, gateway }
    }
}

/// Polls `cond` every 10 ms for up to `limit`; true once it holds.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
