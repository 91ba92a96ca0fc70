//! One loaded plugin version and how it is called: an instance per call
//! (from its `InstancePool`, see `pool.rs`) with its memory limit and epoch
//! deadline; faults classified (`fault.rs`), counted in its `CallStats`
//! (`call_stats.rs`) and metrics, and the plugin disabled after too many in
//! a row.
//!
//! It does not decide what a stage does with a fault: see `stages.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Linker};
use wasmtime_wasi::runtime::in_tokio;

use super::bindings::{HostState, PluginMeta, caching, compression, judging, routing};
use super::call_stats::CallStats;
use super::engine::Compiler;
use super::fault::{CallFault, classify};
use super::pool::{InstancePool, Live};
use crate::stage::{FaultKind, StageKind};
use crate::telemetry;

/// The export lookups of the stage a plugin implements.
pub enum StageIndices {
    Compressor(compression::GuestIndices),
    CachePolicy(caching::GuestIndices),
    Router(routing::GuestIndices),
    Judge(judging::GuestIndices),
}

/// One version of one plugin, ready to call.
pub struct LoadedPlugin {
    pub meta: Arc<PluginMeta>,
    pub stage: StageKind,
    /// blake3 of the `.wasm` bytes, hex.
    pub hash: String,
    pub loaded_at: SystemTime,
    pub size: u64,
    /// Which compiler built the code it runs.
    pub compiler: Compiler,
    pub indices: StageIndices,
    pub stats: CallStats,
    pool: Arc<InstancePool>,
    calls_total: metrics::Counter,
    call_seconds: metrics::Histogram,
    spare_misses_total: metrics::Counter,
}

impl LoadedPlugin {
    /// Link and validate a compiled component (with the linker of the engine
    /// that compiled it); instantiates it once to prove it works (that
    /// instance, never called, is kept as the first warm instance or spare).
    pub fn new(
        meta: Arc<PluginMeta>,
        (component, linker, compiler): (&Component, &Linker<HostState>, Compiler),
        hash: String,
        size: u64,
        warm: bool,
    ) -> Result<LoadedPlugin, String> {
        let stage = detect_stage(component)?;
        let pre = linker.instantiate_pre(component).map_err(|e| format!("cannot link: {e:#}"))?;
        let bad = |e: wasmtime::Error| format!("wrong {stage} interface: {e:#}");
        let indices = match stage {
            StageKind::Compressor => StageIndices::Compressor(compression::GuestIndices::new(&pre).map_err(bad)?),
            StageKind::CachePolicy => StageIndices::CachePolicy(caching::GuestIndices::new(&pre).map_err(bad)?),
            StageKind::Router => StageIndices::Router(routing::GuestIndices::new(&pre).map_err(bad)?),
            StageKind::Judge => StageIndices::Judge(judging::GuestIndices::new(&pre).map_err(bad)?),
        };
        let labels = [("plugin", meta.name.to_string()), ("stage", stage.as_str().to_owned())];
        let pool = Arc::new(InstancePool::new(pre, meta.clone(), warm));
        let plugin = LoadedPlugin {
            calls_total: metrics::counter!(telemetry::PLUGIN_CALLS, &labels),
            call_seconds: metrics::histogram!(telemetry::PLUGIN_CALL_SECONDS, &labels),
            spare_misses_total: metrics::counter!(telemetry::PLUGIN_SPARE_MISSES, "plugin" => meta.name.to_string()),
            meta,
            stage,
            hash,
            loaded_at: SystemTime::now(),
            size,
            compiler,
            indices,
            stats: CallStats::default(),
            pool,
        };
        // A trial instance, with a generous deadline: this is off the request path.
        let Live { mut store, instance } = in_tokio(plugin.pool.instantiate(Duration::from_secs(2)))
            .map_err(|f| format!("cannot instantiate: {}: {}", f.kind, f.detail))?;
        let typed = match &plugin.indices {
            StageIndices::Compressor(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::CachePolicy(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::Router(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::Judge(i) => i.load(&mut store, &instance).map(drop),
        };
        typed.map_err(bad)?;
        plugin.pool.keep_unused(Live { store, instance });
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Whether calls reuse warm instances (else each gets a fresh one).
    pub fn warm(&self) -> bool {
        self.pool.warm()
    }

    /// Idle warm instances, or spare fresh ones, ready now.
    pub fn ready_instances(&self) -> usize {
        self.pool.ready()
    }

    /// Call the plugin: `f` gets a Store and an instance, with the deadline
    /// armed, and runs on the caller's task (the guest on a fiber, yielding
    /// at every epoch tick). Records statistics and fault counts; never
    /// panics on a fault.
    pub async fn call<R>(
        &self,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFault> {
        if self.stats.disabled.load(Ordering::Relaxed) {
            return Err(CallFault {
                kind: FaultKind::Disabled,
                detail: format!(
                    "disabled after {} consecutive faults; replace its file to re-enable it",
                    self.meta.manifest.max_consecutive_faults
                ),
            });
        }
        let start = Instant::now();
        let result = self.call_inner(f).await;
        let took = start.elapsed();
        self.stats.record_duration(took);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.calls_total.increment(1);
        self.call_seconds.record(took.as_secs_f64());
        match &result {
            Ok(_) => self.stats.consecutive_faults.store(0, Ordering::Relaxed),
            Err(fault) => self.on_fault(fault),
        }
        result
    }

    async fn call_inner<R>(
        &self,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFault> {
        let mut live = self
            .pool
            .checkout(|| {
                self.stats.spare_misses.fetch_add(1, Ordering::Relaxed);
                self.spare_misses_total.increment(1);
            })
            .await?;
        match f(&mut live.store, &live.instance).await {
            Ok(r) => {
                self.pool.checkin(live, true);
                Ok(r)
            }
            Err(e) => {
                let fault = classify(&e, live.store.data().limiter.hit);
                // A faulted instance is never reused.
                self.pool.checkin(live, false);
                Err(fault)
            }
        }
    }

    fn on_fault(&self, fault: &CallFault) {
        let s = &self.stats;
        let name = self.name();
        if fault.kind == FaultKind::Disabled {
            return;
        }
        s.faults.fetch_add(1, Ordering::Relaxed);
        match fault.kind {
            FaultKind::Deadline => s.deadlines.fetch_add(1, Ordering::Relaxed),
            FaultKind::OutOfMemory => s.out_of_memory.fetch_add(1, Ordering::Relaxed),
            _ => s.traps.fetch_add(1, Ordering::Relaxed),
        };
        metrics::counter!(telemetry::PLUGIN_FAULTS,
            "plugin" => name.to_owned(), "stage" => self.stage.as_str(), "kind" => fault.kind.as_str())
        .increment(1);
        tracing::warn!(plugin = name, stage = %self.stage, kind = %fault.kind,
            detail = %fault.detail, "plugin call faulted");
        let n = s.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.meta.manifest.max_consecutive_faults && !s.disabled.swap(true, Ordering::Relaxed) {
            metrics::counter!(telemetry::PLUGIN_DISABLED, "plugin" => name.to_owned()).increment(1);
            tracing::error!(plugin = name, stage = %self.stage, consecutive_faults = n,
                "plugin disabled after consecutive faults; it stays off until its file changes");
            self.pool.close();
        }
    }
}

/// Which stage the component exports; exactly one is required.
fn detect_stage(component: &Component) -> Result<StageKind, String> {
    const EXPORTS: [(&str, StageKind); 4] = [
        ("sluice:plugin/compression@0.1.0", StageKind::Compressor),
        ("sluice:plugin/caching@0.1.0", StageKind::CachePolicy),
        ("sluice:plugin/routing@0.1.0", StageKind::Router),
        ("sluice:plugin/judging@0.1.0", StageKind::Judge),
    ];
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(component.engine()).map(|(n, _)| n).collect();
    let found: Vec<StageKind> = EXPORTS.iter().filter(|(n, _)| names.contains(n)).map(|(_, k)| *k).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "exports no Sluice stage (expected one of {}; it exports: {})",
            EXPORTS.map(|(n, _)| n).join(", "),
            if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
        )),
        _ => Err("exports several stages; a plugin implements exactly one".to_owned()),
    }
}
