//! `sluice serve`'s flags, applied on top of the config file (or the
//! defaults): the one place where the command line changes a config.

use super::Config;
use super::error::ConfigError;
use crate::cache::CacheConfig;
use crate::cli::{KindArg, ServeArgs};
use crate::upstream::UpstreamKind;

impl Config {
    /// The config `sluice serve`'s flags describe: the file's (or the
    /// defaults), with each flag applied on top.
    pub fn from_flags(flags: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = match &flags.config {
            Some(path) => Config::load(path)?,
            None => Config::defaults()?,
        };
        if let Some(listen) = flags.listen {
            config.gateway.server.listen = listen;
        }
        if let Some(url) = &flags.upstream {
            let ok = url
                .parse::<http::Uri>()
                .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if !ok {
                return Err(ConfigError::flag("--upstream", format!("`{url}` is not an http:// or https:// URL")));
            }
            let kind = match flags.upstream_kind {
                KindArg::Openai => UpstreamKind::OpenAi,
                KindArg::Anthropic => UpstreamKind::Anthropic,
            };
            config = config.with_upstream(url, kind, flags.upstream_key.clone());
        }
        if let Some(url) = &flags.redis {
            config = config.with_redis(url)?;
        }
        if flags.cache && config.gateway.cache.is_none() {
            config.gateway.cache = Some(CacheConfig::default());
        }
        if let Some(dir) = &flags.plugins {
            config = config.with_plugins(dir);
        }
        // No upstream at all, or an explicit engine model: the bundled engine serves.
        if config.gateway.upstreams.is_empty() || flags.engine_model.is_some() {
            config = config.with_engine(flags.engine_model.clone());
        }
        Ok(config)
    }
}
