//! The response cache: exact and semantic, in-process and in Redis.
//!
//! The cache-policy stage decides whether and how a request is cached (key
//! text, namespace, TTL, semantic matching and its threshold); this module
//! stores and looks up. Lookups go local tier → Redis (a hit there fills the
//! local tier) → semantic index (the question's embedding against the
//! questions cached in the same scope, behind the false-hit guard), each
//! lookup a span of the request's trace when one is current. Stores go to
//! both tiers, the Redis write off the request path.
//!
//! Redis is optional and never on the critical path: its operations have a
//! deadline of a few ms, and when it is down the local tier and the
//! upstream serve (see `crate::redis_client`).
//!
//! Module map: [`key`] (what an entry is filed under), `plan` (where one
//! request's answer is looked up and stored), [`guard`] (semantic false-hit
//! guard), [`semantic`] (the vector index), [`replay`] (answers as streams
//! and back), `sync` (the replicas' event stream), `counters` (what the cache
//! counts, and its stats body), `types` (settings, controls, entries,
//! outcomes, plans).

mod counters;
pub mod guard;
pub mod key;
mod plan;
pub mod replay;
pub mod semantic;
mod sync;
mod types;

pub use types::{CacheConfig, CacheControls, CacheOutcome, Entry, Hit, Provenance, SemanticPlan, StorePlan, now_ms};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::api::chat::{ChatRequest, ChatResponse};
use crate::redis_client::SharedRedis;
use crate::stage::CacheDecision;
use crate::telemetry;
use crate::traces::CacheSpan;
use counters::{CacheCounters, TierState};
use guard::Fingerprint;
use semantic::{SemanticIndex, Vector};

/// The response cache shared by every request of a gateway.
pub struct ResponseCache {
    config: CacheConfig,
    /// The in-process tier; `None` when `max_bytes` is 0.
    local: Option<moka::sync::Cache<String, Arc<Entry>>>,
    redis: Option<Arc<SharedRedis>>,
    embedder: Option<sluice_engine::EmbedHandle>,
    index: Arc<SemanticIndex>,
    counters: CacheCounters,
    /// Semantic lookups waiting for or running an embedding.
    embeds_waiting: AtomicUsize,
    sync: Option<tokio::task::JoinHandle<()>>,
}

/// Semantic lookups allowed to wait for the embedder at once.
const MAX_EMBEDS_WAITING: usize = 4;

/// A place in the embedder's queue, given back when dropped.
struct EmbedSlot<'a>(&'a AtomicUsize);

impl<'a> EmbedSlot<'a> {
    fn take(waiting: &'a AtomicUsize) -> Option<EmbedSlot<'a>> {
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        let slot = EmbedSlot(waiting);
        (before < MAX_EMBEDS_WAITING).then_some(slot)
    }
}

impl Drop for EmbedSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct TtlExpiry;

impl moka::Expiry<String, Arc<Entry>> for TtlExpiry {
    fn expire_after_create(&self, _key: &String, entry: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        Some(entry.ttl_left())
    }
}

impl ResponseCache {
    /// Builds the cache; loads the embedding model when semantic matching is
    /// on (a missing model turns semantic matching off, with a warning).
    /// Call from within a Tokio runtime when `redis` is given: the replicas'
    /// event stream is followed by a background task.
    pub fn new(config: CacheConfig, redis: Option<Arc<SharedRedis>>) -> Arc<ResponseCache> {
        let local = (config.max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(|_k: &String, v: &Arc<Entry>| v.weight())
                .expire_after(TtlExpiry)
                .support_invalidation_closures()
                .build()
        });
        let embedder = match (&config.embedding_model_dir, config.semantic) {
            (Some(dir), true) => match sluice_engine::EmbedHandle::start(dir) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "semantic caching is off: the embedding model did not load");
                    None
                }
            },
            _ => None,
        };
        let index = Arc::new(SemanticIndex::new(config.max_semantic_entries));
        let mut cache = ResponseCache {
            config,
            local,
            redis,
            embedder,
            index,
            counters: CacheCounters::default(),
            embeds_waiting: AtomicUsize::new(0),
            sync: None,
        };
        if let Some(redis) = &cache.redis
            && tokio::runtime::Handle::try_current().is_ok()
        {
            cache.sync = Some(sync::spawn(redis.clone(), cache.local.clone(), cache.index.clone()));
        }
        Arc::new(cache)
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Whether semantic lookups can run (the embedding model is loaded).
    pub fn semantic_ready(&self) -> bool {
        self.embedder.is_some()
    }

    /// What to do for `req`, routed to `model`: `None` bypasses the cache
    /// (the policy said not cacheable).
    pub fn plan(
        &self,
        decision: Option<&CacheDecision>,
        controls: &CacheControls,
        tenant: Option<&str>,
        req: &ChatRequest,
        model: &str,
    ) -> Option<StorePlan> {
        plan::plan(&self.config, self.embedder.is_some(), decision, controls, tenant, req, model)
    }

    /// Counts a request the cache did not look up for.
    pub fn note_bypass(&self) {
        self.counters.note_bypass();
    }

    fn redis_key(&self, redis: &SharedRedis, namespace: &str, key: &str) -> String {
        redis.key(&format!("c:{}:{key}", key::namespace_tag(namespace)))
    }

    /// The entry under an exact key: local tier, then Redis.
    async fn get(&self, namespace: &str, key: &str) -> Option<(Arc<Entry>, &'static str)> {
        if let Some(entry) = self.local.as_ref().and_then(|l| l.get(key)) {
            return Some((entry, "local"));
        }
        let redis = self.redis.as_ref()?;
        let redis_key = self.redis_key(redis, namespace, key);
        let raw: Option<Vec<u8>> = redis
            .run("cache_get", |mut c| async move { redis::cmd("GET").arg(&redis_key).query_async(&mut c).await })
            .await
            .flatten();
        let entry: Entry = serde_json::from_slice(&raw?).ok()?;
        if entry.expires_at_ms <= now_ms() {
            return None;
        }
        let entry = Arc::new(entry);
        if let Some(local) = &self.local {
            local.insert(key.to_owned(), entry.clone());
        }
        Some((entry, "redis"))
    }

    /// Looks `plan` up: exact, then semantic.
    pub async fn lookup(&self, plan: &mut StorePlan) -> Option<Hit> {
        if !plan.lookup {
            self.note_bypass();
            return None;
        }
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let span = CacheSpan::start("exact");
        let exact = self.get(&plan.namespace, &plan.key).await;
        metrics::histogram!(telemetry::CACHE_LOOKUP, "kind" => "exact").record(started.elapsed().as_secs_f64());
        span.end(exact.is_some(), exact.as_ref().map(|(_, tier)| *tier), None);
        if let Some((entry, tier)) = exact {
            let counter = if tier == "local" { &self.counters.hits_local } else { &self.counters.hits_redis };
            counter.fetch_add(1, Ordering::Relaxed);
            let hit = Hit { entry, outcome: CacheOutcome::Hit, tier, similarity: None };
            self.counters.note_hit(&hit);
            return Some(hit);
        }
        let span = plan.semantic.is_some().then(|| CacheSpan::start("semantic"));
        let semantic = self.lookup_semantic(plan).await;
        if let Some(span) = span {
            span.end(
                semantic.is_some(),
                semantic.as_ref().map(|h| h.tier),
                semantic.as_ref().and_then(|h| h.similarity),
            );
        }
        if let Some(hit) = semantic {
            self.counters.semantic_hits.fetch_add(1, Ordering::Relaxed);
            self.counters.note_hit(&hit);
            return Some(hit);
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_REQUESTS, "result" => "miss").increment(1);
        None
    }

    async fn lookup_semantic(&self, plan: &mut StorePlan) -> Option<Hit> {
        let semantic = plan.semantic.as_mut()?;
        let embedder = self.embedder.as_ref()?;
        if !self.index.has_scope(&semantic.scope) {
            // Nothing to compare with; the store embeds in the background.
            return None;
        }
        // Embeddings run one at a time: past a short queue, a lookup would
        // wait longer than the upstream may take, so it is skipped.
        let Some(_slot) = EmbedSlot::take(&self.embeds_waiting) else {
            self.counters.semantic_skipped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::CACHE_SEMANTIC_SKIPPED).increment(1);
            return None;
        };
        let started = Instant::now();
        let embedding = match embedder.embed(vec![semantic.question.clone()]).await {
            Ok(mut vectors) if !vectors.is_empty() => vectors.swap_remove(0).into_boxed_slice(),
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "embedding failed; no semantic lookup");
                return None;
            }
        };
        metrics::histogram!(telemetry::CACHE_EMBED).record(started.elapsed().as_secs_f64());
        let fingerprint = Fingerprint::of(&semantic.question);
        let loose = self.index.search(&semantic.scope, &embedding, None, semantic.threshold);
        let found = match &loose {
            None => None,
            Some(_) => self.index.search(&semantic.scope, &embedding, Some(&fingerprint), semantic.threshold),
        };
        semantic.embedding = Some(embedding);
        if loose.is_some() && found.is_none() {
            self.counters.guard_rejections.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::CACHE_GUARD_REJECTIONS).increment(1);
        }
        let result = match found {
            Some(neighbour) => match self.get(&plan.namespace, &neighbour.id).await {
                Some((entry, tier)) => Some(Hit {
                    entry,
                    outcome: CacheOutcome::SemanticHit,
                    tier,
                    similarity: Some(neighbour.similarity),
                }),
                None => {
                    // The answer expired or was purged.
                    self.index.remove(&neighbour.id);
                    None
                }
            },
            None => None,
        };
        metrics::histogram!(telemetry::CACHE_LOOKUP, "kind" => "semantic").record(started.elapsed().as_secs_f64());
        result
    }

    /// Stores an answer (`raw`: its bytes as the upstream sent them, when
    /// they are an OpenAI completion): the local tier at once, Redis and the
    /// semantic index in the background.
    pub fn store(self: &Arc<Self>, plan: StorePlan, response: &ChatResponse, raw: Option<&[u8]>, made: Provenance) {
        let Provenance { model, usage, cost, upstream } = made;
        if !plan.store {
            return;
        }
        let text = match raw {
            Some(raw) => String::from_utf8_lossy(raw).into_owned(),
            None => match serde_json::to_string(response) {
                Ok(text) => text,
                Err(_) => return,
            },
        };
        let entry = Arc::new(Entry {
            response: text,
            model,
            namespace: plan.namespace.clone(),
            usage,
            cost,
            upstream_ms: u64::try_from(upstream.as_millis()).unwrap_or(u64::MAX),
            expires_at_ms: now_ms().saturating_add(u64::try_from(plan.ttl.as_millis()).unwrap_or(u64::MAX)),
        });
        if let Some(local) = &self.local {
            if !plan.overwrite && local.get(&plan.key).is_some_and(|e| e.expires_at_ms > now_ms()) {
                // A live answer is there; a `no-cache` answer does not replace it.
                return;
            }
            local.insert(plan.key.clone(), entry.clone());
        }
        self.counters.stores.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_STORES).increment(1);
        if self.redis.is_none() && plan.semantic.is_none() {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move { cache.store_shared(plan, entry).await });
    }

    async fn store_shared(&self, plan: StorePlan, entry: Arc<Entry>) {
        let ttl_ms = u64::try_from(plan.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        if let Some(redis) = &self.redis
            && let Ok(json) = serde_json::to_vec(&*entry)
        {
            let key = self.redis_key(redis, &plan.namespace, &plan.key);
            let overwrite = plan.overwrite;
            let set: Option<Option<String>> = redis
                .run("cache_set", |mut c| async move {
                    let mut set = redis::cmd("SET");
                    set.arg(&key).arg(json).arg("PX").arg(ttl_ms);
                    if !overwrite {
                        set.arg("NX");
                    }
                    set.query_async(&mut c).await
                })
                .await;
            if matches!(set, Some(None)) {
                // `NX` found an answer there: it stays, with its vector.
                return;
            }
        }
        let Some(mut semantic) = plan.semantic else { return };
        let embedding = match semantic.embedding.take() {
            Some(e) => e,
            None => {
                let Some(embedder) = &self.embedder else { return };
                match embedder.embed(vec![semantic.question.clone()]).await {
                    Ok(mut v) if !v.is_empty() => v.swap_remove(0).into_boxed_slice(),
                    _ => return,
                }
            }
        };
        let vector = Vector {
            id: plan.key,
            namespace: plan.namespace,
            embedding,
            fingerprint: Fingerprint::of(&semantic.question),
            expires_at_ms: entry.expires_at_ms,
        };
        if let Some(redis) = &self.redis {
            sync::publish_vector(redis, &semantic.scope, &vector, ttl_ms).await;
        }
        self.index.insert(&semantic.scope, vector);
    }

    /// Drops every entry of `namespace` (or all), here, in Redis, and (by
    /// the event stream) in every other replica. Returns the Redis keys removed.
    pub async fn purge(&self, namespace: Option<&str>) -> u64 {
        sync::purge_local(self.local.as_ref(), &self.index, namespace);
        match &self.redis {
            Some(redis) => sync::purge(redis, namespace).await,
            None => 0,
        }
    }

    /// `GET /admin/cache/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        let (local_entries, local_bytes) = match &self.local {
            Some(local) => {
                local.run_pending_tasks();
                (local.entry_count(), local.weighted_size())
            }
            None => (0, 0),
        };
        let redis = match &self.redis {
            Some(redis) => {
                let (entries, bytes) = sync::usage(redis).await.unwrap_or((0, 0));
                serde_json::json!({"connected": redis.is_up(), "entries": entries, "bytes": bytes})
            }
            None => serde_json::Value::Null,
        };
        self.counters.report(TierState {
            local_entries,
            local_bytes,
            max_bytes: self.config.max_bytes,
            redis,
            semantic_enabled: self.semantic_ready(),
            semantic_entries: self.index.len(),
        })
    }
}

impl Drop for ResponseCache {
    fn drop(&mut self) {
        if let Some(task) = self.sync.take() {
            task.abort();
        }
    }
}
