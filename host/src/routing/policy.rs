//! [`UpstreamPolicy`]: what the gateway does for one upstream when it fails
//! or is busy — retries with back-off, its circuit breaker, its request and
//! token budgets. `crate::config` fills it from the resilience keys of an
//! `[upstreams.NAME]` section; the upstream itself (`crate::upstream`) knows
//! nothing of it.

use super::breaker::BreakerConfig;
use super::retry::RetryPolicy;

/// One upstream's resilience settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamPolicy {
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Requests per minute; `None`: unlimited.
    pub rpm: Option<u64>,
    /// Tokens per minute; `None`: unlimited.
    pub tpm: Option<u64>,
}
