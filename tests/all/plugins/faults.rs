//! Fault handling: deadlines, memory limits, traps, policy errors, disabling
//! after consecutive faults, rejected components, and guest output inside
//! async runtimes. A plugin never crashes the host.

use std::time::{Duration, Instant};

use sluice::error::GatewayError;
use sluice::stage::{FaultKind, Judge, StageError, StageKind};

use super::support::{Folder, NO_CONTEXT, built, eventually_async, fixtures, response, user};

fn info(host: &sluice::plugin::PluginHost, name: &str) -> sluice::plugin::PluginInfo {
    host.list().into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} listed"))
}

#[tokio::test]
async fn spinning_plugin_hits_its_deadline_and_open_mode_skips_it() {
    built();
    let folder = Folder::new();
    folder.add_fixture("spin", "deadline_ms = 20\n[config]\nmode = \"spin\"\n");
    folder.add_fixture("lenient", "order = 200\n[config]\nmode = \"ok\"\n");
    let host = folder.host(false);
    let start = Instant::now();
    let v = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("open: skipped").expect("verdict");
    assert!(start.elapsed() < Duration::from_millis(500), "took {:?}", start.elapsed());
    assert_eq!(v.votes.len(), 1);
    assert_eq!(v.votes[0].plugin, "lenient");
    let spin = info(&host, "spin");
    assert_eq!((spin.calls, spin.traps, spin.deadline_overruns), (1, 1, 1));
    assert!(!spin.disabled);
}

#[tokio::test]
async fn memory_hog_is_stopped_at_its_limit() {
    built();
    let folder = Folder::new();
    folder.add_fixture("hog", "failure = \"closed\"\nmemory_mib = 16\n[config]\nmode = \"hog\"\n");
    let host = folder.host(false);
    let err = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect_err("closed: fails");
    match &err {
        StageError::Fault { plugin, stage, kind, .. } => {
            assert_eq!((plugin.as_str(), *stage, *kind), ("hog", StageKind::Judge, FaultKind::OutOfMemory));
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    assert!(err.is_fault());
    assert_eq!(GatewayError::from(err.clone()).status(), 500);
    assert!(err.to_string().contains("`hog`"), "{err}");
    assert_eq!(info(&host, "hog").out_of_memory, 1);
}

#[tokio::test]
async fn trapping_plugin_in_closed_mode_fails_the_request_naming_it() {
    built();
    let folder = Folder::new();
    folder.add_fixture("trapper", "failure = \"closed\"\n[config]\nmode = \"trap\"\n");
    let host = folder.host(false);
    let err = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect_err("closed: fails");
    assert!(matches!(&err, StageError::Fault { kind: FaultKind::Trap, plugin, .. } if plugin == "trapper"));
    assert!(err.is_fault());
}

#[tokio::test]
async fn policy_err_is_a_refusal_not_a_fault() {
    built();
    let folder = Folder::new();
    folder.add_fixture("strict", "failure = \"closed\"\n[config]\nmode = \"err\"\n");
    let host = folder.host(false);
    let v = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("an answer").expect("verdict");
    assert!(!v.pass);
    assert_eq!(v.reason, "strict: fixture policy error");
    let i = info(&host, "strict");
    assert_eq!((i.errors, i.traps, i.consecutive_faults), (1, 0, 0));
}

#[tokio::test]
async fn plugin_is_disabled_after_consecutive_faults_until_its_file_changes() {
    built();
    let folder = Folder::new();
    folder.add_fixture("flaky", "max_consecutive_faults = 3\n[config]\nmode = \"trap\"\n");
    let host = folder.host(false);
    for _ in 0..5 {
        assert_eq!(host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await, Ok(None), "open: skipped");
    }
    let i = info(&host, "flaky");
    assert!(i.disabled);
    assert_eq!((i.traps, i.consecutive_faults), (3, 3), "disabled calls do not run");

    // Same bytes again: still disabled.
    folder.put_wasm("flaky", &fixtures().join("faulty.wasm"));
    host.reload().expect("rescan");
    assert!(info(&host, "flaky").disabled);

    // A changed file loads as a new version, enabled.
    folder.put_toml("flaky", "max_consecutive_faults = 3\n[config]\nmode = \"ok\"\n");
    host.reload().expect("rescan");
    assert!(!info(&host, "flaky").disabled);
    let v = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
    assert!(v.pass);
}

#[tokio::test]
async fn warm_instances_are_replaced_after_a_fault() {
    built();
    let folder = Folder::new();
    folder.add_fixture("warm", "instances = \"warm\"\n[config]\nmode = \"ok\"\n");
    let host = folder.host(false);
    assert_eq!(info(&host, "warm").warm, Some(true));
    let req = user("q");
    assert!(host.judge(&req, &NO_CONTEXT, &response("a", "stop")).await.expect("ok").is_some());
    assert_eq!(host.judge(&req, &NO_CONTEXT, &response("TRAP", "stop")).await, Ok(None), "trap skipped");
    for _ in 0..3 {
        let v = host.judge(&req, &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
        assert!(v.pass);
    }
    let i = info(&host, "warm");
    assert_eq!((i.calls, i.traps, i.consecutive_faults), (5, 1, 0));
}

/// The answers `count` gives on `n` calls: how many calls the instance
/// serving each had served.
async fn counts(host: &sluice::plugin::PluginHost, n: usize) -> Vec<String> {
    let mut reasons = Vec::with_capacity(n);
    for _ in 0..n {
        let v = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
        reasons.push(v.votes[0].reason.clone());
    }
    reasons
}

#[tokio::test]
async fn fresh_instances_never_see_an_earlier_call_made_ahead_or_not() {
    built();
    for (manifest, spares) in [("", 2), ("spares = 0\n", 0), ("spares = 8\n", 8)] {
        let folder = Folder::new();
        folder.add_fixture("fresh", &format!("instances = \"fresh\"\n{manifest}[config]\nmode = \"count\"\n"));
        let host = folder.host(false);
        assert_eq!(info(&host, "fresh").warm, Some(false));
        // Calls back to back (spares not yet remade) and spaced out (made ahead).
        let mut seen = counts(&host, 20).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen.extend(counts(&host, 1).await);
        }
        assert!(seen.iter().all(|r| r == "call 1"), "spares {spares}: {seen:?}");
        assert_eq!(info(&host, "fresh").calls, 25);
        // The spares are remade in the background, off the calls.
        let deadline = Instant::now() + Duration::from_secs(10);
        while info(&host, "fresh").ready_instances != Some(spares) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(info(&host, "fresh").ready_instances, Some(spares));
        // A call with a spare ready takes it; with no spares configured,
        // inline instantiation is the plan, not a miss.
        let before = info(&host, "fresh").spare_misses;
        assert!(before <= 25, "spares {spares}: {before} misses in 25 calls");
        assert_eq!(counts(&host, 1).await, ["call 1"]);
        let after = info(&host, "fresh").spare_misses;
        assert_eq!(after, before, "spares {spares}: a call with a spare ready counted as a miss");
        if spares == 0 {
            assert_eq!(after, 0, "no spares configured, yet misses counted");
        }
    }
    // The same fixture on warm instances does keep state: the check above can fail.
    let folder = Folder::new();
    folder.add_fixture("warm", "instances = \"warm\"\nwarm_pool = 1\n[config]\nmode = \"count\"\n");
    let host = folder.host(false);
    assert_eq!(counts(&host, 3).await, ["call 1", "call 2", "call 3"]);
    assert_eq!(info(&host, "warm").ready_instances, Some(1));
}

#[tokio::test]
async fn bad_components_are_rejected_and_the_previous_version_keeps_serving() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    folder.put_wasm("cli", &fixtures().join("not-a-plugin.wasm"));
    folder.put_wasm("shape", &fixtures().join("wrong-shape.wasm"));
    folder.put_bytes("core.wasm", b"\0asm\x01\0\0\0");
    folder.put_bytes("junk.wasm", b"definitely not wasm");
    let host = folder.host(false);
    let list = host.list();
    let names: Vec<(&str, bool)> = list.iter().map(|p| (p.name.as_str(), p.load_error.is_some())).collect();
    assert_eq!(names, [("judge", false), ("cli", true), ("core", true), ("junk", true), ("shape", true)]);
    let error = |name: &str| info(&host, name).load_error.unwrap_or_default();
    assert!(error("cli").contains("exports no Sluice stage"), "{}", error("cli"));
    assert!(error("shape").contains("wrong judge interface"), "{}", error("shape"));
    assert!(error("junk").contains("not a valid component"), "{}", error("junk"));

    // Replace the working judge by junk: rejected, the old version serves.
    let hash = info(&host, "judge").hash;
    folder.put_bytes("judge.wasm", b"\0asm garbage");
    host.reload().expect("rescan");
    let judge = info(&host, "judge");
    assert_eq!(judge.hash, hash);
    assert!(judge.load_error.is_some());
    let v = host.judge(&user("q"), &NO_CONTEXT, &response("Paris.", "stop")).await.expect("ok").expect("verdict");
    assert_eq!(v.votes[0].plugin, "judge");

    // A bad manifest is rejected the same way.
    folder.add_example("judge", "judge");
    folder.put_toml("judge", "failure = \"sometimes\"\n");
    host.reload().expect("rescan");
    let judge = info(&host, "judge");
    assert!(judge.load_error.as_deref().unwrap_or("").contains("judge.toml"), "{judge:?}");
}

#[test]
fn guest_output_is_logged_and_calls_work_inside_async_runtimes() {
    built();
    let folder = Folder::new();
    folder.add_fixture("chatty", "[config]\nmode = \"print\"\n");
    let host = folder.host(false);
    let call =
        async || host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("rt");
    assert!(multi.block_on(call()).pass);
    // On a worker thread, as in the gateway's request tasks.
    let h = host.clone();
    let on_worker = multi.spawn(async move {
        h.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict").pass
    });
    assert!(multi.block_on(on_worker).expect("task did not panic"));
    let single = tokio::runtime::Builder::new_current_thread().build().expect("rt");
    assert!(single.block_on(call()).pass);
    assert_eq!(info(&host, "chatty").traps, 0);
}

#[test]
fn async_calls_run_on_the_worker_and_a_long_call_yields_to_other_tasks() {
    built();
    let folder = Folder::new();
    folder.add_fixture("chatty", "order = 1\n[config]\nmode = \"print\"\n");
    folder.add_fixture("spin", "order = 2\ndeadline_ms = 60\n[config]\nmode = \"spin\"\n");
    let host = folder.host(false);
    // One thread, as a single worker would be: the spinning guest must yield
    // at every epoch tick, or the ticking task would not run until the
    // deadline had stopped it.
    let single = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("rt");
    let (ticks, verdict) = single.block_on(async {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let ticker = tokio::spawn(async move {
            let mut n = 0u32;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                n += 1;
            }
            n
        });
        tokio::task::yield_now().await;
        let verdict = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (ticker.await.expect("ticker"), verdict)
    });
    let verdict = verdict.expect("open: the spinner is skipped").expect("verdict");
    assert_eq!(verdict.votes.len(), 1, "{verdict:?}");
    assert_eq!(verdict.votes[0].plugin, "chatty");
    let spin = info(&host, "spin");
    assert_eq!((spin.calls, spin.deadline_overruns), (1, 1));
    assert!(ticks >= 3, "the other task ran {ticks} times during a 60 ms call");
}

#[tokio::test]
async fn plugins_see_no_environment_or_files_unless_granted() {
    built();
    let folder = Folder::new();
    folder.put_bytes("data.txt", b"secret");
    folder.add_fixture("env", "order = 1\n[config]\nmode = \"env\"\n");
    folder.add_fixture("env-granted", "order = 2\n[grants]\nenv = [\"PATH\"]\n[config]\nmode = \"env\"\n");
    folder.add_fixture("fs", "order = 3\n[config]\nmode = \"fs\"\npath = \"/data/data.txt\"\n");
    let dir = folder.path.display();
    folder.add_fixture(
        "fs-granted",
        &format!(
            "order = 4\n[grants]\ndirs = [{{ host = \"{dir}\", guest = \"/data\" }}]\n\
             [config]\nmode = \"fs\"\npath = \"/data/data.txt\"\n"
        ),
    );
    let host = folder.host(false);
    let v = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
    let reasons: Vec<(&str, &str)> = v.votes.iter().map(|v| (v.plugin.as_str(), v.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [("env", "env unset"), ("env-granted", "env set"), ("fs", "fs denied"), ("fs-granted", "fs read")]
    );
}

#[tokio::test]
async fn plugins_see_request_metadata_and_headers_without_credentials() {
    built();
    let folder = Folder::new();
    folder.add_fixture("ctx", "[config]\nmode = \"context\"\n");
    let host = folder.host(false);
    let mut req = user("q");
    req.extra.insert("metadata".into(), serde_json::json!({ "app": "docs" }));
    let ctx = sluice::stage::StageContext {
        metadata: vec![("tenant".into(), "acme".into())],
        headers: vec![
            ("Authorization".into(), "Bearer sk-secret".into()),
            ("X-Request-Id".into(), "r1".into()),
            ("cookie".into(), "s=1".into()),
        ],
    };
    let v = host.judge(&req, &ctx, &response("a", "stop")).await.expect("ok").expect("verdict");
    assert_eq!(v.votes[0].reason, "metadata app=docs,tenant=acme; headers x-request-id=r1");
}

#[tokio::test]
async fn client_metadata_cannot_pose_as_the_gateways() {
    built();
    let folder = Folder::new();
    folder.add_fixture("ctx", "[config]\nmode = \"context\"\n");
    let host = folder.host(false);
    let mut req = user("q");
    req.extra.insert(
        "metadata".into(),
        serde_json::json!({
            "app": "docs", "client": "admin", "user": "root", "ab_arm": "b",
            "candidate.gpt.circuit": "open", "tenant": "spoofed",
        }),
    );
    let ctx = sluice::stage::StageContext {
        metadata: vec![("tenant".into(), "acme".into()), ("client".into(), "alice".into())],
        headers: Vec::new(),
    };
    let v = host.judge(&req, &ctx, &response("a", "stop")).await.expect("ok").expect("verdict");
    assert_eq!(v.votes[0].reason, "metadata app=docs,tenant=acme,client=alice; headers ");
    // Without gateway values, the gateway's keys are still not the client's to set.
    let v = host.judge(&req, &NO_CONTEXT, &response("a", "stop")).await.expect("ok").expect("verdict");
    assert_eq!(v.votes[0].reason, "metadata app=docs,tenant=spoofed; headers ");
}

#[test]
fn deadline_overruns_of_a_flooded_host_do_not_disable_a_plugin() {
    built();
    let folder = Folder::new();
    folder.add_fixture("spin", "deadline_ms = 100\nmax_consecutive_faults = 2\n[config]\nmode = \"spin\"\n");
    let host = folder.host(false);
    // Two workers, 24 calls at once: each waits for a worker between ticks.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(async {
        let calls: Vec<_> = (0..24)
            .map(|_| {
                let h = host.clone();
                tokio::spawn(async move { h.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.expect("no panic"), Ok(None), "open: skipped");
        }
    });
    let i = info(&host, "spin");
    assert_eq!((i.deadline_overruns, i.overruns_under_load), (24, 24), "{i:?}");
    assert_eq!((i.consecutive_faults, i.disabled), (0, false), "{i:?}");

    // On an idle host its overruns are its own: two in a row disable it.
    for expected in [1, 2] {
        assert_eq!(rt.block_on(host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop"))), Ok(None));
        assert_eq!(info(&host, "spin").consecutive_faults, expected);
    }
    assert!(info(&host, "spin").disabled);
}

#[tokio::test]
async fn a_disabled_plugin_is_probed_after_its_backoff_and_comes_back() {
    built();
    let folder = Folder::new();
    folder.add_fixture("flaky", "max_consecutive_faults = 2\ndisabled_backoff_ms = 200\n[config]\nmode = \"ok\"\n");
    let host = folder.host(false);
    let call = async |answer: &str| host.judge(&user("q"), &NO_CONTEXT, &response(answer, "stop")).await;
    for _ in 0..2 {
        assert_eq!(call("TRAP").await, Ok(None), "open: skipped");
    }
    let i = info(&host, "flaky");
    assert_eq!((i.disabled, i.disabled_backoff_ms, i.traps), (true, Some(200), 2));

    // After the back-off one call probes it; it traps again: twice the back-off.
    let probed = eventually_async(Duration::from_secs(20), async || {
        let _ = call("TRAP").await;
        info(&host, "flaky").probes == 1
    })
    .await;
    assert!(probed, "no probe");
    let i = info(&host, "flaky");
    assert_eq!((i.disabled, i.disabled_backoff_ms, i.traps), (true, Some(400), 3), "{i:?}");

    // A probe that succeeds enables it again.
    let back = eventually_async(Duration::from_secs(20), async || call("fine").await.is_ok_and(|v| v.is_some())).await;
    assert!(back, "not re-enabled");
    let i = info(&host, "flaky");
    assert_eq!((i.disabled, i.disabled_backoff_ms, i.probes, i.consecutive_faults), (false, None, 2, 0), "{i:?}");
    let v = call("fine").await.expect("ok").expect("verdict");
    assert!(v.pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_concurrency_cap_fail_busy_and_are_not_the_plugins_fault() {
    built();
    let folder = Folder::new();
    folder.add_fixture(
        "slow",
        "failure = \"closed\"\nmax_concurrency = 1\nconcurrency_wait_ms = 1\nmax_consecutive_faults = 1\n\
         deadline_ms = 20000\n[config]\nmode = \"slow\"\nslow_ms = 1500\n",
    );
    let host = folder.host(false);
    let h = host.clone();
    let first = tokio::spawn(async move { h.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await });
    assert!(eventually_async(Duration::from_secs(20), async || info(&host, "slow").in_flight == 1).await);
    let err = host.judge(&user("q"), &NO_CONTEXT, &response("a", "stop")).await.expect_err("closed: busy");
    assert!(matches!(&err, StageError::Fault { kind: FaultKind::Busy, plugin, .. } if plugin == "slow"), "{err:?}");
    assert_eq!(GatewayError::from(err).status(), 503);
    let v = first.await.expect("no panic").expect("the first call ran").expect("verdict");
    assert!(v.pass);
    let i = info(&host, "slow");
    assert_eq!((i.calls, i.busy, i.traps, i.consecutive_faults, i.disabled), (1, 1, 0, 0, false), "{i:?}");
}
