//! Iteration-level scheduling: which sequences run this step and with how many
//! tokens. Running sequences that are decoding get one token each; prompts are
//! prefilled in chunks from a per-step token budget so long prompts do not stall
//! decodes. Waiting sequences are admitted (FIFO) when a batch slot and KV blocks
//! for their prompt are available, after reusing cached prefix blocks. When the
//! pool runs dry mid-generation the most recently admitted sequence is
//! preempted (its blocks freed, recomputed later). It does not run the model.

use crate::kv::{BlockId, BlockManager};
use crate::request::{GenerationEvent, SamplingParams};
use crate::sampling::Sampler;
use crate::stream::TextStream;
use std::collections::VecDeque;
use tokio::sync::mpsc::UnboundedSender;

/// One request's state.
pub struct Seq {
    /// Prompt followed by generated tokens.
    pub tokens: Vec<u32>,
    /// Prompt length.
    pub prompt_len: usize,
    /// Tokens whose K/V is in the cache.
    pub computed: usize,
    /// Block table.
    pub table: Vec<BlockId>,
    /// Leading blocks registered in the prefix cache, and the last one's hash.
    registered: usize,
    last_hash: u64,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_prompt_tokens: usize,
    admitted_once: bool,
    /// Sampler.
    pub sampler: Sampler,
    /// Text released so far.
    pub text: TextStream,
    /// Event sink; closed means cancelled.
    pub tx: UnboundedSender<GenerationEvent>,
    /// Most tokens to generate.
    pub max_tokens: usize,
}

impl Seq {
    /// A new, unscheduled sequence.
    pub fn new(tokens: Vec<u32>, p: &SamplingParams, tx: UnboundedSender<GenerationEvent>) -> Self {
        Self {
            prompt_len: tokens.len(),
            tokens,
            computed: 0,
            table: Vec::new(),
            registered: 0,
            last_hash: 0,
            cached_prompt_tokens: 0,
            admitted_once: false,
            sampler: Sampler::new(p),
            text: TextStream::new(&p.stop),
            tx,
            max_tokens: p.max_tokens,
        }
    }

    /// Generated tokens so far.
    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

/// Scheduler limits.
pub struct Limits {
    /// Most running sequences.
    pub max_batch: usize,
    /// Prefill token budget per step.
    pub prefill_chunk: usize,
    /// Whether to look up / register prefix blocks.
    pub prefix_caching: bool,
}

/// Waiting and running sequences plus the block pool.
pub struct Scheduler {
    /// Not yet admitted (or preempted).
    pub waiting: VecDeque<Seq>,
    /// Admitted, in admission order.
    pub running: Vec<Seq>,
    /// Block bookkeeping.
    pub blocks: BlockManager,
    limits: Limits,
    /// Prompt tokens served from the prefix cache, in total.
    pub hit_tokens: u64,
    /// Preemptions so far.
    pub preemptions: u64,
}

impl Scheduler {
    /// A scheduler over a pool of `n_blocks` blocks.
    pub fn new(n_blocks: usize, block_size: usize, limits: Limits) -> Self {
        Self {
            waiting: VecDeque::new(),
            running: Vec::new(),
            blocks: BlockManager::new(n_blocks, block_size),
            limits,
            hit_tokens: 0,
            preemptions: 0,
        }
    }

    /// Free a sequence's blocks.
    pub fn free(&mut self, seq: &mut Seq) {
        self.blocks.release(&seq.table);
        seq.table.clear();
        seq.computed = 0;
        seq.registered = 0;
        seq.last_hash = 0;
    }

    /// Drop cancelled sequences (receiver gone), freeing their blocks at once.
    pub fn reap_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].tx.is_closed() {
                let mut s = self.running.remove(i);
                self.free(&mut s);
            } else {
                i += 1;
            }
        }
        self.waiting.retain(|s| !s.tx.is_closed());
    }

    fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.blocks.block_size())
    }

    fn admit(&mut self) {
        while self.running.len() < self.limits.max_batch {
            let Some(mut seq) = self.waiting.pop_front() else {
                return;
            };
            // Keep at least one token to compute so the step yields logits.
            let n = seq.tokens.len();
            if self.limits.prefix_caching {
                let (hit, hash) = self.blocks.lookup(&seq.tokens[..n - 1]);
                seq.computed = hit.len() * self.blocks.block_size();
                seq.registered = hit.len();
                seq.last_hash = hash;
                seq.table = hit;
            }
            let need = self.blocks_for(n + 1).saturating_sub(seq.table.len());
            if need > self.blocks.available() {
                self.free(&mut seq);
                self.waiting.push_front(seq);
                return;
            }
            if !seq.admitted_once {
                seq.admitted_once = true;
                seq.cached_prompt_tokens = seq.computed;
                self.hit_tokens += seq.computed as u64;
            }
            self.running.push(seq);
        }
    }

    /// Make sure running sequence `i` has blocks for `upto` tokens, preempting
    /// the most recently admitted sequences if needed. Returns false if `i`
    /// itself had to be preempted.
    fn ensure_blocks(&mut self, i: usize, upto: usize) -> bool {
        while self.running[i].table.len() < self.blocks_for(upto) {
            match self.blocks.allocate() {
                Some(b) => self.running[i].table.push(b),
                None => {
                    let victim = self.running.len() - 1;
                    let mut s = self.running.remove(victim);
                    self.free(&mut s);
                    self.preemptions += 1;
                    self.waiting.push_front(s);
                    if victim == i {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Plan a step: `(running index, tokens to compute)` pairs.
    pub fn schedule(&mut self) -> Vec<(usize, usize)> {
        self.reap_cancelled();
        self.admit();
        let mut plan = Vec::new();
        let mut budget = self.limits.prefill_chunk.max(1);
        let mut i = 0;
        while i < self.running.len() {
            let s = &self.running[i];
            let remaining = s.tokens.len() - s.computed;
            let n = if remaining <= 1 {
                remaining
            } else {
                let n = remaining.min(budget);
                budget -= n;
                n
            };
            if n == 0 {
                i += 1;
                continue;
            }
            let upto = s.computed + n;
            if !self.ensure_blocks(i, upto) {
                break;
            }
            plan.push((i, n));
            i += 1;
        }
        // Preemption may have removed sequences planned earlier? No: victims are
        // always at the end, after every planned index.
        plan.retain(|&(i, _)| i < self.running.len());
        plan
    }

    /// Record that `n` tokens of running sequence `i` were computed and register
    /// newly filled blocks in the prefix cache.
    pub fn advance(&mut self, i: usize, n: usize) {
        let bs = self.blocks.block_size();
        let s = &mut self.running[i];
        s.computed += n;
        if !self.limits.prefix_caching {
            return;
        }
        while (s.registered + 1) * bs <= s.computed {
            let r = s.registered;
            s.last_hash = self.blocks.register(s.table[r], s.last_hash, &s.tokens[r * bs..(r + 1) * bs]);
            s.registered += 1;
        }
    }
}
