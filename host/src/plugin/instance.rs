//! One loaded plugin version and how it is called: an instance per call
//! (see `instances.rs`) with its memory limit and epoch deadline; faults
//! classified (trap, deadline, out of memory), counted, and the plugin
//! disabled after too many in a row. Also its call statistics.
//!
//! It does not decide what a stage does with a fault: see `stages.rs`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Linker};
use wasmtime_wasi::runtime::in_tokio;

use super::bindings::{HostState, PluginMeta, caching, compression, judging, routing};
use super::engine::Compiler;
use super::instances::{Instances, Live};
use crate::stage::{FaultKind, StageKind};

/// The export lookups of the stage a plugin implements.
pub enum StageIndices {
    Compressor(compression::GuestIndices),
    CachePolicy(caching::GuestIndices),
    Router(routing::GuestIndices),
    Judge(judging::GuestIndices),
}

/// A broken call.
#[derive(Debug, Clone)]
pub struct CallFault {
    pub kind: FaultKind,
    pub detail: String,
}

/// How many recent call durations the percentiles are computed over.
const WINDOW: usize = 1024;

/// Counters of one plugin version.
#[derive(Default)]
pub struct Stats {
    pub calls: AtomicU64,
    /// Policy refusals (WIT `err`).
    pub errors: AtomicU64,
    /// Faults of any kind.
    pub faults: AtomicU64,
    pub traps: AtomicU64,
    pub deadlines: AtomicU64,
    pub out_of_memory: AtomicU64,
    pub consecutive_faults: AtomicU32,
    pub disabled: AtomicBool,
    /// Fresh-instance calls that found no spare ready and instantiated
    /// inline.
    pub spare_misses: AtomicU64,
    /// Recent call durations in nanoseconds (ring buffer) and next slot.
    recent: Mutex<(Vec<u64>, usize)>,
}

impl Stats {
    fn record_duration(&self, d: Duration) {
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
    pub fn carry_counts(&self, from: &Stats) {
        for (to, from) in [
            (&self.calls, &from.calls),
            (&self.errors, &from.errors),
            (&self.faults, &from.faults),
            (&self.traps, &from.traps),
            (&self.deadlines, &from.deadlines),
            (&self.out_of_memory, &from.out_of_memory),
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
    pub stats: Stats,
    instances: Arc<Instances>,
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
        let instances = Arc::new(Instances::new(pre, meta.clone(), warm));
        let plugin = LoadedPlugin {
            calls_total: metrics::counter!("sluice_plugin_calls_total", &labels),
            call_seconds: metrics::histogram!("sluice_plugin_call_seconds", &labels),
            spare_misses_total: metrics::counter!("sluice_plugin_spare_misses_total", "plugin" => meta.name.to_string()),
            meta,
            stage,
            hash,
            loaded_at: SystemTime::now(),
            size,
            compiler,
            indices,
            stats: Stats::default(),
            instances,
        };
        // A trial instance, with a generous deadline: this is off the request path.
        let Live { mut store, instance } = in_tokio(plugin.instances.instantiate(Duration::from_secs(2)))
            .map_err(|f| format!("cannot instantiate: {}: {}", f.kind, f.detail))?;
        let typed = match &plugin.indices {
            StageIndices::Compressor(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::CachePolicy(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::Router(i) => i.load(&mut store, &instance).map(drop),
            StageIndices::Judge(i) => i.load(&mut store, &instance).map(drop),
        };
        typed.map_err(bad)?;
        plugin.instances.keep_unused(Live { store, instance });
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Whether calls reuse warm instances (else each gets a fresh one).
    pub fn warm(&self) -> bool {
        self.instances.warm()
    }

    /// Idle warm instances, or spare fresh ones, ready now.
    pub fn ready_instances(&self) -> usize {
        self.instances.ready()
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
            .instances
            .checkout(|| {
                self.stats.spare_misses.fetch_add(1, Ordering::Relaxed);
                self.spare_misses_total.increment(1);
            })
            .await?;
        match f(&mut live.store, &live.instance).await {
            Ok(r) => {
                self.instances.checkin(live, true);
                Ok(r)
            }
            Err(e) => {
                let fault = classify(&e, live.store.data().limiter.hit);
                // A faulted instance is never reused.
                self.instances.checkin(live, false);
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
        metrics::counter!("sluice_plugin_faults_total",
            "plugin" => name.to_owned(), "stage" => self.stage.as_str(), "kind" => fault.kind.as_str())
        .increment(1);
        tracing::warn!(plugin = name, stage = %self.stage, kind = %fault.kind,
            detail = %fault.detail, "plugin call faulted");
        let n = s.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.meta.manifest.max_consecutive_faults && !s.disabled.swap(true, Ordering::Relaxed) {
            metrics::counter!("sluice_plugin_disabled_total", "plugin" => name.to_owned()).increment(1);
            tracing::error!(plugin = name, stage = %self.stage, consecutive_faults = n,
                "plugin disabled after consecutive faults; it stays off until its file changes");
            self.instances.close();
        }
    }
}

pub(super) fn classify(e: &wasmtime::Error, out_of_memory: bool) -> CallFault {
    let kind = if out_of_memory {
        FaultKind::OutOfMemory
    } else if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        FaultKind::Deadline
    } else {
        FaultKind::Trap
    };
    CallFault { kind, detail: e.root_cause().to_string() }
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

/// Run blocking plugin work (loading, instantiating, a blocking stage call)
/// where it may enter a Tokio runtime of its own, which panics inside an
/// async task unless the worker is first handed off with `block_in_place`.
pub(crate) fn off_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}
