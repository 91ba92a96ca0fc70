//! How the plugin host is configured: the folder, the artifact cache, hot
//! reload, and the defaults for plugins whose manifest is silent.
//! `crate::config` fills it from a `[plugins]` section (and decides the
//! default folder); this module reads no file.
//!
//! Per-plugin settings live in each plugin's `NAME.toml` (see `manifest.rs`).

use std::path::PathBuf;
use std::time::Duration;

/// Defaults for plugins whose manifest does not say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDefaults {
    /// Longest a call may run (default 50 ms).
    pub deadline: Duration,
    /// Most linear memory an instance may grow to (default 64 MiB).
    pub memory_bytes: usize,
    /// Faults of its own in a row after which a plugin is disabled (default
    /// 5). Deadline overruns while the host was overloaded and instances
    /// the host could not make do not count (see `fault.rs`).
    pub max_consecutive_faults: u32,
    /// How long a disabled plugin stays off before one probe call may run
    /// (default 30 s); each failed probe doubles it, up to
    /// `disabled_backoff_max`.
    pub disabled_backoff: Duration,
    /// Longest back-off of a disabled plugin (default 10 min).
    pub disabled_backoff_max: Duration,
    /// Most calls of one plugin running at once (default 64).
    pub max_concurrency: usize,
    /// How long a call over `max_concurrency` waits for a running one to
    /// finish before its stage's failure mode applies (default 10 ms).
    pub concurrency_wait: Duration,
    /// Most idle warm instances kept per warm plugin (default 4).
    pub warm_pool: usize,
    /// Fresh instances made ahead of their calls, off the request path,
    /// per fresh-instance plugin (default 2; 0 instantiates in the call).
    pub spares: usize,
}

impl Default for PluginDefaults {
    fn default() -> Self {
        PluginDefaults {
            deadline: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            max_consecutive_faults: 5,
            disabled_backoff: Duration::from_secs(30),
            disabled_backoff_max: Duration::from_secs(600),
            max_concurrency: 64,
            concurrency_wait: Duration::from_millis(10),
            warm_pool: 4,
            spares: 2,
        }
    }
}

/// Where plugins come from and how they run.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin folder.
    pub dir: PathBuf,
    /// Where compiled components are cached (default `DIR/.cache`).
    pub cache_dir: Option<PathBuf>,
    /// Watch the folder and hot-reload (default true).
    pub watch: bool,
    /// Quiet time after a change before reloading (default 100 ms).
    pub debounce: Duration,
    /// Components at least this big, when no optimised build of them is
    /// cached, first go live on a quick baseline (Winch) build while the
    /// optimised (Cranelift) one is made in the background (default 4 MiB:
    /// Python and JavaScript plugins; `None` compiles everything with
    /// Cranelift before it goes live).
    pub baseline_min_bytes: Option<usize>,
    pub defaults: PluginDefaults,
}

impl PluginConfig {
    pub fn new(dir: impl Into<PathBuf>) -> PluginConfig {
        PluginConfig {
            dir: dir.into(),
            cache_dir: None,
            watch: true,
            debounce: Duration::from_millis(100),
            baseline_min_bytes: Some(4 << 20),
            defaults: PluginDefaults::default(),
        }
    }
}
