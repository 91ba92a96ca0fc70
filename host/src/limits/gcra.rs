//! GCRA (the generic cell rate algorithm): a token bucket kept as one
//! number, the theoretical arrival time (TAT) of the next unit. The same
//! arithmetic runs in process ([`Gcra`]) and in Redis ([`SCRIPT`]) so a limit
//! means the same thing on one replica or many.
//!
//! Written here rather than taken from a crate (`governor` is the usual
//! choice) because token budgets are charged after the fact: a response's
//! tokens are known only when it ends, so a bucket must be able to go into
//! debt (`Mode::Force`), and the Redis script must mirror the local rule.

/// What a caller asks of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Take `cost` units, waiting up to `max_wait` for them.
    Take,
    /// Only check that the bucket is not in debt (waiting up to `max_wait`).
    Peek,
    /// Charge `cost` units whatever the state: usage known after the fact.
    Force,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Take => "take",
            Mode::Peek => "peek",
            Mode::Force => "force",
        }
    }
}

/// A limit of `rate` units per `period`, with a bucket holding one period's
/// worth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Microseconds one unit is worth.
    pub interval_us: f64,
    /// Microseconds of units the bucket holds (burst).
    pub capacity_us: f64,
}

impl Rate {
    pub fn per_minute(units: u64) -> Rate {
        let units = units.max(1) as f64;
        Rate { interval_us: 60e6 / units, capacity_us: 60e6 }
    }
}

/// The answer of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Go ahead after waiting this many microseconds (0: at once).
    Allowed { wait_us: f64 },
    /// Refused; a unit is free again in this many microseconds.
    Refused { retry_after_us: f64 },
}

/// The deepest debt a bucket can go into, in microseconds (a year): a charge
/// beyond it (an upstream reporting absurd usage) saturates here, so the
/// TAT stays a number both this code and Redis's integers can hold.
pub const MAX_DEBT_US: f64 = 366.0 * 86_400e6;

/// One step of the algorithm: the decision and the new TAT (`None` when it
/// does not change).
pub fn step(tat: f64, now: f64, rate: Rate, cost: f64, max_wait_us: f64, mode: Mode) -> (Decision, Option<f64>) {
    let tat = tat.max(now);
    let charged = if mode == Mode::Peek { rate.interval_us } else { cost.max(0.0) * rate.interval_us };
    let new_tat = (tat + charged).min(now + rate.capacity_us + MAX_DEBT_US);
    if mode == Mode::Force {
        return (Decision::Allowed { wait_us: 0.0 }, Some(new_tat));
    }
    // Relative to `now` first: `new_tat - capacity - now` rounds a full-
    // capacity charge (rpm = 1) on a fresh bucket to a tiny refusal.
    let wait = ((new_tat - now) - rate.capacity_us).max(0.0);
    if wait > max_wait_us {
        return (Decision::Refused { retry_after_us: wait }, None);
    }
    let stored = (mode == Mode::Take).then_some(new_tat);
    (Decision::Allowed { wait_us: wait }, stored)
}

/// The same step in Redis, on the server's clock. KEYS[1]: the bucket;
/// ARGV: interval_us, capacity_us, cost, max_wait_us, mode. Returns
/// `{allowed (0/1), wait_or_retry_after_us}`.
pub const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local mode = ARGV[5]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local charged = cost * interval
if mode == 'peek' then charged = interval end
local new_tat = tat + charged
local max_tat = now + capacity + 31622400000000
if new_tat > max_tat then new_tat = max_tat end
local function store()
  local ttl = math.ceil((new_tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
end
if mode == 'force' then store() return {1, 0} end
local wait = (new_tat - now) - capacity
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, math.ceil(wait)} end
if mode == 'take' then store() end
return {1, math.ceil(wait)}
";

/// An in-process bucket.
#[derive(Debug)]
pub struct Gcra {
    tat: std::sync::Mutex<f64>,
    epoch: std::time::Instant,
}

impl Default for Gcra {
    fn default() -> Self {
        Gcra { tat: std::sync::Mutex::new(0.0), epoch: std::time::Instant::now() }
    }
}

impl Gcra {
    pub fn decide(&self, rate: Rate, cost: f64, max_wait_us: f64, mode: Mode) -> Decision {
        let now = self.epoch.elapsed().as_secs_f64() * 1e6;
        let Ok(mut tat) = self.tat.lock() else { return Decision::Allowed { wait_us: 0.0 } };
        let (decision, stored) = step(*tat, now, rate, cost, max_wait_us, mode);
        if let Some(t) = stored {
            *tat = t;
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_per_minute_bucket_allows_its_first_unit_at_any_clock() {
        let rate = Rate::per_minute(1);
        for now in [0.0, 123_456.789, 1.8e15 + 0.123] {
            let (d, s) = step(now, now, rate, 1.0, 0.0, Mode::Take);
            assert_eq!(d, Decision::Allowed { wait_us: 0.0 }, "at {now}");
            let (d, _) = step(s.expect("stored"), now, rate, 1.0, 0.0, Mode::Take);
            assert!(matches!(d, Decision::Refused { .. }), "the second unit at {now}");
        }
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses() {
        let rate = Rate::per_minute(3);
        let mut tat = 0.0;
        for _ in 0..3 {
            let (d, s) = step(tat, 0.0, rate, 1.0, 0.0, Mode::Take);
            assert_eq!(d, Decision::Allowed { wait_us: 0.0 });
            tat = s.expect("stored");
        }
        let (d, s) = step(tat, 0.0, rate, 1.0, 0.0, Mode::Take);
        assert_eq!(d, Decision::Refused { retry_after_us: 20e6 });
        assert_eq!(s, None);
        // Within the queueing bound the unit is reserved with a wait.
        let (d, _) = step(tat, 0.0, rate, 1.0, 30e6, Mode::Take);
        assert_eq!(d, Decision::Allowed { wait_us: 20e6 });
    }

    #[test]
    fn forced_charges_go_into_debt_and_peek_sees_it() {
        let rate = Rate::per_minute(100);
        let (_, s) = step(0.0, 0.0, rate, 250.0, 0.0, Mode::Force);
        let tat = s.expect("stored");
        let (d, _) = step(tat, 0.0, rate, 0.0, 0.0, Mode::Peek);
        assert!(matches!(d, Decision::Refused { retry_after_us } if (retry_after_us - 90.6e6).abs() < 1.0), "{d:?}");
    }

    #[test]
    fn an_absurd_charge_saturates_at_the_deepest_debt() {
        let rate = Rate::per_minute(100);
        let (_, s) = step(0.0, 0.0, rate, u64::MAX as f64, 0.0, Mode::Force);
        assert_eq!(s, Some(rate.capacity_us + MAX_DEBT_US));
        assert_eq!(MAX_DEBT_US, 31_622_400_000_000.0, "the Redis script's constant");
    }
}
