//! How the plugin host is configured: the folder, the artifact cache, hot
//! reload, and the defaults for plugins whose manifest is silent; plus
//! [`PluginSettings`], the same as a serde-readable config section.
//!
//! Per-plugin settings live in each plugin's `NAME.toml` (see `manifest.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Defaults for plugins whose manifest does not say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDefaults {
    /// Longest a call may run (default 50 ms).
    pub deadline: Duration,
    /// Most linear memory an instance may grow to (default 64 MiB).
    pub memory_bytes: usize,
    /// Faults in a row after which a plugin is disabled (default 5).
    pub max_consecutive_faults: u32,
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
            warm_pool: 4,
            spares: 2,
        }
    }
}

/// Where plugins come from and how they run.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin folder (`plugins/dist` by default).
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

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig::new("plugins/dist")
    }
}

impl PluginConfig {
    /// `plugins/dist` (relative to the working directory) when it exists.
    pub fn default_dir() -> Option<PathBuf> {
        let dir = Path::new("plugins/dist");
        dir.is_dir().then(|| dir.to_path_buf())
    }
}

/// A `[plugins]` config section; every key optional.
///
/// ```toml
/// [plugins]
/// dir = "plugins/dist"
/// cache_dir = "/var/cache/sluice/plugins"
/// watch = true
/// debounce_ms = 100
/// baseline_min_mib = 4    # 0: every new component; false: never
/// deadline_ms = 50
/// memory_mib = 64
/// max_consecutive_faults = 5
/// warm_pool = 4
/// spares = 2
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    pub dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub watch: Option<bool>,
    pub debounce_ms: Option<u64>,
    pub baseline_min_mib: Option<Baseline>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub max_consecutive_faults: Option<u32>,
    pub warm_pool: Option<usize>,
    pub spares: Option<usize>,
}

/// `baseline_min_mib`: a size in MiB, `false` for no baseline builds, or
/// `true` for the default size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Baseline {
    MiB(u64),
    Flag(bool),
}

impl PluginSettings {
    /// The config these settings describe (defaults for what they omit);
    /// `None` when no `dir` is set and `plugins/dist` does not exist.
    pub fn into_config(self) -> Option<PluginConfig> {
        let mut c = PluginConfig::new(self.dir.or_else(PluginConfig::default_dir)?);
        c.cache_dir = self.cache_dir;
        if let Some(w) = self.watch {
            c.watch = w;
        }
        if let Some(ms) = self.debounce_ms {
            c.debounce = Duration::from_millis(ms);
        }
        match self.baseline_min_mib {
            Some(Baseline::Flag(false)) => c.baseline_min_bytes = None,
            Some(Baseline::MiB(m)) => c.baseline_min_bytes = Some(usize::try_from(m << 20).unwrap_or(usize::MAX)),
            Some(Baseline::Flag(true)) | None => {}
        }
        let d = &mut c.defaults;
        if let Some(ms) = self.deadline_ms {
            d.deadline = Duration::from_millis(ms);
        }
        if let Some(m) = self.memory_mib {
            d.memory_bytes = usize::try_from(m << 20).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.max_consecutive_faults {
            d.max_consecutive_faults = n.max(1);
        }
        if let Some(n) = self.warm_pool {
            d.warm_pool = n;
        }
        if let Some(n) = self.spares {
            d.spares = n;
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline_of(toml_text: &str) -> Option<usize> {
        let s: PluginSettings = toml::from_str(&format!("dir = \"x\"\n{toml_text}")).expect("parses");
        s.into_config().expect("config").baseline_min_bytes
    }

    #[test]
    fn baseline_builds_take_a_size_or_a_switch() {
        assert_eq!(baseline_of(""), Some(4 << 20));
        assert_eq!(baseline_of("baseline_min_mib = 0"), Some(0));
        assert_eq!(baseline_of("baseline_min_mib = 16"), Some(16 << 20));
        assert_eq!(baseline_of("baseline_min_mib = false"), None);
        assert_eq!(baseline_of("baseline_min_mib = true"), Some(4 << 20));
        assert!(toml::from_str::<PluginSettings>("baseline_min_mib = \"big\"").is_err());
    }
}
