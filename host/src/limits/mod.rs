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
//! router's executor moves on to a fallback, ingress answers 401/429.

pub mod gcra;
mod keys;

use std::sync::Arc;
use std::time::Duration;

pub use gcra::{Decision, Mode, Rate};
pub use keys::{ClientKey, KeyConfig, KeyRing};

use crate::shared::SharedRedis;

/// One rate limit: a named bucket, local or shared through Redis.
pub struct Limiter {
    /// The Redis key suffix and the metric label, e.g. `upstream:oa:rpm`.
    scope: String,
    rate: Rate,
    local: gcra::Gcra,
    redis: Option<Arc<SharedRedis>>,
}

impl Limiter {
    pub fn new(scope: impl Into<String>, rate: Rate, redis: Option<Arc<SharedRedis>>) -> Limiter {
        Limiter { scope: scope.into(), rate, local: gcra::Gcra::default(), redis }
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Asks the bucket for `cost` units, accepting a wait of up to `max_wait`.
    pub async fn decide(&self, cost: f64, max_wait: Duration, mode: Mode) -> Decision {
        let max_wait_us = max_wait.as_secs_f64() * 1e6;
        if let Some(redis) = &self.redis {
            let key = redis.key(&format!("limit:{}", self.scope));
            let rate = self.rate;
            let shared: Option<(i64, i64)> = redis
                .run("limit", |mut conn| async move {
                    script()
                        .key(key)
                        .arg(rate.interval_us)
                        .arg(rate.capacity_us)
                        .arg(cost)
                        .arg(max_wait_us)
                        .arg(mode.as_str())
                        .invoke_async(&mut conn)
                        .await
                })
                .await;
            if let Some((allowed, us)) = shared {
                let us = us.max(0) as f64;
                return if allowed == 1 {
                    Decision::Allowed { wait_us: us }
                } else {
                    Decision::Refused { retry_after_us: us }
                };
            }
        }
        self.local.decide(self.rate, cost, max_wait_us, mode)
    }

    /// Takes `cost` units, sleeping through an allowed wait; `Err` carries
    /// the time until the units would be free.
    pub async fn acquire(&self, cost: f64, max_wait: Duration, mode: Mode) -> Result<(), Duration> {
        match self.decide(cost, max_wait, mode).await {
            Decision::Allowed { wait_us } => {
                if wait_us > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(wait_us / 1e6)).await;
                }
                Ok(())
            }
            Decision::Refused { retry_after_us } => {
                metrics::counter!(crate::telemetry::RATE_LIMITED, "scope" => self.scope.clone()).increment(1);
                Err(Duration::from_secs_f64(retry_after_us / 1e6))
            }
        }
    }

    /// Charges units used after the fact (tokens), in the background.
    pub fn charge(self: &Arc<Self>, cost: f64) {
        if cost <= 0.0 {
            return;
        }
        let me = self.clone();
        spawn(async move {
            me.decide(cost, Duration::ZERO, Mode::Force).await;
        });
    }
}

/// Admits a client request: with `[[keys]]` configured, the caller must
/// present a known key within its limits (401 / 429 otherwise). Notes the
/// client and the `x-sluice-user` header in the request's trace. Health,
/// metrics and admin paths are not API calls and pass.
pub async fn admit(
    gw: &crate::gateway::Gateway,
    trace: &mut crate::routing::Trace,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<(), crate::error::GatewayError> {
    if matches!(path, "/health" | "/metrics") {
        return Ok(());
    }
    if path.starts_with("/admin/") || path == "/admin" {
        return gw.keys.admit_admin(headers);
    }
    trace.user_header = headers.get("x-sluice-user").and_then(|v| v.to_str().ok()).map(str::to_owned);
    trace.client = gw.keys.admit(headers).await?;
    Ok(())
}

/// The GCRA script, hashed once (sent with EVALSHA, loaded on first use).
fn script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(gcra::SCRIPT))
}

/// Runs `f` on the current Tokio runtime, if there is one.
pub(crate) fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(f);
    }
}

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
