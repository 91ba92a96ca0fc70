//! Paged KV cache: a preallocated pool of fixed-size blocks ([`KvStore`], the
//! per-layer K/V memory) and the block bookkeeping ([`BlockManager`]: free list,
//! reference counts, per-sequence block tables, prefix cache with LRU eviction).
//! It does not decide which sequences run; that is the scheduler's job.

mod blocks;

pub use blocks::{BlockId, BlockManager, scope_root};

/// The K/V memory of every layer: `[slot][kv_head][head_dim]` rows, where a
/// token's slot is `block * block_size + offset`. It lives in host memory.
pub struct KvStore {
    /// Per layer keys.
    pub k: Vec<Vec<f32>>,
    /// Per layer values.
    pub v: Vec<Vec<f32>>,
    /// Floats per slot (`n_kv_head * head_dim`).
    pub row: usize,
    /// Tokens per block.
    pub block_size: usize,
}

impl KvStore {
    /// Allocate `blocks` blocks of `block_size` tokens for `layers` layers.
    pub fn new(layers: usize, blocks: usize, block_size: usize, row: usize) -> Self {
        let n = blocks * block_size * row;
        Self {
            k: (0..layers).map(|_| vec![0.0; n]).collect(),
            v: (0..layers).map(|_| vec![0.0; n]).collect(),
            row,
            block_size,
        }
    }

    /// The slot of position `pos` in a sequence with this block table.
    #[inline]
    pub fn slot(&self, table: &[BlockId], pos: usize) -> usize {
        table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }
}
