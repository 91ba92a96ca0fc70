//! One plugin version's call statistics: counts of calls, refusals and
//! faults by kind, the disabled flag, spare misses, and the recent call
//! durations the admin listing's percentiles come from.
//!
//! It does not record metrics or decide when a plugin is disabled: see
//! `loaded.rs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How many recent call durations the percentiles are computed over.
const WINDOW: usize = 1024;

/// Counters of one plugin version.
#[derive(Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    /// Policy refusals (WIT `err`).
    pub errors: AtomicU64,
    /// Faults of any kind.
    pub faults: AtomicU64,
    pub traps: AtomicU64,
    pub deadlines: AtomicU64,
    pub out_of_memory: AtomicU64,
    /// Deadline overruns while the host was overloaded (counted in
    /// `faults` and `deadlines`, not towards disabling the plugin).
    pub overruns_under_load: AtomicU64,
    /// Calls refused at the concurrency cap (not faults).
    pub busy: AtomicU64,
    /// Probe calls of the disabled plugin.
    pub probes: AtomicU64,
    /// `host.log` lines dropped over the per-call cap.
    pub log_lines_dropped: AtomicU64,
    /// Faults of the plugin's own in a row.
    pub consecutive_faults: AtomicU32,
    pub disabled: AtomicBool,
    /// Fresh-instance calls that found no spare ready and instantiated
    /// inline.
    pub spare_misses: AtomicU64,
    /// Recent call durations in nanoseconds (ring buffer) and next slot.
    recent: Mutex<(Vec<u64>, usize)>,
}

impl CallStats {
    pub fn record_duration(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Ok(mut r) = self.recent.lock() {
            let (buf, next) = &mut *r;
            if buf.len() < WINDOW {
                buf.push(ns);
            } else {
                buf[*next] = ns;
            }
            *next = (*next + 1) % WINDOW;
        }
    }

    /// Take over the counters of the build this one replaces (the same
    /// version of the plugin); call durations start afresh.
    pub fn carry_counts(&self, from: &CallStats) {
        for (to, from) in [
            (&self.calls, &from.calls),
            (&self.errors, &from.errors),
            (&self.faults, &from.faults),
            (&self.traps, &from.traps),
            (&self.deadlines, &from.deadlines),
            (&self.out_of_memory, &from.out_of_memory),
            (&self.overruns_under_load, &from.overruns_under_load),
            (&self.busy, &from.busy),
            (&self.probes, &from.probes),
            (&self.log_lines_dropped, &from.log_lines_dropped),
        ] {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// p50 and p99 of recent call durations, in microseconds.
    pub fn percentiles_us(&self) -> (Option<f64>, Option<f64>) {
        let mut v = match self.recent.lock() {
            Ok(r) => r.0.clone(),
            Err(_) => return (None, None),
        };
        if v.is_empty() {
            return (None, None);
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        (Some(at(0.5)), Some(at(0.99)))
    }
}
