//! Live statistics the host keeps per model and per A/B arm: latency (EWMA
//! and percentiles over a recent window), time to first token, error rate,
//! in-flight calls, spend, judge scores and escalations. Routers see the
//! per-model figures as candidate inputs; `/admin/routing/stats` shows both.
//!
//! Percentiles are over the last [`WINDOW`] samples (recent behaviour is
//! what a router needs); counts, spend and score sums are since start.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Samples kept for percentiles and the error rate.
pub const WINDOW: usize = 1024;
/// Weight of the newest sample in the latency EWMA.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Default)]
struct Window {
    latency_ms: VecDeque<f64>,
    ttft_ms: VecDeque<f64>,
    /// true = error
    outcomes: VecDeque<bool>,
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

/// The `q`-quantile (0..=1) of sorted samples, 0 when there are none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(samples: &VecDeque<f64>) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    v
}

#[derive(Debug, Default)]
struct Totals {
    calls: u64,
    errors: u64,
    requests: u64,
    /// Answers produced: requests answered plus answers discarded.
    answers: u64,
    cost_usd: f64,
    judged: u64,
    score_sum: f64,
    escalations: u64,
    ewma_ms: f64,
}

/// How stale the figures routers see may be: a snapshot sorts the window.
const LIVE_REFRESH: Duration = Duration::from_millis(100);

/// One model's (or one arm's) figures.
#[derive(Debug, Default)]
pub struct Stats {
    window: Mutex<Window>,
    totals: Mutex<Totals>,
    in_flight: AtomicI64,
    live: Mutex<Option<(Instant, Snapshot)>>,
}

/// A snapshot for routers and the admin page.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub calls: u64,
    pub requests: u64,
    pub answers: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub ewma_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub in_flight: i64,
    pub cost_usd: f64,
    pub mean_judge_score: Option<f64>,
    pub escalations: u64,
}

impl Stats {
    /// One finished call (an upstream attempt, or a whole request for an arm).
    pub fn observe(&self, latency: Duration, ttft: Option<Duration>, error: bool) {
        let ms = latency.as_secs_f64() * 1e3;
        if let Ok(mut w) = self.window.lock() {
            push(&mut w.outcomes, error);
            if !error {
                push(&mut w.latency_ms, ms);
                if let Some(t) = ttft {
                    push(&mut w.ttft_ms, t.as_secs_f64() * 1e3);
                }
            }
        }
        if let Ok(mut t) = self.totals.lock() {
            t.calls += 1;
            if error {
                t.errors += 1;
            } else {
                t.ewma_ms = if t.ewma_ms == 0.0 { ms } else { EWMA_ALPHA * ms + (1.0 - EWMA_ALPHA) * t.ewma_ms };
            }
        }
    }

    /// A request this model finally answered (or this arm served), with its
    /// spend and judge score.
    pub fn settle(&self, cost_usd: f64, score: Option<f32>, escalated: bool) {
        if let Ok(mut t) = self.totals.lock() {
            t.requests += 1;
            t.answers += 1;
            t.cost_usd += cost_usd;
            if let Some(s) = score {
                t.judged += 1;
                t.score_sum += f64::from(s);
            }
            t.escalations += u64::from(escalated);
        }
    }

    /// Spend and a judge score on an answer that was not returned (a
    /// cascade tier that was escalated from).
    pub fn discard(&self, cost_usd: f64, score: Option<f32>) {
        if let Ok(mut t) = self.totals.lock() {
            t.cost_usd += cost_usd;
            t.answers += 1;
            t.escalations += 1;
            if let Some(s) = score {
                t.judged += 1;
                t.score_sum += f64::from(s);
            }
        }
    }

    /// Counts a call in flight until the guard drops.
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A snapshot at most [`LIVE_REFRESH`] old, for routers on the request
    /// path (in-flight count always current).
    pub fn live(&self) -> Snapshot {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        if let Ok(live) = self.live.lock()
            && let Some((at, snap)) = live.as_ref()
            && at.elapsed() < LIVE_REFRESH
        {
            return Snapshot { in_flight, ..*snap };
        }
        let snap = self.snapshot();
        if let Ok(mut live) = self.live.lock() {
            *live = Some((Instant::now(), snap));
        }
        snap
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot { in_flight: self.in_flight.load(Ordering::Relaxed), ..Snapshot::default() };
        if let Ok(w) = self.window.lock() {
            let (latency, ttft) = (sorted(&w.latency_ms), sorted(&w.ttft_ms));
            s.p50_ms = percentile(&latency, 0.5);
            s.p95_ms = percentile(&latency, 0.95);
            s.p99_ms = percentile(&latency, 0.99);
            s.ttft_p50_ms = percentile(&ttft, 0.5);
            s.ttft_p95_ms = percentile(&ttft, 0.95);
            let errors = w.outcomes.iter().filter(|e| **e).count();
            s.error_rate = if w.outcomes.is_empty() { 0.0 } else { errors as f64 / w.outcomes.len() as f64 };
        }
        if let Ok(t) = self.totals.lock() {
            s.calls = t.calls;
            s.requests = t.requests;
            s.answers = t.answers;
            s.errors = t.errors;
            s.ewma_ms = t.ewma_ms;
            s.cost_usd = t.cost_usd;
            s.mean_judge_score = (t.judged > 0).then(|| t.score_sum / t.judged as f64);
            s.escalations = t.escalations;
        }
        s
    }
}

impl Snapshot {
    pub fn json(&self) -> Value {
        let rate = |n: u64| if self.answers == 0 { 0.0 } else { n as f64 / self.answers as f64 };
        json!({
            "requests": self.requests,
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {"ewma": self.ewma_ms, "p50": self.p50_ms, "p95": self.p95_ms, "p99": self.p99_ms},
            "ttft_ms": {"p50": self.ttft_p50_ms, "p95": self.ttft_p95_ms},
            "in_flight": self.in_flight,
            "cost_usd": self.cost_usd,
            "mean_judge_score": self.mean_judge_score,
            "escalations": self.escalations,
            // Of the answers this model (or arm) produced, the share escalated from.
            "escalation_rate": rate(self.escalations),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_percentiles_and_error_rate() {
        let s = Stats::default();
        for ms in 1..=100 {
            s.observe(Duration::from_millis(ms), None, false);
        }
        s.observe(Duration::from_millis(5), None, true);
        s.settle(0.5, Some(0.5), true);
        s.settle(0.25, Some(1.0), false);
        let snap = s.snapshot();
        assert_eq!(snap.p50_ms.round(), 51.0);
        assert_eq!(snap.p95_ms.round(), 95.0);
        assert!((snap.error_rate - 1.0 / 101.0).abs() < 1e-9);
        assert_eq!(snap.mean_judge_score, Some(0.75));
        assert_eq!(snap.json()["escalation_rate"], 0.5);
        assert!(snap.ewma_ms > 50.0);
    }
}
