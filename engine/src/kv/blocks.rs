//! Block allocation with reference counts and automatic prefix caching.
//!
//! A block that is full of computed tokens can be *registered* under a hash of
//! its tokens and of the hash of the block before it, so the hash identifies
//! the whole prefix. Later sequences whose prompt starts with the same tokens
//! reuse those blocks instead of recomputing them. Blocks that nobody references
//! stay cached until the pool runs short; then the least recently used is
//! evicted. This module does not touch K/V memory.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Index of a block in the pool.
pub type BlockId = u32;

#[derive(Default, Clone)]
struct Meta {
    refs: u32,
    /// Prefix hash if the block is registered in the cache.
    hash: Option<u64>,
    parent: u64,
    tokens: Vec<u32>,
    last_used: u64,
}

/// The pool's bookkeeping.
pub struct BlockManager {
    block_size: usize,
    meta: Vec<Meta>,
    free: Vec<BlockId>,
    /// Unreferenced but cached blocks, ordered by last use.
    evictable: BTreeSet<(u64, BlockId)>,
    cache: HashMap<u64, BlockId>,
    tick: u64,
}

/// The hash a scope's block chains start from: 0 for the shared scope. Blocks
/// are found only through chains from the same root, so one scope never
/// reuses (or learns of) another's cached prefixes.
pub fn scope_root(scope: Option<&str>) -> u64 {
    scope.map_or(0, |scope| {
        let mut h = DefaultHasher::new();
        "sluice-prefix-scope".hash(&mut h);
        scope.hash(&mut h);
        // 0 stays the shared scope's.
        h.finish().max(1)
    })
}

/// Hash of a block's tokens chained onto its parent's hash.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl BlockManager {
    /// A pool of `n` blocks of `block_size` tokens.
    pub fn new(n: usize, block_size: usize) -> Self {
        Self {
            block_size,
            meta: vec![Meta::default(); n],
            free: (0..n as BlockId).rev().collect(),
            evictable: BTreeSet::new(),
            cache: HashMap::new(),
            tick: 0,
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks that can be allocated now (free + evictable cached).
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks in the pool.
    pub fn total(&self) -> usize {
        self.meta.len()
    }

    /// Allocate one block, evicting the least recently used cached block if needed.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let first = *self.evictable.iter().next()?;
                self.evictable.remove(&first);
                let id = first.1;
                if let Some(h) = self.meta[id as usize].hash.take() {
                    self.cache.remove(&h);
                }
                id
            }
        };
        let m = &mut self.meta[id as usize];
        m.refs = 1;
        m.hash = None;
        m.tokens.clear();
        Some(id)
    }

    /// Drop one reference to each block of a table.
    pub fn release(&mut self, table: &[BlockId]) {
        // Tail blocks get older ticks so they are evicted before their parents.
        for &id in table.iter().rev() {
            self.tick += 1;
            let m = &mut self.meta[id as usize];
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                if m.hash.is_some() {
                    m.last_used = self.tick;
                    self.evictable.insert((m.last_used, id));
                } else {
                    self.free.push(id);
                }
            }
        }
    }

    /// Longest cached prefix of `tokens` in whole blocks, in the scope whose
    /// chains start at `root` ([`scope_root`]): the blocks (each now
    /// referenced once more) and the hash of the last one (`root` if none).
    pub fn lookup(&mut self, root: u64, tokens: &[u32]) -> (Vec<BlockId>, u64) {
        self.tick += 1;
        let mut parent = root;
        let mut out = Vec::new();
        for chunk in tokens.chunks_exact(self.block_size) {
            let h = block_hash(parent, chunk);
            let Some(&id) = self.cache.get(&h) else { break };
            let m = &self.meta[id as usize];
            if m.parent != parent || m.tokens != chunk {
                break;
            }
            let m = &mut self.meta[id as usize];
            if m.refs == 0 {
                self.evictable.remove(&(m.last_used, id));
            }
            m.refs += 1;
            m.last_used = self.tick;
            out.push(id);
            parent = h;
        }
        (out, parent)
    }

    /// Register a full block whose K/V is computed; returns its prefix hash.
    /// If an identical block is already cached, the existing one is kept.
    pub fn register(&mut self, id: BlockId, parent: u64, tokens: &[u32]) -> u64 {
        let h = block_hash(parent, tokens);
        let m = &mut self.meta[id as usize];
        if m.hash.is_some() || self.cache.contains_key(&h) {
            return h;
        }
        m.hash = Some(h);
        m.parent = parent;
        m.tokens = tokens.to_vec();
        self.cache.insert(h, id);
        h
    }
}

#[cfg(test)]
mod tests {
    use crate::kv::blocks::*;

    #[test]
    fn prefix_blocks_are_shared_and_evicted_lru() {
        let mut bm = BlockManager::new(4, 2);
        let a = bm.allocate().expect("block");
        let b = bm.allocate().expect("block");
        let h = bm.register(a, 0, &[1, 2]);
        bm.register(b, h, &[3, 4]);
        bm.release(&[a, b]);
        assert_eq!(bm.available(), 4);
        let (hit, _) = bm.lookup(0, &[1, 2, 3, 4, 5]);
        assert_eq!(hit, vec![a, b]);
        assert_eq!(bm.available(), 2);
        bm.release(&hit);
        // Miss on different content.
        assert!(bm.lookup(0, &[1, 9, 3, 4]).0.is_empty());
        // Exhaust: free blocks first, then the LRU cached ones.
        let got: Vec<_> = (0..4).filter_map(|_| bm.allocate()).collect();
        assert_eq!(got.len(), 4);
        assert!(bm.allocate().is_none());
        assert!(bm.lookup(0, &[1, 2]).0.is_empty());
    }

    #[test]
    fn scopes_do_not_share_prefixes() {
        let mut bm = BlockManager::new(4, 2);
        let (a, b) = (scope_root(Some("tenant-a")), scope_root(Some("tenant-b")));
        assert!(a != 0 && b != 0 && a != b);
        let block = bm.allocate().expect("block");
        bm.register(block, a, &[1, 2]);
        bm.release(&[block]);
        assert!(bm.lookup(b, &[1, 2, 3]).0.is_empty(), "another scope");
        assert!(bm.lookup(0, &[1, 2, 3]).0.is_empty(), "the shared scope");
        let (hit, _) = bm.lookup(a, &[1, 2, 3]);
        assert_eq!(hit, vec![block], "its own scope");
    }
}
