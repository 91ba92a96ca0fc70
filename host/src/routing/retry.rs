//! Retries of one upstream: which failures are worth another try, and how
//! long to wait first (exponential back-off with full jitter, or the
//! upstream's own `Retry-After`).

use std::time::Duration;

use crate::error::GatewayError;

/// `[upstreams.NAME]` retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further tries of the same upstream after a retryable failure.
    pub max_retries: u32,
    /// The first back-off; each retry doubles it (full jitter).
    pub base: Duration,
    /// The longest wait before a retry, `Retry-After` included: a longer
    /// one moves on to the next fallback at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 2, base: Duration::from_millis(100), max_wait: Duration::from_secs(2) }
    }
}

/// Whether the same upstream is worth another try after `error`: 429, 5xx,
/// connection errors, timeouts and unreadable answers. Local refusals (busy,
/// rate-limited, circuit open) are not: they go to the next fallback.
pub fn worth_retrying(error: &GatewayError) -> bool {
    match error {
        GatewayError::UpstreamUnreachable { .. }
        | GatewayError::UpstreamTimeout { .. }
        | GatewayError::UpstreamProtocol { .. } => true,
        GatewayError::UpstreamStatus { status, .. } => status.is_server_error() || status.as_u16() == 429,
        _ => false,
    }
}

/// Whether a failure counts against the upstream's circuit breaker.
pub fn is_upstream_fault(error: &GatewayError) -> bool {
    match error {
        GatewayError::UpstreamUnreachable { .. }
        | GatewayError::UpstreamTimeout { .. }
        | GatewayError::UpstreamProtocol { .. } => true,
        GatewayError::UpstreamStatus { status, .. } => status.is_server_error(),
        _ => false,
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): the upstream's
    /// `Retry-After` when it sent one, else a random time in
    /// `[0, base * 2^(retry-1)]`, capped by `max_wait`.
    pub fn wait(&self, retry: u32, error: &GatewayError) -> Duration {
        if let GatewayError::UpstreamStatus { retry_after: Some(after), .. } = error {
            return *after;
        }
        let ceiling = self.base.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(self.max_wait);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Parses a `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(100), max_wait: Duration::from_millis(300) };
        let e = GatewayError::UpstreamUnreachable { upstream: "u".into(), detail: "refused".into() };
        for retry in 1..=5 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_millis(300));
            assert!(p.wait(retry, &e) <= cap);
        }
    }
}
