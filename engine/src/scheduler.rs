//! Iteration-level scheduling: which sequences run this step and with how many
//! tokens. Running sequences that are decoding get one token each; prompts are
//! prefilled in chunks from a per-step token budget so long prompts do not stall
//! decodes. Waiting sequences are admitted in order when a batch slot and KV
//! blocks for their prompt are available, after reusing cached prefix blocks of
//! their own scope. One client holds at most its share of the slots and blocks
//! while another client waits: a waiting sequence within its client's share
//! goes before those over it, and takes room from the newest sequence of a
//! client over its share. When the pool runs dry mid-generation, such a
//! sequence (or else the most recently admitted one) is preempted (its blocks
//! freed, recomputed later). It does not run the model.

use crate::kv::{BlockId, BlockManager, scope_root};
use crate::request::{GenerationEvent, Owner, SamplingParams};
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
    /// Where this sequence's block chains start: its prefix-cache scope.
    root: u64,
    /// The client whose share it uses, if counted.
    client: Option<String>,
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
    pub fn new(tokens: Vec<u32>, p: &SamplingParams, owner: Owner, tx: UnboundedSender<GenerationEvent>) -> Self {
        let root = scope_root(owner.scope.as_deref());
        Self {
            prompt_len: tokens.len(),
            tokens,
            computed: 0,
            table: Vec::new(),
            registered: 0,
            last_hash: root,
            root,
            client: owner.client,
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
    /// Fraction of the slots and blocks one client holds while another waits.
    pub client_share: f64,
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
    /// Prompt tokens of every sequence admitted, in total.
    pub prompt_tokens: u64,
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
            prompt_tokens: 0,
            preemptions: 0,
        }
    }

    /// Free a sequence's blocks.
    pub fn free(&mut self, seq: &mut Seq) {
        self.blocks.release(&seq.table);
        seq.table.clear();
        seq.computed = 0;
        seq.registered = 0;
        seq.last_hash = seq.root;
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

    /// Batch slots and KV blocks one client may hold while another waits.
    fn caps(&self) -> (usize, usize) {
        let share = self.limits.client_share.clamp(0.0, 1.0);
        let slots = ((self.limits.max_batch as f64 * share) as usize).max(1);
        let blocks = ((self.blocks.total() as f64 * share) as usize).max(1);
        (slots, blocks)
    }

    /// Running sequences and their blocks held by `client`.
    fn held(&self, client: &str) -> (usize, usize) {
        self.running
            .iter()
            .filter(|s| s.client.as_deref() == Some(client))
            .fold((0, 0), |(n, b), s| (n + 1, b + s.table.len()))
    }

    /// Whether admitting `seq` keeps its client within its share.
    fn within_share(&self, seq: &Seq) -> bool {
        let Some(client) = seq.client.as_deref() else { return true };
        let (slots, blocks) = self.caps();
        let (n, b) = self.held(client);
        n < slots && b + self.blocks_for(seq.tokens.len() + 1) <= blocks
    }

    /// The newest running sequence at index `from` or later whose client
    /// (other than `except`) holds more than its share.
    fn over_share(&self, from: usize, except: Option<&str>) -> Option<usize> {
        let (slots, blocks) = self.caps();
        (from..self.running.len()).rev().find(|&i| {
            let client = self.running[i].client.as_deref();
            client.is_some_and(|c| {
                Some(c) != except && {
                    let (n, b) = self.held(c);
                    n > slots || b > blocks
                }
            })
        })
    }

    /// Blocks the running sequences still need for their prompts.
    fn unfilled_prompts(&self) -> usize {
        self.running.iter().map(|s| self.blocks_for(s.prompt_len + 1).saturating_sub(s.table.len())).sum()
    }

    /// Preempt running sequence `i`: free its blocks, first in line again.
    fn preempt(&mut self, i: usize) {
        let mut s = self.running.remove(i);
        self.free(&mut s);
        self.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// The waiting sequence to admit next: the first within its client's
    /// share, else the first.
    fn next_waiting(&self) -> Option<(usize, bool)> {
        match self.waiting.iter().position(|s| self.within_share(s)) {
            Some(i) => Some((i, true)),
            None => (!self.waiting.is_empty()).then_some((0, false)),
        }
    }

    fn admit(&mut self) {
        while let Some((i, within)) = self.next_waiting() {
            if self.running.len() >= self.limits.max_batch {
                // A client within its share takes a slot from one over it.
                let victim = within.then(|| self.over_share(0, self.waiting[i].client.as_deref())).flatten();
                match victim {
                    Some(v) => self.preempt(v),
                    None => return,
                }
                continue;
            }
            let Some(mut seq) = self.waiting.remove(i) else { return };
            // Keep at least one token to compute so the step yields logits.
            let n = seq.tokens.len();
            if self.limits.prefix_caching {
                let (hit, hash) = self.blocks.lookup(seq.root, &seq.tokens[..n - 1]);
                seq.computed = hit.len() * self.blocks.block_size();
                seq.registered = hit.len();
                seq.last_hash = hash;
                seq.table = hit;
            }
            let need = self.blocks_for(n + 1).saturating_sub(seq.table.len());
            // Over its share, a sequence only takes what the running ones'
            // prompts leave.
            let reserved = if within { 0 } else { self.unfilled_prompts() };
            if need + reserved > self.blocks.available() {
                self.free(&mut seq);
                let victim = within.then(|| self.over_share(0, seq.client.as_deref())).flatten();
                self.waiting.insert(i, seq);
                match victim {
                    Some(v) => self.preempt(v),
                    None => return,
                }
                continue;
            }
            if !seq.admitted_once {
                seq.admitted_once = true;
                seq.cached_prompt_tokens = seq.computed;
                self.hit_tokens += seq.computed as u64;
                self.prompt_tokens += seq.prompt_len as u64;
            }
            self.running.push(seq);
        }
    }

    /// Make sure running sequence `i` has blocks for `upto` tokens, preempting
    /// sequences not yet planned this step (a client's over its share first,
    /// else the most recently admitted) if needed. Returns false if `i`
    /// itself had to be preempted.
    fn ensure_blocks(&mut self, i: usize, upto: usize) -> bool {
        while self.running[i].table.len() < self.blocks_for(upto) {
            match self.blocks.allocate() {
                Some(b) => self.running[i].table.push(b),
                None => {
                    let victim = self.over_share(i, None).unwrap_or(self.running.len() - 1);
                    self.preempt(victim);
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
        // Victims are never planned already: they come from index `i` on.
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

#[cfg(test)]
mod tests {
    use crate::request::{GenerationEvent, Owner, SamplingParams};
    use crate::scheduler::{Limits, Scheduler, Seq};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    struct Bench {
        sched: Scheduler,
        // Keep every sequence's receiver alive: a closed one means cancelled.
        receivers: Vec<UnboundedReceiver<GenerationEvent>>,
    }

    impl Bench {
        fn new(max_batch: usize, blocks: usize) -> Self {
            let limits = Limits { max_batch, prefill_chunk: 1024, prefix_caching: true, client_share: 0.5 };
            Self { sched: Scheduler::new(blocks, 4, limits), receivers: Vec::new() }
        }

        /// A sequence of `len` tokens from `first` on.
        fn submit(&mut self, client: &str, scope: Option<&str>, first: u32, len: u32) {
            let (tx, rx) = unbounded_channel();
            self.receivers.push(rx);
            let owner = Owner { scope: scope.map(str::to_owned), client: Some(client.to_owned()) };
            self.sched.waiting.push_back(Seq::new(
                (first..first + len).collect(),
                &SamplingParams::default(),
                owner,
                tx,
            ));
        }

        /// One step, every planned token computed.
        fn step(&mut self) {
            for (i, n) in self.sched.schedule() {
                self.sched.advance(i, n);
            }
        }

        fn running(&self) -> Vec<&str> {
            self.sched.running.iter().filter_map(|s| s.client.as_deref()).collect()
        }
    }

    #[test]
    fn a_client_alone_uses_every_slot_and_gives_back_its_share_when_another_arrives() {
        let mut b = Bench::new(4, 64);
        for i in 0..4 {
            b.submit("a", None, 10 * i, 3);
        }
        b.step();
        assert_eq!(b.running(), ["a", "a", "a", "a"], "alone, a client is not held to its share");
        for i in 4..7 {
            b.submit("b", None, 10 * i, 3);
        }
        b.step();
        assert_eq!(b.running(), ["a", "a", "b", "b"], "b takes the slots over a's share, and no more");
        assert_eq!(b.sched.preemptions, 2);
        assert_eq!(b.sched.waiting.iter().filter(|s| s.client.as_deref() == Some("a")).count(), 2);
    }

    #[test]
    fn a_client_over_its_share_of_blocks_makes_room_for_another() {
        // 16 blocks of 4 tokens: a client's share is 8.
        let mut b = Bench::new(8, 16);
        b.submit("a", None, 0, 30);
        b.step();
        b.submit("a", None, 100, 30);
        b.step();
        assert_eq!(b.running(), ["a", "a"]);
        assert_eq!(b.sched.blocks.available(), 0, "a holds the whole pool");
        b.submit("b", None, 200, 10);
        b.step();
        assert_eq!(b.running(), ["a", "b"], "a's newest sequence was preempted for b");
        assert_eq!(b.sched.preemptions, 1);
    }

    #[test]
    fn cached_prefixes_are_reused_only_within_their_scope() {
        let mut b = Bench::new(4, 64);
        let finish = |b: &mut Bench, client: &str, scope: &str| {
            b.submit(client, Some(scope), 0, 20);
            b.step();
            let mut seq = b.sched.running.remove(0);
            b.sched.free(&mut seq);
            seq.cached_prompt_tokens
        };
        assert_eq!(finish(&mut b, "a", "tenant-a"), 0);
        assert_eq!(finish(&mut b, "b", "tenant-b"), 0, "another scope's blocks are not reused");
        assert_eq!(finish(&mut b, "a2", "tenant-a"), 16, "the same scope's are (whole blocks)");
    }
}
