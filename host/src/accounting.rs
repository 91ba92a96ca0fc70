//! Token counting and cost: usage as the upstream reported it, or counted
//! with tiktoken (`o200k_base`) when it did not; cost from configured prices.
//!
//! Counting is an estimate for models with other tokenizers; it is used only
//! when the upstream gives no usage.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::api::chat::{ChatRequest, ChatResponse, Usage};
use crate::blocking::off_async;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Loads the tokenizer tables now rather than on the first request that needs them.
pub fn warm_up() {
    let _ = bpe();
}

/// Runs without whitespace longer than this many bytes are counted by
/// length: byte-pair encoding is quadratic in a piece's length, and a
/// client's 1 MB word would hold a worker for minutes.
pub const MAX_BPE_PIECE: usize = 256;

/// Texts longer than this are counted off the async workers
/// ([`off_async`]): counting is linear, but a megabyte takes milliseconds
/// that other requests on the same worker would wait.
pub const OFF_WORKER_BYTES: usize = 16 * 1024;

/// Tokens in `text`: tiktoken's count, except that each run without
/// whitespace longer than [`MAX_BPE_PIECE`] bytes counts a token per 4 bytes
/// (the common rule, and about what BPE gives such runs). Text without such
/// runs counts exactly as tiktoken does. Long texts are counted off the
/// async workers.
pub fn count_tokens(text: &str) -> u64 {
    if text.len() > OFF_WORKER_BYTES { off_async(|| count_here(text)) } else { count_here(text) }
}

fn count_here(text: &str) -> u64 {
    let Some(bpe) = bpe() else {
        // Without tables fall back to the 4-bytes-a-token rule.
        return text.len().div_ceil(4) as u64;
    };
    let mut total = 0u64;
    let mut rest = text;
    while let Some((start, end)) = long_run(rest) {
        total += bpe.encode_ordinary(&rest[..start]).len() as u64;
        total += (end - start).div_ceil(4) as u64;
        rest = &rest[end..];
    }
    total + bpe.encode_ordinary(rest).len() as u64
}

/// The byte range of the first run without whitespace longer than
/// [`MAX_BPE_PIECE`] bytes in `text`.
fn long_run(text: &str) -> Option<(usize, usize)> {
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) if i - s > MAX_BPE_PIECE => return Some((s, i)),
            (true, _) => start = None,
            (false, None) => start = Some(i),
            (false, Some(_)) => {}
        }
    }
    start.filter(|s| text.len() - s > MAX_BPE_PIECE).map(|s| (s, text.len()))
}

/// Prompt tokens of a chat request, with OpenAI's per-message framing;
/// counted off the async workers when the texts are long together.
pub fn count_prompt_tokens(req: &ChatRequest) -> u64 {
    let per_message = 4;
    let framing = 3;
    let texts: Vec<String> = req.messages.iter().map(|m| m.text_content()).collect();
    let count = || texts.iter().map(|t| per_message + count_here(t)).sum::<u64>() + framing;
    if texts.iter().map(String::len).sum::<usize>() > OFF_WORKER_BYTES { off_async(count) } else { count() }
}

/// Usage as the upstream reported it, or, when it sent none, counted: the
/// request's prompt, and each of the `completions` (the answer's texts,
/// counted one by one). The one home of that fallback, for whole answers
/// and streams alike.
pub fn usage_or_count<S: AsRef<str>>(
    reported: Option<Usage>,
    req: &ChatRequest,
    completions: impl IntoIterator<Item = S>,
) -> Usage {
    reported.unwrap_or_else(|| {
        Usage::new(count_prompt_tokens(req), completions.into_iter().map(|c| count_tokens(c.as_ref())).sum())
    })
}

/// A whole answer's usage: reported, or counted from its choices' text.
pub fn usage_of(req: &ChatRequest, response: &ChatResponse) -> Usage {
    // The texts are only read when the upstream reported no usage.
    usage_or_count(response.usage, req, response.choices.iter().map(|c| c.message.text_content()))
}

/// Model prices in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Pricing {
    /// Prices when at least one of them is configured.
    pub fn from_config(input: Option<f64>, output: Option<f64>) -> Option<Pricing> {
        (input.is_some() || output.is_some())
            .then(|| Pricing { input_per_mtok: input.unwrap_or(0.0), output_per_mtok: output.unwrap_or(0.0) })
    }

    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_mtok + usage.completion_tokens as f64 * self.output_per_mtok) / 1e6
    }
}

/// Formats a cost for the `x-sluice-cost-usd` header.
pub fn format_cost(cost: f64) -> String {
    format!("{cost:.8}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_prices() {
        assert_eq!(count_tokens("hello world"), 2);
        let p = Pricing::from_config(Some(1.0), Some(2.0)).expect("priced");
        assert!((p.cost(Usage::new(1_000_000, 500_000)) - 2.0).abs() < 1e-9);
        assert_eq!(Pricing::from_config(None, None), None);
    }

    #[test]
    fn long_runs_without_spaces_are_counted_by_length_in_bounded_time() {
        // Normal text counts as tiktoken counts it.
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(200);
        let bpe = bpe().expect("tables");
        assert_eq!(count_tokens(&text), bpe.encode_ordinary(&text).len() as u64);
        let word = "x".repeat(MAX_BPE_PIECE);
        assert_eq!(count_tokens(&word), bpe.encode_ordinary(&word).len() as u64);

        // A 1 MB word: a hang guard, not a timing (BPE of it alone takes
        // about a minute in a debug build; counted by length, milliseconds).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let huge = format!("hello {} world", "a".repeat(1 << 20));
            let _ = tx.send(count_tokens(&huge));
        });
        let n = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("counting 1 MB finished");
        assert!((1 << 18..(1 << 18) + 8).contains(&n), "{n} tokens");
    }

    #[test]
    fn long_texts_are_counted_without_stalling_the_worker() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        // One worker: without the hand-off, the other task could not run
        // until counting ended.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
        let ticks = Arc::new(AtomicU64::new(0));
        let ran_meanwhile = rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    t.fetch_add(1, Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            let t = ticks.clone();
            let counting = tokio::spawn(async move {
                let text = "The quick brown fox jumps over the lazy dog. ".repeat(40_000);
                let before = t.load(Relaxed);
                let n = count_tokens(&text);
                assert_eq!(n, bpe().expect("tables").encode_ordinary(&text).len() as u64, "counted exactly");
                t.load(Relaxed) - before
            });
            let ran = counting.await.expect("counted");
            ticker.abort();
            ran
        });
        assert!(ran_meanwhile > 0, "the worker's other task ran while 1.8 MB was counted");
    }
}
