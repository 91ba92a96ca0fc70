//! Once a second: takes the request counters' second into the history with
//! the engine's figures, and turns plugin changes (a new version loaded, a
//! plugin disabled or back) into timeline events. Nothing here runs on the
//! request path.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sluice_engine::EngineStats;

use crate::gateway::Gateway;
use crate::live::{EngineSecond, Event, Point};
use crate::upstream::unix_now;

/// What a plugin was at the last sample: its version (file hash and load
/// time) and whether it was off.
type PluginState = HashMap<String, ((Option<String>, Option<u64>), bool)>;

/// Samples `gateway` every second until it is dropped.
pub fn spawn(gateway: &Arc<Gateway>) {
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut engine_before: Option<EngineStats> = None;
        let mut plugins_before: Option<PluginState> = None;
        loop {
            tick.tick().await;
            let Some(gw) = Weak::upgrade(&weak) else { return };
            let t = unix_now();
            let engine = gw.upstreams.iter().find_map(|u| u.engine()).map(|e| e.stats());
            let engine_second = engine.as_ref().map(|now| engine_second(engine_before.as_ref(), now));
            engine_before = engine;
            gw.live.push(Point { second: gw.live.take(t), engine: engine_second });
            if let Some(host) = &gw.plugins {
                let now: PluginState =
                    host.list().into_iter().map(|p| (p.name, ((p.hash, p.loaded_at_ms), p.disabled))).collect();
                if let Some(before) = &plugins_before {
                    for event in plugin_events(t, before, &now) {
                        gw.live.event(event);
                    }
                }
                plugins_before = Some(now);
            }
        }
    });
}

/// The engine's second: its state now, and what it did since `before`.
fn engine_second(before: Option<&EngineStats>, now: &EngineStats) -> EngineSecond {
    let delta = |f: fn(&EngineStats) -> u64| before.map_or(0, |b| f(now).saturating_sub(f(b)));
    EngineSecond {
        running: now.running,
        waiting: now.waiting,
        kv_blocks_used: now.total_blocks.saturating_sub(now.free_blocks),
        kv_blocks_total: now.total_blocks,
        prefix_hit_tokens: delta(|s| s.prefix_cache_hit_tokens),
        prompt_tokens: delta(|s| s.prompt_tokens),
        tokens_generated: delta(|s| s.generated_tokens),
        busy: (delta(|s| s.busy_ns) as f64 / 1e9).min(1.0),
    }
}

/// What changed between two samples of the plugin list.
fn plugin_events(t: u64, before: &PluginState, now: &PluginState) -> Vec<Event> {
    let mut events = Vec::new();
    let mut push = |kind, name: &str| events.push(Event { t, kind, subject: name.to_owned() });
    for (name, (version, disabled)) in now {
        match before.get(name) {
            None => push("plugin-loaded", name),
            Some((old_version, was_disabled)) => {
                if old_version != version && version.0.is_some() {
                    push("plugin-reloaded", name);
                }
                match (was_disabled, disabled) {
                    (false, true) => push("plugin-disabled", name),
                    (true, false) => push("plugin-enabled", name),
                    _ => {}
                }
            }
        }
    }
    for name in before.keys().filter(|n| !now.contains_key(*n)) {
        push("plugin-removed", name);
    }
    events.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_changes_become_events() {
        let state = |entries: &[(&str, &str, bool)]| -> PluginState {
            entries.iter().map(|(n, h, d)| (n.to_string(), ((Some(h.to_string()), Some(1)), *d))).collect()
        };
        let before = state(&[("router", "aaa", false), ("judge", "bbb", false), ("old", "ccc", false)]);
        let now = state(&[("router", "abc", false), ("judge", "bbb", true), ("new", "ddd", false)]);
        let events: Vec<(&str, String)> =
            plugin_events(7, &before, &now).into_iter().map(|e| (e.kind, e.subject)).collect();
        assert_eq!(
            events,
            [
                ("plugin-disabled", "judge".to_owned()),
                ("plugin-loaded", "new".to_owned()),
                ("plugin-reloaded", "router".to_owned()),
                ("plugin-removed", "old".to_owned()),
            ]
        );
        assert!(plugin_events(8, &now, &now).is_empty());
    }

    #[test]
    fn the_engine_second_is_the_difference_of_two_samples() {
        let before = EngineStats {
            generated_tokens: 100,
            busy_ns: 1_000_000_000,
            prefix_cache_hit_tokens: 5,
            prompt_tokens: 40,
            ..Default::default()
        };
        let now = EngineStats {
            running: 3,
            total_blocks: 10,
            free_blocks: 4,
            generated_tokens: 160,
            busy_ns: 1_250_000_000,
            prefix_cache_hit_tokens: 37,
            prompt_tokens: 90,
            ..Default::default()
        };
        let s = engine_second(Some(&before), &now);
        assert_eq!((s.running, s.kv_blocks_used, s.tokens_generated, s.prefix_hit_tokens), (3, 6, 60, 32));
        assert!((s.busy - 0.25).abs() < 1e-9);
        assert_eq!(s.prompt_tokens, 50);
        assert_eq!(engine_second(None, &now).tokens_generated, 0, "no rate from one sample");
    }
}
