//! The response cache, measured.
//!
//! 1. Semantic quality on the labelled pairs in `tests/data/semantic_pairs.jsonl`
//!    (paraphrases that should hit; negations, changed numbers, entities and
//!    topics that must not) and `tests/data/order_swaps.jsonl` (the same
//!    words with roles swapped: conversions both ways, from/to, than,
//!    before/after, who does what to whom; and reordering paraphrases):
//!    recall and wrong-hit rate at the default threshold, with and without
//!    the false-hit guard, and a threshold sweep, per set.
//! 2. End-to-end hit latency through the gateway: exact hits from the
//!    in-process tier, exact hits from Redis (a gateway with no local tier),
//!    and semantic hits including the embedding.
//!
//! Run: `cargo bench -p sluice-tests --bench cache` (needs the models from
//! `engine/fetch-models.sh` and `redis-server`). `SLUICE_BENCH_REQUESTS` sets
//! the requests per latency phase (default 3000); `SLUICE_BENCH_QUALITY_ONLY=1`
//! runs the quality part alone (no Redis needed).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sluice::cache::CacheConfig;
use sluice::cache::guard::Fingerprint;
use sluice::config::Config;
use sluice::models::ModelConfig;
use sluice::redis_client::RedisConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, MockUpstream, RedisServer, TestGateway};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

struct Pair {
    a: String,
    b: String,
    hit: bool,
    kind: String,
}

/// The labelled sets the quality part measures, each on its own.
const SETS: [&str; 2] = ["tests/data/semantic_pairs.jsonl", "tests/data/order_swaps.jsonl"];

fn pairs() -> Vec<Pair> {
    pairs_in(SETS[0])
}

fn pairs_in(set: &str) -> Vec<Pair> {
    let text = std::fs::read_to_string(root().join(set)).expect("labelled pairs");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("pair JSON");
            Pair {
                a: v["a"].as_str().expect("a").to_owned(),
                b: v["b"].as_str().expect("b").to_owned(),
                hit: v["label"] == "hit",
                kind: v["kind"].as_str().unwrap_or("?").to_owned(),
            }
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

async fn quality(default_threshold: f32) {
    let embedder =
        sluice_engine::EmbedHandle::start(&root().join("models/all-minilm-l6-v2")).expect("embedding model loads");
    for set in SETS {
        quality_of(&embedder, set, default_threshold).await;
    }
    timing(&embedder).await;
}

async fn quality_of(embedder: &sluice_engine::EmbedHandle, set: &str, default_threshold: f32) {
    let pairs = pairs_in(set);
    let mut scored = Vec::new();
    for p in &pairs {
        let v = embedder.embed(vec![p.a.clone(), p.b.clone()]).await.expect("embeddings");
        let guard_ok = Fingerprint::of(&p.a).compatible(&Fingerprint::of(&p.b));
        scored.push((dot(&v[0], &v[1]), guard_ok));
    }
    let positives = pairs.iter().filter(|p| p.hit).count();
    let negatives = pairs.len() - positives;
    println!(
        "## Semantic quality, `{set}`: {} labelled pairs ({positives} should hit, {negatives} must not)\n",
        pairs.len()
    );
    println!("| threshold | guard | recall | wrong-hit rate | wrong hits |");
    println!("|---|---|---|---|---|");
    let mut thresholds: Vec<f32> = (0..=10).map(|i| 0.70 + 0.025 * i as f32).collect();
    if !thresholds.iter().any(|t| (t - default_threshold).abs() < 1e-4) {
        thresholds.push(default_threshold);
        thresholds.sort_by(f32::total_cmp);
    }
    for t in thresholds {
        for guard in [false, true] {
            let predicted = |(sim, ok): &(f32, bool)| *sim >= t && (!guard || *ok);
            let tp = pairs.iter().zip(&scored).filter(|(p, s)| p.hit && predicted(s)).count();
            let fp = pairs.iter().zip(&scored).filter(|(p, s)| !p.hit && predicted(s)).count();
            let mark = if (t - default_threshold).abs() < 1e-4 { " (default)" } else { "" };
            println!(
                "| {t:.3}{mark} | {} | {:.1}% | {:.2}% | {fp} |",
                if guard { "on" } else { "off" },
                100.0 * tp as f64 / positives as f64,
                100.0 * fp as f64 / negatives as f64
            );
        }
    }
    println!("\nWrong hits at the default threshold ({default_threshold}), by kind (guard on / off):\n");
    let mut kinds: Vec<&str> = pairs.iter().filter(|p| !p.hit).map(|p| p.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<_> = pairs.iter().zip(&scored).filter(|(p, _)| !p.hit && p.kind == kind).collect();
        let with = of_kind.iter().filter(|(_, (sim, ok))| *sim >= default_threshold && *ok).count();
        let without = of_kind.iter().filter(|(_, (sim, _))| *sim >= default_threshold).count();
        println!("- {kind}: {with} / {without} of {}", of_kind.len());
    }
    println!();
    let wrong: Vec<_> = pairs
        .iter()
        .zip(&scored)
        .filter(|(p, (sim, ok))| !p.hit && *sim >= default_threshold && *ok)
        .map(|(p, (sim, _))| format!("- {sim:.3} [{}] {:?} / {:?}", p.kind, p.a, p.b))
        .collect();
    if !wrong.is_empty() {
        println!("Wrong hits at the default threshold, guard on:\n\n{}\n", wrong.join("\n"));
    }
}

async fn timing(embedder: &sluice_engine::EmbedHandle) {
    let pairs = pairs();
    // The embedding alone, one short question at a time.
    let mut times = Vec::new();
    for p in pairs.iter().cycle().take(300) {
        let t = Instant::now();
        embedder.embed(vec![p.b.clone()]).await.expect("embedding");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "Embedding one question (all-MiniLM-L6-v2, candle, CPU): p50 {:.2} ms, p99 {:.2} ms\n",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn config(mock: &MockUpstream, cache: CacheConfig, redis: Option<RedisConfig>) -> Config {
    let mut config = Config::default();
    let mut upstream = UpstreamConfig::new("mock", UpstreamKind::OpenAi, &mock.base_url());
    upstream.passthrough = true;
    config.gateway.upstreams = vec![upstream];
    config.gateway.models = vec![ModelConfig {
        name: "bench".into(),
        upstream: "mock".into(),
        upstream_model: "bench".into(),
        input_price_per_mtok: Some(2.5),
        output_price_per_mtok: Some(10.0),
        context_window: Some(128_000),
        ..Default::default()
    }];
    config.gateway.cache = Some(cache);
    config.gateway.redis = redis;
    config
}

fn ask(question: &str) -> Bytes {
    Bytes::from(json!({"model": "bench", "messages": [{"role": "user", "content": question}]}).to_string())
}

/// Sends `bodies` in turn (one at a time); every reply must carry `expect`
/// in `x-sluice-cache`. Returns sorted latencies.
async fn measure(gw: &TestGateway, bodies: &[Bytes], headers: &[(&str, &str)], expect: &str) -> Vec<Duration> {
    let client = Client::new();
    let url = gw.url("/v1/chat/completions");
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut unexpected = 0;
    for body in bodies {
        let t = Instant::now();
        let reply = client.call(Method::POST, &url, body.clone(), headers).await;
        latencies.push(t.elapsed());
        assert_eq!(reply.status, 200);
        if reply.header("x-sluice-cache") != Some(expect) {
            unexpected += 1;
        }
    }
    assert!(unexpected * 20 <= bodies.len(), "{unexpected} of {} replies were not `{expect}`", bodies.len());
    latencies.sort();
    latencies
}

fn row(name: &str, latencies: &[Duration]) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} |",
        latencies.len(),
        us(percentile(latencies, 0.5)),
        us(percentile(latencies, 0.99)),
        us(percentile(latencies, 1.0))
    );
}

async fn latency(requests: usize) {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start_unrecorded().await;
    let mut redis_config = RedisConfig::new(&redis.url());
    redis_config.timeout = Duration::from_millis(50);
    let exact = CacheConfig { semantic: false, embedding_model_dir: None, ..CacheConfig::default() };
    let local = TestGateway::start(config(&mock, exact.clone(), None)).await;
    let remote =
        TestGateway::start(config(&mock, CacheConfig { max_bytes: 0, ..exact }, Some(redis_config.clone()))).await;
    let semantic = TestGateway::start(config(
        &mock,
        CacheConfig { embedding_model_dir: Some(root().join("models/all-minilm-l6-v2")), ..CacheConfig::default() },
        Some(redis_config),
    ))
    .await;

    let questions: Vec<Bytes> = (0..100).map(|i| ask(&format!("Question {i}: what does a cache do?"))).collect();
    let client = Client::new();
    for gw in [&local, &remote] {
        for q in &questions {
            client.call(Method::POST, &gw.url("/v1/chat/completions"), q.clone(), &[]).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // Redis writes are off the request path.
    let load: Vec<Bytes> = (0..requests).map(|i| questions[i % questions.len()].clone()).collect();
    // Direct to the mock, for scale: what one upstream round trip costs here.
    let direct = {
        let url = format!("{}/chat/completions", mock.base_url());
        let mut l = Vec::new();
        for body in &load {
            let t = Instant::now();
            client.call(Method::POST, &url, body.clone(), &[]).await;
            l.push(t.elapsed());
        }
        l.sort();
        l
    };

    // Semantic: store the `a` side of the paraphrase pairs, ask the `b` side
    // (no-store, so every request is an exact miss and a semantic lookup).
    let hits: Vec<Pair> = pairs().into_iter().filter(|p| p.hit).collect();
    for p in &hits {
        client.call(Method::POST, &semantic.url("/v1/chat/completions"), ask(&p.a), &[]).await;
    }
    let probe = ask(&hits[0].b);
    let mut found = false;
    for _ in 0..200 {
        let r = client
            .call(Method::POST, &semantic.url("/v1/chat/completions"), probe.clone(), &[("cache-control", "no-store")])
            .await;
        if r.header("x-sluice-cache") == Some("semantic-hit") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(found, "the semantic index filled");
    let semantic_bodies: Vec<Bytes> = {
        // Only the pairs the cache does serve semantically (the rest are misses, measured apart).
        let mut served = Vec::new();
        for p in &hits {
            let body = ask(&p.b);
            let r = client
                .call(
                    Method::POST,
                    &semantic.url("/v1/chat/completions"),
                    body.clone(),
                    &[("cache-control", "no-store")],
                )
                .await;
            if r.header("x-sluice-cache") == Some("semantic-hit") {
                served.push(body);
            }
        }
        served
    };
    let semantic_load: Vec<Bytes> =
        (0..requests.min(1000)).map(|i| semantic_bodies[i % semantic_bodies.len()].clone()).collect();

    println!("## Hit latency through the gateway (client → Sluice → cache → client, one at a time)\n");
    println!("| path | requests | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|");
    row("upstream round trip, direct to the mock (for scale)", &direct);
    row("exact hit, in-process tier", &measure(&local, &load, &[], "hit").await);
    row("exact hit, Redis tier (no local tier)", &measure(&remote, &load, &[], "hit").await);
    row(
        "semantic hit, incl. embedding (Redis-backed)",
        &measure(&semantic, &semantic_load, &[("cache-control", "no-store")], "semantic-hit").await,
    );
    println!("\n{} of {} paraphrases served semantically end to end.", semantic_bodies.len(), hits.len());
    drop(redis);
}

fn main() {
    let requests: usize = std::env::var("SLUICE_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        quality(CacheConfig::default().similarity_threshold).await;
        if std::env::var_os("SLUICE_BENCH_QUALITY_ONLY").is_none() {
            latency(requests).await;
        }
    });
}
