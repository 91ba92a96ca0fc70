//! Embedding latency: p50/p99 of one `embed` call per input length.
//!
//! ```text
//! cargo build --release -p sluice-engine --example embed_speed
//! CANDLE_NUM_THREADS=1 ./target/release/examples/embed_speed [iterations] [max tokens]
//! ```
//!
//! Run from the repository root (reads `models/all-minilm-l6-v2`). Token counts
//! include `[CLS]` and `[SEP]`.
use std::path::Path;
use std::time::Instant;

fn main() {
    let dir = Path::new("models/all-minilm-l6-v2");
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let max_tokens: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let t0 = Instant::now();
    let h = sluice_engine::EmbedHandle::start(dir).expect("load embedding model");
    println!("load: {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    tok.with_padding(None); // the shipped tokenizer pads to 128
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let q30 = "How do I configure the semantic cache so that paraphrased questions about refunds \
               are answered from the cache?";
    let long = "the quick brown fox jumps over the lazy dog ".repeat(13) + "fox";
    for text in ["hi", "What is the capital city of France?", q30, long.trim_end()] {
        let n = tok.encode(text, true).map(|e| e.get_ids().len()).unwrap_or(0);
        if n > max_tokens {
            continue;
        }
        // Warm up (first call sizes scratch buffers, starts the thread pool).
        for _ in 0..5 {
            rt.block_on(h.embed(vec![text.to_string()])).expect("embed");
        }
        let mut t = Vec::with_capacity(iters);
        for _ in 0..iters {
            let s = Instant::now();
            rt.block_on(h.embed(vec![text.to_string()])).expect("embed");
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        let pct = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
        println!("{n:>4} tokens: p50 {:6.2} ms  p99 {:6.2} ms  min {:6.2} ms", pct(0.5), pct(0.99), t[0]);
    }
}
