//! `[cache]`, checked into `cache::CacheConfig` (`None` when the section
//! turns the cache off).

use std::path::PathBuf;
use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawCache;
use crate::cache::CacheConfig;

impl Checker<'_> {
    pub(super) fn cache(&self, raw: &RawCache) -> Result<Option<CacheConfig>, ConfigError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let mut config = CacheConfig::default();
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
}
