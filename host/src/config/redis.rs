//! `[redis]`, checked into the Redis client's `RedisConfig`.

use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRedis;
use crate::redis_client::RedisConfig;

impl Checker<'_> {
    pub(super) fn redis(&self, raw: &RawRedis) -> Result<RedisConfig, ConfigError> {
        let url = self.expand_env("redis.url", &raw.url)?;
        if !is_redis_url(&url) {
            return self.err(
                "redis.url",
                Some(raw.url.span()),
                format!("`{}` is not a redis:// URL", crate::redis_client::redact_url(&url)),
            );
        }
        let mut config = RedisConfig::new(&url);
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
}

/// A URL the Redis client takes: `redis://`, `rediss://` or `unix://`.
pub(super) fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "unix://"].iter().any(|s| url.starts_with(s))
}
