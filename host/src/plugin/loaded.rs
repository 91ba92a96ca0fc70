//! One loaded plugin version and how it is called: at most
//! `max_concurrency` calls at once, an instance per call (from its
//! `InstancePool`, see `pool.rs`) with its memory limit and epoch deadline;
//! faults classified (`fault.rs`), counted in its `CallStats`
//! (`call_stats.rs`) and metrics, and the plugin disabled after too many of
//! its own in a row, then probed after a back-off (its `Breaker`).
//!
//! It does not decide what a stage does with a fault: see `stages.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};
use wasmtime::Store;
use wasmtime::component::{Component, Instance, Linker};
use wasmtime_wasi::runtime::in_tokio;

use super::bindings::{CallWatch, HostState, PluginMeta, caching, compression, judging, routing};
use super::call_stats::CallStats;
use super::engine::Compiler;
use super::fault::{Admit, Breaker, CallFault, CallLoad, classify, is_own};
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
    /// Disables the plugin after faults of its own, and lets it back.
    breaker: Breaker,
    /// Slots under the plugin's concurrency cap.
    limit: Semaphore,
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
        let meta_concurrency = meta.manifest.max_concurrency;
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
            breaker: Breaker::default(),
            limit: Semaphore::new(meta_concurrency),
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
        plugin.state_gauge().set(0.0);
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// `sluice_plugin_state`: 0 enabled, 1 disabled.
    fn state_gauge(&self) -> metrics::Gauge {
        metrics::gauge!(telemetry::PLUGIN_STATE, "plugin" => self.name().to_owned())
    }

    /// Whether calls reuse warm instances (else each gets a fresh one).
    pub fn warm(&self) -> bool {
        self.pool.warm()
    }

    /// Idle warm instances, or spare fresh ones, ready now.
    pub fn ready_instances(&self) -> usize {
        self.pool.ready()
    }

    /// Calls of this plugin running now.
    pub fn in_flight(&self) -> usize {
        self.meta.manifest.max_concurrency.saturating_sub(self.limit.available_permits())
    }

    /// The back-off of the disabled plugin; `None` while enabled.
    pub fn disabled_backoff(&self) -> Option<Duration> {
        self.breaker.backoff()
    }

    /// Call the plugin: `f` gets a Store and an instance, with the deadline
    /// armed, and runs on the caller's task (the guest on a fiber, yielding
    /// at every epoch tick). Records statistics and fault counts; never
    /// panics on a fault.
    ///
    /// A disabled plugin is not called until its back-off is over; then one
    /// call probes it. A call over the plugin's concurrency cap waits
    /// briefly for a slot, then is refused as `Busy`.
    pub async fn call<R>(
        &self,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallFault> {
        let probe = self.stats.disabled.load(Ordering::Relaxed) && self.admit()?;
        // Released when the call ends, or when the caller drops it.
        let mut probing = ProbeGuard { breaker: &self.breaker, active: probe };
        let Some(_permit) = self.slot().await else {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::PLUGIN_FAULTS,
                "plugin" => self.name().to_owned(), "stage" => self.stage.as_str(), "kind" => FaultKind::Busy.as_str())
            .increment(1);
            return Err(CallFault {
                kind: FaultKind::Busy,
                detail: format!("{} calls already running (its max_concurrency)", self.meta.manifest.max_concurrency),
            });
        };
        let _in_flight = InFlight::enter(&self.meta.host_in_flight);
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .or_else(|_| std::thread::available_parallelism().map(usize::from))
            .unwrap_or(1);
        let start = Instant::now();
        let (result, watch) = self.call_inner(f).await;
        let took = start.elapsed();
        self.stats.record_duration(took);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.calls_total.increment(1);
        self.call_seconds.record(took.as_secs_f64());
        if watch.log_dropped > 0 {
            self.stats.log_lines_dropped.fetch_add(u64::from(watch.log_dropped), Ordering::Relaxed);
        }
        match &result {
            Ok(_) => {
                self.stats.consecutive_faults.store(0, Ordering::Relaxed);
                if probing.active {
                    probing.active = false;
                    self.reenable();
                }
            }
            Err(fault) => {
                let load = CallLoad { peak_in_flight: watch.peak_in_flight, workers };
                let own = is_own(fault.kind, load);
                if own && probing.active {
                    // The probe failed: the breaker re-opens, longer.
                    probing.active = false;
                }
                self.on_fault(fault, own, probe);
            }
        }
        result
    }

    /// Whether a call to the disabled plugin may run as its probe; the
    /// `Disabled` fault while it may not.
    fn admit(&self) -> Result<bool, CallFault> {
        match self.breaker.admit(Instant::now()) {
            Admit::Probe => {
                self.stats.probes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = self.name(), stage = %self.stage, "probing disabled plugin");
                Ok(true)
            }
            Admit::Closed => Ok(false),
            Admit::Open => Err(CallFault {
                kind: FaultKind::Disabled,
                detail: format!(
                    "disabled after {} consecutive faults; retried after {:?}, or when its file changes",
                    self.meta.manifest.max_consecutive_faults,
                    self.breaker.backoff().unwrap_or_default()
                ),
            }),
        }
    }

    /// A slot under the concurrency cap, waiting at most the manifest's
    /// `concurrency_wait` for one; `None` when none freed up.
    async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        match self.limit.try_acquire() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => {
                let wait = self.meta.manifest.concurrency_wait;
                tokio::time::timeout(wait, self.limit.acquire()).await.ok()?.ok()
            }
        }
    }

    /// The probe succeeded: enabled again.
    fn reenable(&self) {
        self.breaker.close();
        self.pool.reopen();
        self.stats.disabled.store(false, Ordering::Relaxed);
        self.state_gauge().set(0.0);
        tracing::info!(plugin = self.name(), stage = %self.stage, "plugin re-enabled: its probe call succeeded");
    }

    async fn call_inner<R>(
        &self,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> (Result<R, CallFault>, CallWatch) {
        let checkout = self.pool.checkout(|| {
            self.stats.spare_misses.fetch_add(1, Ordering::Relaxed);
            self.spare_misses_total.increment(1);
        });
        let mut live = match checkout.await {
            Ok(live) => live,
            // Making an instance is the host's work: a deadline overrun
            // there is put down to load (traps and out of memory still
            // count).
            Err(fault) => return (Err(fault), CallWatch { peak_in_flight: usize::MAX, ..CallWatch::default() }),
        };
        let result = f(&mut live.store, &live.instance).await;
        let watch = live.store.data().watch;
        match result {
            Ok(r) => {
                self.pool.checkin(live, true);
                (Ok(r), watch)
            }
            Err(e) => {
                let fault = classify(&e, live.store.data().limiter.hit);
                // A faulted instance is never reused.
                self.pool.checkin(live, false);
                (Err(fault), watch)
            }
        }
    }

    /// Count a fault; disable the plugin after `max_consecutive_faults` of
    /// its own in a row (`own`), or re-open it after a failed probe.
    fn on_fault(&self, fault: &CallFault, own: bool, probe: bool) {
        let s = &self.stats;
        let name = self.name();
        if matches!(fault.kind, FaultKind::Disabled | FaultKind::Busy) {
            return;
        }
        s.faults.fetch_add(1, Ordering::Relaxed);
        match fault.kind {
            FaultKind::Deadline => s.deadlines.fetch_add(1, Ordering::Relaxed),
            FaultKind::OutOfMemory => s.out_of_memory.fetch_add(1, Ordering::Relaxed),
            _ => s.traps.fetch_add(1, Ordering::Relaxed),
        };
        if fault.kind == FaultKind::Deadline && !own {
            s.overruns_under_load.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!(telemetry::PLUGIN_FAULTS,
            "plugin" => name.to_owned(), "stage" => self.stage.as_str(), "kind" => fault.kind.as_str())
        .increment(1);
        tracing::warn!(plugin = name, stage = %self.stage, kind = %fault.kind, own,
            detail = %fault.detail, "plugin call faulted");
        if !own {
            return;
        }
        let n = s.consecutive_faults.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let m = &self.meta.manifest;
        if probe {
            let backoff = self.breaker.trip(Instant::now(), m.disabled_backoff, m.disabled_backoff_max);
            tracing::error!(plugin = name, stage = %self.stage, backoff_ms = backoff.as_millis() as u64,
                "disabled plugin's probe call faulted; it stays off");
        } else if n >= m.max_consecutive_faults && !s.disabled.swap(true, Ordering::Relaxed) {
            let backoff = self.breaker.trip(Instant::now(), m.disabled_backoff, m.disabled_backoff_max);
            metrics::counter!(telemetry::PLUGIN_DISABLED, "plugin" => name.to_owned()).increment(1);
            self.state_gauge().set(1.0);
            tracing::error!(plugin = name, stage = %self.stage, consecutive_faults = n,
                backoff_ms = backoff.as_millis() as u64,
                "plugin disabled after consecutive faults; one call probes it after the back-off, or replace its file");
            self.pool.close();
        }
    }
}

/// The probe slot of a disabled plugin, given back if the probe ends
/// without a verdict (a fault not its own, or the caller gone).
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    active: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.active {
            self.breaker.release_probe();
        }
    }
}

/// One of the host's plugin calls in flight.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
