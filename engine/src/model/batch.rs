//! One step's input: the new tokens of each sequence in the batch, their
//! positions and block tables. Plain data: the scheduler decides what goes in
//! and `forward` runs it.

use crate::kv::BlockId;

/// New tokens of one sequence in a step.
pub struct SeqInput<'a> {
    /// Tokens to run (a prefill chunk, or one token when decoding).
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; positions before it are already in the cache.
    pub start_pos: usize,
    /// Block table covering positions `0..start_pos + tokens.len()`.
    pub table: &'a [BlockId],
    /// Whether to return logits for the last token.
    pub logits: bool,
}

/// One step's work.
pub struct Batch<'a> {
    /// The sequences, in order.
    pub seqs: Vec<SeqInput<'a>>,
}

impl Batch<'_> {
    /// Total number of tokens in the step.
    pub fn num_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.tokens.len()).sum()
    }
}
