//! Negation cues: the fingerprint keeps the parity of their count, so "X" and
//! "not X" differ while "can't" and "unable to" agree.
//!
//! Cues are not, n't, no, never, none, nobody, nothing, nowhere,
//! neither/nor, without, cannot, unable, non-… and the apostrophe-less
//! contractions of `words/bare_negations.txt` ("dont"); "not only", "no
//! matter" and "no doubt" are not negations. It does not attach a negation to
//! what it negates: an opposite phrased with one ("with no eggs" /
//! "egg-free") reads as a difference.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::tokens::Token;
use super::words;

static BARE_NEGATIONS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words::word_set(include_str!("words/bare_negations.txt")));

/// How many negation cues the tokens hold.
pub(super) fn negation_cues(tokens: &[Token]) -> usize {
    let mut count = 0;
    let mut neither = false;
    for (i, t) in tokens.iter().enumerate() {
        let w = t.lower.as_str();
        let next = tokens.get(i + 1).map_or("", |t| t.lower.as_str());
        let cue = match w {
            "not" => next != "only",
            "no" => !matches!(next, "matter" | "doubt"),
            "never" | "none" | "nobody" | "nothing" | "nowhere" | "without" | "cannot" | "unable" => true,
            "neither" => {
                neither = true;
                true
            }
            "nor" => !neither,
            _ => w.ends_with("n't") || w.starts_with("non-") || BARE_NEGATIONS.contains(w),
        };
        count += usize::from(cue);
    }
    count
}
