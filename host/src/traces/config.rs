//! `[tracing]`, checked: where spans are exported and how many requests
//! are traced.

use std::time::Duration;

/// The OTLP/HTTP exporter's settings. With none, nothing is traced.
#[derive(Clone)]
pub struct TracingConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// The fraction of requests traced, in [0, 1]. A client's `traceparent`
    /// does not change it.
    pub sample_ratio: f64,
    /// Headers sent with every export (a collector's credentials).
    pub headers: Vec<(String, String)>,
    /// How long one export may take before it is dropped.
    pub export_timeout: Duration,
}

/// The collector most installations run beside the gateway.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";

impl TracingConfig {
    /// Every default, exporting to `endpoint`.
    pub fn new(endpoint: &str) -> TracingConfig {
        TracingConfig {
            endpoint: endpoint.to_owned(),
            service_name: "sluice".to_owned(),
            sample_ratio: 1.0,
            headers: Vec::new(),
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig::new(DEFAULT_ENDPOINT)
    }
}

/// Hides the export headers' values: they are credentials.
impl std::fmt::Debug for TracingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(name, _)| (name.as_str(), "***")).collect();
        f.debug_struct("TracingConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &headers)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}
