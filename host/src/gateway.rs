//! The gateway's shared state, built once from a validated config and shared
//! by every connection: upstreams, the model registry, the stage plugins,
//! the metrics handle.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::ResponseCache;
use crate::config::Config;
use crate::limits::KeyRing;
use crate::models::ModelRegistry;
use crate::plugin::PluginHost;
use crate::routing::Routing;
use crate::shared::SharedRedis;
use crate::telemetry;
use crate::upstream::Upstreams;

pub struct Gateway {
    pub config: Config,
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
}

/// Why a gateway could not be built from a config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl Gateway {
    pub fn new(config: Config) -> Result<Arc<Gateway>, BuildError> {
        let metrics = telemetry::prometheus();
        crate::accounting::warm_up();
        let upstreams = Upstreams::build(&config.upstreams).map_err(BuildError)?;
        let models = ModelRegistry::build(&config, &upstreams).map_err(BuildError)?;
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
        Ok(Arc::new(Gateway { config, upstreams, models, metrics, plugins, redis, cache, routing, keys }))
    }
}
