//! Per-stage plugin call overhead: p50 and p99 of one stage call through
//! `PluginHost`'s stage traits (as the gateway calls them) for each example
//! plugin, from a request already in memory to the answer (conversion,
//! instantiation or warm reuse, the guest's work).
//!
//! Needs the plugins built: `plugins/build.sh`, then
//! `cargo bench -p sluice-tests --bench plugin_calls`. Prints a Markdown table.
//! `BENCH_ITERATIONS=N` sets the calls measured per plugin (default 5000),
//! `BENCH_ONLY=NAME` runs one plugin, `BENCH_SPARES=N` sets the spare
//! instances of fresh-instance plugins (default 2; 0 instantiates in the
//! call). "p50/p99" are calls back to back; "spaced" are calls 200 µs apart;
//! "warm spaced" is the same plugin with `instances = "warm"` (reused
//! instances), for what a fresh instance adds.
//! "live after landing" is hot reload: from a new version's rename into a
//! watched folder to that version serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice::api::chat::{ChatRequest, ChatResponse, Choice, Message, Role};
use sluice::plugin::{Compiler, PluginConfig, PluginHost};
use sluice::stage::{CachePolicy, Compressor, Health, Judge, RouteCandidate, Router, StageContext};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn request() -> ChatRequest {
    let messages = vec![
        Message::text(Role::System, "You are a concise assistant."),
        Message::text(Role::User, "What is the capital of France? Answer in one word."),
    ];
    let mut r: ChatRequest =
        serde_json::from_value(serde_json::json!({ "model": "auto", "messages": messages })).expect("valid request");
    r.temperature = Some(0.0);
    r
}

fn response() -> ChatResponse {
    ChatResponse {
        id: "r".into(),
        object: "chat.completion".into(),
        created: 0,
        model: "m".into(),
        choices: vec![Choice {
            index: 0,
            message: Message::text(Role::Assistant, "Paris."),
            finish_reason: Some("stop".into()),
            extra: Default::default(),
        }],
        usage: None,
        extra: Default::default(),
    }
}

fn candidates() -> Vec<RouteCandidate> {
    ["small", "large"]
        .iter()
        .zip([0.15, 2.5])
        .map(|(m, p)| RouteCandidate {
            model: (*m).into(),
            provider: "bench".into(),
            input_price_per_mtok: p,
            output_price_per_mtok: p * 4.0,
            context_window: 128_000,
            p50_latency_ms: 300.0,
            p95_latency_ms: 900.0,
            error_rate: 0.0,
            health: Health::Healthy,
        })
        .collect()
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

/// One call of the plugin's stage, through the stage trait the gateway
/// uses, on a single-threaded runtime (as one worker runs them).
fn call_stage(
    rt: &tokio::runtime::Runtime,
    host: &PluginHost,
    name: &str,
    (req, resp, cands): (&ChatRequest, &ChatResponse, &[RouteCandidate]),
) {
    let ctx = StageContext::default();
    rt.block_on(async {
        match name {
            "compressor" => drop(host.compress(req, &ctx).await.expect("ok")),
            "cache-policy" => drop(host.cache_policy(req, &ctx).await.expect("ok")),
            "router" | "router-js" => drop(host.route(req, &ctx, cands).await.expect("ok")),
            _ => drop(host.judge(req, &ctx, resp).await.expect("ok")),
        }
    });
}

/// Hot reload as a deployment does it: a watching host serves the plugin,
/// a new version (new bytes: the component plus a custom section, so no
/// compiled artifact exists for it) is renamed into the folder, and the time
/// from the rename to the host listing the new version is returned. Waits
/// for the optimised build too, so it does not run into the next plugin's
/// figures.
fn new_version_lands(dir: &Path, name: &str, wasm: &Path) -> Duration {
    let mut cfg = PluginConfig::new(dir);
    cfg.watch = true;
    let host = PluginHost::start(cfg).expect("host starts");
    let old = host.list()[0].hash.clone();
    let mut bytes = std::fs::read(wasm).expect("read component");
    // A component-level custom section (id 0): name, then payload.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let mut section = vec![12u8];
    section.extend_from_slice(b"sluice-bench");
    section.extend_from_slice(stamp.as_bytes());
    bytes.push(0);
    // One LEB128 byte of size.
    bytes.push(u8::try_from(section.len()).ok().filter(|n| *n < 0x80).expect("short custom section"));
    bytes.extend_from_slice(&section);
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, &bytes).expect("write new version");
    let landed = Instant::now();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("rename into place");
    let live = loop {
        let info = &host.list()[0];
        if info.hash != old && info.hash.is_some() {
            break landed.elapsed();
        }
        assert!(landed.elapsed() < Duration::from_secs(60), "new version never went live: {info:?}");
        std::thread::sleep(Duration::from_millis(1));
    };
    while host.list()[0].compiler != Some(Compiler::Cranelift) {
        std::thread::sleep(Duration::from_millis(5));
    }
    live
}

/// Time between calls in the spaced run.
const GAP: Duration = Duration::from_micros(200);

/// `n` calls `GAP` apart, as a gateway's calls come (the rest of a request,
/// or other requests, between them); their durations, sorted.
fn spaced_calls(n: usize, call: &impl Fn()) -> Vec<Duration> {
    let mut spaced = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(GAP);
        let t = Instant::now();
        call();
        spaced.push(t.elapsed());
    }
    spaced.sort_unstable();
    spaced
}

fn main() {
    let dist = root().join("plugins/dist");
    let fixtures = root().join("tests/fixtures/plugins/dist");
    let iterations: usize = std::env::var("BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let (req, resp, cands) = (request(), response(), candidates());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    println!(
        "| plugin | size | stage | instances | p50 µs | p99 µs | spaced p50 µs | spaced p99 µs | warm spaced p50 µs | calls | faults | live, compiling | optimised | baseline p50 µs | load, cached | live after landing |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let plugins = ["minimal", "compressor", "cache-policy", "router", "judge", "judge-py", "router-js"];
    let only = std::env::var("BENCH_ONLY").ok();
    for name in plugins.into_iter().filter(|n| only.as_deref().is_none_or(|o| o == *n)) {
        // `minimal`: the fault fixture in its default `ok` mode, a judge that
        // does almost nothing: the runtime's own per-call overhead.
        let wasm = match name {
            "minimal" => fixtures.join("faulty.wasm"),
            _ => dist.join(format!("{name}.wasm")),
        };
        if !wasm.is_file() {
            eprintln!("skipping {name}: {} missing (run plugins/build.sh)", wasm.display());
            continue;
        }
        let dir = std::env::temp_dir().join(format!("sluice-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::copy(&wasm, dir.join(format!("{name}.wasm"))).expect("copy");
        let _ = std::fs::copy(dist.join(format!("{name}.toml")), dir.join(format!("{name}.toml")));
        // Load once compiling (empty cache): live (on a baseline build for
        // large components), then optimised; then again from the cache.
        let mut cfg = PluginConfig::new(&dir);
        cfg.watch = false;
        if let Some(n) = std::env::var("BENCH_SPARES").ok().and_then(|v| v.parse().ok()) {
            cfg.defaults.spares = n;
        }
        let t = Instant::now();
        let cold_host = PluginHost::start(cfg.clone()).expect("host starts");
        let cold = t.elapsed();
        let baseline = cold_host.list()[0].compiler == Some(Compiler::Winch);
        let baseline_p50 = baseline.then(|| {
            let mut times: Vec<Duration> = (0..200)
                .map(|_| {
                    let t = Instant::now();
                    call_stage(&rt, &cold_host, name, (&req, &resp, &cands));
                    t.elapsed()
                })
                .collect();
            times.sort_unstable();
            format!("{:.1}", percentile(&times, 0.5))
        });
        while cold_host.list()[0].compiler != Some(Compiler::Cranelift) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let optimised = t.elapsed();
        drop(cold_host);
        let t = Instant::now();
        let host = PluginHost::start(cfg.clone()).expect("host starts");
        let cached = t.elapsed();
        let call = || call_stage(&rt, &host, name, (&req, &resp, &cands));
        for _ in 0..iterations / 10 {
            call();
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            call();
            times.push(t.elapsed());
        }
        times.sort_unstable();
        // Spaced out, as a gateway's calls are (the rest of a request, or
        // other requests, between them): the spare instances are remade
        // off the calling thread in the gaps.
        let spaced = spaced_calls(iterations / 5, &call);
        let info = host.list().into_iter().next().expect("plugin loaded");
        let stage = info.stage.map(|s| s.to_string()).unwrap_or_default();
        let warm = info.warm == Some(true);
        let mode = if warm { "warm" } else { "fresh" };
        // The same plugin on reused (warm) instances, for what a fresh
        // instance adds: its manifest with `instances = "warm"` on top.
        let warm_p50 = (!warm).then(|| {
            let warm_dir = dir.with_extension("warm");
            std::fs::create_dir_all(&warm_dir).expect("warm dir");
            std::fs::copy(dir.join(format!("{name}.wasm")), warm_dir.join(format!("{name}.wasm"))).expect("copy");
            let manifest = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap_or_default();
            std::fs::write(warm_dir.join(format!("{name}.toml")), format!("instances = \"warm\"\n{manifest}"))
                .expect("warm manifest");
            let mut cfg = cfg.clone();
            cfg.dir = warm_dir.clone();
            let warm_host = PluginHost::start(cfg).expect("warm host starts");
            assert_eq!(warm_host.list()[0].warm, Some(true), "{name}: instances = \"warm\" not applied");
            let call = || call_stage(&rt, &warm_host, name, (&req, &resp, &cands));
            for _ in 0..iterations / 10 {
                call();
            }
            let p50 = percentile(&spaced_calls(iterations / 5, &call), 0.5);
            drop(warm_host);
            let _ = std::fs::remove_dir_all(&warm_dir);
            format!("{p50:.1}")
        });
        print!(
            "| {name} | {:.1} MB | {stage} | {mode} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} ms | {} ms | {} | {} ms | ",
            info.size_bytes.unwrap_or(0) as f64 / 1e6,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&spaced, 0.5),
            percentile(&spaced, 0.99),
            warm_p50.as_deref().unwrap_or("-"),
            info.calls,
            info.traps,
            cold.as_millis(),
            optimised.as_millis(),
            baseline_p50.as_deref().unwrap_or("-"),
            cached.as_millis(),
        );
        drop(host);
        let landing = new_version_lands(&dir, name, &wasm);
        println!("{:.0} ms |", landing.as_secs_f64() * 1e3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
