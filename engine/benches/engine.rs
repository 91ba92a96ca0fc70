//! Engine benchmark: prints single-stream decode speed, 16-stream aggregate
//! throughput (TTFT / TPOT percentiles), TTFT for a ~1,000-token system prompt
//! with and without a prefix-cache hit, and peak RSS.
//!
//! Run: `cargo bench -p sluice-engine` (needs `engine/fetch-models.sh`).

use sluice_engine::{ChatMessage, Engine, EngineConfig, GenerateRequest, GenerationEvent, Prompt, SamplingParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Timing {
    ttft: Duration,
    tokens: usize,
    /// Time from first to last token.
    decode: Duration,
}

fn chat(system: Option<&str>, user: &str) -> Prompt {
    let mut m = Vec::new();
    if let Some(s) = system {
        m.push(ChatMessage { role: "system".into(), content: s.into() });
    }
    m.push(ChatMessage { role: "user".into(), content: user.into() });
    Prompt::Chat(m)
}

fn params(max_tokens: usize, seed: u64) -> SamplingParams {
    // Light sampling keeps generations long (greedy tends to stop early).
    SamplingParams { temperature: 0.7, top_p: 0.95, top_k: 40, seed: Some(seed), max_tokens, stop: vec![] }
}

fn start(
    e: &Engine,
    prompt: Prompt,
    p: SamplingParams,
) -> (Instant, tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>) {
    let t0 = Instant::now();
    let rx = e.generate(GenerateRequest::new(prompt, p)).expect("generate");
    (t0, rx)
}

fn finish(t0: Instant, mut rx: tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>) -> Timing {
    let mut first = None;
    let mut last = t0;
    let mut tokens = 0;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenerationEvent::Token { .. } => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                tokens += 1;
            }
            GenerationEvent::Done { .. } => break,
            GenerationEvent::Error(e) => panic!("{e}"),
        }
    }
    let first = first.unwrap_or(last);
    Timing { ttft: first - t0, tokens, decode: last - first }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// 1. Single stream: decode speed, median of 3.
fn single_stream(e: &Engine) {
    let mut tps = Vec::new();
    let mut tpot = Vec::new();
    let mut ttft = Vec::new();
    for seed in 0..3 {
        let (t0, rx) = start(e, chat(None, "Write a long story about a dragon and a knight."), params(128, seed));
        let r = finish(t0, rx);
        let per = r.decode.as_secs_f64() / (r.tokens.max(2) - 1) as f64;
        tps.push(1.0 / per);
        tpot.push(per * 1e3);
        ttft.push(ms(r.ttft));
    }
    println!(
        "single stream: decode {:.1} tok/s (median of 3), TPOT p50 {:.2} ms, TTFT p50 {:.1} ms",
        pct(&mut tps, 0.5),
        pct(&mut tpot, 0.5),
        pct(&mut ttft, 0.5)
    );
}

/// 2. 16 concurrent streams: aggregate throughput, TTFT and TPOT percentiles.
fn concurrent_streams(e: &Engine) {
    let topics = [
        "the ocean",
        "a robot",
        "mountains",
        "a city at night",
        "coffee",
        "an old library",
        "a storm",
        "the moon",
        "a garden",
        "a train journey",
        "winter",
        "a lighthouse",
        "a market",
        "the desert",
        "a violin",
        "a forest",
    ];
    let wall = Instant::now();
    let rxs: Vec<_> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| start(e, chat(None, &format!("Write a long story about {t}.")), params(128, i as u64)))
        .collect();
    // Drain every stream on its own thread so token timestamps are real.
    let handles: Vec<_> = rxs.into_iter().map(|(t0, rx)| std::thread::spawn(move || finish(t0, rx))).collect();
    let res: Vec<Timing> = handles.into_iter().map(|h| h.join().expect("stream thread")).collect();
    let wall = wall.elapsed();
    let total: usize = res.iter().map(|r| r.tokens).sum();
    let mut ttfts: Vec<f64> = res.iter().map(|r| ms(r.ttft)).collect();
    let mut tpots: Vec<f64> = res.iter().map(|r| ms(r.decode) / (r.tokens.max(2) - 1) as f64).collect();
    println!(
        "16 streams: {total} tokens in {:.2} s = {:.1} tok/s aggregate; TTFT p50 {:.0} ms p99 {:.0} ms; TPOT p50 {:.1} ms p99 {:.1} ms",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        pct(&mut ttfts, 0.5),
        pct(&mut ttfts, 0.99),
        pct(&mut tpots, 0.5),
        pct(&mut tpots, 0.99)
    );
}

/// 3. TTFT with a ~1,000-token system prompt: miss vs prefix-cache hit.
fn long_system_prompt(e: &Engine) {
    let mut miss = Vec::new();
    let mut hit = Vec::new();
    let mut sys_tokens = 0;
    for run in 0..3 {
        let sentence = format!(
            "Rule {run}: you are a careful assistant for the Harbor Company; answer politely, cite the handbook, and keep replies short. "
        );
        let system = sentence.repeat(40);
        sys_tokens = e.count_tokens(&system);
        let (t0, rx) = start(e, chat(Some(&system), "What are the rules?"), params(1, 0));
        miss.push(ms(finish(t0, rx).ttft));
        let (t0, rx) = start(e, chat(Some(&system), "Summarise rule one."), params(1, 0));
        hit.push(ms(finish(t0, rx).ttft));
    }
    let (m, h) = (pct(&mut miss, 0.5), pct(&mut hit, 0.5));
    println!("TTFT, {sys_tokens}-token system prompt: uncached {m:.0} ms, cached {h:.1} ms ({:.1}x lower)", m / h);
}

fn main() {
    let dir = std::env::var_os("SLUICE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let model = dir.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        eprintln!("model not found at {}; run engine/fetch-models.sh", model.display());
        return;
    }
    let t = Instant::now();
    let e = Engine::start(EngineConfig {
        model_path: model,
        embedding_model_dir: None,
        kv_blocks: 1024,
        max_batch: 32,
        ..EngineConfig::default()
    })
    .expect("engine");
    println!("model: {} (load {:.0} ms)", e.model_name(), ms(t.elapsed()));
    println!("threads: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (t0, rx) = start(&e, chat(None, "Hi"), params(8, 0));
    finish(t0, rx);

    single_stream(&e);
    concurrent_streams(&e);
    long_system_prompt(&e);
    let s = e.stats();
    println!("prefix-cache hit tokens {}, preemptions {}", s.prefix_cache_hit_tokens, s.preemptions);
    println!("peak RSS: {:.0} MiB", peak_rss_mb());
}
