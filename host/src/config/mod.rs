//! Configuration: the raw TOML ([`raw`]) checked into a [`Config`] that the
//! rest of the gateway can trust. Every error names the key and, when it came
//! from a file, the file and line.
//!
//! This module does not read command-line flags; `crate::cli` applies them on
//! top of a loaded (or empty) config with [`Config::with_upstream`].

mod check;
mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::RawConfig;

/// A configuration error: what is wrong, with which key, where.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{location}: `{key}`: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub location: String,
    pub key: String,
    pub message: String,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub logging: LoggingConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    /// The plugin runtime; `None` runs no plugins.
    pub plugins: Option<crate::plugin::PluginConfig>,
    /// The Redis server shared by replicas; `None` keeps all state local.
    pub redis: Option<crate::shared::RedisConfig>,
    /// The response cache; `None` caches nothing.
    pub cache: Option<crate::cache::CacheConfig>,
    /// A/B arms.
    pub routing: crate::routing::RoutingConfig,
    /// Client API keys; empty: no key needed.
    pub keys: Vec<crate::limits::KeyConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub sse_keepalive: Duration,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub level: String,
    pub json: bool,
}

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

#[derive(Debug, Clone)]
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
    pub queue_timeout: Duration,
    pub passthrough: bool,
    pub list_models: bool,
    pub default_max_tokens: u32,
    pub anthropic_version: String,
    pub retry: crate::routing::RetryPolicy,
    pub breaker: crate::routing::BreakerConfig,
    /// Requests and tokens per minute; `None`: unlimited.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Settings of the bundled engine (kind `engine` only).
    pub engine: EngineSettings,
}

/// The bundled engine's settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub model_path: PathBuf,
    pub embedding_model_dir: Option<PathBuf>,
    pub kv_blocks: usize,
    pub max_batch: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            model_path: PathBuf::from("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            embedding_model_dir: Some(PathBuf::from("models/all-minilm-l6-v2")),
            kv_blocks: 1024,
            max_batch: 32,
        }
    }
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
            retry: crate::routing::RetryPolicy::default(),
            breaker: crate::routing::BreakerConfig::default(),
            rpm: None,
            tpm: None,
            engine: EngineSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ModelConfig {
    pub name: String,
    pub upstream: String,
    pub upstream_model: String,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
    pub context_window: Option<u32>,
    /// Tier or quality label for routers.
    pub tier: Option<String>,
    /// Models tried when this one fails and no router planned otherwise.
    pub fallbacks: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                max_body_bytes: 4 * 1024 * 1024,
                sse_keepalive: Duration::from_millis(15_000),
                tls: None,
            },
            logging: LoggingConfig { level: "info".to_owned(), json: false },
            upstreams: Vec::new(),
            models: Vec::new(),
            plugins: None,
            redis: None,
            cache: None,
            routing: crate::routing::RoutingConfig::default(),
            keys: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            location: String::new(),
            key: "-".to_owned(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &origin, &|var| std::env::var(var).ok())
    }

    /// Parses and checks config text; `origin` names it in errors and `env`
    /// resolves `${VAR}` references.
    pub fn parse(text: &str, origin: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| line_of(text, s.start)).unwrap_or_default();
            ConfigError {
                origin: origin.to_owned(),
                location,
                key: key_at(text, e.span().map(|s| s.start)),
                message: e.message().to_owned(),
            }
        })?;
        check::Checker { text, origin, env }.check(raw)
    }

    /// Adds the bundled engine as the pass-through upstream `engine`, serving
    /// `model_path` (or the default model): what `sluice serve` runs with no
    /// upstream configured.
    pub fn with_engine(mut self, model_path: Option<PathBuf>) -> Self {
        let mut upstream = UpstreamConfig::new("engine", UpstreamKind::Engine, "");
        if let Some(path) = model_path {
            upstream.engine.model_path = path;
        }
        upstream.passthrough = true;
        upstream.list_models = true;
        self.upstreams.retain(|u| u.name != "engine");
        self.upstreams.insert(0, upstream);
        self
    }

    /// Adds the upstream given on the command line (`--upstream URL`): it
    /// forwards every model name no `[[models]]` entry claims.
    pub fn with_upstream(mut self, url: &str, kind: UpstreamKind, key: Option<String>) -> Self {
        let mut upstream = UpstreamConfig::new("default", kind, url);
        upstream.api_key = key;
        upstream.passthrough = true;
        upstream.list_models = true;
        self.upstreams.retain(|u| u.name != "default");
        self.upstreams.insert(0, upstream);
        self
    }
}

/// "line N" for a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> String {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    format!(":{line}")
}

/// The key written on the line holding `offset`, for parse errors.
fn key_at(text: &str, offset: Option<usize>) -> String {
    let Some(offset) = offset else {
        return "-".to_owned();
    };
    let start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) => key.trim().to_owned(),
        None => line.trim().to_owned(),
    }
}
