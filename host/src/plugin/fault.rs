//! How a broken plugin call is described and judged: the fault's kind (trap,
//! deadline, out of memory, ...) and detail, classified from wasmtime's
//! error; whether it was the plugin's own doing ([`is_own`]), the only
//! faults that count towards disabling it; and the [`Breaker`] that disables
//! a plugin and lets it back after a back-off, through one probe call.
//!
//! It does not count faults or call plugins: see `loaded.rs`; nor decide
//! what a stage does with a fault: see `stages.rs`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stage::FaultKind;

/// A broken call.
#[derive(Debug, Clone)]
pub struct CallFault {
    pub kind: FaultKind,
    pub detail: String,
}

/// Classify a failed call or instantiation; `out_of_memory` is whether the
/// store's memory limiter refused a growth during it.
pub fn classify(e: &wasmtime::Error, out_of_memory: bool) -> CallFault {
    let kind = if out_of_memory {
        FaultKind::OutOfMemory
    } else if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        FaultKind::Deadline
    } else {
        FaultKind::Trap
    };
    CallFault { kind, detail: e.root_cause().to_string() }
}

/// What the host saw while a call ran, to tell a plugin's own deadline
/// overrun from one the host's load caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallLoad {
    /// Most plugin calls of the whole host in flight at any check during
    /// the call (its start and every tick).
    pub peak_in_flight: usize,
    /// Threads that can run plugin calls at once (the runtime's workers).
    pub workers: usize,
}

/// Whether a fault is the plugin's own and counts towards disabling it.
///
/// Traps and out-of-memory always are. A deadline overrun is only when the
/// host was not overloaded during the call: never more plugin calls in
/// flight (at its start and at every epoch tick) than worker threads to run
/// them. Then the call had a worker to itself and the time was its own; past
/// that, calls wait for a worker between ticks and overrun through no fault
/// of theirs, so a flood of requests cannot switch a plugin off. (The price:
/// a plugin slow enough to pile its own calls up past the workers is not
/// disabled while they stay piled up; each call is still stopped at its
/// deadline. The guest's tick count cannot tell the two apart: a waiting
/// guest, polled again, sees a tick as well.) An instance the host could not make (its pool exhausted), a
/// call refused at the concurrency cap, and a call to a disabled plugin are
/// the host's, never the plugin's.
pub fn is_own(kind: FaultKind, load: CallLoad) -> bool {
    match kind {
        FaultKind::Trap | FaultKind::OutOfMemory => true,
        FaultKind::Deadline => load.peak_in_flight <= load.workers.max(1),
        FaultKind::Instantiate | FaultKind::Disabled | FaultKind::Busy => false,
    }
}

/// Whether a call may run on a plugin that may be disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Enabled: call it.
    Closed,
    /// Disabled, its back-off over: this call is the one probe.
    Probe,
    /// Disabled: skip it (its failure mode applies).
    Open,
}

/// A plugin's circuit breaker: closed (enabled) until too many faults of its
/// own in a row, then open (disabled) for a back-off; then one probe call
/// runs: its success closes the breaker, its own fault re-opens it for twice
/// the back-off (up to a cap). A new file of the plugin starts closed.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    /// When the probe may run; `None`: closed.
    open_until: Option<Instant>,
    /// The back-off of the current opening.
    backoff: Duration,
    /// The probe is running.
    probing: bool,
}

impl Breaker {
    /// Whether a call may run now.
    pub fn admit(&self, now: Instant) -> Admit {
        let Ok(mut s) = self.state.lock() else { return Admit::Open };
        match s.open_until {
            None => Admit::Closed,
            Some(until) if now >= until && !s.probing => {
                s.probing = true;
                Admit::Probe
            }
            Some(_) => Admit::Open,
        }
    }

    /// Open the breaker: for `base` when it was closed, or for twice the
    /// last back-off (at most `max`) when the probe failed. Returns the
    /// back-off.
    pub fn trip(&self, now: Instant, base: Duration, max: Duration) -> Duration {
        let Ok(mut s) = self.state.lock() else { return base };
        let backoff = if s.open_until.is_some() {
            s.backoff.saturating_mul(2).min(max.max(base))
        } else {
            base.min(max.max(base))
        };
        s.backoff = backoff;
        s.open_until = Some(now.checked_add(backoff).unwrap_or(now));
        s.probing = false;
        backoff
    }

    /// The probe succeeded: close the breaker.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = BreakerState::default();
        }
    }

    /// The probe ended in a fault that was not the plugin's (or was
    /// cancelled): the next call probes again.
    pub fn release_probe(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.probing = false;
        }
    }

    /// The back-off of the current opening; `None` while closed.
    pub fn backoff(&self) -> Option<Duration> {
        let s = self.state.lock().ok()?;
        s.open_until.map(|_| s.backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn breaker_probes_after_its_backoff_and_doubles_it_up_to_the_cap() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admit::Closed);
        assert_eq!(b.trip(t0, SEC, 3 * SEC), SEC);
        assert_eq!(b.admit(t0), Admit::Open);
        assert_eq!(b.admit(t0 + SEC / 2), Admit::Open);
        // The back-off is over: exactly one probe.
        assert_eq!(b.admit(t0 + SEC), Admit::Probe);
        assert_eq!(b.admit(t0 + SEC), Admit::Open);
        // It failed: twice the back-off, then capped.
        let t1 = t0 + SEC;
        assert_eq!(b.trip(t1, SEC, 3 * SEC), 2 * SEC);
        assert_eq!(b.admit(t1 + SEC), Admit::Open);
        assert_eq!(b.admit(t1 + 2 * SEC), Admit::Probe);
        let t2 = t1 + 2 * SEC;
        assert_eq!(b.trip(t2, SEC, 3 * SEC), 3 * SEC);
        assert_eq!(b.admit(t2 + 3 * SEC), Admit::Probe);
        // A probe that was not the plugin's fault: the next call probes.
        b.release_probe();
        assert_eq!(b.admit(t2 + 3 * SEC), Admit::Probe);
        // It succeeded: closed, and the next opening starts at the base.
        b.close();
        assert_eq!(b.backoff(), None);
        assert_eq!(b.admit(t2 + 3 * SEC), Admit::Closed);
        assert_eq!(b.trip(t2, SEC, 3 * SEC), SEC);
    }

    #[test]
    fn only_the_plugins_own_faults_count() {
        let idle = CallLoad { peak_in_flight: 1, workers: 2 };
        let busy = CallLoad { peak_in_flight: 2, workers: 2 };
        let flooded = CallLoad { peak_in_flight: 40, workers: 2 };
        assert!(is_own(FaultKind::Trap, flooded));
        assert!(is_own(FaultKind::OutOfMemory, flooded));
        assert!(is_own(FaultKind::Deadline, idle));
        assert!(is_own(FaultKind::Deadline, busy));
        assert!(!is_own(FaultKind::Deadline, flooded), "waited for a worker");
        for kind in [FaultKind::Instantiate, FaultKind::Busy, FaultKind::Disabled] {
            assert!(!is_own(kind, idle), "{kind}");
        }
    }
}
