//! `[upstreams.NAME]`, checked into `upstream::UpstreamConfig` (where and
//! how the upstream is reached) and `routing::UpstreamPolicy` (its retries,
//! breaker and budgets), which the same section sets.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawUpstream;
use crate::routing::UpstreamPolicy;
use crate::upstream::{UpstreamConfig, UpstreamKind};

impl Checker<'_> {
    pub(super) fn upstream(
        &self,
        name: &str,
        spanned: &Spanned<RawUpstream>,
    ) -> Result<(UpstreamConfig, UpstreamPolicy), ConfigError> {
        let u = spanned.get_ref();
        let key = |field: &str| format!("upstreams.{name}.{field}");
        let kind = self.upstream_kind(&key("kind"), &u.kind)?;
        let base_url = self.base_url(&key("base_url"), spanned, kind)?;
        let mut out = UpstreamConfig::new(name, kind, &base_url);
        if let Some(k) = &u.api_key {
            out.api_key = Some(self.expand_env(&key("api_key"), k)?);
        }
        out.ca_cert = u.ca_cert.as_ref().map(PathBuf::from);
        let ms = Duration::from_millis;
        for (value, target) in [
            (u.connect_timeout_ms, &mut out.connect_timeout),
            (u.first_byte_timeout_ms, &mut out.first_byte_timeout),
            (u.total_timeout_ms, &mut out.total_timeout),
            (u.queue_timeout_ms, &mut out.queue_timeout),
        ] {
            if let Some(v) = value {
                *target = ms(v);
            }
        }
        if let Some(v) = u.max_in_flight {
            if v == 0 {
                return self.err(&key("max_in_flight"), Some(spanned.span()), "must be greater than 0");
            }
            out.max_in_flight = v;
        }
        let policy = self.policy(name, spanned)?;
        out.passthrough = u.passthrough.unwrap_or(false);
        out.list_models = u.list_models.unwrap_or(out.passthrough);
        if let Some(v) = u.default_max_tokens {
            if v == 0 {
                return self.err(&key("default_max_tokens"), Some(spanned.span()), "must be greater than 0");
            }
            out.default_max_tokens = v;
        }
        if let Some(v) = &u.anthropic_version {
            out.anthropic_version = v.clone();
        }
        self.engine_settings(name, spanned, &mut out)?;
        Ok((out, policy))
    }

    fn upstream_kind(&self, key: &str, kind: &Spanned<String>) -> Result<UpstreamKind, ConfigError> {
        match kind.get_ref().as_str() {
            "openai" => Ok(UpstreamKind::OpenAi),
            "anthropic" => Ok(UpstreamKind::Anthropic),
            "engine" => Ok(UpstreamKind::Engine),
            other => {
                self.err(key, Some(kind.span()), format!("`{other}` is not one of `openai`, `anthropic`, `engine`"))
            }
        }
    }

    fn base_url(&self, key: &str, spanned: &Spanned<RawUpstream>, kind: UpstreamKind) -> Result<String, ConfigError> {
        match (&spanned.get_ref().base_url, kind) {
            (Some(url), _) => {
                let s = url.get_ref();
                match s.parse::<http::Uri>() {
                    Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
                        Ok(s.clone())
                    }
                    _ => self.err(key, Some(url.span()), format!("`{s}` is not an http:// or https:// URL")),
                }
            }
            (None, UpstreamKind::Engine) => Ok(String::new()),
            (None, _) => self.err(key, Some(spanned.span()), "is required for this kind"),
        }
    }

    /// The bundled engine's keys, refused on other kinds.
    fn engine_settings(
        &self,
        name: &str,
        spanned: &Spanned<RawUpstream>,
        out: &mut UpstreamConfig,
    ) -> Result<(), ConfigError> {
        let u = spanned.get_ref();
        let key = |field: &str| format!("upstreams.{name}.{field}");
        let engine_only = [
            ("model_path", u.model_path.is_some()),
            ("embedding_model_dir", u.embedding_model_dir.is_some()),
            ("kv_blocks", u.kv_blocks.is_some()),
            ("max_batch", u.max_batch.is_some()),
            ("client_share", u.client_share.is_some()),
        ];
        if let Some((field, _)) = engine_only.iter().find(|(_, set)| *set).filter(|_| out.kind != UpstreamKind::Engine)
        {
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
        if let Some(share) = u.client_share {
            if !(share > 0.0 && share <= 1.0) {
                return self.err(&key("client_share"), Some(spanned.span()), "must be greater than 0 and at most 1");
            }
            out.engine.client_share = share;
        }
        Ok(())
    }

    /// Retries, breaker and budgets.
    fn policy(&self, name: &str, spanned: &Spanned<RawUpstream>) -> Result<UpstreamPolicy, ConfigError> {
        let u = spanned.get_ref();
        let ms = Duration::from_millis;
        let mut policy = UpstreamPolicy::default();
        if let Some(v) = u.max_retries {
            policy.retry.max_retries = v;
        }
        if let Some(v) = u.retry_base_ms {
            policy.retry.base = ms(v);
        }
        if let Some(v) = u.retry_max_wait_ms {
            policy.retry.max_wait = ms(v);
        }
        if let Some(v) = u.breaker_failures {
            policy.breaker.failures = v;
        }
        if let Some(v) = u.breaker_open_ms {
            policy.breaker.open_for = ms(v);
        }
        for (field, v) in [("rpm", u.rpm), ("tpm", u.tpm)] {
            if v == Some(0) {
                return self.err(&format!("upstreams.{name}.{field}"), Some(spanned.span()), "must be greater than 0");
            }
        }
        policy.rpm = u.rpm;
        policy.tpm = u.tpm;
        Ok(policy)
    }
}
