//! `[plugins]`, checked into `plugin::PluginConfig`; and the one place that
//! decides the default plugin folder ([`DEFAULT_DIR`], used when it exists
//! and neither the file nor `--plugins` names one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::{Baseline, RawPlugins};
use crate::plugin::PluginConfig;

/// The plugin folder when none is configured, relative to the working
/// directory (where `plugins/build.sh` publishes the example plugins).
pub const DEFAULT_DIR: &str = "plugins/dist";

/// [`DEFAULT_DIR`] when it exists.
pub(super) fn default_dir() -> Option<PathBuf> {
    let dir = Path::new(DEFAULT_DIR);
    dir.is_dir().then(|| dir.to_path_buf())
}

impl Checker<'_> {
    /// `None` when no `dir` is set and [`DEFAULT_DIR`] does not exist.
    pub(super) fn plugins(&self, raw: &RawPlugins) -> Result<Option<PluginConfig>, ConfigError> {
        let Some(dir) = raw.dir.as_ref().map(PathBuf::from).or_else(default_dir) else {
            return Ok(None);
        };
        let mut c = PluginConfig::new(dir);
        c.cache_dir = raw.cache_dir.as_ref().map(PathBuf::from);
        if let Some(w) = raw.watch {
            c.watch = w;
        }
        if let Some(ms) = raw.debounce_ms {
            c.debounce = Duration::from_millis(ms);
        }
        match raw.baseline_min_mib {
            Some(Baseline::Flag(false)) => c.baseline_min_bytes = None,
            Some(Baseline::MiB(m)) => c.baseline_min_bytes = Some(mib(m)),
            Some(Baseline::Flag(true)) | None => {}
        }
        let d = &mut c.defaults;
        if let Some(ms) = &raw.deadline_ms {
            if *ms.get_ref() == 0 {
                return self.err("plugins.deadline_ms", Some(ms.span()), "must be greater than 0");
            }
            d.deadline = Duration::from_millis(*ms.get_ref());
        }
        if let Some(m) = &raw.memory_mib {
            if *m.get_ref() == 0 {
                return self.err("plugins.memory_mib", Some(m.span()), "must be greater than 0");
            }
            d.memory_bytes = mib(*m.get_ref());
        }
        if let Some(n) = raw.max_consecutive_faults {
            d.max_consecutive_faults = n.max(1);
        }
        if let Some(ms) = &raw.disabled_backoff_ms {
            if *ms.get_ref() == 0 {
                return self.err("plugins.disabled_backoff_ms", Some(ms.span()), "must be greater than 0");
            }
            d.disabled_backoff = Duration::from_millis(*ms.get_ref());
        }
        if let Some(ms) = &raw.disabled_backoff_max_ms {
            if *ms.get_ref() == 0 {
                return self.err("plugins.disabled_backoff_max_ms", Some(ms.span()), "must be greater than 0");
            }
            d.disabled_backoff_max = Duration::from_millis(*ms.get_ref());
        }
        if d.disabled_backoff_max < d.disabled_backoff {
            let span = raw.disabled_backoff_max_ms.as_ref().or(raw.disabled_backoff_ms.as_ref()).map(|s| s.span());
            return self.err("plugins.disabled_backoff_max_ms", span, "must not be less than disabled_backoff_ms");
        }
        if let Some(n) = &raw.max_concurrency {
            if *n.get_ref() == 0 {
                return self.err("plugins.max_concurrency", Some(n.span()), "must be greater than 0");
            }
            d.max_concurrency = *n.get_ref();
        }
        if let Some(ms) = raw.concurrency_wait_ms {
            d.concurrency_wait = Duration::from_millis(ms);
        }
        if let Some(n) = raw.warm_pool {
            d.warm_pool = n;
        }
        if let Some(n) = raw.spares {
            d.spares = n;
        }
        Ok(Some(c))
    }
}

/// MiB in bytes, saturating.
fn mib(m: u64) -> usize {
    usize::try_from(m.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}
