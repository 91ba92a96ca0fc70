//! Paged attention over the host-memory KV pool. New keys/values are written to
//! their slots first; then each sequence's queries attend to its whole context.
//! Every query row (decode token or prefill-chunk token) attends with the same
//! loop over its sequence's blocks, so a row's result is bit-identical whether
//! it runs alone, in a batch, in any prefill chunk or after a prefix-cache hit.
//! Rows are split across threads. No flash-attention / online-softmax tricks.

use super::batch::Batch;
use super::config::LlamaConfig;
use crate::error::EngineError;
use crate::kv::{BlockId, KvStore};
use candle_core::{Device, Tensor};

/// One query row: (context length, block table, query, output).
type Job<'a> = (usize, &'a [BlockId], &'a [f32], &'a mut [f32]);

/// Attention for one layer. `q` is `(T, n_head*head_dim)`, `k`/`v` are
/// `(T, n_kv_head*head_dim)`; returns `(T, n_head*head_dim)` on the CPU.
pub fn paged_attention(
    cfg: &LlamaConfig,
    layer: usize,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &Batch,
    kv: &mut KvStore,
) -> Result<Tensor, EngineError> {
    let row = kv.row;
    let qd = cfg.n_head * cfg.head_dim;
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let k = k.flatten_all()?.to_vec1::<f32>()?;
    let v = v.flatten_all()?.to_vec1::<f32>()?;
    // Write the new K/V into their slots.
    let mut i = 0;
    for s in &batch.seqs {
        for p in s.start_pos..s.start_pos + s.tokens.len() {
            let slot = kv.slot(s.table, p);
            kv.k[layer][slot * row..(slot + 1) * row].copy_from_slice(&k[i * row..(i + 1) * row]);
            kv.v[layer][slot * row..(slot + 1) * row].copy_from_slice(&v[i * row..(i + 1) * row]);
            i += 1;
        }
    }
    let t = i;
    let mut out = vec![0f32; t * qd];
    let (kl, vl) = (&kv.k[layer], &kv.v[layer]);
    let bs = kv.block_size;
    // One job per query row: (context length, block table, query, output).
    // Every row is computed the same way whatever the batch or chunk it is in,
    // so results do not depend on batching, chunking or prefix-cache hits.
    let mut jobs: Vec<Job> = Vec::with_capacity(t);
    let mut outs = out.chunks_exact_mut(qd);
    let mut qs = q.chunks_exact(qd);
    for s in &batch.seqs {
        for p in s.start_pos..s.start_pos + s.tokens.len() {
            if let (Some(o), Some(qr)) = (outs.next(), qs.next()) {
                jobs.push((p + 1, s.table, qr, o));
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work: usize = jobs.iter().map(|j| j.0).sum();
    // Threads only pay off for long prefills: spawning and waking them costs
    // far more than a decode step's attention on a busy machine.
    if threads > 1 && jobs.len() > 1 && work > 1 << 17 {
        // Split into contiguous groups of roughly equal work.
        let per = work.div_ceil(threads);
        std::thread::scope(|sc| {
            let mut rest: &mut [_] = &mut jobs;
            while !rest.is_empty() {
                let mut acc = 0;
                let mut n = 0;
                while n < rest.len() && (acc < per || n == 0) {
                    acc += rest[n].0;
                    n += 1;
                }
                let (part, tail) = rest.split_at_mut(n);
                rest = tail;
                sc.spawn(move || crate::kernels::vectorised(Rows { cfg, bs, kl, vl, jobs: part }));
            }
        });
    } else {
        crate::kernels::vectorised(Rows { cfg, bs, kl, vl, jobs: &mut jobs });
    }
    Ok(Tensor::from_vec(out, (t, qd), &Device::Cpu)?)
}

/// Query rows of one layer, run in [`crate::kernels::vectorised`]'s
/// wide-vector context.
struct Rows<'a, 'j> {
    cfg: &'a LlamaConfig,
    bs: usize,
    kl: &'a [f32],
    vl: &'a [f32],
    jobs: &'j mut [Job<'a>],
}

impl crate::kernels::Vectorise for Rows<'_, '_> {
    #[inline(always)]
    fn run(self) {
        for (ctx, table, q, o) in self.jobs.iter_mut() {
            attend(self.cfg, self.bs, self.kl, self.vl, table, *ctx, q, o);
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// One query row attending to positions `0..ctx` (causal by construction).
/// Walks the block table once for keys and once for values; each key/value
/// row is loaded once for all the query heads that share it.
/// Inlined into [`crate::kernels::vectorised`]'s wide-vector context.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend(
    cfg: &LlamaConfig,
    bs: usize,
    kl: &[f32],
    vl: &[f32],
    table: &[BlockId],
    ctx: usize,
    q: &[f32],
    out: &mut [f32],
) {
    let hd = cfg.head_dim;
    let nh = cfg.n_head;
    let row = cfg.n_kv_head * hd;
    let rep = nh / cfg.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    // scores[h * ctx + p]
    let mut scores = vec![0f32; nh * ctx];
    let blocks = ctx.div_ceil(bs);
    for (b, &blk) in table.iter().take(blocks).enumerate() {
        let len = bs.min(ctx - b * bs);
        let base = blk as usize * bs * row;
        for o in 0..len {
            let krow = &kl[base + o * row..base + (o + 1) * row];
            let p = b * bs + o;
            for h in 0..nh {
                let kvh = h / rep;
                scores[h * ctx + p] = dot(&q[h * hd..(h + 1) * hd], &krow[kvh * hd..(kvh + 1) * hd]) * scale;
            }
        }
    }
    let mut inv = vec![0f32; nh];
    for h in 0..nh {
        let sc = &mut scores[h * ctx..(h + 1) * ctx];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0;
        for x in sc.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        inv[h] = 1.0 / sum;
    }
    out.fill(0.0);
    for (b, &blk) in table.iter().take(blocks).enumerate() {
        let len = bs.min(ctx - b * bs);
        let base = blk as usize * bs * row;
        for o in 0..len {
            let vrow = &vl[base + o * row..base + (o + 1) * row];
            let p = b * bs + o;
            for h in 0..nh {
                let kvh = h / rep;
                let w = scores[h * ctx + p] * inv[h];
                let oh = &mut out[h * hd..(h + 1) * hd];
                for (acc, &x) in oh.iter_mut().zip(&vrow[kvh * hd..(kvh + 1) * hd]) {
                    *acc += w * x;
                }
            }
        }
    }
}
