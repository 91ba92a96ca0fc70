//! A circuit breaker per upstream: after `failures` consecutive failures the
//! circuit opens and requests skip the upstream (moving on to fallbacks) for
//! `open_for`; then one probe request at a time is let through (half-open):
//! a success closes the circuit, a failure opens it again.
//!
//! What counts: connection errors, timeouts, unreadable responses and 5xx
//! count as failures; any answer, 4xx included, as a success (a 429 is
//! neither: the upstream is alive, only busy).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::telemetry;

/// `[upstreams.NAME]` breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit; 0 never opens it.
    pub failures: u32,
    /// How long an open circuit refuses before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 5, open_for: Duration::from_secs(10) }
    }
}

/// The circuit's state, as reported to routers and `/admin/routing/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    HalfOpen,
    Open,
}

impl Circuit {
    pub fn is_open(self) -> bool {
        self == Circuit::Open
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::HalfOpen => "half-open",
            Circuit::Open => "open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out since `since`.
    HalfOpen {
        since: Instant,
    },
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// The probe of a half-open circuit.
    Probe,
    /// Refused; the circuit may let a probe through after this long.
    Open(Duration),
}

#[derive(Debug)]
pub struct Breaker {
    upstream: String,
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker; its state and opening count show in the metrics
    /// from the start.
    pub fn new(upstream: &str, config: BreakerConfig) -> Breaker {
        let breaker =
            Breaker { upstream: upstream.to_owned(), config, state: Mutex::new(State::Closed { failures: 0 }) };
        metrics::counter!(telemetry::CIRCUIT_OPENED, "upstream" => breaker.upstream.clone()).increment(0);
        breaker.gauge(Circuit::Closed);
        breaker
    }

    pub fn circuit(&self) -> Circuit {
        match self.state.lock().as_deref() {
            Ok(State::Open { until }) if Instant::now() < *until => Circuit::Open,
            Ok(State::Open { .. } | State::HalfOpen { .. }) => Circuit::HalfOpen,
            _ => Circuit::Closed,
        }
    }

    pub fn admit(&self) -> Admission {
        let Ok(mut state) = self.state.lock() else { return Admission::Go };
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now < until => Admission::Open(until - now),
            // A probe that never reported (its client went away) is replaced.
            State::HalfOpen { since } if now.duration_since(since) < self.config.open_for => {
                Admission::Open(self.config.open_for - now.duration_since(since))
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                self.gauge(Circuit::HalfOpen);
                Admission::Probe
            }
        }
    }

    pub fn success(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        if !matches!(*state, State::Closed { failures: 0 }) {
            if !matches!(*state, State::Closed { .. }) {
                tracing::info!(upstream = %self.upstream, "circuit closed");
                self.gauge(Circuit::Closed);
            }
            *state = State::Closed { failures: 0 };
        }
    }

    pub fn failure(&self) {
        if self.config.failures == 0 {
            return;
        }
        let Ok(mut state) = self.state.lock() else { return };
        let open = match *state {
            State::Closed { failures } if failures + 1 < self.config.failures => {
                *state = State::Closed { failures: failures + 1 };
                false
            }
            State::Open { .. } => false,
            State::Closed { .. } | State::HalfOpen { .. } => true,
        };
        if open {
            *state = State::Open { until: Instant::now() + self.config.open_for };
            tracing::warn!(upstream = %self.upstream, open_for = ?self.config.open_for, "circuit opened");
            metrics::counter!(telemetry::CIRCUIT_OPENED, "upstream" => self.upstream.clone()).increment(1);
            self.gauge(Circuit::Open);
        }
    }

    fn gauge(&self, circuit: Circuit) {
        let v = match circuit {
            Circuit::Closed => 0.0,
            Circuit::HalfOpen => 1.0,
            Circuit::Open => 2.0,
        };
        metrics::gauge!(telemetry::CIRCUIT_STATE, "upstream" => self.upstream.clone()).set(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new("u", BreakerConfig { failures: 2, open_for: Duration::from_millis(30) });
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.admit(), Admission::Go, "a success in between resets the count");
        b.failure();
        assert!(matches!(b.admit(), Admission::Open(_)));
        assert_eq!(b.circuit(), Circuit::Open);
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(b.admit(), Admission::Probe);
        assert!(matches!(b.admit(), Admission::Open(_)), "one probe at a time");
        b.failure();
        assert_eq!(b.circuit(), Circuit::Open, "a failed probe opens the circuit again");
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(b.admit(), Admission::Probe);
        b.success();
        assert_eq!(b.circuit(), Circuit::Closed);
        assert_eq!(b.admit(), Admission::Go);
    }
}
