//! Spend budgets: USD per period for a client key, counted locally or in
//! Redis, and what a request holds of one ([`BudgetHold`]).
//!
//! A budget is held before it is spent: a request reserves its estimated
//! cost when its model is known (refused once spend and reservations reach
//! the budget; in Redis the check and the reservation are one script, so
//! replicas cannot both pass it) and settles the difference when it ends.
//! This module does not estimate costs (the pipeline does) or answer
//! refusals (ingress does).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::limiter::spawn;
use crate::redis_client::SharedRedis;

/// What a request holds of its key's spend budget: the estimate reserved,
/// in the budget period it was reserved in (and is settled into). Clones
/// share one hold (a stream's record holds a copy of its request's
/// context); it is settled once, by [`ClientKey::charge`]. A hold dropped
/// unsettled (the client went away before a whole answer) keeps the
/// prompt's cost charged and gives the rest back.
#[derive(Clone, Default)]
pub struct BudgetHold {
    pub(super) held: Option<Arc<Held>>,
}

pub(super) struct Held {
    pub(super) budget: Arc<Budget>,
    pub(super) name: String,
    pub(super) window: u64,
    pub(super) state: Mutex<HeldState>,
}

/// Where a hold stands.
#[derive(Clone, Copy)]
pub(super) struct HeldState {
    /// USD reserved.
    pub(super) reserved: f64,
    /// USD of the prompt alone: charged even if the client goes away.
    pub(super) prompt: f64,
    /// Settled against the real cost.
    pub(super) settled: bool,
}

impl BudgetHold {
    /// USD reserved.
    pub fn usd(&self) -> f64 {
        self.held.as_ref().and_then(|h| h.state.lock().ok().map(|s| s.reserved)).unwrap_or(0.0)
    }

    /// Settles the hold against the request's `cost`: `false` when there is
    /// no hold (or it was settled already).
    pub(super) fn settle(&self, cost: f64) -> bool {
        let Some(held) = &self.held else { return false };
        let Ok(mut state) = held.state.lock() else { return false };
        if state.settled {
            return true;
        }
        state.settled = true;
        let delta = cost - state.reserved;
        drop(state);
        if delta != 0.0 {
            held.budget.add(&held.name, held.window, delta);
        }
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Ok(state) = self.state.lock() else { return };
        let HeldState { reserved, prompt, settled } = *state;
        drop(state);
        if !settled && reserved > prompt {
            self.budget.add(&self.name, self.window, prompt - reserved);
        }
    }
}

/// Checks a budget and reserves in one step, in Redis: KEYS[1] the spend
/// key; ARGV: limit, amount, ttl (0: none). Returns 1 when reserved, 0
/// when the budget is already spent (spend and reservations).
const RESERVE_SCRIPT: &str = r"
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent >= tonumber(ARGV[1]) then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// A spend budget: USD per period, counted locally or in Redis.
pub(super) struct Budget {
    pub(super) limit_usd: f64,
    pub(super) period: Option<Duration>,
    pub(super) redis: Option<Arc<SharedRedis>>,
    /// Spend of the current period on this replica: (period index, USD).
    pub(super) local: Mutex<(u64, f64)>,
}

impl Budget {
    pub(super) fn window(&self) -> u64 {
        match self.period {
            Some(p) if !p.is_zero() => crate::upstream::unix_now() / p.as_secs().max(1),
            _ => 0,
        }
    }

    pub(super) fn local_spent(&self, window: u64) -> f64 {
        match self.local.lock() {
            Ok(g) if g.0 == window => g.1,
            _ => 0.0,
        }
    }

    pub(super) async fn spent(&self, name: &str) -> f64 {
        let window = self.window();
        if let Some(redis) = &self.redis {
            let key = redis.key(&format!("spend:{name}:{window}"));
            let got: Option<Option<f64>> =
                redis.run("budget", |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await }).await;
            if let Some(v) = got {
                return v.unwrap_or(0.0);
            }
        }
        self.local_spent(window)
    }

    pub(super) fn ttl(&self) -> u64 {
        self.period.map_or(0, |p| p.as_secs().saturating_add(60))
    }

    /// Checks the budget is not spent and reserves `usd` of it, atomically
    /// (in Redis when shared, else under the local lock). `false`: spent.
    pub(super) async fn reserve(&self, name: &str, window: u64, usd: f64) -> bool {
        if let Some(redis) = &self.redis {
            let key = redis.key(&format!("spend:{name}:{window}"));
            let (limit, ttl) = (self.limit_usd, self.ttl());
            let got: Option<i64> = redis
                .run("budget", |mut c| async move {
                    reserve_script().key(key).arg(limit).arg(usd).arg(ttl).invoke_async(&mut c).await
                })
                .await;
            if let Some(reserved) = got {
                if reserved == 1 {
                    self.add_local(window, usd);
                }
                return reserved == 1;
            }
        }
        let Ok(mut g) = self.local.lock() else { return true };
        if g.0 != window {
            *g = (window, 0.0);
        }
        if g.1 >= self.limit_usd {
            return false;
        }
        g.1 += usd;
        true
    }

    /// Adds to the local spend of `window` (a past period's settlement
    /// no longer counts locally).
    pub(super) fn add_local(&self, window: u64, usd: f64) {
        if let Ok(mut g) = self.local.lock() {
            if window > g.0 {
                *g = (window, 0.0);
            }
            if window == g.0 {
                g.1 = (g.1 + usd).max(0.0);
            }
        }
    }

    /// Adds `usd` (negative: gives back) to the spend of period `window`.
    pub(super) fn add(self: &Arc<Self>, name: &str, window: u64, usd: f64) {
        self.add_local(window, usd);
        if let Some(redis) = self.redis.clone() {
            let key = redis.key(&format!("spend:{name}:{window}"));
            let ttl = self.ttl();
            spawn(async move {
                let _: Option<()> = redis
                    .run("budget", |mut c| async move {
                        let mut pipe = redis::pipe();
                        pipe.cmd("INCRBYFLOAT").arg(&key).arg(usd).ignore();
                        if ttl > 0 {
                            pipe.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
                        }
                        pipe.query_async(&mut c).await
                    })
                    .await;
            });
        }
    }
}

/// The budget reservation script, hashed once.
fn reserve_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(RESERVE_SCRIPT))
}
