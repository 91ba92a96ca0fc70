//! The plugin folder: scanning it into an immutable [`Registry`] snapshot,
//! loading each changed `NAME.wasm` (+ `NAME.toml`) off the request path, and
//! watching it for changes (debounced) to swap in a new snapshot atomically.
//!
//! A file that fails to load is logged and counted, and the previous version
//! of that plugin keeps serving. Calls in flight keep the snapshot (and the
//! plugin versions) they started with.
//!
//! Large components with no optimised artifact cached (language runtimes:
//! 10-20 MB, seconds to compile with Cranelift) are compiled twice: first by
//! the baseline compiler, which puts the new version live quickly, then by
//! Cranelift on a background thread, whose build replaces the baseline one
//! in the registry when it is ready (if that version is still the current
//! one).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::bindings::PluginMeta;
use super::config::PluginConfig;
use super::engine::{Compiler, artifact_path, baseline, compile_cached, runtime};
use super::error::PluginError;
use super::loaded::LoadedPlugin;
use super::manifest::{InstanceMode, Manifest};
use crate::stage::StageKind;
use crate::telemetry;

/// Components at least this big (language runtimes) get warm instances
/// unless their manifest says otherwise.
const WARM_THRESHOLD_BYTES: usize = 4 << 20;

/// An immutable set of loaded plugins.
#[derive(Default)]
pub struct Registry {
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Per stage, in (order, name) order.
    pub stages: HashMap<StageKind, Vec<Arc<LoadedPlugin>>>,
}

impl Registry {
    fn new(plugins: BTreeMap<String, Arc<LoadedPlugin>>) -> Registry {
        let mut stages: HashMap<StageKind, Vec<Arc<LoadedPlugin>>> = HashMap::new();
        for p in plugins.values() {
            stages.entry(p.stage).or_default().push(p.clone());
        }
        for list in stages.values_mut() {
            list.sort_by(|a, b| a.meta.manifest.order.cmp(&b.meta.manifest.order).then_with(|| a.name().cmp(b.name())));
        }
        Registry { plugins, stages }
    }

    pub fn stage(&self, kind: StageKind) -> &[Arc<LoadedPlugin>] {
        self.stages.get(&kind).map_or(&[], Vec::as_slice)
    }
}

/// What the host and its watcher thread share.
pub struct Shared {
    pub config: PluginConfig,
    pub registry: ArcSwap<Registry>,
    /// Per plugin name: the (hash, manifest text) last attempted, and its
    /// load error if that attempt failed.
    attempts: Mutex<HashMap<String, LoadAttempt>>,
    /// A copy of the attempts' errors, locked only briefly (the attempts
    /// lock is held through compiles, which can take seconds).
    errors: Mutex<HashMap<String, String>>,
    /// Scans of the folder so far.
    rescans: AtomicU64,
    /// Calls of every plugin in flight (see `fault::is_own`).
    in_flight: Arc<AtomicUsize>,
}

#[derive(Clone, PartialEq)]
struct LoadAttempt {
    hash: String,
    manifest: Option<String>,
    error: Option<String>,
}

impl Shared {
    pub fn new(config: PluginConfig) -> Shared {
        Shared {
            config,
            registry: ArcSwap::from_pointee(Registry::default()),
            attempts: Mutex::default(),
            errors: Mutex::default(),
            rescans: AtomicU64::new(0),
            in_flight: Arc::default(),
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.config.cache_dir.clone().unwrap_or_else(|| self.config.dir.join(".cache"))
    }

    /// How many times the folder has been scanned.
    pub fn rescans(&self) -> u64 {
        self.rescans.load(Ordering::Relaxed)
    }

    /// The last load error of a plugin name, if its latest file failed.
    pub fn load_error(&self, name: &str) -> Option<String> {
        self.errors.lock().ok()?.get(name).cloned()
    }

    /// Names with a failed latest load and no loaded version.
    pub fn failed_only(&self) -> Vec<(String, String)> {
        let reg = self.registry.load();
        let Ok(errors) = self.errors.lock() else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> =
            errors.iter().filter(|(n, _)| !reg.plugins.contains_key(*n)).map(|(n, e)| (n.clone(), e.clone())).collect();
        v.sort();
        v
    }

    /// Scan the folder and swap in a registry reflecting it. Serialised: the
    /// attempts lock is held throughout. Versions loaded from a baseline build
    /// get their optimised build started in the background.
    pub fn rescan(self: &Arc<Self>) -> Result<(), PluginError> {
        let Ok(mut attempts) = self.attempts.lock() else {
            return Err(PluginError::Poisoned);
        };
        self.rescans.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::PLUGIN_RESCANS).increment(1);
        let dir = &self.config.dir;
        let entries = std::fs::read_dir(dir).map_err(|e| PluginError::Dir(dir.clone(), e))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".wasm").map(str::to_owned))
            .collect();
        names.sort();

        let old = self.registry.load_full();
        let mut plugins = BTreeMap::new();
        let mut upgrades = Vec::new();
        for name in &names {
            let previous = old.plugins.get(name);
            let wasm = dir.join(format!("{name}.wasm"));
            let Ok(bytes) = std::fs::read(&wasm) else {
                // Vanished between listing and reading: a remove in progress.
                attempts.remove(name);
                continue;
            };
            let manifest_text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).ok();
            let hash = blake3::hash(&bytes).to_hex().to_string();
            let attempt = LoadAttempt { hash, manifest: manifest_text, error: None };
            if let Some(prev) = attempts.get(name)
                && prev.hash == attempt.hash
                && prev.manifest == attempt.manifest
            {
                // Unchanged since the last attempt (loaded or failed).
                if let Some(p) = previous {
                    plugins.insert(name.clone(), p.clone());
                }
                continue;
            }
            match self.load_one(name, &bytes, &attempt) {
                Ok(p) => {
                    tracing::info!(plugin = %name, stage = %p.stage, hash = %&p.hash[..12],
                        warm = p.warm(), compiler = ?p.compiler, replaced = previous.is_some(), "plugin loaded");
                    if p.compiler == Compiler::Winch {
                        upgrades.push((name.clone(), p.hash.clone(), bytes));
                    }
                    metrics::counter!(telemetry::PLUGIN_LOADS, "plugin" => name.clone()).increment(1);
                    plugins.insert(name.clone(), Arc::new(p));
                    attempts.insert(name.clone(), attempt);
                }
                Err(error) => {
                    tracing::error!(plugin = %name, file = %wasm.display(), %error,
                        keeps_previous = previous.is_some(), "plugin rejected");
                    metrics::counter!(telemetry::PLUGIN_LOAD_ERRORS, "plugin" => name.clone()).increment(1);
                    if let Some(p) = previous {
                        plugins.insert(name.clone(), p.clone());
                    }
                    attempts.insert(name.clone(), LoadAttempt { error: Some(error), ..attempt });
                }
            }
        }
        for name in old.plugins.keys().filter(|n| !plugins.contains_key(*n)) {
            tracing::info!(plugin = %name, "plugin unloaded (file removed)");
            metrics::gauge!(telemetry::PLUGIN_STATE, "plugin" => name.clone()).set(0.0);
        }
        attempts.retain(|n, _| names.contains(n));
        if let Ok(mut errors) = self.errors.lock() {
            *errors = attempts.iter().filter_map(|(n, a)| Some((n.clone(), a.error.clone()?))).collect();
        }
        self.registry.store(Arc::new(Registry::new(plugins)));
        drop(attempts);
        for (name, hash, bytes) in upgrades {
            let shared = self.clone();
            let spawned = std::thread::Builder::new()
                .name("sluice-plugin-optimise".into())
                .spawn(move || shared.optimise(&name, &hash, &bytes));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the optimised plugin build; the baseline build keeps serving");
            }
        }
        Ok(())
    }

    /// Build the optimised code of a version loaded from a baseline build and
    /// swap it in, unless a newer version (or a removal) came first or the
    /// baseline build was disabled for faulting.
    fn optimise(&self, name: &str, hash: &str, bytes: &[u8]) {
        let started = Instant::now();
        let compiled = runtime().and_then(|rt| {
            compile_cached(rt, bytes, hash, Some(&self.cache_dir())).map(|c| (rt, c)).map_err(|e| format!("{e:#}"))
        });
        let Ok(_attempts) = self.attempts.lock() else {
            return;
        };
        let reg = self.registry.load_full();
        let current = match reg.plugins.get(name) {
            Some(p) if p.hash == hash && p.compiler == Compiler::Winch => p.clone(),
            _ => return tracing::debug!(plugin = name, "optimised build superseded by a newer version"),
        };
        if current.stats.disabled.load(Ordering::Relaxed) {
            return;
        }
        let result = compiled.and_then(|(rt, component)| {
            LoadedPlugin::new(
                current.meta.clone(),
                (&component, &rt.linker, Compiler::Cranelift),
                hash.to_owned(),
                current.size,
                current.warm(),
            )
        });
        match result {
            Ok(plugin) => {
                plugin.stats.carry_counts(&current.stats);
                let mut plugins = reg.plugins.clone();
                plugins.insert(name.to_owned(), Arc::new(plugin));
                self.registry.store(Arc::new(Registry::new(plugins)));
                metrics::counter!(telemetry::PLUGIN_OPTIMISED, "plugin" => name.to_owned()).increment(1);
                tracing::info!(
                    plugin = name,
                    hash = &hash[..12],
                    took_ms = started.elapsed().as_millis() as u64,
                    "plugin now runs its optimised build"
                );
            }
            Err(error) => {
                metrics::counter!(telemetry::PLUGIN_LOAD_ERRORS, "plugin" => name.to_owned()).increment(1);
                tracing::error!(plugin = name, %error, "optimised plugin build failed; the baseline build keeps serving");
            }
        }
    }

    fn load_one(&self, name: &str, bytes: &[u8], attempt: &LoadAttempt) -> Result<LoadedPlugin, String> {
        let defaults = &self.config.defaults;
        let manifest = match &attempt.manifest {
            Some(text) => Manifest::parse(text, defaults).map_err(|e| format!("bad {name}.toml: {e}"))?,
            None => Manifest::defaults(defaults),
        };
        let warm = match manifest.instances {
            InstanceMode::Warm => true,
            InstanceMode::Fresh => false,
            InstanceMode::Auto => bytes.len() >= WARM_THRESHOLD_BYTES,
        };
        let meta = Arc::new(PluginMeta { name: name.into(), manifest, host_in_flight: self.in_flight.clone() });
        let rt = runtime()?;
        let cache_dir = self.cache_dir();
        if let Some(min) = self.config.baseline_min_bytes
            && bytes.len() >= min
            && !artifact_path(rt, &attempt.hash, &cache_dir).is_file()
        {
            // A build that fails here falls through to Cranelift, whose
            // verdict (and error message) is the one that counts.
            match baseline_build(&meta, bytes, &attempt.hash, warm) {
                Ok(p) => return Ok(p),
                Err(e) => tracing::debug!(plugin = name, error = %e, "no usable baseline build"),
            }
        }
        let component = compile_cached(rt, bytes, &attempt.hash, Some(&cache_dir))
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        let size = bytes.len() as u64;
        LoadedPlugin::new(meta, (&component, &rt.linker, Compiler::Cranelift), attempt.hash.clone(), size, warm)
    }
}

/// A build by the baseline compiler (Winch), to serve until Cranelift's is
/// ready; an error where Winch cannot run or cannot build this component.
fn baseline_build(meta: &Arc<PluginMeta>, bytes: &[u8], hash: &str, warm: bool) -> Result<LoadedPlugin, String> {
    let tier = baseline()?;
    let component = wasmtime::component::Component::new(&tier.engine, bytes).map_err(|e| format!("{e:#}"))?;
    LoadedPlugin::new(
        meta.clone(),
        (&component, &tier.linker, Compiler::Winch),
        hash.to_owned(),
        bytes.len() as u64,
        warm,
    )
}

/// Whether an event path is a plugin or manifest file (not a temp file).
fn relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".wasm") || name.ends_with(".toml"))
}

/// What a watch event says about the folder's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A file is complete: renamed into place (how `plugins/build.sh`
    /// publishes), closed after writing, or removed.
    Settled,
    /// A file is being created or written: more events may follow.
    Partial,
}

/// The change an event of `kind` reports; `None` for accesses, which change
/// nothing (every rescan reads the files, and inotify reports those opens
/// and closes: reacting to them would rescan forever).
fn change_of(kind: &EventKind) -> Option<Change> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Name(_)) => Some(Change::Settled),
        EventKind::Access(_) => None,
        _ => Some(Change::Partial),
    }
}

/// How long the watcher waits for more events after a settled change (a
/// manifest published just after its component): short, since the file is
/// complete. Partial changes wait the configured debounce.
const SETTLE: Duration = Duration::from_millis(10);

/// Watch the folder; rescan once changes settle: `SETTLE` after a file is
/// complete, or the debounce after a partial write (at most 4x the debounce
/// after the first change). Stops when the watcher is dropped.
pub fn watch(shared: Arc<Shared>) -> Result<RecommendedWatcher, PluginError> {
    let (tx, rx) = channel::<Change>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev.paths.iter().any(|p| relevant(p))
            && let Some(change) = change_of(&ev.kind)
        {
            let _ = tx.send(change);
        }
    })
    .map_err(PluginError::Watch)?;
    watcher.watch(&shared.config.dir, RecursiveMode::NonRecursive).map_err(PluginError::Watch)?;
    let debounce = shared.config.debounce;
    std::thread::Builder::new()
        .name("sluice-plugin-watch".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let until = Instant::now() + debounce * 4;
                let mut partial = first == Change::Partial;
                loop {
                    let quiet = if partial { debounce } else { SETTLE.min(debounce) };
                    let wait = quiet.min(until.saturating_duration_since(Instant::now()));
                    match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                        Ok(change) if Instant::now() < until => partial |= change == Change::Partial,
                        Ok(_) | Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                if let Err(e) = shared.rescan() {
                    tracing::error!(error = %e, "plugin folder rescan failed");
                }
            }
        })
        .map_err(|e| PluginError::Dir(PathBuf::from("<watch thread>"), e))?;
    Ok(watcher)
}
