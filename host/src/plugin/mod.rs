//! The WebAssembly plugin runtime: loads every `NAME.wasm` component (with
//! its optional `NAME.toml`) from a folder, detects the stage each
//! implements, calls them with memory limits and deadlines, and hot-reloads
//! the folder. [`PluginHost`] implements the stage traits of
//! [`crate::stage`].
//!
//! Invariant: a plugin can never crash the host. Traps, deadline overruns and
//! out-of-memory are caught, counted and turned into the plugin's failure
//! mode; a component that does not load is rejected with the previous version
//! still serving. Invariant: no client can switch a plugin off. Only faults
//! that are the plugin's own count towards disabling it (not deadline
//! overruns on an overloaded host, not a refusal at its concurrency cap,
//! not an instance the host could not make: `fault.rs`), and a disabled
//! plugin is probed again after a back-off. This module does not serve HTTP: the gateway exposes
//! [`PluginHost::list`] at `GET /admin/plugins`.
//!
//! [`PluginHost`] is called only through the stage traits ([`Compressor`],
//! [`CachePolicy`], [`Router`], [`Judge`]): each call runs the plugins on the
//! calling task, each guest on a fiber that yields at every epoch tick, so a
//! long call never holds a worker thread.
//!
//! Metrics (named in `crate::telemetry`, `PLUGIN_*`; install the recorder
//! before [`PluginHost::start`], as per-plugin handles are registered at
//! load): counters `sluice_plugin_calls_total{plugin,stage}`,
//! `sluice_plugin_faults_total{plugin,stage,kind}`,
//! `sluice_plugin_disabled_total{plugin}`, `sluice_plugin_loads_total{plugin}`,
//! `sluice_plugin_load_errors_total{plugin}`,
//! `sluice_plugin_optimised_total{plugin}`,
//! `sluice_plugin_spare_misses_total{plugin}` (fresh calls that found no
//! spare instance ready), `sluice_plugin_rescans_total` (scans of the
//! folder); histogram
//! `sluice_plugin_call_seconds{plugin,stage}`; gauge
//! `sluice_plugin_state{plugin}` (0 enabled, 1 disabled).
//!
//! Files: `registry.rs` (the folder, loading, hot reload), `loaded.rs` (one
//! loaded version and its calls), `pool.rs` (its instances), `fault.rs`,
//! `call_stats.rs`, `stages.rs` (the four stages over the loaded plugins),
//! `convert.rs` and `bindings.rs` (the WIT boundary), `engine.rs` (wasmtime
//! engines and the artifact cache), `manifest.rs` and `config.rs`.

mod bindings;
mod call_stats;
mod config;
mod convert;
mod engine;
mod error;
mod fault;
mod loaded;
mod manifest;
mod pool;
mod registry;
mod stages;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use serde::Serialize;

pub use config::{PluginConfig, PluginDefaults};
pub use engine::Compiler;
pub use error::PluginError;
pub use manifest::{DirGrant, FailureMode, Grants, InstanceMode};

use crate::api::chat::{ChatRequest, ChatResponse};
use crate::blocking::off_async;
use crate::stage::{
    CacheDecision, CachePolicy, CompressOutcome, Compressor, Judge, JudgeVerdict, RouteCandidate, RoutePlan, Router,
    StageContext, StageError, StageKind,
};
use registry::Shared;

/// One plugin, for `GET /admin/plugins`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    /// `None` when the plugin never loaded (see `load_error`).
    pub stage: Option<StageKind>,
    /// blake3 of the `.wasm` file, hex.
    pub hash: Option<String>,
    /// When this version was loaded (Unix milliseconds).
    pub loaded_at_ms: Option<u64>,
    pub size_bytes: Option<u64>,
    pub order: Option<i64>,
    pub failure: Option<FailureMode>,
    /// Warm instances reused across calls, or a fresh instance per call.
    pub warm: Option<bool>,
    /// `cranelift` (optimised) or `winch` (a quick baseline build serving
    /// until the optimised one is ready).
    pub compiler: Option<Compiler>,
    /// Instances ready for the next calls: idle warm instances, or spare
    /// fresh ones made ahead.
    pub ready_instances: Option<usize>,
    /// Fresh-instance calls that found no spare ready, so instantiated in
    /// the call (a burst, or the background thread falling behind).
    pub spare_misses: u64,
    pub calls: u64,
    /// Policy refusals (`err` results).
    pub errors: u64,
    /// Faults of any kind (traps, deadline overruns, out of memory).
    pub traps: u64,
    pub deadline_overruns: u64,
    pub out_of_memory: u64,
    /// Deadline overruns while the host was overloaded: counted above, not
    /// towards disabling the plugin.
    pub overruns_under_load: u64,
    /// Faults of its own in a row (what disables it).
    pub consecutive_faults: u32,
    pub disabled: bool,
    /// While disabled: how long it stays off before a probe call.
    pub disabled_backoff_ms: Option<u64>,
    /// Probe calls made while it was disabled.
    pub probes: u64,
    /// Calls running now.
    pub in_flight: usize,
    /// Calls refused at its concurrency cap (`max_concurrency`).
    pub busy: u64,
    /// `host.log` lines dropped over the per-call cap.
    pub log_lines_dropped: u64,
    /// Median of recent call durations (microseconds, including instantiation).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Why the latest file of this name was rejected (the previous version,
    /// if any, still serves).
    pub load_error: Option<String>,
}

/// The running plugin system. Cheap to share (`Arc`). Its stages are called
/// through the stage traits it implements ([`Compressor`], [`CachePolicy`],
/// [`Router`], [`Judge`]): the plugins run on the polling task, each guest
/// on a fiber that yields at every epoch tick.
pub struct PluginHost {
    shared: Arc<Shared>,
    /// Watches the folder while it is kept (dropped with the host).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl PluginHost {
    /// Load the folder and (if configured) start watching it.
    pub fn start(config: PluginConfig) -> Result<Arc<PluginHost>, PluginError> {
        engine::runtime().map_err(PluginError::Engine)?;
        // Load the tokenizer now (once per process): loading it inside the
        // first plugin call would eat that call's deadline.
        bindings::count_tokens("warm up");
        let watch = config.watch;
        let shared = Arc::new(Shared::new(config));
        // Loading instantiates each plugin once: keep WASI off the async context.
        off_async(|| shared.rescan())?;
        let watcher = if watch { Some(registry::watch(shared.clone())?) } else { None };
        Ok(Arc::new(PluginHost { shared, _watcher: watcher }))
    }

    /// Rescan the folder now (the watcher does this by itself).
    pub fn reload(&self) -> Result<(), PluginError> {
        off_async(|| self.shared.rescan())
    }

    /// How many times the folder has been scanned (at start, on `reload`,
    /// and by the watcher when files change).
    pub fn rescans(&self) -> u64 {
        self.shared.rescans()
    }

    pub fn config(&self) -> &PluginConfig {
        &self.shared.config
    }

    /// Every loaded plugin, then every name whose file never loaded.
    pub fn list(&self) -> Vec<PluginInfo> {
        let reg = self.shared.registry.load_full();
        let mut out: Vec<PluginInfo> = reg
            .plugins
            .values()
            .map(|p| {
                let s = &p.stats;
                let (p50, p99) = s.percentiles_us();
                PluginInfo {
                    name: p.name().to_owned(),
                    stage: Some(p.stage),
                    hash: Some(p.hash.clone()),
                    loaded_at_ms: p
                        .loaded_at
                        .duration_since(UNIX_EPOCH)
                        .ok()
                        .and_then(|d| u64::try_from(d.as_millis()).ok()),
                    size_bytes: Some(p.size),
                    order: Some(p.meta.manifest.order),
                    failure: Some(p.meta.manifest.failure),
                    warm: Some(p.warm()),
                    compiler: Some(p.compiler),
                    ready_instances: Some(p.ready_instances()),
                    spare_misses: s.spare_misses.load(Ordering::Relaxed),
                    calls: s.calls.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    traps: s.faults.load(Ordering::Relaxed),
                    deadline_overruns: s.deadlines.load(Ordering::Relaxed),
                    out_of_memory: s.out_of_memory.load(Ordering::Relaxed),
                    overruns_under_load: s.overruns_under_load.load(Ordering::Relaxed),
                    consecutive_faults: s.consecutive_faults.load(Ordering::Relaxed),
                    disabled: s.disabled.load(Ordering::Relaxed),
                    disabled_backoff_ms: p.disabled_backoff().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    probes: s.probes.load(Ordering::Relaxed),
                    in_flight: p.in_flight(),
                    busy: s.busy.load(Ordering::Relaxed),
                    log_lines_dropped: s.log_lines_dropped.load(Ordering::Relaxed),
                    p50_us: p50,
                    p99_us: p99,
                    load_error: self.shared.load_error(p.name()),
                }
            })
            .collect();
        out.extend(self.shared.failed_only().into_iter().map(|(name, error)| PluginInfo {
            name,
            stage: None,
            hash: None,
            loaded_at_ms: None,
            size_bytes: None,
            order: None,
            failure: None,
            warm: None,
            compiler: None,
            ready_instances: None,
            spare_misses: 0,
            calls: 0,
            errors: 0,
            traps: 0,
            deadline_overruns: 0,
            out_of_memory: 0,
            overruns_under_load: 0,
            consecutive_faults: 0,
            disabled: false,
            disabled_backoff_ms: None,
            probes: 0,
            in_flight: 0,
            busy: 0,
            log_lines_dropped: 0,
            p50_us: None,
            p99_us: None,
            load_error: Some(error),
        }));
        out
    }
}

/// Runs the compressors in order, each on the previous one's output.
#[async_trait]
impl Compressor for PluginHost {
    async fn compress(&self, request: &ChatRequest, ctx: &StageContext) -> Result<CompressOutcome, StageError> {
        stages::compress(&self.shared.registry.load_full(), request, ctx).await
    }
}

/// The first cache policy's decision; `None` when none is loaded.
#[async_trait]
impl CachePolicy for PluginHost {
    async fn cache_policy(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
    ) -> Result<Option<CacheDecision>, StageError> {
        stages::cache_policy(&self.shared.registry.load_full(), request, ctx).await
    }
}

/// The first router's plan; `None` when no router decided.
#[async_trait]
impl Router for PluginHost {
    async fn route(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
        candidates: &[RouteCandidate],
    ) -> Result<Option<RoutePlan>, StageError> {
        stages::route(&self.shared.registry.load_full(), request, ctx, candidates).await
    }
}

/// The judges' combined verdict; `None` when no judge voted.
#[async_trait]
impl Judge for PluginHost {
    async fn judge(
        &self,
        request: &ChatRequest,
        ctx: &StageContext,
        response: &ChatResponse,
    ) -> Result<Option<JudgeVerdict>, StageError> {
        stages::judge(&self.shared.registry.load_full(), request, ctx, response).await
    }
}

/// Compile `wasm` into `cache_dir` (the artifact cache a [`PluginHost`]
/// with that `cache_dir` reads), so that dropping the file into a watched
/// folder later goes live without compiling: useful for language-runtime
/// components, which take seconds to compile. Returns the content hash.
pub fn precompile(wasm: &std::path::Path, cache_dir: &std::path::Path) -> Result<String, PluginError> {
    let rt = engine::runtime().map_err(PluginError::Engine)?;
    let bytes = std::fs::read(wasm).map_err(|e| PluginError::Dir(wasm.to_path_buf(), e))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    engine::compile_cached(rt, &bytes, &hash, Some(cache_dir))
        .map_err(|e| PluginError::Compile(wasm.to_path_buf(), format!("{e:#}")))?;
    Ok(hash)
}

/// The gateway's token count of `text` (the same tokenizer plugins get).
pub fn count_tokens(text: &str) -> u32 {
    bindings::count_tokens(text)
}
