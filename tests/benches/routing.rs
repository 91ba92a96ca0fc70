//! Routing benchmarks, printing figures (tests/BENCHMARKS.md):
//!
//! - `cascade`: a replayed workload (examples/cascade/prompts.jsonl: 40 easy
//!   questions and the 80 MT-Bench first turns) sent twice through one
//!   gateway: pinned to the strong model, and routed by the example router
//!   with a small → strong cascade judged by the example judge. The cheap
//!   tier is the bundled engine with the real default model; the strong tier
//!   is a mock upstream with a frontier model's latency and price. Prints
//!   cost, p50/p95 latency and mean judge score per mode.
//! - `outage`: 200 req/s open loop for 18 s; the primary upstream answers 503
//!   from 4 s to 8 s. Prints requests lost and p50/p99 before, during and
//!   after the outage.
//!
//! `cargo bench -p sluice-tests --bench routing -- [cascade|outage]`
//! (`--profile dev` reuses the test build: dependencies and the engine are
//! optimised there too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::models::ModelConfig;
use sluice::plugin::PluginConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, MockUpstream, TestGateway};

/// Strong tier: a frontier model's list price and a typical whole-answer latency.
const STRONG_PRICE: (f64, f64) = (2.50, 10.00);
const STRONG_LATENCY_MS: u64 = 1200;
/// Cheap tier: the bundled engine, priced as a small hosted model.
const SMALL_PRICE: (f64, f64) = (0.05, 0.20);
const CONCURRENCY: usize = 4;
/// `max_tokens` of every request (`SLUICE_BENCH_MAX_TOKENS` overrides it).
fn max_tokens() -> u32 {
    std::env::var("SLUICE_BENCH_MAX_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(160)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(((v.len() - 1) as f64) * q).round() as usize]
}

fn model(name: &str, upstream: &str, upstream_model: &str, price: (f64, f64), tier: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        upstream: upstream.into(),
        upstream_model: upstream_model.into(),
        input_price_per_mtok: Some(price.0),
        output_price_per_mtok: Some(price.1),
        context_window: Some(8192),
        tier: Some(tier.into()),
        ..ModelConfig::default()
    }
}

struct Row {
    latency_ms: f64,
    cost: f64,
    score: Option<f64>,
    cascade: String,
    ok: bool,
}

async fn cascade() {
    let model_path = root().join(sluice_engine::EngineConfig::default().model_path);
    let dist = root().join("plugins/dist");
    if !model_path.exists() || !dist.join("router.wasm").exists() {
        println!("cascade: skipped (run engine/fetch-models.sh and plugins/build.sh first)");
        return;
    }
    let prompts: Vec<Value> = std::fs::read_to_string(root().join("examples/cascade/prompts.jsonl"))
        .expect("examples/cascade/prompts.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    let folder = tempfile::tempdir().expect("temp dir");
    std::fs::copy(dist.join("router.wasm"), folder.path().join("router.wasm")).expect("router");
    std::fs::copy(dist.join("judge.wasm"), folder.path().join("judge.wasm")).expect("judge");
    std::fs::copy(root().join("examples/cascade/router.toml"), folder.path().join("router.toml")).expect("manifest");
    let strong_mock = MockUpstream::start_unrecorded().await;

    let mut config = Config::default();
    let mut engine = UpstreamConfig::new("engine", UpstreamKind::Engine, "");
    engine.engine.model_path = model_path;
    engine.engine.embedding_model_dir = None;
    engine.engine.max_batch = 16;
    config.gateway.upstreams.push(engine);
    config.gateway.upstreams.push(UpstreamConfig::new("frontier", UpstreamKind::OpenAi, &strong_mock.base_url()));
    config.gateway.models = vec![
        model("small", "engine", "small", SMALL_PRICE, "small"),
        model("large", "frontier", &format!("mock-strong-slow{STRONG_LATENCY_MS}"), STRONG_PRICE, "frontier"),
    ];
    let mut plugins = PluginConfig::new(folder.path());
    plugins.cache_dir = Some(dist.join(".cache"));
    plugins.watch = false;
    config.gateway.plugins = Some(plugins);
    let gateway = TestGateway::start(config).await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");

    let max_tokens = max_tokens();
    println!("cascade: {} prompts, concurrency {CONCURRENCY}, max_tokens {max_tokens}", prompts.len());
    println!("| mode | requests | failed | cost USD | p50 ms | p95 ms | mean judge score | answered by small |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    for mode in ["always-strong", "cascade"] {
        let rows: Vec<Row> = futures_util::stream::iter(prompts.iter().cloned())
            .map(|p| {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let model = if mode == "cascade" { "auto" } else { "large" };
                    let body = json!({"model": model, "max_tokens": max_tokens, "temperature": 0,
                        "messages": [{"role": "user", "content": p["prompt"]}]});
                    let headers: &[(&str, &str)] =
                        if mode == "cascade" { &[] } else { &[("x-sluice-route", "pinned")] };
                    let started = Instant::now();
                    let reply = client.call(Method::POST, &url, Bytes::from(body.to_string()), headers).await;
                    let header = |n: &str| reply.header(n).map(str::to_owned);
                    Row {
                        latency_ms: started.elapsed().as_secs_f64() * 1e3,
                        cost: header("x-sluice-cost-usd").and_then(|c| c.parse().ok()).unwrap_or(0.0),
                        score: header("x-sluice-judge-score").and_then(|c| c.parse().ok()),
                        cascade: header("x-sluice-cascade").unwrap_or_default(),
                        ok: reply.status == 200,
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut latencies: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
        let cost: f64 = rows.iter().map(|r| r.cost).sum();
        let scores: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
        let mean_score = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
        let by_small = rows.iter().filter(|r| r.cascade.starts_with("small:") && !r.cascade.contains('>')).count();
        let failed = rows.iter().filter(|r| !r.ok).count();
        println!(
            "| {mode} | {} | {failed} | {cost:.5} | {:.0} | {:.0} | {mean_score:.3} (n={}) | {by_small} |",
            rows.len(),
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.95),
            scores.len(),
        );
        results.push((cost, mean_score));
    }
    let (strong, routed) = (results[0], results[1]);
    println!(
        "cost reduction {:.1}%, judge score retained {:.1}% of always-strong",
        100.0 * (1.0 - routed.0 / strong.0),
        100.0 * routed.1 / strong.1
    );
    let stats = client.get(&gateway.url("/admin/routing/stats")).await.json();
    for m in ["small", "large"] {
        let s = &stats["models"][m];
        println!(
            "{m}: calls {}, p50 {:.0} ms, p95 {:.0} ms, mean judge {:.3}, escalation rate {:.2}",
            s["calls"],
            s["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            s["latency_ms"]["p95"].as_f64().unwrap_or(0.0),
            s["mean_judge_score"].as_f64().unwrap_or(0.0),
            s["escalation_rate"].as_f64().unwrap_or(0.0)
        );
    }
}

async fn outage() {
    const RATE: u64 = 200;
    const SECS: u64 = 18;
    let primary = MockUpstream::start_unrecorded().await;
    let backup = MockUpstream::start_unrecorded().await;
    let mut config = Config::default();
    config.gateway.upstreams.push(UpstreamConfig::new("primary", UpstreamKind::OpenAi, &primary.base_url()));
    config.gateway.upstreams.push(UpstreamConfig::new("backup", UpstreamKind::OpenAi, &backup.base_url()));
    let mut main = model("main", "primary", "mock-slow50", (1.0, 2.0), "main");
    main.fallbacks = vec!["spare".into()];
    config.gateway.models = vec![main, model("spare", "backup", "mock-slow80", (1.0, 2.0), "main")];
    let gateway = TestGateway::start(config).await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");
    let body = Bytes::from(json!({"model": "main", "messages": [{"role": "user", "content": "hi"}]}).to_string());

    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut outage_on = false;
    let mut outage_off = false;
    for i in 0..RATE * SECS {
        let at = Duration::from_micros(i * 1_000_000 / RATE);
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + at)).await;
        if !outage_on && at >= Duration::from_secs(4) {
            primary.set_down(true);
            outage_on = true;
        }
        if !outage_off && at >= Duration::from_secs(8) {
            primary.set_down(false);
            outage_off = true;
        }
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = client.call(Method::POST, &url, body, &[]).await;
            (at, sent.elapsed().as_secs_f64() * 1e3, reply.status.as_u16())
        }));
    }
    let mut phases: [(Vec<f64>, usize); 3] = Default::default();
    for task in tasks {
        let Ok((at, ms, status)) = task.await else { continue };
        let phase = match at.as_secs() {
            0..4 => 0,
            4..8 => 1,
            _ => 2,
        };
        phases[phase].0.push(ms);
        phases[phase].1 += usize::from(status != 200);
    }
    println!("outage: {RATE} req/s for {SECS} s; the primary answers 503 from 4 s to 8 s");
    println!("| phase | requests | lost | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let mut p99 = [0.0; 3];
    for (i, name) in ["before", "during", "after"].iter().enumerate() {
        let (latencies, lost) = &mut phases[i];
        let n = latencies.len();
        p99[i] = percentile(latencies, 0.99);
        println!("| {name} | {n} | {lost} | {:.1} | {:.1} |", percentile(latencies, 0.5), p99[i]);
    }
    println!("added p99 during the outage: {:.1} ms", p99[1] - p99[0]);
    let stats = client.get(&gateway.url("/admin/routing/stats")).await.json();
    println!("circuit now: {}", stats["upstreams"]["primary"]["circuit"]);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        if wants("outage") {
            outage().await;
        }
        if wants("cascade") {
            cascade().await;
        }
    });
}
