//! The gateway's one error type and the one place errors become HTTP
//! responses, in the error shape of the API the client spoke.
//!
//! `GatewayError::into_response` is the only function that turns an error
//! into a response; handlers return `Result<Response, GatewayError>`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{Body, full};

/// The longest `Retry-After` a client is told, in seconds (a day).
const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// Which API's conventions a response must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFlavor {
    OpenAi,
    Anthropic,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("The model `{0}` does not exist or is not served by this gateway")]
    ModelNotFound(String),
    #[error("The request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client did not send its whole request body in time.
    #[error("The request body was not received within {after:?}")]
    RequestTimeout { after: Duration },
    #[error("No route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("Upstream `{upstream}` could not be reached: {detail}")]
    UpstreamUnreachable { upstream: String, detail: String },
    #[error("Upstream `{upstream}` timed out after {after:?} waiting for {phase}")]
    UpstreamTimeout { upstream: String, phase: &'static str, after: Duration },
    /// The upstream answered with an error status; its body is kept so a 4xx
    /// can be passed through.
    #[error("Upstream `{upstream}` answered {status}")]
    UpstreamStatus {
        upstream: String,
        upstream_api: ApiFlavor,
        status: StatusCode,
        body: Bytes,
        /// The upstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    #[error("Upstream `{upstream}` sent a response Sluice could not read: {detail}")]
    UpstreamProtocol { upstream: String, detail: String },
    #[error("Upstream `{upstream}` is at its limit of {limit} requests in flight")]
    UpstreamBusy { upstream: String, limit: usize },
    #[error("Upstream `{upstream}` does not support {what}")]
    Unsupported { upstream: String, what: &'static str },
    /// A client key is missing or unknown while `[[keys]]` are configured.
    #[error("{0}")]
    Unauthorized(String),
    /// A known client key may not do this (admin endpoints need an admin key).
    #[error("{0}")]
    Forbidden(String),
    /// A request or token budget is spent for now (client key or upstream).
    #[error("Rate limit of {scope} reached; retry after {retry_after:?}")]
    RateLimited { scope: String, retry_after: Duration },
    /// A client key's spend budget is used up for its period.
    #[error("The spend budget of key `{key}` (${budget_usd}) is used up")]
    BudgetExceeded { key: String, budget_usd: f64 },
    /// The upstream's circuit breaker is open after repeated failures.
    #[error("Upstream `{upstream}` is failing; its circuit is open for another {retry_after:?}")]
    CircuitOpen { upstream: String, retry_after: Duration },
    /// A stage plugin refused the request (policy) or failed closed (fault).
    #[error("{0}")]
    Plugin(#[from] crate::stage::StageError),
    #[error("The response cache is not enabled (configure [cache] or pass --cache)")]
    CacheDisabled,
    #[error("Internal error: {0}")]
    Internal(String),
}

/// A request the wire format could not translate: a 400 naming the field.
impl From<crate::api::ApiError> for GatewayError {
    fn from(e: crate::api::ApiError) -> Self {
        match e {
            crate::api::ApiError::InvalidRequest { message, param } => GatewayError::InvalidRequest { message, param },
        }
    }
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::InvalidRequest { message: message.into(), param: param.map(str::to_owned) }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound { .. } | GatewayError::CacheDisabled => {
                StatusCode::NOT_FOUND
            }
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // The upstream refused the gateway's own key: our fault, not the client's.
            GatewayError::UpstreamStatus { .. } if self.upstream_refused_credentials() => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamStatus { status, .. } if status.is_client_error() => *status,
            GatewayError::UpstreamStatus { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unsupported { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } | GatewayError::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Plugin(e) if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Plugin(e) if e.is_fault() => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Plugin(_) => StatusCode::BAD_REQUEST,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::RequestTimeout { .. } => "request_timeout",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::UpstreamUnreachable { .. } => "upstream_unreachable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol",
            GatewayError::UpstreamBusy { .. } => "upstream_busy",
            GatewayError::Unsupported { .. } => "unsupported",
            GatewayError::Unauthorized(_) => "invalid_api_key",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::CircuitOpen { .. } => "circuit_open",
            GatewayError::Plugin(e) if e.is_busy() => "plugin_busy",
            GatewayError::Plugin(e) if e.is_fault() => "plugin_fault",
            GatewayError::Plugin(_) => "plugin_rejected",
            GatewayError::CacheDisabled => "cache_disabled",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// An upstream's 401 or 403: it refused the credentials the gateway sent
    /// (its configured API key), which the client neither chose nor may
    /// see described; answered as a 502 naming the upstream, without the
    /// upstream's body.
    fn upstream_refused_credentials(&self) -> bool {
        matches!(self, GatewayError::UpstreamStatus { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }

    /// When the client may try again, for `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::UpstreamBusy { .. } => Some(Duration::from_secs(1)),
            GatewayError::Plugin(e) if e.is_busy() => Some(Duration::from_secs(1)),
            GatewayError::RateLimited { retry_after, .. } | GatewayError::CircuitOpen { retry_after, .. } => {
                Some(*retry_after)
            }
            GatewayError::UpstreamStatus { retry_after, status, .. } if status.as_u16() == 429 => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            _ => None,
        }
    }

    /// The error as the `error` object of an OpenAI body / Anthropic event.
    fn parts(&self) -> (String, &'static str, &'static str, Option<String>) {
        let message = match self {
            GatewayError::UpstreamStatus { upstream, status, .. } if self.upstream_refused_credentials() => format!(
                "Upstream `{upstream}` refused the gateway's credentials ({status}); the gateway's configuration \
                 for it needs attention"
            ),
            _ => self.to_string(),
        };
        let (openai_type, anthropic_type) = match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT => ("invalid_request_error", "invalid_request_error"),
            StatusCode::NOT_FOUND => ("invalid_request_error", "not_found_error"),
            StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "request_too_large"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limit_error", "rate_limit_error"),
            StatusCode::UNAUTHORIZED => ("authentication_error", "authentication_error"),
            StatusCode::FORBIDDEN => ("permission_error", "permission_error"),
            _ => ("api_error", "api_error"),
        };
        let param = match self {
            GatewayError::InvalidRequest { param, .. } => param.clone(),
            GatewayError::ModelNotFound(_) => Some("model".to_owned()),
            _ => None,
        };
        (message, openai_type, anthropic_type, param)
    }

    /// The error body in `api`'s shape.
    pub fn body_json(&self, api: ApiFlavor) -> Value {
        let (mut message, openai_type, anthropic_type, param) = self.parts();
        if let GatewayError::UpstreamStatus { upstream_api, body, status, .. } = self
            && !self.upstream_refused_credentials()
            && let Some(v) = translate_upstream_error(*upstream_api, api, body)
        {
            if status.is_client_error() {
                return v;
            }
            // A server error is ours to report (502), with the upstream's words.
            let said = v.pointer("/error/message").and_then(Value::as_str).unwrap_or_default();
            message = format!("{message}: {said}");
        }
        match api {
            ApiFlavor::OpenAi => json!({"error": {
                "message": message, "type": openai_type, "param": param, "code": self.kind(),
            }}),
            ApiFlavor::Anthropic => {
                json!({"type": "error", "error": {"type": anthropic_type, "message": message}})
            }
        }
    }

    /// The response for this error: the only place errors become responses.
    pub fn into_response(self, api: ApiFlavor) -> http::Response<Body> {
        let status = self.status();
        let body = match &self {
            // Same API on both sides: the upstream's body goes through untouched.
            GatewayError::UpstreamStatus { upstream_api, body, .. }
                if *upstream_api == api && status.is_client_error() =>
            {
                body.clone()
            }
            _ => Bytes::from(self.body_json(api).to_string()),
        };
        let mut response = http::Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after() {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a storm;
            // at most a day, whatever an upstream asked for.
            let secs = after.as_secs().saturating_add(u64::from(after.subsec_nanos() > 0));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.clamp(1, MAX_RETRY_AFTER_SECS)));
        }
        response
    }
}

/// Re-shapes an upstream's error body for a client of the other API, keeping
/// its message and type.
fn translate_upstream_error(from: ApiFlavor, to: ApiFlavor, body: &Bytes) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let message = err.get("message").and_then(Value::as_str).unwrap_or("upstream error");
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("api_error");
    Some(match (from, to) {
        (ApiFlavor::OpenAi, ApiFlavor::Anthropic) => {
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        (ApiFlavor::Anthropic, ApiFlavor::OpenAi) => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        _ => v.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_api() {
        let e = GatewayError::invalid("bad", Some("messages"));
        let v = e.body_json(ApiFlavor::OpenAi);
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let v = e.body_json(ApiFlavor::Anthropic);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn a_wire_format_error_answers_like_an_invalid_request() {
        let e = GatewayError::from(crate::api::ApiError::invalid("bad image", Some("messages.0.content")));
        let same = GatewayError::invalid("bad image", Some("messages.0.content"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.kind(), same.kind());
        for api in [ApiFlavor::OpenAi, ApiFlavor::Anthropic] {
            assert_eq!(e.body_json(api), same.body_json(api));
        }
    }

    #[test]
    fn upstream_4xx_passes_through_and_5xx_is_502() {
        let e = GatewayError::UpstreamStatus {
            upstream: "u".into(),
            upstream_api: ApiFlavor::OpenAi,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: Bytes::from_static(br#"{"error":{"message":"nope","type":"x"}}"#),
            retry_after: None,
        };
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body_json(ApiFlavor::Anthropic)["error"]["message"], "nope");
        let e = GatewayError::UpstreamStatus {
            upstream: "u".into(),
            upstream_api: ApiFlavor::OpenAi,
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: Bytes::new(),
            retry_after: None,
        };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn an_upstream_refusing_the_gateway_s_key_is_a_502_without_its_body() {
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let e = GatewayError::UpstreamStatus {
                upstream: "oa".into(),
                upstream_api: ApiFlavor::OpenAi,
                status,
                body: Bytes::from_static(br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz"}}"#),
                retry_after: None,
            };
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
            for api in [ApiFlavor::OpenAi, ApiFlavor::Anthropic] {
                let text = e.body_json(api).to_string();
                assert!(text.contains("`oa`") && !text.contains("sk-abc"), "{text}");
            }
            let response = e.into_response(ApiFlavor::OpenAi);
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        }
    }
}
