//! Gateway overhead: latency through Sluice minus latency direct to the same
//! mock upstream, at concurrency 1 and 64, plus requests/s; the same with
//! every request traced (OpenTelemetry spans exported over OTLP); then the same
//! through a gateway running all four stages as the Rust example plugins
//! (compressor, cache policy, router, judge): fresh instance per call (the
//! default), then again with warm instances reused across calls.
//!
//! Run: `plugins/build.sh && cargo bench -p sluice-tests --bench gateway_overhead`
//! The plain proxy is also measured with its live dashboard open (`/ui/live`
//! polled once a second, as the page does).
//! (`SLUICE_BENCH_SECS` sets the seconds per phase, default 5;
//! `BENCH_SPARES=N` the spare instances per fresh-instance plugin, default 2;
//! `BENCH_TRACE_RATIO` the traced gateway's sample ratio, default 1, or
//! `none` for no traced phase.)
//!
//! Mock, gateway and load generator share this process and the machine's
//! cores, as they would on one host; the figures include that contention.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use sluice::config::Config;
use sluice::models::ModelConfig;
use sluice::plugin::PluginConfig;
use sluice::traces::TracingConfig;
use sluice::upstream::UpstreamKind;
use sluice_testkit::{Client, MockUpstream, OtlpReceiver, TestGateway};

struct Run {
    latencies: Vec<Duration>,
    overheads: Vec<u64>,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn drive(url: &str, concurrency: usize, secs: f64) -> Run {
    let client = Client::new();
    let body = Bytes::from_static(br#"{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}"#);
    // Warm the pools.
    for _ in 0..200 {
        client.call(Method::POST, url, body.clone(), &[]).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut overheads: Vec<u64> = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let reply = client.call(Method::POST, &url, body.clone(), &[]).await;
                    latencies.push(t.elapsed());
                    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
                    if let Some(us) = reply.header("x-sluice-overhead-us").and_then(|v| v.parse().ok()) {
                        overheads.push(us);
                    }
                }
                (latencies, overheads)
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), overheads: Vec::new(), elapsed: Duration::ZERO };
    for task in tasks {
        let (l, o) = task.await.expect("load task");
        run.latencies.extend(l);
        run.overheads.extend(o);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run.overheads.sort_unstable();
    run
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A gateway in front of `mock` running the four Rust example plugins, or
/// `None` when `plugins/dist` has not been built. `warm`: the manifests ask
/// for warm instances reused across calls instead of the default fresh
/// instance per call.
async fn staged_gateway(mock: &MockUpstream, warm: bool) -> Option<(TestGateway, std::path::PathBuf)> {
    let dist = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/dist"));
    let folder = std::env::temp_dir().join(format!("sluice-bench-plugins-{}-{warm}", std::process::id()));
    std::fs::create_dir_all(&folder).ok()?;
    for name in ["compressor", "cache-policy", "router", "judge"] {
        std::fs::copy(dist.join(format!("{name}.wasm")), folder.join(format!("{name}.wasm"))).ok()?;
        let manifest = std::fs::read_to_string(dist.join(format!("{name}.toml"))).ok()?;
        let manifest = if warm { format!("instances = \"warm\"\n{manifest}") } else { manifest };
        std::fs::write(folder.join(format!("{name}.toml")), manifest).ok()?;
    }
    let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
    config.gateway.models = vec![ModelConfig {
        name: "bench".into(),
        upstream: "default".into(),
        upstream_model: "bench".into(),
        input_price_per_mtok: Some(0.15),
        output_price_per_mtok: Some(0.6),
        context_window: Some(8192),
        ..ModelConfig::default()
    }];
    let mut plugins = PluginConfig::new(&folder);
    plugins.cache_dir = Some(dist.join(".cache"));
    plugins.watch = false;
    if let Some(n) = std::env::var("BENCH_SPARES").ok().and_then(|v| v.parse().ok()) {
        plugins.defaults.spares = n;
    }
    config.gateway.plugins = Some(plugins);
    Some((TestGateway::start(config).await, folder))
}

/// A passthrough gateway tracing its requests (`BENCH_TRACE_RATIO` of
/// them, default all; `none`: no such gateway) to `collector`.
async fn traced_gateway(mock: &MockUpstream, collector: &OtlpReceiver) -> Option<TestGateway> {
    let ratio = match std::env::var("BENCH_TRACE_RATIO") {
        Ok(v) if v == "none" => return None,
        Ok(v) => v.parse().expect("BENCH_TRACE_RATIO: a number from 0 to 1, or none"),
        Err(_) => 1.0,
    };
    let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
    config.gateway.tracing = Some(TracingConfig { sample_ratio: ratio, ..TracingConfig::new(&collector.endpoint()) });
    Some(TestGateway::start(config).await)
}

fn report(name: &str, concurrency: usize, run: &Run) {
    let mean = run.latencies.iter().sum::<Duration>() / run.latencies.len().max(1) as u32;
    let self_p99 =
        run.overheads.get(run.overheads.len().saturating_sub(1) * 99 / 100).map_or("-".to_owned(), |v| v.to_string());
    println!(
        "{:>5} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.0} {:>11}",
        concurrency,
        name,
        us(percentile(&run.latencies, 0.5)),
        us(percentile(&run.latencies, 0.99)),
        us(mean),
        run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
        self_p99
    );
}

fn added(name: &str, concurrency: usize, through: &Run, direct: &Run) {
    println!(
        "{:>5} {:>8} {:>10.1} {:>10.1}   (added by the gateway: through - direct)",
        concurrency,
        name,
        us(percentile(&through.latencies, 0.5)) - us(percentile(&direct.latencies, 0.5)),
        us(percentile(&through.latencies, 0.99)) - us(percentile(&direct.latencies, 0.99)),
    );
}

/// Each plugin's own call time inside the gateway (its recent window), to
/// tell the stages' cost from the rest of the pipeline's.
async fn plugin_times(gateway: &TestGateway) {
    let reply = Client::new().call(Method::GET, &gateway.url("/admin/plugins"), Bytes::new(), &[]).await;
    let Ok(list) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return;
    };
    let items = list.get("plugins").unwrap_or(&list).as_array().cloned().unwrap_or_default();
    for p in items {
        println!(
            "             plugin {:<13} p50 {:>6.1} us  p99 {:>6.1} us (inside the gateway), {} of {} calls found no spare",
            p["name"].as_str().unwrap_or("?"),
            p["p50_us"].as_f64().unwrap_or(f64::NAN),
            p["p99_us"].as_f64().unwrap_or(f64::NAN),
            p["spare_misses"].as_u64().unwrap_or(0),
            p["calls"].as_u64().unwrap_or(0)
        );
    }
}

/// What the dashboard page does: `/ui/live?since=T` once a second.
async fn poll_dashboard(url: String) {
    let client = sluice_testkit::Client::new();
    let mut since = 0;
    loop {
        let live = client.get(&format!("{url}?since={since}")).await.json();
        since = live["now"].as_u64().unwrap_or(since);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn main() {
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mock = MockUpstream::start_unrecorded().await;
        let gateway = TestGateway::passthrough(&mock.base_url()).await;
        // The same gateway tracing every request, exporting to a receiver
        // that reads and discards the spans.
        let collector = OtlpReceiver::start_discarding().await;
        let traced = traced_gateway(&mock, &collector).await;
        let staged = staged_gateway(&mock, false).await;
        let warm = staged_gateway(&mock, true).await;
        let direct = format!("{}/chat/completions", mock.base_url());
        let through = gateway.url("/v1/chat/completions");
        println!(
            "gateway overhead benchmark: {secs} s per phase, {} CPU cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:>5} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11}",
            "conc", "path", "p50 us", "p99 us", "mean us", "req/s", "self-rep p99"
        );
        for concurrency in [1usize, 64] {
            let d = drive(&direct, concurrency, secs).await;
            let t = drive(&through, concurrency, secs).await;
            report("direct", concurrency, &d);
            report("sluice", concurrency, &t);
            added("added", concurrency, &t, &d);
            // The same gateway with its dashboard open: a browser polling
            // /ui/live once a second, as the page does.
            let poller = tokio::spawn(poll_dashboard(gateway.url("/ui/live")));
            let open = drive(&through, concurrency, secs).await;
            poller.abort();
            report("ui-open", concurrency, &open);
            added("added", concurrency, &open, &d);
            if let Some(traced) = &traced {
                let traced_run = drive(&traced.url("/v1/chat/completions"), concurrency, secs).await;
                report("traced", concurrency, &traced_run);
                added("added", concurrency, &traced_run, &d);
            }
            if let Some((staged, _)) = &staged {
                let s = drive(&staged.url("/v1/chat/completions"), concurrency, secs).await;
                report("4stages", concurrency, &s);
                added("added", concurrency, &s, &d);
                if concurrency == 1 {
                    plugin_times(staged).await;
                }
            }
            if let Some((warm, _)) = &warm {
                let s = drive(&warm.url("/v1/chat/completions"), concurrency, secs).await;
                report("4st-warm", concurrency, &s);
                added("added", concurrency, &s, &d);
            }
        }
        if let Some(traced) = &traced {
            traced.flush_traces().await;
            println!("(traced: {} OTLP exports received)", collector.exports());
        }
        if staged.is_none() {
            println!("(plugins/dist not built: the four-stage phase was skipped; run plugins/build.sh)");
        }
        for (_, folder) in staged.into_iter().chain(warm) {
            let _ = std::fs::remove_dir_all(folder);
        }
    });
}
