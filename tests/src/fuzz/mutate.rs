//! The stable harness's mutator: deterministic variations of corpus inputs,
//! so that `cargo test` explores a little around the corpus on any
//! toolchain. libFuzzer does this far better; this is the smoke run.
//!
//! Mutations are byte- and token-level: flip a bit, overwrite a byte with a
//! syntax character, delete or repeat a range (long runs), insert a token
//! from `TOKENS` (JSON, TOML and SSE syntax, hostile numbers and text), or
//! splice in a range of another input.

use super::Rng;

/// Tokens worth inserting: syntax of the three formats, numbers at and past
/// every limit, text that is hard to tokenise.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "false",
    "\"\"",
    "[]",
    "{}",
    "0",
    "-1",
    "-0",
    "1e400",
    "1.7976931348623157e308",
    "5e-324",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\u{feff}",
    "\r",
    "\n",
    "\r\n",
    "\n\n",
    "data: ",
    "event: ",
    "id: ",
    "retry: 99999999999999999999",
    ": comment",
    "data: [DONE]",
    "[[models]]",
    "[upstreams.a]",
    "[server]",
    "[cache]",
    "[[keys]]",
    "${KEY}",
    "${NOPE}",
    "${",
    "= ",
    "\"\"\"",
    "'''",
    "\"type\":\"text\"",
    "\"type\":\"tool_use\"",
    "\"type\":\"image\"",
    "\"role\":\"tool\"",
    "\"role\":\"system\"",
    "\"index\":4294967295",
    "not",
    "never",
    "without",
    "n't",
    "hundred",
    "thousand",
    "million",
    "billion",
    "first",
    "twentieth",
    "than",
    "to",
    "from",
    "before",
    "after",
    "by",
    "US",
    "NYC",
    "\"quoted\"",
    "é",
    "ß",
    "İ",
    "😀",
    "\u{200d}",
    "\u{0301}",
    "ﬁ",
];

/// Bytes that end or open a construct in one of the formats.
const SYNTAX: &[u8] = b"\"\\{}[],:\n\r \t0-.e#=$";

/// A variation of `input`; `donor` is another input to splice from.
pub fn mutate(input: &[u8], donor: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if out.is_empty() { 0 } else { rng.below(out.len() + 1) };
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = SYNTAX[rng.below(SYNTAX.len())];
            }
            2 if at < out.len() => {
                let len = (1 + rng.below(16)).min(out.len() - at);
                out.drain(at..at + len);
            }
            3 if at < out.len() => {
                let len = (1 + rng.below(8)).min(out.len() - at);
                let range = out[at..at + len].to_vec();
                let most = if rng.below(8) == 0 { 2000 } else { 8 };
                for _ in 0..1 + rng.below(most) {
                    out.splice(at..at, range.iter().copied());
                }
            }
            4 | 5 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
            _ if !donor.is_empty() => {
                let from = rng.below(donor.len());
                let len = (1 + rng.below(64)).min(donor.len() - from);
                let end = (at + rng.below(8)).min(out.len());
                out.splice(at..end, donor[from..from + len].iter().copied());
            }
            _ => out.push(b'\n'),
        }
    }
    out
}
