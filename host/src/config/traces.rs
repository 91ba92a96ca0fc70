//! `[tracing]`, checked into `traces::TracingConfig`: an http(s) endpoint,
//! a sample ratio in [0, 1], header names and values HTTP accepts.

use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawTracing;
use crate::traces::{DEFAULT_ENDPOINT, TracingConfig};

impl Checker<'_> {
    /// `None` when the section turns tracing off (`enabled = false`).
    pub(super) fn tracing(&self, raw: &RawTracing) -> Result<Option<TracingConfig>, ConfigError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let mut config = TracingConfig::new(DEFAULT_ENDPOINT);
        if let Some(endpoint) = &raw.endpoint {
            let url = endpoint.get_ref().trim();
            let parsed = url.parse::<http::Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some_and(|a| !a.host().is_empty())
            });
            if parsed.is_none() {
                return self.err(
                    "tracing.endpoint",
                    Some(endpoint.span()),
                    format!("`{url}` is not an http:// or https:// URL such as {DEFAULT_ENDPOINT}"),
                );
            }
            config.endpoint = url.to_owned();
        }
        if let Some(name) = &raw.service_name {
            if name.trim().is_empty() {
                return self.err("tracing.service_name", None, "must not be empty");
            }
            config.service_name.clone_from(name);
        }
        if let Some(ratio) = &raw.sample_ratio {
            let value = *ratio.get_ref();
            if !(0.0..=1.0).contains(&value) {
                return self.err("tracing.sample_ratio", Some(ratio.span()), "must be between 0 and 1");
            }
            config.sample_ratio = value;
        }
        if let Some(ms) = &raw.export_timeout_ms {
            if *ms.get_ref() == 0 {
                return self.err("tracing.export_timeout_ms", Some(ms.span()), "must be greater than 0");
            }
            config.export_timeout = Duration::from_millis(*ms.get_ref());
        }
        for (name, value) in &raw.headers {
            let key = format!("tracing.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return self.err(&key, Some(value.span()), "not an HTTP header name");
            }
            let expanded = self.expand_env(&key, value)?;
            if http::HeaderValue::from_str(&expanded).is_err() {
                // The value may be a secret: not repeated.
                return self.err(&key, Some(value.span()), "not a valid HTTP header value");
            }
            config.headers.push((name.clone(), expanded));
        }
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;

    fn parse(text: &str) -> Result<Config, super::super::ConfigError> {
        Config::parse(text, "t.toml", &|v| (v == "TOKEN").then(|| "s3cret".to_owned()))
    }

    #[test]
    fn tracing_is_off_unless_configured() {
        assert!(parse("").expect("valid").gateway.tracing.is_none());
        assert!(parse("[tracing]\nenabled = false\n").expect("valid").gateway.tracing.is_none());
        let on = parse("[tracing]\n").expect("valid").gateway.tracing.expect("on");
        assert_eq!(on.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!((on.service_name.as_str(), on.sample_ratio), ("sluice", 1.0));
        assert_eq!(on.export_timeout, Duration::from_secs(10));
    }

    #[test]
    fn tracing_settings_parse() {
        let text = "[tracing]\nendpoint = \"https://otel.internal:4318/v1/traces\"\nservice_name = \"edge\"\nsample_ratio = 0.25\nexport_timeout_ms = 500\nheaders = { authorization = \"Bearer ${TOKEN}\" }\n";
        let cfg = parse(text).expect("valid").gateway.tracing.expect("on");
        assert_eq!(cfg.endpoint, "https://otel.internal:4318/v1/traces");
        assert_eq!((cfg.service_name.as_str(), cfg.sample_ratio), ("edge", 0.25));
        assert_eq!(cfg.export_timeout, Duration::from_millis(500));
        assert_eq!(cfg.headers, [("authorization".to_owned(), "Bearer s3cret".to_owned())]);
        assert!(!format!("{cfg:?}").contains("s3cret"), "{cfg:?}");
    }

    #[test]
    fn tracing_errors_name_key_and_line() {
        for (body, key) in [
            ("endpoint = \"127.0.0.1:4318\"", "tracing.endpoint"),
            ("endpoint = \"grpc://collector:4317\"", "tracing.endpoint"),
            ("sample_ratio = 1.5", "tracing.sample_ratio"),
            ("sample_ratio = -0.1", "tracing.sample_ratio"),
            ("sample_ratio = nan", "tracing.sample_ratio"),
            ("export_timeout_ms = 0", "tracing.export_timeout_ms"),
            ("headers = { \"bad name\" = \"x\" }", "tracing.headers.bad name"),
            ("headers = { authorization = \"${NOPE}\" }", "tracing.headers.authorization"),
        ] {
            let e = parse(&format!("[tracing]\n{body}\n")).expect_err(body);
            assert_eq!((e.key.as_str(), e.location.as_str()), (key, ":2"), "{body}: {e}");
        }
        let e = parse("[tracing]\nheaders = { authorization = \"a\\nb\" }\n").expect_err("bad value");
        assert!(!e.to_string().contains("a\nb"), "{e}");
        let e = parse("[tracing]\nsampling = 1\n").expect_err("unknown key");
        assert_eq!(e.location, ":2");
    }
}
