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

/// How an upstream's failure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The upstream is down or broken: a connection error, a timeout, an
    /// unreadable answer, a 5xx. Counts against its circuit breaker.
    Fault,
    /// A 429: the upstream is alive, only busy.
    Throttled,
}

impl UpstreamFailure {
    /// How `error` counts against the upstream (`None`: it does not — a
    /// 4xx answer, or a local refusal such as busy, rate-limited or an open
    /// circuit). Exactly these failures are worth another try of the same
    /// upstream.
    pub fn of(error: &GatewayError) -> Option<UpstreamFailure> {
        match error {
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. } => Some(UpstreamFailure::Fault),
            GatewayError::UpstreamStatus { status, .. } if status.is_server_error() => Some(UpstreamFailure::Fault),
            GatewayError::UpstreamStatus { status, .. } if status.as_u16() == 429 => Some(UpstreamFailure::Throttled),
            _ => None,
        }
    }
}

/// Whether the same upstream is worth another try after `error`: 429, 5xx,
/// connection errors, timeouts and unreadable answers. Local refusals (busy,
/// rate-limited, circuit open) are not: they go to the next fallback.
pub fn worth_retrying(error: &GatewayError) -> bool {
    UpstreamFailure::of(error).is_some()
}

/// Whether a failed model should give way to the plan's next model: what
/// is worth retrying, and the local refusals.
pub fn falls_back(error: &GatewayError) -> bool {
    worth_retrying(error)
        || matches!(
            error,
            GatewayError::UpstreamBusy { .. } | GatewayError::RateLimited { .. } | GatewayError::CircuitOpen { .. }
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(crate::upstream::http::parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(crate::upstream::http::parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(crate::upstream::http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(crate::upstream::http::parse_retry_after("soon"), None);
        assert_eq!(crate::upstream::http::parse_retry_after("1e20"), Some(Duration::MAX), "saturates");
        assert_eq!(crate::upstream::http::parse_retry_after("inf"), None);
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(100), max_wait: Duration::from_millis(300) };
        let e = GatewayError::UpstreamUnreachable { upstream: "u".into(), detail: "refused".into() };
        for retry in 1..=5 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_millis(300));
            assert!(p.wait(retry, &e) <= cap);
        }
    }
}
