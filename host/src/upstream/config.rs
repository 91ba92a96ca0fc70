//! An upstream's validated settings ([`UpstreamConfig`]): where it is, how it
//! is reached, its timeouts and in-flight limit, and for the bundled engine
//! the engine's own [`EngineConfig`]. `crate::config` fills it from an
//! `[upstreams.NAME]` section; what the gateway does when an upstream fails
//! (retries, breaker, RPM/TPM budgets) is routing policy and lives in
//! `crate::routing::UpstreamPolicy`, not here.

use std::path::PathBuf;
use std::time::Duration;

use sluice_engine::EngineConfig;

/// The API an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    OpenAi,
    Anthropic,
    Engine,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::OpenAi => "openai",
            UpstreamKind::Anthropic => "anthropic",
            UpstreamKind::Engine => "engine",
        }
    }
}

/// `[upstreams.NAME]`, checked. Its `Debug` hides the API key.
#[derive(Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub kind: UpstreamKind,
    /// Base URL without a trailing slash; empty for `engine`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_in_flight: usize,
    /// Longest a request waits for an in-flight slot (or an RPM/TPM budget).
    pub queue_timeout: Duration,
    /// Serves model names no `[[models]]` entry claims.
    pub passthrough: bool,
    /// Its own models are listed in `GET /v1/models`.
    pub list_models: bool,
    pub default_max_tokens: u32,
    pub anthropic_version: String,
    /// The bundled engine's settings (kind `engine` only).
    pub engine: EngineConfig,
}

impl UpstreamConfig {
    /// An upstream with every optional setting at its default.
    pub fn new(name: &str, kind: UpstreamKind, base_url: &str) -> Self {
        UpstreamConfig {
            name: name.to_owned(),
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
            ca_cert: None,
            connect_timeout: Duration::from_millis(5_000),
            first_byte_timeout: Duration::from_millis(60_000),
            total_timeout: Duration::from_millis(600_000),
            max_in_flight: 512,
            queue_timeout: Duration::from_millis(1_000),
            passthrough: false,
            list_models: false,
            default_max_tokens: 4096,
            anthropic_version: "2023-06-01".to_owned(),
            engine: EngineConfig::default(),
        }
    }
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("ca_cert", &self.ca_cert)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("queue_timeout", &self.queue_timeout)
            .field("passthrough", &self.passthrough)
            .field("list_models", &self.list_models)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("anthropic_version", &self.anthropic_version)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
