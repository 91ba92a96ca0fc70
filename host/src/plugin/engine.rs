//! The process-wide wasmtime Engine (component model, pooling allocator,
//! epoch interruption), the Linker built once for it, the epoch ticker, and
//! the on-disk cache of compiled components keyed by content hash. Also the
//! baseline tier: a second Engine using Winch, wasmtime's single-pass
//! compiler, which compiles a large component several times faster than
//! Cranelift (into slower code), so a new version can serve while the
//! optimised build is made in the background.
//!
//! It does not know about plugins, manifests or stages.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{HostState, HostView};

/// How often the epoch advances: a running guest yields to its async worker
/// (and has its deadline checked) at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Largest linear memory a plugin may be granted (the pool's slot size).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Which compiler produced a plugin's machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// Cranelift, the optimising compiler: the code every plugin ends up on.
    Cranelift,
    /// Winch, the baseline compiler: a quick first build of a large
    /// component, replaced by Cranelift's once that is ready.
    Winch,
}

/// The shared Engine and Linker.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    /// Hex tag of the engine's compatibility (wasmtime version and settings).
    pub engine_tag: String,
}

/// The baseline tier's Engine and Linker.
pub struct Tier {
    pub engine: Engine,
    pub linker: Linker<HostState>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
static BASELINE: OnceLock<Result<Tier, String>> = OnceLock::new();

/// The process-wide runtime, created (with its epoch ticker) on first use.
pub fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME.get_or_init(|| build().map_err(|e| format!("{e:#}"))).as_ref().map_err(Clone::clone)
}

/// The baseline (Winch) tier, created on first use; an error where Winch
/// cannot run (it supports fewer targets than Cranelift).
pub fn baseline() -> Result<&'static Tier, String> {
    BASELINE.get_or_init(|| build_baseline().map_err(|e| format!("{e:#}"))).as_ref().map_err(Clone::clone)
}

/// Same limits and interruption as the optimising tier. Instances come from
/// the on-demand allocator: baseline builds are short-lived and large
/// components keep warm instances, so pool slots would sit reserved for
/// nothing.
fn build_baseline() -> wasmtime::Result<Tier> {
    let mut config = Config::new();
    config
        .strategy(wasmtime::Strategy::Winch)
        // Winch compiles the functions; Cranelift still compiles the
        // trampolines between host and guest, one per exported or escaping
        // function (thousands in a language runtime). They run a few
        // instructions each and only until the optimised build replaces
        // this one, so compile them as quickly as possible.
        .cranelift_opt_level(wasmtime::OptLevel::None)
        .cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass)
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true);
    let engine = Engine::new(&config)?;
    let linker = linker(&engine)?;
    spawn_ticker(&engine, "sluice-plugin-epoch-baseline")?;
    Ok(Tier { engine, linker })
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    HostView::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Advances `engine`'s epoch every tick for as long as the engine lives.
fn spawn_ticker(engine: &Engine, name: &str) -> wasmtime::Result<()> {
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(wasmtime::Error::msg)?;
    Ok(())
}

fn build() -> wasmtime::Result<Runtime> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(1000)
        .total_core_instances(4000)
        .total_memories(1000)
        .total_tables(2000)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_core_instances_per_component(64)
        .max_memories_per_component(32)
        .max_tables_per_component(64)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .table_elements(100_000)
        .max_unused_warm_slots(100)
        // A freed slot's memory (up to 2 MiB) is rewritten in place and kept
        // resident, so a fresh instance takes no page faults on it; that
        // runs on the background instance thread. Scanning for the dirty
        // pages only (`pagemap_scan`, Linux 6.7+) does less of that work
        // but made the four-stage gateway slower at concurrency 1 here
        // (plugins/BENCHMARKS.md), so it stays off.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    let linker = linker(&engine)?;

    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let engine_tag = format!("{:016x}", h.finish());
    spawn_ticker(&engine, "sluice-plugin-epoch")?;
    Ok(Runtime { engine, linker, engine_tag })
}

/// The path of the optimised artifact of the component with content hash
/// `hash`, in `cache_dir`.
pub fn artifact_path(rt: &Runtime, hash: &str, cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!("{hash}-{}.cwasm", rt.engine_tag))
}

/// Compile `bytes` (content hash `hash`), or load the artifact a previous run
/// compiled from the same bytes with the same engine.
pub fn compile_cached(rt: &Runtime, bytes: &[u8], hash: &str, cache_dir: Option<&Path>) -> wasmtime::Result<Component> {
    let path: Option<PathBuf> = cache_dir.map(|d| artifact_path(rt, hash, d));
    if let Some(path) = &path
        && path.is_file()
    {
        match load_artifact(&rt.engine, path) {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "ignoring unusable compiled plugin artifact"),
        }
    }
    let component = Component::new(&rt.engine, bytes)?;
    if let Some(path) = &path
        && let Err(e) = store_artifact(&component, path)
    {
        tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
    }
    Ok(component)
}

fn store_artifact(component: &Component, path: &Path) -> wasmtime::Result<()> {
    let bytes = component.serialize()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let unique = format!("tmp{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let tmp = path.with_extension(unique);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Load a compiled artifact from the cache.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime output. The
    // only files read here are in the plugin cache directory, written by
    // `store_artifact` above from `Component::serialize`, and named by the
    // blake3 hash of the source component plus this engine's compatibility
    // hash, so a file is only ever read back by the engine configuration that
    // wrote it (and wasmtime re-checks version and settings in its header).
    // The cache directory must be writable only by the gateway.
    unsafe { Component::deserialize_file(engine, path) }
}
