//! `[[keys]]`, checked into `limits::KeyConfig`: distinct names and
//! secrets (`${VAR}` expanded), limits above zero, a known budget period.

use std::time::Duration;

use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawKey;
use crate::limits::KeyConfig;

impl Checker<'_> {
    pub(super) fn keys(&self, raw: &[Spanned<RawKey>]) -> Result<Vec<KeyConfig>, ConfigError> {
        let mut keys = Vec::new();
        for spanned in raw {
            keys.push(self.key(spanned, &keys)?);
        }
        Ok(keys)
    }

    fn key(&self, spanned: &Spanned<RawKey>, seen: &[KeyConfig]) -> Result<KeyConfig, ConfigError> {
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
        if k.tenant.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return self.err(&format!("{name}.tenant"), Some(spanned.span()), "must not be empty");
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
        Ok(KeyConfig {
            name: k.name.clone(),
            key: secret,
            rpm: k.rpm,
            tpm: k.tpm,
            budget_usd: k.budget_usd,
            budget_period,
            admin: k.admin.unwrap_or(false),
            metrics: k.metrics.unwrap_or(false),
            pin: k.pin.unwrap_or(false),
            tenant: k.tenant.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw::RawConfig;

    #[test]
    fn raw_secrets_do_not_show_in_debug_output() {
        let text = "[redis]\nurl = \"redis://u:hunter2@h:6379\"\n[upstreams.a]\nkind = \"openai\"\n\
                    base_url = \"http://x\"\napi_key = \"sk-hunter2\"\n[[keys]]\nname = \"k\"\nkey = \"sk-hunter2-client\"\n";
        let raw: RawConfig = toml::from_str(text).expect("parses");
        let debug = format!("{raw:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("u:***@h"), "{debug}");
    }
}
