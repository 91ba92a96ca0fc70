//! [`Limiter`]: one named rate limit, a GCRA bucket kept in Redis when
//! replicas share it and in-process otherwise (and whenever Redis does not
//! answer in time). It decides, waits or refuses; what a refusal means is
//! its caller's business.

use std::sync::Arc;
use std::time::Duration;

use super::gcra::{self, Decision, Mode, Rate};
use crate::redis_client::SharedRedis;

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
                    tokio::time::sleep(micros(wait_us)).await;
                }
                Ok(())
            }
            Decision::Refused { retry_after_us } => {
                metrics::counter!(crate::telemetry::RATE_LIMITED, "scope" => self.scope.clone()).increment(1);
                Err(micros(retry_after_us))
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

/// `us` microseconds as a `Duration`, saturating (a bucket deep in debt
/// after a huge charge must not panic the conversion).
fn micros(us: f64) -> Duration {
    Duration::try_from_secs_f64(us.max(0.0) / 1e6).unwrap_or(Duration::MAX)
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
