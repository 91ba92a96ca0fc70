//! Hot reload (swap under load, in-flight calls finish on their version,
//! removal unloads), the on-disk artifact cache, and the admin listing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::plugin::Compiler;
use sluice::stage::{Judge, Router};

use super::support::{Folder, NO_CONTEXT, built, dist, eventually, eventually_async, fixtures, response, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_versions_under_load_without_failed_calls() {
    built();
    let folder = Folder::new();
    folder.add_fixture("live", "[config]\nmode = \"ok\"\ntag = \"v1\"\n");
    let host = folder.host(true);
    let stop = Arc::new(AtomicBool::new(false));
    let new_seen = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (host, stop, new_seen, calls) = (host.clone(), stop.clone(), new_seen.clone(), calls.clone());
            tokio::spawn(async move {
                let req = user("What is the capital of France?");
                let resp = response("Paris.", "stop");
                while !stop.load(Ordering::Relaxed) {
                    let v = host.judge(&req, &NO_CONTEXT, &resp).await;
                    let v = v.expect("no call fails during reload");
                    let v = v.unwrap_or_else(|| panic!("no verdict: {:?}", host.list()));
                    let reason = v.votes[0].reason.as_str();
                    assert!(reason.starts_with("fixture") || reason == "ok", "{reason}");
                    if reason == "ok" {
                        new_seen.store(true, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    // Back to the scheduler between calls, as request tasks do.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The example judge replaces the fixture, manifest first then component.
    folder.put_toml("live", "order = 1\n");
    folder.put_wasm("live", &dist().join("judge.wasm"));
    let landed = Instant::now();
    let swapped = eventually(Duration::from_secs(1), || new_seen.load(Ordering::Relaxed));
    let took = landed.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("no worker panicked");
    }
    assert!(swapped, "the new version was not live within 1 s");
    assert!(calls.load(Ordering::Relaxed) > 10);
    eprintln!("new version live {took:?} after the file landed");
    let info = host.list().into_iter().find(|p| p.name == "live").expect("listed");
    assert_eq!(info.hash.as_deref(), Some(blake3_hex(&dist().join("judge.wasm")).as_str()));
}

fn blake3_hex(path: &std::path::Path) -> String {
    // The host hashes with blake3; compare through the listing of a fresh host.
    let folder = Folder::new();
    folder.put_wasm("x", path);
    let host = folder.host(false);
    host.list()[0].hash.clone().expect("hash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_on_the_version_they_started_with() {
    built();
    let folder = Folder::new();
    folder.add_fixture("slow", "deadline_ms = 2000\n[config]\nmode = \"slow\"\nslow_ms = 400\ntag = \"old\"\n");
    let host = folder.host(true);
    let h = host.clone();
    let in_flight = tokio::spawn(async move {
        h.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    folder.put_toml("slow", "[config]\nmode = \"ok\"\ntag = \"new\"\n");
    let new = eventually_async(Duration::from_secs(1), async || {
        host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop"))
            .await
            .ok()
            .flatten()
            .is_some_and(|v| v.votes[0].reason == "fixture new")
    })
    .await;
    assert!(new, "new version live while the old call still runs");
    let old = in_flight.await.expect("no panic");
    assert_eq!(old.votes[0].reason, "fixture old");
}

#[tokio::test]
async fn removing_a_file_unloads_the_plugin() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    let host = folder.host(true);
    assert_eq!(host.list().len(), 1);
    std::fs::remove_file(folder.path.join("judge.wasm")).expect("remove");
    assert!(eventually(Duration::from_secs(1), || host.list().is_empty()));
    assert_eq!(host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await, Ok(None));
}

#[test]
fn the_watcher_rescans_once_per_change_and_not_on_its_own_reads() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    let host = folder.host(true);
    let first = host.list()[0].hash.clone();
    // Replaced by rename, as plugins/build.sh publishes.
    folder.put_wasm("judge", &fixtures().join("faulty.wasm"));
    assert!(eventually(Duration::from_secs(2), || host.list()[0].hash != first), "new version loaded");
    // Each rescan reads the files, which the watcher sees as opens and
    // closes: those must not count as changes.
    std::thread::sleep(Duration::from_millis(200));
    let settled = host.rescans();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(host.rescans(), settled, "the folder is rescanned with nothing changed");
}

#[tokio::test]
async fn a_file_written_in_pieces_is_loaded_once_complete() {
    use std::io::Write;
    built();
    let folder = Folder::new();
    let mut cfg = folder.config(true);
    cfg.debounce = Duration::from_millis(400);
    let host = sluice::plugin::PluginHost::start(cfg).expect("host starts");
    let before = host.rescans();
    let bytes = std::fs::read(dist().join("judge.wasm")).expect("read");
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    let mut file = std::fs::File::create(folder.path.join("judge.wasm")).expect("create");
    file.write_all(head).expect("write");
    file.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(50)).await;
    file.write_all(tail).expect("write");
    drop(file);
    assert!(eventually(Duration::from_secs(3), || host.list().len() == 1 && host.list()[0].hash.is_some()));
    assert_eq!(host.rescans(), before + 1, "one rescan, after the file was complete: {:?}", host.list());
    assert_eq!(
        host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").map(|v| v.votes.len()),
        Some(1)
    );
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_by_content_hash() {
    built();
    let folder = Folder::new();
    folder.add_example("router", "router");
    let mut cfg = sluice::plugin::PluginConfig::new(&folder.path);
    cfg.watch = false;
    cfg.defaults.deadline = super::support::TEST_DEADLINE;
    let host = sluice::plugin::PluginHost::start(cfg.clone()).expect("starts");
    let hash = host.list()[0].hash.clone().expect("hash");
    let cached: Vec<_> = std::fs::read_dir(folder.path.join(".cache"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&hash) && cached[0].ends_with(".cwasm"), "{cached:?}");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let artifact = folder.path.join(".cache").join(&cached[0]);
    let before = modified(&artifact);
    drop(host);
    let again = sluice::plugin::PluginHost::start(cfg).expect("restarts");
    assert_eq!(again.list()[0].hash.as_deref(), Some(hash.as_str()));
    assert_eq!(modified(&artifact), before, "loaded from the cache, not rewritten");
    let plan = again.route(&user("hi"), &NO_CONTEXT, &super::cases::candidates()).await.expect("routes");
    assert!(plan.is_some());
}

#[tokio::test]
async fn listing_reports_versions_calls_and_latency() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    let host = folder.host(false);
    for _ in 0..20 {
        host.judge(&user("q"), &NO_CONTEXT, &response("Paris.", "stop")).await.expect("ok");
    }
    let info = &host.list()[0];
    assert_eq!(info.name, "judge");
    assert_eq!(info.hash.as_ref().map(String::len), Some(64));
    assert!(info.loaded_at_ms.unwrap_or(0) > 1_600_000_000_000);
    assert_eq!((info.calls, info.errors, info.traps), (20, 0, 0));
    assert!(info.p50_us.is_some_and(|p| p > 0.0));
    let json = serde_json::to_value(info).expect("serialisable");
    assert_eq!(json["stage"], "judge");
    assert_eq!(json["failure"], "open");
}

#[test]
fn precompiled_components_go_live_without_compiling() {
    built();
    let folder = Folder::new();
    let cache = folder.path.join(".cache");
    let hash = sluice::plugin::precompile(&dist().join("cache-policy.wasm"), &cache).expect("precompiles");
    let artifacts: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").filter_map(Result::ok).collect();
    assert_eq!(artifacts.len(), 1);
    let before = std::fs::metadata(artifacts[0].path()).and_then(|m| m.modified()).ok();
    let mut cfg = sluice::plugin::PluginConfig::new(&folder.path);
    cfg.watch = false;
    let host = sluice::plugin::PluginHost::start(cfg).expect("starts");
    folder.add_example("cache-policy", "cache-policy");
    host.reload().expect("rescan");
    assert_eq!(host.list()[0].hash.as_deref(), Some(hash.as_str()));
    let path = artifacts[0].path();
    let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    assert_eq!(now, before, "the precompiled artifact was used, not rewritten");
    assert!(sluice::plugin::precompile(&folder.path.join("nope.wasm"), &cache).is_err());
}

#[tokio::test]
async fn a_new_component_serves_from_a_baseline_build_until_its_optimised_build_is_ready() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    let mut cfg = sluice::plugin::PluginConfig::new(&folder.path);
    cfg.watch = false;
    cfg.defaults.deadline = super::support::TEST_DEADLINE;
    // Every component gets a baseline build first (by default only those of
    // 4 MiB and more, the language runtimes, which take seconds to optimise).
    cfg.baseline_min_bytes = Some(0);
    let host = sluice::plugin::PluginHost::start(cfg).expect("starts");
    let first = host.list().into_iter().next().expect("listed");
    assert_eq!(first.compiler, Some(Compiler::Winch), "{first:?}");
    super::cases::check_judge(&host, "judge").await;
    let calls = host.list()[0].calls;
    assert!(calls > 0);
    let optimised = eventually(Duration::from_secs(60), || host.list()[0].compiler == Some(Compiler::Cranelift));
    assert!(optimised, "the optimised build never replaced the baseline one: {:?}", host.list());
    let now = host.list().into_iter().next().expect("listed");
    assert_eq!(now.hash, first.hash, "same version, other code");
    assert!(now.calls >= calls, "calls carried over: {} < {calls}", now.calls);
    super::cases::check_judge(&host, "judge").await;
    // The optimised build is cached: a restart loads it and skips the baseline.
    let cached = std::fs::read_dir(folder.path.join(".cache")).expect("cache dir").count();
    assert_eq!(cached, 1);
    drop(host);
    let mut cfg = sluice::plugin::PluginConfig::new(&folder.path);
    cfg.watch = false;
    cfg.baseline_min_bytes = Some(0);
    let again = sluice::plugin::PluginHost::start(cfg).expect("restarts");
    assert_eq!(again.list()[0].compiler, Some(Compiler::Cranelift));
}
