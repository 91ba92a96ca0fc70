//! `[server]` and `[logging]`, checked into `gateway::ServerConfig` and
//! `telemetry::LoggingConfig`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

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
        let max_connections = match &raw.max_connections {
            None => defaults.max_connections,
            Some(n) if *n.get_ref() == 0 => {
                return self.err("server.max_connections", Some(n.span()), "must be greater than 0");
            }
            Some(n) => *n.get_ref(),
        };
        Ok(ServerConfig {
            listen,
            max_body_bytes,
            sse_keepalive: raw.sse_keepalive_ms.map_or(defaults.sse_keepalive, Duration::from_millis),
            tls,
            header_read_timeout: self.timeout(
                "server.header_read_timeout_ms",
                raw.header_read_timeout_ms.as_ref(),
                defaults.header_read_timeout,
            )?,
            tls_handshake_timeout: self.timeout(
                "server.tls_handshake_timeout_ms",
                raw.tls_handshake_timeout_ms.as_ref(),
                defaults.tls_handshake_timeout,
            )?,
            body_read_timeout: self.timeout(
                "server.body_read_timeout_ms",
                raw.body_read_timeout_ms.as_ref(),
                defaults.body_read_timeout,
            )?,
            sse_send_timeout: self.timeout(
                "server.sse_send_timeout_ms",
                raw.sse_send_timeout_ms.as_ref(),
                defaults.sse_send_timeout,
            )?,
            max_connections,
        })
    }

    /// A timeout in ms: greater than 0, `default` when not given.
    fn timeout(&self, key: &str, ms: Option<&Spanned<u64>>, default: Duration) -> Result<Duration, ConfigError> {
        match ms {
            None => Ok(default),
            Some(ms) if *ms.get_ref() == 0 => self.err(key, Some(ms.span()), "must be greater than 0"),
            Some(ms) => Ok(Duration::from_millis(*ms.get_ref())),
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;

    #[test]
    fn connection_limits_parse_and_default() {
        let text = "[server]\nheader_read_timeout_ms = 500\ntls_handshake_timeout_ms = 600\nbody_read_timeout_ms = 700\nsse_send_timeout_ms = 800\nmax_connections = 9\n";
        let server = Config::parse(text, "t.toml", &|_| None).expect("valid").gateway.server;
        assert_eq!(server.header_read_timeout, Duration::from_millis(500));
        assert_eq!(server.tls_handshake_timeout, Duration::from_millis(600));
        assert_eq!(server.body_read_timeout, Duration::from_millis(700));
        assert_eq!(server.sse_send_timeout, Duration::from_millis(800));
        assert_eq!(server.max_connections, 9);
        let server = Config::parse("", "t.toml", &|_| None).expect("valid").gateway.server;
        assert_eq!(server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(server.max_connections, 10_000);
    }

    #[test]
    fn zero_limits_are_refused_with_key_and_line() {
        for key in [
            "header_read_timeout_ms",
            "tls_handshake_timeout_ms",
            "body_read_timeout_ms",
            "sse_send_timeout_ms",
            "max_connections",
        ] {
            let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n{key} = 0\n");
            let e = Config::parse(&text, "t.toml", &|_| None).expect_err("0 is refused").to_string();
            assert!(e.contains(&format!("t.toml:3: `server.{key}`")), "{e}");
            assert!(e.contains("greater than 0"), "{e}");
        }
    }
}
