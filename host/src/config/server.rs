//! `[server]` and `[logging]`, checked into `gateway::ServerConfig` and
//! `telemetry::LoggingConfig`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawLogging, RawServer};
use crate::gateway::{ServerConfig, TlsConfig};
use crate::telemetry::LoggingConfig;

impl Checker<'_> {
    pub(super) fn server(&self, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
        let defaults = ServerConfig::default();
        let listen = match &raw.listen {
            None => defaults.listen,
            Some(s) => match s.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(e) => {
                    return self.err(
                        "server.listen",
                        Some(s.span()),
                        format!("not an address such as 127.0.0.1:8080: {e}"),
                    );
                }
            },
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(defaults.max_body_bytes);
        if max_body_bytes == 0 {
            return self.err("server.max_body_bytes", None, "must be greater than 0");
        }
        let tls = raw.tls.as_ref().map(|t| TlsConfig { cert: PathBuf::from(&t.cert), key: PathBuf::from(&t.key) });
        Ok(ServerConfig {
            listen,
            max_body_bytes,
            sse_keepalive: raw.sse_keepalive_ms.map_or(defaults.sse_keepalive, Duration::from_millis),
            tls,
        })
    }

    pub(super) fn logging(&self, raw: &RawLogging) -> Result<LoggingConfig, ConfigError> {
        let json = match &raw.format {
            None => false,
            Some(f) => match f.get_ref().as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return self.err(
                        "logging.format",
                        Some(f.span()),
                        format!("`{other}` is not one of `text`, `json`"),
                    );
                }
            },
        };
        Ok(LoggingConfig { level: raw.level.clone().unwrap_or_else(|| LoggingConfig::default().level), json })
    }
}
