//! Soak: a million requests through a gateway running all four stages (the
//! Rust example plugins: compressor, cache policy, router, judge) and the
//! exact response cache, mixed streamed and whole answers, some clients
//! disconnecting mid-stream, some questions repeated (cache hits). Prints the
//! process's resident memory after the warm-up and at the end, the requests
//! sent against the responses received, and whether any upstream slot or
//! upstream stream was left open. It measures; it asserts nothing.
//!
//! Run: `plugins/build.sh && cargo bench -p sluice-tests --bench soak`
//! (`SOAK_REQUESTS` sets the measured requests, default 1,000,000;
//! `SOAK_WARMUP` the warm-up requests before the first memory reading,
//! default 100,000, enough to fill the
//! cache and reach the steady state on the development machine; `SOAK_CONCURRENCY` the clients, default 64.)
//!
//! Mock, gateway and clients share this process, so the memory figures are
//! the three together; the mock and the clients keep no per-request state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice::cache::CacheConfig;
use sluice::config::Config;
use sluice::models::ModelConfig;
use sluice::plugin::PluginConfig;
use sluice::upstream::UpstreamKind;
use sluice_testkit::{Client, MockUpstream, TestGateway};

type Http = HyperClient<HttpConnector, Full<Bytes>>;

/// Questions asked again and again: after their first answer, cache hits.
const REPEATED: u64 = 100;

/// What one request of the mix is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whole,
    Streamed,
    /// Streamed; the client drops the body after the first chunk.
    Disconnect,
}

/// The i-th request of the mix: 5% disconnecting streams (always new
/// questions, so that an upstream stream is really cut), 35% whole streams,
/// 60% whole answers; a quarter of the rest repeat one of [`REPEATED`]
/// questions.
fn plan(i: u64) -> (Kind, String) {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let kind = match h % 100 {
        0..5 => Kind::Disconnect,
        5..40 => Kind::Streamed,
        _ => Kind::Whole,
    };
    let question = if kind != Kind::Disconnect && (h / 100).is_multiple_of(4) {
        format!("Frequently asked question {}: what does a gateway do?", (h / 400) % REPEATED)
    } else {
        format!("Question {i}: what does a gateway do with this request?")
    };
    (kind, question)
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    /// Whole answers and streams read to the end, status 200.
    ok: AtomicU64,
    /// Streams the client dropped after their first chunk, on purpose.
    dropped_by_client: AtomicU64,
    /// Responses with another status, or a body that broke off.
    failed: AtomicU64,
    /// Requests that got no response at all.
    lost: AtomicU64,
    /// `x-sluice-cache: hit`.
    cache_hits: AtomicU64,
    streamed: AtomicU64,
}

async fn one(client: &Http, url: &str, i: u64, tally: &Tally) {
    let (kind, question) = plan(i);
    let stream = kind != Kind::Whole;
    let body = serde_json::json!({
        "model": "bench",
        "stream": stream,
        "max_tokens": 32,
        "temperature": 0,
        "messages": [{"role": "user", "content": question}],
    });
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let Ok(response) = client.request(request).await else {
        tally.lost.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if response.headers().get("x-sluice-cache").is_some_and(|v| v == "hit") {
        tally.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    if stream {
        tally.streamed.fetch_add(1, Ordering::Relaxed);
    }
    let status = response.status();
    let mut body = response.into_body();
    if kind == Kind::Disconnect && status == 200 {
        // The first chunk, then hang up.
        match body.frame().await {
            Some(Ok(_)) => tally.dropped_by_client.fetch_add(1, Ordering::Relaxed),
            _ => tally.failed.fetch_add(1, Ordering::Relaxed),
        };
        return;
    }
    let whole = body.collect().await;
    if status == 200 && whole.is_ok() {
        tally.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs requests `from..to` from `concurrency` clients; returns the seconds taken.
async fn drive(client: &Http, url: &str, from: u64, to: u64, concurrency: usize, tally: &Arc<Tally>) -> f64 {
    let next = Arc::new(AtomicU64::new(from));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, tally) = (client.clone(), url.to_owned(), next.clone(), tally.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        break;
                    }
                    one(&client, &url, i, &tally).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    started.elapsed().as_secs_f64()
}

/// This process's resident set, in KiB (`VmRSS` in /proc/self/status).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// This process's peak resident set, in KiB (`VmHWM`).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The in-process cache tier's entries and bytes (`/admin/cache/stats`).
async fn cache_fill(gateway: &TestGateway) -> String {
    let reply = Client::new().get(&gateway.url("/admin/cache/stats")).await;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return format!("cache stats unavailable ({})", reply.status);
    };
    let local = v.pointer("/local").cloned().unwrap_or_default();
    format!("cache: {} entries, {} of {} bytes", local["entries"], local["bytes"], local["max_bytes"])
}

/// Every `sluice_upstream_in_flight` series in `/metrics`: (labels, value).
async fn in_flight(gateway: &TestGateway) -> Vec<(String, f64)> {
    let text = Client::new().get(&gateway.url("/metrics")).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.strip_prefix("sluice_upstream_in_flight"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The four example stage plugins from `plugins/dist`, copied into a fresh
/// folder, or `None` when they have not been built.
fn plugin_folder() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let dist = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/dist")).to_path_buf();
    let folder = std::env::temp_dir().join(format!("sluice-soak-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&folder).ok()?;
    for name in ["compressor", "cache-policy", "router", "judge"] {
        for ext in ["wasm", "toml"] {
            std::fs::copy(dist.join(format!("{name}.{ext}")), folder.join(format!("{name}.{ext}"))).ok()?;
        }
    }
    Some((dist, folder))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace(['_', ','], "").parse().ok()).unwrap_or(default)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let requests = env_or("SOAK_REQUESTS", 1_000_000);
    let warmup = env_or("SOAK_WARMUP", 100_000);
    let concurrency = env_or("SOAK_CONCURRENCY", 64) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mock = MockUpstream::start_unrecorded().await;
        let Some((dist, folder)) = plugin_folder() else {
            println!("plugins/dist is not built: run plugins/build.sh first");
            return;
        };
        let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
        // Streams drip a chunk every 2 ms, so that a client hanging up after
        // the first chunk cuts a stream the upstream is still sending.
        config.gateway.models = vec![ModelConfig {
            name: "bench".into(),
            upstream: "default".into(),
            upstream_model: "bench-drip2".into(),
            input_price_per_mtok: Some(0.15),
            output_price_per_mtok: Some(0.6),
            context_window: Some(8192),
            ..ModelConfig::default()
        }];
        // A small in-process tier, filled during the warm-up, so that the
        // measured part runs with the cache full and evicting.
        config.gateway.cache = Some(CacheConfig {
            semantic: false,
            embedding_model_dir: None,
            max_bytes: 8 * 1024 * 1024,
            ..CacheConfig::default()
        });
        let mut plugins = PluginConfig::new(&folder);
        plugins.cache_dir = Some(dist.join(".cache"));
        plugins.watch = false;
        config.gateway.plugins = Some(plugins);
        let gateway = TestGateway::start(config).await;
        let url = gateway.url("/v1/chat/completions");

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Http = HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);

        println!(
            "soak: {requests} requests after {warmup} warm-up, {concurrency} clients, {} CPU cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let warm_tally = Arc::new(Tally::default());
        let secs = drive(&client, &url, 0, warmup, concurrency, &warm_tally).await;
        println!("warm-up: {warmup} requests in {secs:.1} s");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = rss_kib();
        println!("RSS after the warm-up: {:.1} MiB; {}", mib(before), cache_fill(&gateway).await);

        let tally = Arc::new(Tally::default());
        let started = Instant::now();
        let step = requests.div_ceil(10).max(1);
        let mut done = 0;
        while done < requests {
            let to = (done + step).min(requests);
            drive(&client, &url, warmup + done, warmup + to, concurrency, &tally).await;
            done = to;
            println!(
                "  {done:>9} requests, {:>6.0} s, RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                mib(rss_kib())
            );
        }
        let secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib();

        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (sent, ok, dropped, failed, lost) =
            (get(&tally.sent), get(&tally.ok), get(&tally.dropped_by_client), get(&tally.failed), get(&tally.lost));
        println!("\nmeasured: {sent} requests in {secs:.1} s ({:.0} req/s)", sent as f64 / secs);
        println!(
            "  answered 200: {ok}; dropped by the client after the first chunk: {dropped}; failed: {failed}; no response: {lost}"
        );
        println!(
            "  accounted for: {} of {sent} ({} unaccounted)",
            ok + dropped + failed + lost,
            sent.saturating_sub(ok + dropped + failed + lost)
        );
        println!("  streamed: {}; cache hits: {}", get(&tally.streamed), get(&tally.cache_hits));
        println!(
            "RSS: {:.1} MiB after the warm-up, {:.1} MiB at the end: {:+.2}% (peak {:.1} MiB); {}",
            mib(before),
            mib(after),
            (after as f64 - before as f64) * 100.0 / before.max(1) as f64,
            mib(peak_kib()),
            cache_fill(&gateway).await
        );
        for (labels, value) in in_flight(&gateway).await {
            println!("sluice_upstream_in_flight{labels} = {value}");
        }
        let (started, completed, dropped) = mock.stream_counts();
        println!(
            "mock upstream streams (warm-up included): {started} begun, {completed} finished, {dropped} cut, {} still open",
            started as i64 - completed as i64 - dropped as i64
        );
        let _ = std::fs::remove_dir_all(folder);
    });
}
