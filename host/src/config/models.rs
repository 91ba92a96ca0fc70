//! `[[models]]` and `[routing]`, checked into `models::ModelConfig` and
//! `routing::RoutingConfig` (arms only; each upstream's policy comes from
//! `upstreams.rs`). Both refer to other sections by name, so each name is
//! checked against them here.

use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{RawModel, RawRouting};
use crate::models::ModelConfig;
use crate::routing::Arm;
use crate::upstream::UpstreamConfig;

impl Checker<'_> {
    pub(super) fn models(
        &self,
        raw: &[Spanned<RawModel>],
        upstreams: &[UpstreamConfig],
    ) -> Result<Vec<ModelConfig>, ConfigError> {
        let mut models: Vec<ModelConfig> = Vec::new();
        for spanned in raw {
            models.push(self.model(spanned, &models, upstreams)?);
        }
        for (spanned, m) in raw.iter().zip(&models) {
            if let Some(missing) = m.fallbacks.iter().find(|f| !models.iter().any(|x| x.name == **f)) {
                return self.err(
                    &format!("models[{}].fallbacks", m.name),
                    Some(spanned.span()),
                    format!("no `[[models]]` is named `{missing}`"),
                );
            }
        }
        Ok(models)
    }

    fn model(
        &self,
        spanned: &Spanned<RawModel>,
        seen: &[ModelConfig],
        upstreams: &[UpstreamConfig],
    ) -> Result<ModelConfig, ConfigError> {
        let m = spanned.get_ref();
        let key = format!("models[{}]", m.name);
        if m.name.is_empty() {
            return self.err("models.name", Some(spanned.span()), "must not be empty");
        }
        if seen.iter().any(|x| x.name == m.name) {
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
        Ok(ModelConfig {
            name: m.name.clone(),
            upstream: m.upstream.get_ref().clone(),
            upstream_model: m.upstream_model.clone().unwrap_or_else(|| m.name.clone()),
            input_price_per_mtok: m.input_price_per_mtok,
            output_price_per_mtok: m.output_price_per_mtok,
            context_window: m.context_window,
            tier: m.tier.clone(),
            fallbacks: m.fallbacks.clone(),
        })
    }

    /// `[[routing.arms]]`.
    pub(super) fn arms(&self, raw: Option<&RawRouting>, models: &[ModelConfig]) -> Result<Vec<Arm>, ConfigError> {
        let mut arms: Vec<Arm> = Vec::new();
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
            arms.push(Arm {
                name: a.name.clone(),
                weight: a.weight.unwrap_or(1),
                model: a.model.as_ref().map(|m| m.get_ref().clone()),
                route: a.route.unwrap_or(true),
            });
        }
        if !arms.is_empty() && arms.iter().all(|a| a.weight == 0) {
            return self.err("routing.arms", None, "at least one arm needs a weight above 0");
        }
        Ok(arms)
    }
}
