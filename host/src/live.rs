//! The live dashboard's counters: what each finished request adds to the
//! current second (a handful of relaxed atomic additions, no lock, no
//! allocation), taken and reset once a second by the dashboard's sampler.
//! Latencies go into fixed log-scale buckets, so percentiles come out of a
//! second without keeping its samples. The last [`HISTORY_SECONDS`] seconds
//! (with the engine's figures) and the latest [`MAX_EVENTS`] events (plugin
//! reloads...) are kept here for the dashboard to read.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Buckets per doubling of a latency in microseconds.
const PER_OCTAVE: usize = 4;
/// Up to 2^28 µs (4.5 minutes); longer latencies land in the last bucket.
const BUCKETS: usize = 28 * PER_OCTAVE;

/// A latency histogram of one second.
struct Histogram([AtomicU64; BUCKETS]);

impl Histogram {
    fn new() -> Self {
        Histogram(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn bucket(latency: Duration) -> usize {
        let us = latency.as_micros().max(1) as f64;
        ((us.log2() * PER_OCTAVE as f64) as usize).min(BUCKETS - 1)
    }

    fn record(&self, latency: Duration) {
        self.0[Self::bucket(latency)].fetch_add(1, Relaxed);
    }

    /// Takes the counts, leaving zeros.
    fn take(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.0[i].swap(0, Relaxed))
    }
}

/// The p50, p95 and p99 of bucket counts, in milliseconds (each bucket's
/// geometric middle); `None` without samples.
fn percentiles(counts: &[u64; BUCKETS]) -> Option<[f64; 3]> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        let i = counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        });
        let i = i.unwrap_or(BUCKETS - 1) as f64;
        2f64.powf((i + 0.5) / PER_OCTAVE as f64) / 1000.0
    };
    Some([at(0.50), at(0.95), at(0.99)])
}

/// Most tokens one request adds: a hostile usage figure cannot wrap a
/// second's sum.
const MAX_TOKENS_PER_REQUEST: u64 = 1 << 40;

/// How the response cache answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    SemanticHit,
    Miss,
}

/// What one finished request adds to its second.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    pub status: u16,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub cache: Option<CacheResult>,
    /// Prompt tokens the compress stage saved.
    pub tokens_saved: u64,
    /// The request escalated through cascade tiers.
    pub escalated: bool,
    /// A model of its route plan failed and the next one answered.
    pub fell_back: bool,
    /// What a router saved: the requested model's price for the same usage
    /// less the cost of the model that answered (0 when it cost more).
    pub routing_saved_usd: f64,
}

/// Seconds of history kept.
pub const HISTORY_SECONDS: usize = 600;
/// Events kept.
pub const MAX_EVENTS: usize = 200;

/// The bundled engine in one second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EngineSecond {
    pub running: usize,
    pub waiting: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
    /// Prompt tokens served from the prefix cache in the second.
    pub prefix_hit_tokens: u64,
    /// Prompt tokens of the sequences admitted in the second.
    pub prompt_tokens: u64,
    /// Tokens generated in the second (decode tokens per second).
    pub tokens_generated: u64,
    /// Fraction of the second spent running model steps.
    pub busy: f64,
}

/// One second of history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    #[serde(flatten)]
    pub second: Second,
    pub engine: Option<EngineSecond>,
}

/// Something that happened, for the dashboard's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unix time.
    pub t: u64,
    /// `plugin-loaded`, `plugin-reloaded`, `plugin-removed`,
    /// `plugin-disabled`, `plugin-enabled`, ...
    pub kind: &'static str,
    /// What it happened to (a plugin's name).
    pub subject: String,
}

/// The counters of the current second.
pub struct Live {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    /// Cost in nano-USD (whole numbers add atomically).
    cost_nano_usd: AtomicU64,
    routing_saved_nano_usd: AtomicU64,
    cache_hits: AtomicU64,
    cache_semantic_hits: AtomicU64,
    cache_misses: AtomicU64,
    tokens_saved: AtomicU64,
    escalations: AtomicU64,
    fallbacks: AtomicU64,
    latency: Histogram,
    ttft: Histogram,
    history: Mutex<VecDeque<Point>>,
    events: Mutex<VecDeque<Event>>,
}

/// One second's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Second {
    /// Unix time of the second's end.
    pub t: u64,
    pub requests: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Saved by routers choosing a cheaper model than the one asked for.
    pub routing_saved_usd: f64,
    pub cache_hits: u64,
    pub cache_semantic_hits: u64,
    pub cache_misses: u64,
    pub tokens_saved: u64,
    pub escalations: u64,
    pub fallbacks: u64,
    /// Latency p50, p95, p99 in ms.
    pub latency_ms: Option<[f64; 3]>,
    /// Time to first token (streams) p50, p95, p99 in ms.
    pub ttft_ms: Option<[f64; 3]>,
}

impl Default for Live {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Live {
            requests: zero(),
            client_errors: zero(),
            server_errors: zero(),
            tokens_in: zero(),
            tokens_out: zero(),
            cost_nano_usd: zero(),
            routing_saved_nano_usd: zero(),
            cache_hits: zero(),
            cache_semantic_hits: zero(),
            cache_misses: zero(),
            tokens_saved: zero(),
            escalations: zero(),
            fallbacks: zero(),
            latency: Histogram::new(),
            ttft: Histogram::new(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_SECONDS)),
            events: Mutex::new(VecDeque::new()),
        }
    }
}

/// Appends to a bounded queue, dropping the oldest.
fn push_bounded<T>(queue: &Mutex<VecDeque<T>>, item: T, max: usize) {
    if let Ok(mut q) = queue.lock() {
        if q.len() >= max {
            q.pop_front();
        }
        q.push_back(item);
    }
}

impl Live {
    /// Adds a finished request to the current second.
    pub fn record(&self, f: &Finished) {
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        };
        add(&self.requests, 1);
        add(&self.client_errors, u64::from((400..500).contains(&f.status)));
        add(&self.server_errors, u64::from(f.status >= 500));
        add(&self.tokens_in, f.tokens_in.min(MAX_TOKENS_PER_REQUEST));
        add(&self.tokens_out, f.tokens_out.min(MAX_TOKENS_PER_REQUEST));
        // Saturating: a hostile usage figure cannot wrap a sum.
        let nano = |usd: f64| if usd.is_finite() && usd > 0.0 { (usd * 1e9).min(1e15) as u64 } else { 0 };
        add(&self.cost_nano_usd, nano(f.cost_usd));
        add(&self.routing_saved_nano_usd, nano(f.routing_saved_usd));
        match f.cache {
            Some(CacheResult::Hit) => add(&self.cache_hits, 1),
            Some(CacheResult::SemanticHit) => add(&self.cache_semantic_hits, 1),
            Some(CacheResult::Miss) => add(&self.cache_misses, 1),
            None => {}
        }
        add(&self.tokens_saved, f.tokens_saved.min(MAX_TOKENS_PER_REQUEST));
        add(&self.escalations, u64::from(f.escalated));
        add(&self.fallbacks, u64::from(f.fell_back));
        self.latency.record(f.latency);
        if let Some(ttft) = f.ttft {
            self.ttft.record(ttft);
        }
    }

    /// Keeps a second of history.
    pub fn push(&self, point: Point) {
        push_bounded(&self.history, point, HISTORY_SECONDS);
    }

    /// Keeps an event.
    pub fn event(&self, event: Event) {
        push_bounded(&self.events, event, MAX_EVENTS);
    }

    /// The seconds and events after unix time `t` (0: all kept).
    pub fn since(&self, t: u64) -> (Vec<Point>, Vec<Event>) {
        let points = self.history.lock().map(|h| h.iter().filter(|p| p.second.t > t).cloned().collect());
        let events = self.events.lock().map(|e| e.iter().filter(|e| e.t > t).cloned().collect());
        (points.unwrap_or_default(), events.unwrap_or_default())
    }

    /// Takes the current second's figures, stamped `t`, and starts the next.
    pub fn take(&self, t: u64) -> Second {
        let take = |counter: &AtomicU64| counter.swap(0, Relaxed);
        Second {
            t,
            requests: take(&self.requests),
            client_errors: take(&self.client_errors),
            server_errors: take(&self.server_errors),
            tokens_in: take(&self.tokens_in),
            tokens_out: take(&self.tokens_out),
            cost_usd: take(&self.cost_nano_usd) as f64 / 1e9,
            routing_saved_usd: take(&self.routing_saved_nano_usd) as f64 / 1e9,
            cache_hits: take(&self.cache_hits),
            cache_semantic_hits: take(&self.cache_semantic_hits),
            cache_misses: take(&self.cache_misses),
            tokens_saved: take(&self.tokens_saved),
            escalations: take(&self.escalations),
            fallbacks: take(&self.fallbacks),
            latency_ms: percentiles(&self.latency.take()),
            ttft_ms: percentiles(&self.ttft.take()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_adds_up_its_requests_and_starts_again_from_zero() {
        let live = Live::default();
        for ms in [10, 20, 30, 40, 1000] {
            let latency = Duration::from_millis(ms);
            live.record(&Finished {
                status: 200,
                latency,
                tokens_in: 5,
                tokens_out: 7,
                cost_usd: 0.001,
                ..Default::default()
            });
        }
        live.record(&Finished { status: 503, latency: Duration::from_millis(5), ..Default::default() });
        live.record(&Finished {
            status: 429,
            cache: Some(CacheResult::Hit),
            routing_saved_usd: 0.25,
            ..Default::default()
        });
        let s = live.take(42);
        assert_eq!((s.t, s.requests, s.client_errors, s.server_errors), (42, 7, 1, 1));
        assert_eq!((s.tokens_in, s.tokens_out, s.cache_hits), (25, 35, 1));
        assert!((s.cost_usd - 0.005).abs() < 1e-9, "{}", s.cost_usd);
        assert!((s.routing_saved_usd - 0.25).abs() < 1e-9, "{}", s.routing_saved_usd);
        let [p50, p95, p99] = s.latency_ms.expect("latencies");
        // Within a bucket (a fourth of a doubling) of the true figures.
        assert!((17.0..24.0).contains(&p50), "p50 {p50}");
        assert!((840.0..1190.0).contains(&p95) && p99 >= p95, "p95 {p95} p99 {p99}");
        assert_eq!(s.ttft_ms, None);
        assert_eq!(live.take(43), Second { t: 43, ..Second::default() });
    }

    #[test]
    fn history_and_events_are_bounded() {
        let live = Live::default();
        for t in 1..=(HISTORY_SECONDS as u64 + 5) {
            live.push(Point { second: Second { t, ..Second::default() }, engine: None });
            live.event(Event { t, kind: "plugin-reloaded", subject: "router".into() });
        }
        let (points, events) = live.since(0);
        assert_eq!((points.len(), events.len()), (HISTORY_SECONDS, MAX_EVENTS));
        assert_eq!(points.first().map(|p| p.second.t), Some(6), "the oldest went first");
        let (points, events) = live.since(HISTORY_SECONDS as u64 + 3);
        assert_eq!((points.len(), events.len()), (2, 2));
    }

    #[test]
    fn hostile_figures_saturate() {
        let live = Live::default();
        let huge =
            Finished { tokens_in: u64::MAX, cost_usd: f64::INFINITY, latency: Duration::MAX, ..Default::default() };
        live.record(&huge);
        live.record(&Finished { cost_usd: 1e300, ..huge });
        let s = live.take(1);
        assert_eq!((s.requests, s.tokens_in), (2, 2 * MAX_TOKENS_PER_REQUEST));
        assert!(s.cost_usd <= 1e6 * 2.0);
        assert!(s.latency_ms.is_some_and(|p| p.iter().all(|v| v.is_finite())));
    }
}
