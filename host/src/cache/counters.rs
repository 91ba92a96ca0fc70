//! The cache's counters: lookups, hits by tier, misses, stores, what hits
//! saved, and the guard's rejections; and the `GET /admin/cache/stats` body
//! built from them.
//!
//! Counting here also records the matching metrics. It does not look at the
//! tiers themselves: their sizes are passed in by the cache.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::types::Hit;
use crate::telemetry;

/// Counts since the cache was built.
#[derive(Default)]
pub(super) struct CacheCounters {
    pub(super) lookups: AtomicU64,
    pub(super) hits_local: AtomicU64,
    pub(super) hits_redis: AtomicU64,
    pub(super) semantic_hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) bypasses: AtomicU64,
    pub(super) stores: AtomicU64,
    pub(super) guard_rejections: AtomicU64,
    pub(super) semantic_skipped: AtomicU64,
    saved_tokens: AtomicU64,
    saved_ms: AtomicU64,
    saved_cost: Mutex<f64>,
}

/// The tiers' state for [`CacheCounters::report`].
pub(super) struct TierState {
    pub(super) local_entries: u64,
    pub(super) local_bytes: u64,
    pub(super) max_bytes: u64,
    /// The `redis` object, or null without Redis.
    pub(super) redis: Value,
    pub(super) semantic_enabled: bool,
    pub(super) semantic_entries: usize,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

impl CacheCounters {
    /// Counts a request the cache did not look up for.
    pub(super) fn note_bypass(&self) {
        self.bypasses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_REQUESTS, "result" => "bypass").increment(1);
    }

    /// Counts what a hit saved (the hit itself is counted by its kind).
    pub(super) fn note_hit(&self, hit: &Hit) {
        let entry = &hit.entry;
        self.saved_tokens.fetch_add(entry.usage.total_tokens, Ordering::Relaxed);
        self.saved_ms.fetch_add(entry.upstream_ms, Ordering::Relaxed);
        if let Some(cost) = entry.cost {
            *self.saved_cost.lock().unwrap_or_else(|e| e.into_inner()) += cost;
            metrics::gauge!(telemetry::CACHE_SAVED_COST).increment(cost);
        }
        metrics::counter!(telemetry::CACHE_REQUESTS, "result" => hit.outcome.as_str(), "tier" => hit.tier).increment(1);
        metrics::counter!(telemetry::CACHE_SAVED_TOKENS).increment(entry.usage.total_tokens);
    }

    /// The `GET /admin/cache/stats` body.
    pub(super) fn report(&self, tiers: TierState) -> Value {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (local_hits, redis_hits, semantic) =
            (load(&self.hits_local), load(&self.hits_redis), load(&self.semantic_hits));
        let lookups = load(&self.lookups);
        json!({
            "local": {"entries": tiers.local_entries, "bytes": tiers.local_bytes, "max_bytes": tiers.max_bytes},
            "redis": tiers.redis,
            "semantic": {
                "enabled": tiers.semantic_enabled,
                "entries": tiers.semantic_entries,
                "guard_rejections": load(&self.guard_rejections),
                "skipped_busy": load(&self.semantic_skipped),
            },
            "requests": {
                "lookups": lookups,
                "hits": local_hits + redis_hits,
                "hits_local": local_hits,
                "hits_redis": redis_hits,
                "semantic_hits": semantic,
                "misses": load(&self.misses),
                "bypass": load(&self.bypasses),
                "stores": load(&self.stores),
            },
            "hit_rate": {
                "exact": ratio(local_hits + redis_hits, lookups),
                "semantic": ratio(semantic, lookups),
                "total": ratio(local_hits + redis_hits + semantic, lookups),
            },
            "saved": {
                "tokens": load(&self.saved_tokens),
                "cost_usd": *self.saved_cost.lock().unwrap_or_else(|e| e.into_inner()),
                "upstream_seconds": load(&self.saved_ms) as f64 / 1000.0,
            },
        })
    }
}
