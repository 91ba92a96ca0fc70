//! [`Checker`]: what every section check shares — the file's text and
//! name for errors with key and line, and `${VAR}` expansion. The checks
//! themselves are `impl Checker` blocks in one file per section
//! (`server.rs`, `upstreams.rs`, `models.rs`, `keys.rs`, `redis.rs`,
//! `cache.rs`, `plugins.rs`, `traces.rs`).

use toml::Spanned;

use super::error::{ConfigError, line_of};

/// Checks raw sections into the types of the modules that use them.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Checker<'_> {
    /// An error at `key`, on the line of `span` when known.
    pub(super) fn err<T>(
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

    /// Replaces each `${VAR}` with the variable's value; a missing variable is an error.
    pub(super) fn expand_env(&self, key: &str, value: &Spanned<String>) -> Result<String, ConfigError> {
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
