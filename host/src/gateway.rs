//! The gateway's shared state, built once from a validated config and shared
//! by every connection: upstreams, the model registry, the metrics handle.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::models::ModelRegistry;
use crate::telemetry;
use crate::upstream::Upstreams;

pub struct Gateway {
    pub config: Config,
    pub upstreams: Upstreams,
    pub models: ModelRegistry,
    pub metrics: &'static PrometheusHandle,
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
        Ok(Arc::new(Gateway { config, upstreams, models, metrics }))
    }
}
