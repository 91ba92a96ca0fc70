//! Rate limits and budgets: per-upstream RPM/TPM buckets and the clients'
//! virtual API keys (`[[keys]]`) with their own RPM, TPM and spend budget.
//!
//! A [`Limiter`] is a GCRA bucket ([`gcra`]); with Redis configured it lives
//! there, so replicas share one limit, and the bucket falls back to its
//! in-process copy whenever Redis does not answer within its deadline (a
//! Redis outage loosens a shared limit to a per-replica one; it never fails
//! a request). A request that would exceed a limit waits, when the wait fits
//! in the caller's bound, or is refused with the time until it would fit.
//!
//! This module does not decide what happens to a refused request: the
//! pipeline's call loop moves on to a fallback, ingress answers 401/429.

mod budget;
pub mod gcra;
mod keys;
mod limiter;

use std::sync::Arc;
use std::time::Duration;

pub use budget::BudgetHold;
pub use gcra::{Decision, Mode, Rate};
pub use keys::{ClientKey, KeyConfig, KeyRing};
pub use limiter::Limiter;

use crate::redis_client::SharedRedis;

/// An upstream's request and token budgets.
#[derive(Default)]
pub struct UpstreamLimits {
    pub rpm: Option<Arc<Limiter>>,
    pub tpm: Option<Arc<Limiter>>,
}

impl UpstreamLimits {
    pub fn new(name: &str, rpm: Option<u64>, tpm: Option<u64>, redis: Option<Arc<SharedRedis>>) -> UpstreamLimits {
        UpstreamLimits {
            rpm: rpm
                .map(|n| Arc::new(Limiter::new(format!("upstream:{name}:rpm"), Rate::per_minute(n), redis.clone()))),
            tpm: tpm.map(|n| Arc::new(Limiter::new(format!("upstream:{name}:tpm"), Rate::per_minute(n), redis))),
        }
    }

    /// Admits one request (RPM), and checks the token budget is not spent
    /// (TPM; tokens are charged when the answer's usage is known).
    pub async fn admit(&self, max_wait: Duration) -> Result<(), Duration> {
        if let Some(rpm) = &self.rpm {
            rpm.acquire(1.0, max_wait, Mode::Take).await?;
        }
        if let Some(tpm) = &self.tpm {
            tpm.acquire(0.0, max_wait, Mode::Peek).await?;
        }
        Ok(())
    }

    pub fn charge_tokens(&self, tokens: u64) {
        if let Some(tpm) = &self.tpm {
            tpm.charge(tokens as f64);
        }
    }
}
