//! Checks a [`RawConfig`] into a [`Config`]: defaults filled in, references
//! between sections resolved, `${VAR}` expanded, and every problem reported
//! with its key and line. Reading files and command-line flags is not done
//! here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{self, RawConfig};
use super::{
    Config, ConfigError, LoggingConfig, ModelConfig, ServerConfig, TlsConfig, UpstreamConfig, UpstreamKind, line_of,
};

pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
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

    pub(super) fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
                tier: m.tier.clone(),
                fallbacks: m.fallbacks.clone(),
            });
        }
        for (spanned, m) in raw.models.iter().zip(&models) {
            if let Some(missing) = m.fallbacks.iter().find(|f| !models.iter().any(|x| x.name == **f)) {
                return self.err(
                    &format!("models[{}].fallbacks", m.name),
                    Some(spanned.span()),
                    format!("no `[[models]]` is named `{missing}`"),
                );
            }
        }
        let routing = self.routing(raw.routing.as_ref(), &models)?;
        let mut keys = Vec::new();
        for spanned in &raw.keys {
            keys.push(self.key(spanned, &keys)?);
        }
        let plugins = raw.plugins.into_config();
        let redis = raw.redis.as_ref().map(|r| self.redis(r)).transpose()?;
        let cache = raw.cache.as_ref().map(|c| self.cache(c)).transpose()?.flatten();
        Ok(Config { server, logging, upstreams, models, plugins, redis, cache, routing, keys })
    }

    fn routing(
        &self,
        raw: Option<&raw::RawRouting>,
        models: &[ModelConfig],
    ) -> Result<crate::routing::RoutingConfig, ConfigError> {
        let mut arms: Vec<crate::routing::Arm> = Vec::new();
        for spanned in raw.map(|r| r.arms.as_slice()).unwrap_or_default() {
            let a = spanned.get_ref();
            let key = format!("routing.arms[{}]", a.name);
            if a.name.is_empty() || arms.iter().any(|x| x.name == a.name) {
                return self.err(&key, Some(spanned.span()), "arm names must be non-empty and distinct");
            }
            if let Some(m) = &a.model
                && !models.iter().any(|x| x.name == *m.get_ref())
            {
                return self.err(
                    &format!("{key}.model"),
                    Some(m.span()),
                    format!("no `[[models]]` is named `{}`", m.get_ref()),
                );
            }
            arms.push(crate::routing::Arm {
                name: a.name.clone(),
                weight: a.weight.unwrap_or(1),
                model: a.model.as_ref().map(|m| m.get_ref().clone()),
                route: a.route.unwrap_or(true),
            });
        }
        if !arms.is_empty() && arms.iter().all(|a| a.weight == 0) {
            return self.err("routing.arms", None, "at least one arm needs a weight above 0");
        }
        Ok(crate::routing::RoutingConfig { arms })
    }

    fn key(
        &self,
        spanned: &Spanned<raw::RawKey>,
        seen: &[crate::limits::KeyConfig],
    ) -> Result<crate::limits::KeyConfig, ConfigError> {
        let k = spanned.get_ref();
        let name = format!("keys[{}]", k.name);
        if k.name.is_empty() || seen.iter().any(|x| x.name == k.name) {
            return self.err(&name, Some(spanned.span()), "key names must be non-empty and distinct");
        }
        let secret = self.expand_env(&format!("{name}.key"), &k.key)?;
        if secret.len() < 8 || seen.iter().any(|x| x.key == secret) {
            return self.err(
                &format!("{name}.key"),
                Some(k.key.span()),
                "keys must be distinct and 8 characters or more",
            );
        }
        for (field, v) in [("rpm", k.rpm), ("tpm", k.tpm)] {
            if v == Some(0) {
                return self.err(&format!("{name}.{field}"), Some(spanned.span()), "must be greater than 0");
            }
        }
        if k.budget_usd.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return self.err(&format!("{name}.budget_usd"), Some(spanned.span()), "must be a non-negative number");
        }
        let day = 86_400;
        let budget_period = match k.budget_period.as_ref().map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "total")) => None,
            Some((_, "hour")) => Some(Duration::from_secs(3_600)),
            Some((_, "day")) => Some(Duration::from_secs(day)),
            Some((_, "week")) => Some(Duration::from_secs(7 * day)),
            Some((_, "month")) => Some(Duration::from_secs(30 * day)),
            Some((p, other)) => {
                return self.err(
                    &format!("{name}.budget_period"),
                    Some(p.span()),
                    format!("`{other}` is not one of `hour`, `day`, `week`, `month`, `total`"),
                );
            }
        };
        Ok(crate::limits::KeyConfig {
            name: k.name.clone(),
            key: secret,
            rpm: k.rpm,
            tpm: k.tpm,
            budget_usd: k.budget_usd,
            budget_period,
            admin: k.admin.unwrap_or(false),
        })
    }

    fn redis(&self, raw: &raw::RawRedis) -> Result<crate::shared::RedisConfig, ConfigError> {
        let url = self.expand_env("redis.url", &raw.url)?;
        if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
            return self.err("redis.url", Some(raw.url.span()), format!("`{url}` is not a redis:// URL"));
        }
        let mut config = crate::shared::RedisConfig::new(&url);
        for (key, value) in [("redis.timeout_ms", raw.timeout_ms), ("redis.connect_timeout_ms", raw.connect_timeout_ms)]
        {
            if value == Some(0) {
                return self.err(key, None, "must be greater than 0");
            }
        }
        if let Some(ms) = raw.timeout_ms {
            config.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.backoff_ms {
            config.backoff = Duration::from_millis(ms);
        }
        if let Some(prefix) = &raw.key_prefix {
            if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                return self.err("redis.key_prefix", None, "must be a non-empty word");
            }
            config.key_prefix.clone_from(prefix);
        }
        Ok(config)
    }

    fn cache(&self, raw: &raw::RawCache) -> Result<Option<crate::cache::CacheConfig>, ConfigError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let mut config = crate::cache::CacheConfig::default();
        if let Some(bytes) = raw.max_bytes {
            config.max_bytes = bytes;
        }
        if let Some(ttl) = raw.ttl_s {
            if ttl == 0 {
                return self.err("cache.ttl_s", None, "must be greater than 0");
            }
            config.ttl = Duration::from_secs(ttl);
        }
        if let Some(ns) = &raw.namespace {
            if ns.is_empty() {
                return self.err("cache.namespace", None, "must not be empty");
            }
            config.namespace.clone_from(ns);
        }
        if let Some(semantic) = raw.semantic {
            config.semantic = semantic;
        }
        if let Some(t) = raw.similarity_threshold {
            if !(t > 0.0 && t <= 1.0) {
                return self.err("cache.similarity_threshold", None, "must be in (0, 1]");
            }
            config.similarity_threshold = t;
        }
        if let Some(dir) = &raw.embedding_model_dir {
            config.embedding_model_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
        }
        if let Some(n) = raw.max_semantic_entries {
            config.max_semantic_entries = n;
        }
        Ok(Some(config))
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
        if let Some(v) = u.max_retries {
            out.retry.max_retries = v;
        }
        if let Some(v) = u.retry_base_ms {
            out.retry.base = ms(v);
        }
        if let Some(v) = u.retry_max_wait_ms {
            out.retry.max_wait = ms(v);
        }
        if let Some(v) = u.breaker_failures {
            out.breaker.failures = v;
        }
        if let Some(v) = u.breaker_open_ms {
            out.breaker.open_for = ms(v);
        }
        for (field, v) in [("rpm", u.rpm), ("tpm", u.tpm)] {
            if v == Some(0) {
                return self.err(&key(field), Some(spanned.span()), "must be greater than 0");
            }
        }
        out.rpm = u.rpm;
        out.tpm = u.tpm;
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
        .expect("valid config");
        let oa = &cfg.upstreams[0];
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
