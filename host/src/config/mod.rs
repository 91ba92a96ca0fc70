//! Configuration: the raw TOML ([`raw`]) checked into a [`Config`] that the
//! rest of the gateway can trust. Every error names the key and, when it came
//! from a file, the file and line.
//!
//! This module does not read command-line flags; `crate::cli` applies them on
//! top of a loaded (or empty) config with [`Config::with_upstream`].

mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

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
            engine: EngineSettings::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub upstream: String,
    pub upstream_model: String,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
    pub context_window: Option<u32>,
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
        Checker { text, origin, env }.check(raw)
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
fn line_of(text: &str, offset: usize) -> String {
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

struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    fn err<T>(
        &self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            origin: self.origin.to_owned(),
            location: span.map(|s| line_of(self.text, s.start)).unwrap_or_default(),
            key: key.to_owned(),
            message: message.into(),
        })
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let server = &raw.server;
        let listen = match &server.listen {
            None => defaults.server.listen,
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
        let max_body_bytes = server.max_body_bytes.unwrap_or(defaults.server.max_body_bytes);
        if max_body_bytes == 0 {
            return self.err("server.max_body_bytes", None, "must be greater than 0");
        }
        let tls = server.tls.as_ref().map(|t| TlsConfig { cert: PathBuf::from(&t.cert), key: PathBuf::from(&t.key) });
        let server = ServerConfig {
            listen,
            max_body_bytes,
            sse_keepalive: server.sse_keepalive_ms.map_or(defaults.server.sse_keepalive, Duration::from_millis),
            tls,
        };

        let json = match &raw.logging.format {
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
        let logging = LoggingConfig { level: raw.logging.level.clone().unwrap_or(defaults.logging.level), json };

        let mut upstreams = Vec::new();
        for (name, spanned) in &raw.upstreams {
            upstreams.push(self.upstream(name, spanned)?);
        }
        let mut models: Vec<ModelConfig> = Vec::new();
        for spanned in &raw.models {
            let m = spanned.get_ref();
            let key = format!("models[{}]", m.name);
            if m.name.is_empty() {
                return self.err("models.name", Some(spanned.span()), "must not be empty");
            }
            if models.iter().any(|x| x.name == m.name) {
                return self.err(&key, Some(spanned.span()), "this model name is defined twice");
            }
            if !upstreams.iter().any(|u| u.name == *m.upstream.get_ref()) {
                return self.err(
                    &format!("{key}.upstream"),
                    Some(m.upstream.span()),
                    format!("no `[upstreams.{}]` is defined", m.upstream.get_ref()),
                );
            }
            for (field, price) in
                [("input_price_per_mtok", m.input_price_per_mtok), ("output_price_per_mtok", m.output_price_per_mtok)]
            {
                if price.is_some_and(|p| !(p.is_finite() && p >= 0.0)) {
                    return self.err(&format!("{key}.{field}"), Some(spanned.span()), "must be a non-negative number");
                }
            }
            models.push(ModelConfig {
                name: m.name.clone(),
                upstream: m.upstream.get_ref().clone(),
                upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
                input_price_per_mtok: m.input_price_per_mtok,
                output_price_per_mtok: m.output_price_per_mtok,
                context_window: m.context_window,
            });
        }
        let plugins = raw.plugins.into_config();
        Ok(Config { server, logging, upstreams, models, plugins })
    }

    fn upstream(&self, name: &str, spanned: &Spanned<raw::RawUpstream>) -> Result<UpstreamConfig, ConfigError> {
        let u = spanned.get_ref();
        let key = |field: &str| format!("upstreams.{name}.{field}");
        let kind = match u.kind.get_ref().as_str() {
            "openai" => UpstreamKind::OpenAi,
            "anthropic" => UpstreamKind::Anthropic,
            "engine" => UpstreamKind::Engine,
            other => {
                return self.err(
                    &key("kind"),
                    Some(u.kind.span()),
                    format!("`{other}` is not one of `openai`, `anthropic`, `engine`"),
                );
            }
        };
        let base_url = match (&u.base_url, kind) {
            (Some(url), _) => {
                let s = url.get_ref();
                match s.parse::<http::Uri>() {
                    Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => s.clone(),
                    _ => {
                        return self.err(
                            &key("base_url"),
                            Some(url.span()),
                            format!("`{s}` is not an http:// or https:// URL"),
                        );
                    }
                }
            }
            (None, UpstreamKind::Engine) => String::new(),
            (None, _) => {
                return self.err(&key("base_url"), Some(spanned.span()), "is required for this kind");
            }
        };
        let mut out = UpstreamConfig::new(name, kind, &base_url);
        if let Some(k) = &u.api_key {
            out.api_key = Some(self.expand_env(&key("api_key"), k)?);
        }
        out.ca_cert = u.ca_cert.as_ref().map(PathBuf::from);
        let ms = Duration::from_millis;
        if let Some(v) = u.connect_timeout_ms {
            out.connect_timeout = ms(v);
        }
        if let Some(v) = u.first_byte_timeout_ms {
            out.first_byte_timeout = ms(v);
        }
        if let Some(v) = u.total_timeout_ms {
            out.total_timeout = ms(v);
        }
        if let Some(v) = u.queue_timeout_ms {
            out.queue_timeout = ms(v);
        }
        if let Some(v) = u.max_in_flight {
            if v == 0 {
                return self.err(&key("max_in_flight"), Some(spanned.span()), "must be greater than 0");
            }
            out.max_in_flight = v;
        }
        out.passthrough = u.passthrough.unwrap_or(false);
        out.list_models = u.list_models.unwrap_or(out.passthrough);
        if let Some(v) = u.default_max_tokens {
            out.default_max_tokens = v;
        }
        if let Some(v) = &u.anthropic_version {
            out.anthropic_version = v.clone();
        }
        let engine_only = [
            ("model_path", u.model_path.is_some()),
            ("embedding_model_dir", u.embedding_model_dir.is_some()),
            ("kv_blocks", u.kv_blocks.is_some()),
            ("max_batch", u.max_batch.is_some()),
        ];
        if let Some((field, _)) = engine_only.iter().find(|(_, set)| *set).filter(|_| kind != UpstreamKind::Engine) {
            return self.err(&key(field), Some(spanned.span()), "applies to upstreams of kind `engine` only");
        }
        if let Some(path) = &u.model_path {
            out.engine.model_path = PathBuf::from(path);
        }
        if let Some(dir) = &u.embedding_model_dir {
            out.engine.embedding_model_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
        }
        for (field, value, target) in [
            ("kv_blocks", u.kv_blocks, &mut out.engine.kv_blocks),
            ("max_batch", u.max_batch, &mut out.engine.max_batch),
        ] {
            match value {
                Some(0) => return self.err(&key(field), Some(spanned.span()), "must be greater than 0"),
                Some(v) => *target = v,
                None => {}
            }
        }
        Ok(out)
    }

    /// Replaces each `${VAR}` with the variable's value; a missing variable is an error.
    fn expand_env(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
        let mut out = String::new();
        let mut rest = value.get_ref().as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return self.err(key, Some(value.span()), "`${` without a closing `}`");
            };
            let var = &rest[start + 2..start + len];
            match (self.env)(var) {
                Some(v) => out.push_str(&v),
                None => {
                    return self.err(key, Some(value.span()), format!("environment variable `{var}` is not set"));
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "t.toml", &|v| (v == "KEY").then(|| "secret".to_owned()))
    }

    #[test]
    fn full_config_parses() {
        let cfg = parse(
            r#"
[server]
listen = "0.0.0.0:9000"
[upstreams.oa]
kind = "openai"
base_url = "http://127.0.0.1:1/v1/"
api_key = "Bearer-${KEY}"
[[models]]
name = "small"
upstream = "oa"
upstream_model = "gpt-small"
input_price_per_mtok = 0.5
"#,
        )
        .expect("valid config");
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.upstreams[0].base_url, "http://127.0.0.1:1/v1");
        assert_eq!(cfg.upstreams[0].api_key.as_deref(), Some("Bearer-secret"));
        assert_eq!(cfg.models[0].upstream_model, "gpt-small");
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").expect_err("unknown key");
        assert_eq!(e.location, ":3");
        assert!(e.to_string().contains("bogus"), "{e}");

        let e = parse("[upstreams.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n[[models]]\nname = \"m\"\nupstream = \"b\"\n").expect_err("bad ref");
        assert_eq!(e.key, "models[m].upstream");
        assert_eq!(e.location, ":6");

        let e = parse("[upstreams.a]\nkind = \"openai\"\nbase_url = \"http://x\"\napi_key = \"${NOPE}\"\n")
            .expect_err("env");
        assert_eq!(e.key, "upstreams.a.api_key");
        assert!(e.message.contains("NOPE"));

        let e = parse("[upstreams.a]\nkind = \"grpc\"\n").expect_err("kind");
        assert_eq!(e.key, "upstreams.a.kind");
        assert_eq!(e.location, ":2");
    }
}
