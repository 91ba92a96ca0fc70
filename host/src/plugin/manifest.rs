//! A plugin's manifest: the optional `NAME.toml` beside `NAME.wasm`.
//!
//! It sets the plugin's order, failure mode, deadline, memory limit, instance
//! reuse, capability grants and config values. It does not load or validate
//! the component itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::PluginDefaults;

/// What a stage does when one of its plugins faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Skip the plugin and go on as if it were not loaded (the default).
    #[default]
    Open,
    /// Fail the request with an error naming the plugin.
    Closed,
}

/// Whether calls reuse warm instances or get a fresh one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// Warm for big components (language runtimes), fresh otherwise.
    #[default]
    Auto,
    /// A fresh instance (and Store) per call: no state survives a call.
    Fresh,
    /// A small pool of warm instances, reused and replaced after a fault.
    Warm,
}

/// A directory a plugin may read (and, if `writable`, write).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the gateway's machine.
    pub host: PathBuf,
    /// Path the plugin sees it at.
    pub guest: String,
    #[serde(default)]
    pub writable: bool,
}

/// Capabilities beyond the host imports; none by default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Names of environment variables passed through (when set).
    #[serde(default)]
    pub env: Vec<String>,
    /// Directories to preopen.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Outbound network (TCP/UDP and name lookup).
    #[serde(default)]
    pub network: bool,
}

/// `NAME.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    order: Option<i64>,
    failure: Option<FailureMode>,
    deadline_ms: Option<u64>,
    memory_mib: Option<u64>,
    max_consecutive_faults: Option<u32>,
    disabled_backoff_ms: Option<u64>,
    disabled_backoff_max_ms: Option<u64>,
    max_concurrency: Option<usize>,
    concurrency_wait_ms: Option<u64>,
    instances: Option<InstanceMode>,
    warm_pool: Option<usize>,
    spares: Option<usize>,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    config: toml::Table,
}

/// A plugin's effective settings: its manifest over the host's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Plugins of a stage run in ascending order (then by name).
    pub order: i64,
    pub failure: FailureMode,
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub max_consecutive_faults: u32,
    /// Off-time after being disabled, before a probe call (doubles on a
    /// failed probe, up to `disabled_backoff_max`).
    pub disabled_backoff: Duration,
    pub disabled_backoff_max: Duration,
    /// Most calls running at once (at least 1).
    pub max_concurrency: usize,
    /// How long a call over the cap waits for a slot.
    pub concurrency_wait: Duration,
    pub instances: InstanceMode,
    /// Most warm instances kept idle.
    pub warm_pool: usize,
    /// Fresh instances made ahead of their calls (fresh-instance plugins).
    pub spares: usize,
    pub grants: Grants,
    /// `[config]`, flattened: nested tables become dotted keys, values strings.
    pub config: BTreeMap<String, String>,
}

impl Manifest {
    /// The defaults alone (no `NAME.toml`).
    pub fn defaults(d: &PluginDefaults) -> Manifest {
        Manifest {
            order: 100,
            failure: FailureMode::Open,
            deadline: d.deadline,
            memory_bytes: d.memory_bytes,
            max_consecutive_faults: d.max_consecutive_faults,
            disabled_backoff: d.disabled_backoff,
            disabled_backoff_max: d.disabled_backoff_max,
            max_concurrency: d.max_concurrency.max(1),
            concurrency_wait: d.concurrency_wait,
            instances: InstanceMode::Auto,
            warm_pool: d.warm_pool,
            spares: d.spares,
            grants: Grants::default(),
            config: BTreeMap::new(),
        }
    }

    /// Parse a `NAME.toml`'s text over the defaults.
    pub fn parse(text: &str, d: &PluginDefaults) -> Result<Manifest, toml::de::Error> {
        let raw: RawManifest = toml::from_str(text)?;
        let base = Manifest::defaults(d);
        let mut config = BTreeMap::new();
        flatten("", &raw.config, &mut config);
        Ok(Manifest {
            order: raw.order.unwrap_or(base.order),
            failure: raw.failure.unwrap_or(base.failure),
            deadline: raw.deadline_ms.map_or(base.deadline, Duration::from_millis),
            memory_bytes: raw.memory_mib.map_or(base.memory_bytes, |m| usize::try_from(m << 20).unwrap_or(usize::MAX)),
            max_consecutive_faults: raw.max_consecutive_faults.unwrap_or(base.max_consecutive_faults).max(1),
            disabled_backoff: raw.disabled_backoff_ms.map_or(base.disabled_backoff, Duration::from_millis),
            disabled_backoff_max: raw.disabled_backoff_max_ms.map_or(base.disabled_backoff_max, Duration::from_millis),
            max_concurrency: raw.max_concurrency.unwrap_or(base.max_concurrency).max(1),
            concurrency_wait: raw.concurrency_wait_ms.map_or(base.concurrency_wait, Duration::from_millis),
            instances: raw.instances.unwrap_or(base.instances),
            warm_pool: raw.warm_pool.unwrap_or(base.warm_pool),
            spares: raw.spares.unwrap_or(base.spares),
            grants: raw.grants,
            config,
        })
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Array(_) => {
                let json = serde_json::to_string(v).unwrap_or_default();
                out.insert(key, json);
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_config_and_applies_defaults() {
        let d = PluginDefaults::default();
        let m = Manifest::parse(
            "order = 3\nfailure = \"closed\"\n[config]\na = 1\nb = true\nc = \"x\"\n[config.ttl]\nsupport = 600\n",
            &d,
        )
        .expect("valid manifest");
        assert_eq!(m.order, 3);
        assert_eq!(m.failure, FailureMode::Closed);
        assert_eq!(m.deadline, d.deadline);
        assert_eq!(m.config.get("a").map(String::as_str), Some("1"));
        assert_eq!(m.config.get("b").map(String::as_str), Some("true"));
        assert_eq!(m.config.get("c").map(String::as_str), Some("x"));
        assert_eq!(m.config.get("ttl.support").map(String::as_str), Some("600"));
        assert_eq!(m.spares, d.spares);
        assert_eq!(Manifest::parse("spares = 0", &d).expect("valid").spares, 0);
        assert!(Manifest::parse("bogus = 1", &d).is_err());
    }
}
