//! The gateway's shared state, built once from a validated
//! [`GatewayConfig`] and shared by every connection: upstreams, the model
//! registry, the stage plugins, the cache, routing state, client keys, the
//! metrics handle, the span exporter.
//!
//! [`GatewayConfig`] gathers the checked settings each part owns (`[server]`
//! is defined here, as it is read by the listener, ingress and the relay);
//! `crate::config` fills it from a file and flags. This module reads no file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::{CacheConfig, ResponseCache};
use crate::limits::{KeyConfig, KeyRing};
use crate::live::Live;
use crate::models::{ModelConfig, ModelRegistry};
use crate::plugin::{PluginConfig, PluginHost};
use crate::redis_client::{RedisConfig, SharedRedis};
use crate::routing::{Routing, RoutingConfig};
use crate::telemetry;
use crate::traces::{Traces, TracingConfig};
use crate::upstream::{UpstreamConfig, Upstreams};

/// Everything a gateway is built from.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    /// The plugin runtime; `None` runs no plugins.
    pub plugins: Option<PluginConfig>,
    /// The Redis server shared by replicas; `None` keeps all state local.
    pub redis: Option<RedisConfig>,
    /// The response cache; `None` caches nothing.
    pub cache: Option<CacheConfig>,
    /// A/B arms and each upstream's resilience policy.
    pub routing: RoutingConfig,
    /// Client API keys; empty: no key needed.
    pub keys: Vec<KeyConfig>,
    /// OpenTelemetry traces; `None`: off.
    pub tracing: Option<TracingConfig>,
}

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body read (413 above it).
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments on quiet streams.
    pub sse_keepalive: Duration,
    pub tls: Option<TlsConfig>,
    /// Time a connection with no request in progress has to bring the next
    /// request's whole head (HTTP/1 and HTTP/2); it is closed after it.
    pub header_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a whole request body (408 after it).
    pub body_read_timeout: Duration,
    /// Time a client may leave the gateway's bytes unread: a stream's chunk
    /// not taken within it drops the stream, and with it the upstream
    /// request; a write to the socket stalled for it drops the connection.
    pub sse_send_timeout: Duration,
    /// Connections served at once; further ones are closed on accept.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            sse_keepalive: Duration::from_millis(15_000),
            tls: None,
            header_read_timeout: Duration::from_millis(10_000),
            tls_handshake_timeout: Duration::from_millis(10_000),
            body_read_timeout: Duration::from_millis(30_000),
            sse_send_timeout: Duration::from_millis(30_000),
            max_connections: 10_000,
        }
    }
}

/// `[server.tls]`: PEM files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Gateway {
    pub config: GatewayConfig,
    pub upstreams: Upstreams,
    pub models: ModelRegistry,
    pub metrics: &'static PrometheusHandle,
    /// The stage plugins; `None` when no plugin folder is configured.
    pub plugins: Option<Arc<PluginHost>>,
    /// The Redis server shared with other replicas; `None` keeps all state local.
    pub redis: Option<Arc<SharedRedis>>,
    /// The response cache; `None` when `[cache]` is not configured.
    pub cache: Option<Arc<ResponseCache>>,
    /// Live model statistics, breakers, upstream budgets, A/B arms.
    pub routing: Arc<Routing>,
    /// Client API keys and their limits.
    pub keys: KeyRing,
    /// The live dashboard's per-second counters.
    pub live: Arc<Live>,
    /// The span exporter; off unless `[tracing]` is configured.
    pub traces: Traces,
}

/// Why a gateway could not be built from a config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl Gateway {
    pub fn new(config: GatewayConfig) -> Result<Arc<Gateway>, BuildError> {
        let metrics = telemetry::prometheus();
        crate::accounting::warm_up();
        let upstreams = Upstreams::build(&config.upstreams).map_err(BuildError)?;
        let models = ModelRegistry::build(&config.models, &upstreams).map_err(BuildError)?;
        let plugins = match &config.plugins {
            Some(plugin_config) => Some(
                PluginHost::start(plugin_config.clone())
                    .map_err(|e| BuildError(format!("plugins in {}: {e}", plugin_config.dir.display())))?,
            ),
            None => None,
        };
        let redis = match &config.redis {
            Some(redis) => {
                Some(Arc::new(SharedRedis::new(redis.clone()).map_err(|e| BuildError(format!("redis: {e}")))?))
            }
            None => None,
        };
        let cache = config.cache.clone().map(|c| ResponseCache::new(c, redis.clone()));
        let routing = Arc::new(Routing::build(config.routing.clone(), &upstreams, &models, redis.clone()));
        let keys = KeyRing::build(&config.keys, redis.clone());
        let live = Arc::new(Live::default());
        let traces = Traces::start(config.tracing.as_ref()).map_err(|e| BuildError(format!("tracing: {e}")))?;
        Ok(Arc::new(Gateway { config, upstreams, models, metrics, plugins, redis, cache, routing, keys, live, traces }))
    }

    /// The `/metrics` text. The metrics whose state lives elsewhere (the
    /// engine's scheduler, key budgets) are read first.
    pub fn render_metrics(&self) -> String {
        for upstream in self.upstreams.iter() {
            upstream.record_engine_stats();
        }
        self.keys.record_budgets();
        self.metrics.render()
    }
}
