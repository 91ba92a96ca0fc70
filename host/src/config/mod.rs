//! Configuration: reads the TOML file ([`raw`]), checks each section into
//! the validated type of the module that uses it, and assembles them into a
//! [`Config`]. Every error names the key and, when it came from a file, the
//! file and line.
//!
//! This module owns no setting: `ServerConfig` and `GatewayConfig` belong
//! to `crate::gateway`, `UpstreamConfig` to `crate::upstream`,
//! `UpstreamPolicy` and `RoutingConfig` to `crate::routing`, `ModelConfig`
//! to `crate::models`, `LoggingConfig` to `crate::telemetry`,
//! `TracingConfig` to `crate::traces`, and so on. It parses, checks and
//! assembles; one file per section (`server.rs`, `upstreams.rs`,
//! `models.rs`, `keys.rs`, `redis.rs`, `cache.rs`, `plugins.rs`,
//! `traces.rs` for `[tracing]`), sharing the [`checker`]. It does not read command-line
//! flags: `crate::cli` applies them on top with [`Config::with_upstream`]
//! and friends.

mod cache;
mod checker;
mod error;
mod flags;
mod keys;
mod models;
mod plugins;
mod raw;
mod redis;
mod server;
mod traces;
mod upstreams;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use raw::RawConfig;

use crate::gateway::GatewayConfig;
use crate::plugin::PluginConfig;
use crate::redis_client::RedisConfig;
use crate::routing::RoutingConfig;
use crate::telemetry::LoggingConfig;
use crate::upstream::{UpstreamConfig, UpstreamKind};
use checker::Checker;

/// The checked configuration: logging, and everything the gateway is built
/// from.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub logging: LoggingConfig,
    pub gateway: GatewayConfig,
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

    /// The configuration of an empty file: every default, the default
    /// plugin folder included.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::parse("", "defaults", &|_| None)
    }

    /// Parses and checks config text; `origin` names it in errors and `env`
    /// resolves `${VAR}` references.
    pub fn parse(text: &str, origin: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|s| error::line_of(text, s.start)).unwrap_or_default();
            ConfigError {
                origin: origin.to_owned(),
                location,
                key: error::key_at(text, e.span().map(|s| s.start)),
                message: e.message().to_owned(),
            }
        })?;
        Checker { text, origin, env }.assemble(&raw)
    }

    /// Adds the bundled engine as the pass-through upstream `engine`, serving
    /// `model_path` (or the default model): what `sluice serve` runs with no
    /// upstream configured.
    pub fn with_engine(self, model_path: Option<PathBuf>) -> Self {
        let mut upstream = UpstreamConfig::new("engine", UpstreamKind::Engine, "");
        if let Some(path) = model_path {
            upstream.engine.model_path = path;
        }
        self.put_first(upstream)
    }

    /// Adds the upstream given on the command line (`--upstream URL`): it
    /// forwards every model name no `[[models]]` entry claims.
    pub fn with_upstream(self, url: &str, kind: UpstreamKind, key: Option<String>) -> Self {
        let mut upstream = UpstreamConfig::new("default", kind, url);
        upstream.api_key = key;
        self.put_first(upstream)
    }

    /// The Redis server given on the command line (`--redis URL`), keeping
    /// the file's other `[redis]` settings.
    pub fn with_redis(mut self, url: &str) -> Result<Self, ConfigError> {
        if !redis::is_redis_url(url) {
            let shown = crate::redis_client::redact_url(url);
            return Err(ConfigError::flag("--redis", format!("`{shown}` is not a redis:// URL")));
        }
        let mut redis = self.gateway.redis.take().unwrap_or_else(|| RedisConfig::new(url));
        redis.url = url.to_owned();
        self.gateway.redis = Some(redis);
        Ok(self)
    }

    /// The plugin folder given on the command line (`--plugins DIR`),
    /// keeping the file's other `[plugins]` settings.
    pub fn with_plugins(mut self, dir: &Path) -> Self {
        let mut plugins = self.gateway.plugins.take().unwrap_or_else(|| PluginConfig::new(dir));
        plugins.dir = dir.to_path_buf();
        self.gateway.plugins = Some(plugins);
        self
    }

    /// A pass-through upstream that lists its models, first among the
    /// upstreams, replacing one of the same name.
    fn put_first(mut self, mut upstream: UpstreamConfig) -> Self {
        upstream.passthrough = true;
        upstream.list_models = true;
        let upstreams = &mut self.gateway.upstreams;
        upstreams.retain(|u| u.name != upstream.name);
        upstreams.insert(0, upstream);
        self
    }
}

impl Checker<'_> {
    /// Checks every section, in file order of dependence: upstreams before
    /// the models that name them, models before the arms that name them.
    fn assemble(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let server = self.server(&raw.server)?;
        let logging = self.logging(&raw.logging)?;
        let mut upstreams = Vec::new();
        let mut routing = RoutingConfig::default();
        for (name, spanned) in &raw.upstreams {
            let (upstream, policy) = self.upstream(name, spanned)?;
            upstreams.push(upstream);
            routing.upstreams.insert(name.clone(), policy);
        }
        let models = self.models(&raw.models, &upstreams)?;
        routing.arms = self.arms(raw.routing.as_ref(), &models)?;
        let keys = self.keys(&raw.keys)?;
        let plugins = self.plugins(&raw.plugins)?;
        let redis = raw.redis.as_ref().map(|r| self.redis(r)).transpose()?;
        let cache = raw.cache.as_ref().map(|c| self.cache(c)).transpose()?.flatten();
        let tracing = raw.tracing.as_ref().map(|t| self.tracing(t)).transpose()?.flatten();
        let gateway = GatewayConfig { server, upstreams, models, plugins, redis, cache, routing, keys, tracing };
        Ok(Config { logging, gateway })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        .expect("valid config")
        .gateway;
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.upstreams[0].base_url, "http://127.0.0.1:1/v1");
        assert_eq!(cfg.upstreams[0].api_key.as_deref(), Some("Bearer-secret"));
        assert_eq!(cfg.models[0].upstream_model, "gpt-small");
    }

    #[test]
    fn routing_keys_and_resilience_parse() {
        let cfg = parse(
            r#"
[upstreams.oa]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
max_retries = 4
retry_max_wait_ms = 500
breaker_failures = 3
rpm = 60
[[models]]
name = "small"
upstream = "oa"
tier = "small"
fallbacks = ["large"]
[[models]]
name = "large"
upstream = "oa"
[[routing.arms]]
name = "control"
weight = 9
model = "large"
[[routing.arms]]
name = "routed"
[[keys]]
name = "team"
key = "sk-${KEY}"
rpm = 10
budget_usd = 5.0
budget_period = "day"
"#,
        )
        .expect("valid config")
        .gateway;
        let oa = cfg.routing.policy("oa");
        assert_eq!(
            (oa.retry.max_retries, oa.retry.max_wait, oa.breaker.failures, oa.rpm),
            (4, Duration::from_millis(500), 3, Some(60))
        );
        assert_eq!(cfg.models[0].fallbacks, ["large"]);
        assert_eq!(cfg.routing.arms[1].weight, 1);
        assert_eq!(cfg.keys[0].key, "sk-secret");
        assert_eq!(cfg.keys[0].budget_period, Some(Duration::from_secs(86_400)));

        let e = parse("[upstreams.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n[[models]]\nname = \"m\"\nupstream = \"a\"\nfallbacks = [\"nope\"]\n")
            .expect_err("unknown fallback");
        assert_eq!(e.key, "models[m].fallbacks");
        let e = parse("[[keys]]\nname = \"k\"\nkey = \"sk-12345678\"\nbudget_period = \"fortnight\"\n")
            .expect_err("period");
        assert_eq!(e.key, "keys[k].budget_period");
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").expect_err("unknown key");
        assert_eq!(e.location, ":3");
        assert!(e.to_string().contains("bogus"), "{e}");
        // A line that holds no key: the error says `-`, never an empty name.
        let e = parse("[server]\n= 1\n").expect_err("no key");
        assert_eq!((e.key.as_str(), e.location.as_str()), ("-", ":2"));
        let e = parse("\u{feff}bogus = 1\n").expect_err("unknown key after a byte-order mark");
        assert_eq!((e.key.as_str(), e.location.as_str()), ("bogus", ":1"));

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

    fn plugins_of(toml_text: &str) -> Result<PluginConfig, ConfigError> {
        let cfg = parse(&format!("[plugins]\ndir = \"x\"\n{toml_text}"))?;
        Ok(cfg.gateway.plugins.expect("a plugin folder is set"))
    }

    #[test]
    fn baseline_builds_take_a_size_or_a_switch() {
        let baseline_of = |text: &str| plugins_of(text).expect("valid").baseline_min_bytes;
        assert_eq!(baseline_of(""), Some(4 << 20));
        assert_eq!(baseline_of("baseline_min_mib = 0"), Some(0));
        assert_eq!(baseline_of("baseline_min_mib = 16"), Some(16 << 20));
        assert_eq!(baseline_of("baseline_min_mib = false"), None);
        assert_eq!(baseline_of("baseline_min_mib = true"), Some(4 << 20));
        let e = plugins_of("baseline_min_mib = \"big\"").expect_err("not a size");
        assert_eq!((e.key.as_str(), e.location.as_str()), ("baseline_min_mib", ":3"));
    }

    #[test]
    fn plugin_errors_name_key_and_line() {
        let e = plugins_of("warm_pool = 2\ndeadline_ms = 0\n").expect_err("zero deadline");
        assert_eq!((e.key.as_str(), e.location.as_str()), ("plugins.deadline_ms", ":4"));
        let e = plugins_of("memory_mib = 0\n").expect_err("zero memory");
        assert_eq!((e.key.as_str(), e.location.as_str()), ("plugins.memory_mib", ":3"));
        let e = plugins_of("spare = 1\n").expect_err("unknown key");
        assert_eq!(e.location, ":3");
        let ok = plugins_of("deadline_ms = 20\nmemory_mib = 8\nmax_consecutive_faults = 0\n").expect("valid");
        assert_eq!(ok.defaults.deadline, Duration::from_millis(20));
        assert_eq!(ok.defaults.memory_bytes, 8 << 20);
        assert_eq!(ok.defaults.max_consecutive_faults, 1);
    }

    #[test]
    fn the_engine_client_share_is_a_fraction_for_engines_only() {
        let engine = |extra: &str| parse(&format!("[upstreams.local]\nkind = \"engine\"\n{extra}"));
        let ok = engine("client_share = 0.25\n").expect("valid");
        assert_eq!(ok.gateway.upstreams[0].engine.client_share, 0.25);
        for bad in ["0", "1.5", "-0.5", "nan"] {
            let e = engine(&format!("client_share = {bad}\n")).expect_err(bad);
            assert_eq!(e.key, "upstreams.local.client_share", "{bad}");
        }
        let e = parse("[upstreams.oa]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nclient_share = 0.5\n")
            .expect_err("not an engine");
        assert_eq!(e.key, "upstreams.oa.client_share");
    }
}
