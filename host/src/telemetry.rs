//! Metrics and logs. The Prometheus recorder is installed once per process
//! and rendered at `GET /metrics`; every metric the gateway records is named
//! here so the set is visible in one place.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `[logging]`, checked: the level filter (overridden by `RUST_LOG`) and
/// whether lines are JSON.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub level: String,
    pub json: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig { level: "info".to_owned(), json: false }
    }
}

pub const REQUESTS: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "sluice_time_to_first_token_seconds";
pub const GATEWAY_OVERHEAD: &str = "sluice_gateway_overhead_seconds";
pub const TOKENS: &str = "sluice_tokens_total";
/// A gauge that only grows: `metrics` counters are integers, spend is not.
pub const COST: &str = "sluice_cost_usd";
pub const UPSTREAM_ERRORS: &str = "sluice_upstream_errors_total";
pub const IN_FLIGHT: &str = "sluice_upstream_in_flight";
pub const TOKENS_SAVED: &str = "sluice_compress_tokens_saved_total";
pub const AB_REQUESTS: &str = "sluice_ab_requests_total";
pub const JUDGE_SCORE: &str = "sluice_judge_score";
pub const FALLBACKS: &str = "sluice_fallbacks_total";
pub const CACHE_REQUESTS: &str = "sluice_cache_requests_total";
pub const CACHE_LOOKUP: &str = "sluice_cache_lookup_duration_seconds";
pub const CACHE_EMBED: &str = "sluice_cache_embed_duration_seconds";
pub const CACHE_STORES: &str = "sluice_cache_stores_total";
pub const CACHE_GUARD_REJECTIONS: &str = "sluice_cache_guard_rejections_total";
pub const CACHE_SEMANTIC_SKIPPED: &str = "sluice_cache_semantic_skipped_total";
pub const CACHE_SAVED_TOKENS: &str = "sluice_cache_saved_tokens_total";
/// A gauge that only grows, like [`COST`].
pub const CACHE_SAVED_COST: &str = "sluice_cache_saved_cost_usd";
pub const RETRIES: &str = "sluice_upstream_retries_total";
pub const CIRCUIT_STATE: &str = "sluice_circuit_state";
pub const CIRCUIT_OPENED: &str = "sluice_circuit_opened_total";
pub const RATE_LIMITED: &str = "sluice_rate_limited_total";
pub const CASCADE_ESCALATIONS: &str = "sluice_cascade_escalations_total";
pub const ARM_REQUESTS: &str = "sluice_ab_arm_requests_total";
pub const ARM_DURATION: &str = "sluice_ab_arm_request_duration_seconds";
/// A gauge that only grows, like [`COST`].
pub const ARM_COST: &str = "sluice_ab_arm_cost_usd";
pub const ARM_JUDGE_SCORE: &str = "sluice_ab_arm_judge_score";
pub const ARM_ESCALATIONS: &str = "sluice_ab_arm_escalations_total";
pub const REDIS_ERRORS: &str = "sluice_redis_errors_total";
pub const REDIS_SKIPPED: &str = "sluice_redis_skipped_total";
pub const REDIS_LATENCY: &str = "sluice_redis_op_duration_seconds";

/// The process's Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
        let redis = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25];
        let overhead = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &latency)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(TIME_TO_FIRST_TOKEN.to_owned()), &latency))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GATEWAY_OVERHEAD.to_owned()), &overhead))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(REDIS_LATENCY.to_owned()), &redis))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CACHE_LOOKUP.to_owned()), &redis))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(CACHE_EMBED.to_owned()), &redis))
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(JUDGE_SCORE.to_owned()),
                    &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(ARM_JUDGE_SCORE.to_owned()),
                    &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                )
            })
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &latency))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's);
        // then /metrics shows what this handle has, which is nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests answered, by api, model, upstream and status");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Whole request latency as the client saw it");
    describe_histogram!(TIME_TO_FIRST_TOKEN, Unit::Seconds, "Time from request to the first streamed content");
    describe_histogram!(GATEWAY_OVERHEAD, Unit::Seconds, "Time spent in the gateway, excluding the upstream");
    describe_counter!(TOKENS, "Tokens by model, upstream and direction (input/output)");
    describe_gauge!(COST, "Cumulative spend in USD by model and upstream, from configured prices");
    describe_counter!(UPSTREAM_ERRORS, "Upstream failures by upstream and kind");
    describe_gauge!(IN_FLIGHT, "Requests in flight to each upstream");
    describe_counter!(TOKENS_SAVED, "Prompt tokens removed by the compress stage");
    describe_counter!(AB_REQUESTS, "Requests by the A/B bucket the router assigned");
    describe_histogram!(JUDGE_SCORE, "Judge scores of answers, by model");
    describe_counter!(FALLBACKS, "Calls moved on to a route plan's next model, by the model that failed");
    describe_counter!(
        CACHE_REQUESTS,
        "Cache lookups by result (hit, semantic-hit, miss, bypass) and tier (local, redis)"
    );
    describe_histogram!(CACHE_LOOKUP, Unit::Seconds, "Cache lookup latency by kind (exact, semantic incl. embedding)");
    describe_histogram!(CACHE_EMBED, Unit::Seconds, "Time to embed a question for a semantic lookup");
    describe_counter!(CACHE_STORES, "Answers stored in the cache");
    describe_counter!(CACHE_SEMANTIC_SKIPPED, "Semantic lookups skipped because the embedder was busy");
    describe_counter!(
        CACHE_GUARD_REJECTIONS,
        "Semantic neighbours above the threshold that the false-hit guard refused"
    );
    describe_counter!(
        CACHE_SAVED_TOKENS,
        "Tokens (prompt and completion) served from the cache instead of an upstream"
    );
    describe_gauge!(CACHE_SAVED_COST, "Cumulative USD not spent thanks to cache hits, from configured prices");
    describe_counter!(RETRIES, "Retries of an upstream call after a retryable failure, by upstream and error kind");
    describe_gauge!(CIRCUIT_STATE, "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open");
    describe_counter!(CIRCUIT_OPENED, "Times an upstream's circuit opened");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by scope (upstream or client key)");
    describe_counter!(CASCADE_ESCALATIONS, "Cascade escalations, by the tier escalated from and the reason");
    describe_counter!(ARM_REQUESTS, "Requests by A/B arm and status");
    describe_histogram!(ARM_DURATION, Unit::Seconds, "Request latency by A/B arm");
    describe_gauge!(ARM_COST, "Cumulative spend in USD by A/B arm (escalated cascade tiers included)");
    describe_histogram!(ARM_JUDGE_SCORE, "Judge scores of returned answers, by A/B arm");
    describe_counter!(ARM_ESCALATIONS, "Requests whose cascade escalated, by A/B arm");
    describe_counter!(REDIS_ERRORS, "Redis operations that failed or timed out, by operation");
    describe_counter!(REDIS_SKIPPED, "Redis operations skipped while backing off after a failure, by operation");
    describe_histogram!(REDIS_LATENCY, Unit::Seconds, "Redis operation latency, by operation");
    describe_gauge!(PLUGIN_STATE, "Plugin state: 0 enabled, 1 disabled after consecutive faults");
    describe_gauge!(ENGINE_RUNNING, "Sequences in the bundled engine's running batch, by upstream");
    describe_gauge!(ENGINE_WAITING, "Sequences waiting for the bundled engine's batch, by upstream");
    describe_gauge!(ENGINE_KV_FREE, "KV-cache blocks the engine can allocate (free or evictable), by upstream");
    describe_gauge!(ENGINE_KV_CAPACITY, "KV-cache blocks in the engine's pool, by upstream");
    describe_counter!(ENGINE_PREFIX_HIT_TOKENS, "Prompt tokens the engine served from its prefix cache");
    describe_counter!(ENGINE_PREEMPTIONS, "Engine sequences preempted for lack of KV blocks");
    describe_counter!(ENGINE_STEPS, "Engine model steps run");
    describe_gauge!(KEY_BUDGET, "A client key's spend budget per period in USD, by key");
    describe_gauge!(KEY_SPEND, "A client key's spend and reservations this period on this replica in USD, by key");
}

/// Installs the log subscriber. `RUST_LOG` wins over the configured level.
pub fn init_logging(cfg: &LoggingConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.json { builder.json().try_init() } else { builder.try_init() };
}

// The plugin runtime's metrics (host/src/plugin), labelled by `plugin` (and
// `stage` where shown).

/// Counter `{plugin,stage}`: stage calls made.
pub const PLUGIN_CALLS: &str = "sluice_plugin_calls_total";
/// Histogram `{plugin,stage}`: call durations, instantiation included.
pub const PLUGIN_CALL_SECONDS: &str = "sluice_plugin_call_seconds";
/// Counter `{plugin,stage,kind}`: traps, deadline overruns, out of memory.
pub const PLUGIN_FAULTS: &str = "sluice_plugin_faults_total";
/// Counter `{plugin}`: plugins disabled after consecutive faults.
pub const PLUGIN_DISABLED: &str = "sluice_plugin_disabled_total";
/// Counter `{plugin}`: fresh-instance calls that found no spare ready.
pub const PLUGIN_SPARE_MISSES: &str = "sluice_plugin_spare_misses_total";
/// Counter `{plugin}`: versions loaded.
pub const PLUGIN_LOADS: &str = "sluice_plugin_loads_total";
/// Counter `{plugin}`: files (or optimised builds) that failed to load.
pub const PLUGIN_LOAD_ERRORS: &str = "sluice_plugin_load_errors_total";
/// Counter `{plugin}`: baseline builds replaced by their optimised build.
pub const PLUGIN_OPTIMISED: &str = "sluice_plugin_optimised_total";
/// Counter: scans of the plugin folder.
pub const PLUGIN_RESCANS: &str = "sluice_plugin_rescans_total";
/// Gauge `{plugin}`: 0 enabled, 1 disabled after consecutive faults (until
/// a probe call succeeds or its file changes).
pub const PLUGIN_STATE: &str = "sluice_plugin_state";

// Read when `/metrics` is scraped (`Gateway::render_metrics`), not on the
// request path: the bundled engine's scheduler, labelled by `upstream`, and
// client keys' spend budgets, labelled by `key`.

/// Gauge `{upstream}`: sequences in the engine's running batch.
pub const ENGINE_RUNNING: &str = "sluice_engine_running_sequences";
/// Gauge `{upstream}`: sequences waiting for admission to the batch.
pub const ENGINE_WAITING: &str = "sluice_engine_waiting_sequences";
/// Gauge `{upstream}`: KV-cache blocks that can be allocated (free, or
/// cached and evictable).
pub const ENGINE_KV_FREE: &str = "sluice_engine_kv_blocks_free";
/// Gauge `{upstream}`: KV-cache blocks in the pool.
pub const ENGINE_KV_CAPACITY: &str = "sluice_engine_kv_blocks_capacity";
/// Counter `{upstream}`: prompt tokens served from the prefix cache.
pub const ENGINE_PREFIX_HIT_TOKENS: &str = "sluice_engine_prefix_cache_hit_tokens_total";
/// Counter `{upstream}`: sequences preempted for lack of KV blocks.
pub const ENGINE_PREEMPTIONS: &str = "sluice_engine_preemptions_total";
/// Counter `{upstream}`: model steps run.
pub const ENGINE_STEPS: &str = "sluice_engine_steps_total";
/// Gauge `{key}`: the key's spend budget per period, in USD.
pub const KEY_BUDGET: &str = "sluice_key_budget_usd";
/// Gauge `{key}`: the key's spend and reservations in the current period on
/// this replica, in USD (replicas sharing a budget through Redis: sum them).
pub const KEY_SPEND: &str = "sluice_key_spend_usd";
