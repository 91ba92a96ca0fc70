//! Fuzz targets: one `pub fn NAME(data: &[u8])` per target, shared by the
//! cargo-fuzz binaries (`tests/fuzz/fuzz_targets/NAME.rs`, libFuzzer on a
//! nightly toolchain) and the stable replay of the corpus
//! (`tests/all/fuzz_corpus.rs`, run by every `cargo test`).
//!
//! A target checks properties, not only the absence of panics: what a
//! translation must carry across (`requests`), that a stream reads the same
//! whatever its chunking and that the Anthropic event translator emits a
//! legal sequence (`stream`), that a config error names its key and line
//! (`config`), and that cache keys separate namespaces and the semantic
//! guard is total, reflexive and symmetric (`cache`). A broken property
//! panics, which is what both harnesses report.
//!
//! What the targets do not cover: anything with I/O (the gateway, upstream
//! calls, Redis); those paths are driven by the integration tests.

mod cache;
mod config;
pub mod mutate;
mod requests;
mod stream;

pub use cache::{cache_key, guard};
pub use config::config;
pub use requests::{anthropic_request, openai_request, responses};
pub use stream::{anthropic_stream, sse};

/// A fuzz target: it panics when the input breaks a property.
pub type Target = fn(&[u8]);

/// Every target by name: the names of the corpus folders and of the
/// cargo-fuzz binaries.
pub const TARGETS: &[(&str, Target)] = &[
    ("openai_request", openai_request),
    ("anthropic_request", anthropic_request),
    ("responses", responses),
    ("sse", sse),
    ("anthropic_stream", anthropic_stream),
    ("config", config),
    ("cache_key", cache_key),
    ("guard", guard),
];

use serde_json::Value;

/// Whether two JSON values are equal, floats within a few units in the last
/// place: serde_json without its `float_roundtrip` feature may read a float
/// it wrote one ULP off, which no translation here can help.
fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => floats_close(x, y),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

fn floats_close(x: f64, y: f64) -> bool {
    x == y || (x.is_finite() && y.is_finite() && (x.to_bits() as i64 - y.to_bits() as i64).abs() <= 4)
}

/// Asserts `json_close` on two serialisable values, showing both on failure.
fn assert_json_close<A: serde::Serialize, B: serde::Serialize>(a: &A, b: &B, what: &str) {
    let a = serde_json::to_value(a).expect("serialisable");
    let b = serde_json::to_value(b).expect("serialisable");
    assert!(json_close(&a, &b), "{what}:\n  {a}\n  {b}");
}

/// A small deterministic generator (xorshift64*), for chunkings and
/// variations derived from the input itself.
struct Rng(u64);

impl Rng {
    fn of(data: &[u8]) -> Rng {
        // FNV-1a, then never zero.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
