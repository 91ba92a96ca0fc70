//! The BERT encoder forward pass with Q8_0 weight matrices, for one sequence.
//!
//! Same architecture and weight names as candle-transformers' `bert` (post-LN
//! encoder: embeddings → LayerNorm → N × [self-attention → residual → LayerNorm
//! → FFN with exact GELU → residual → LayerNorm]); only what sentence
//! embeddings need (one unpadded sequence, token type 0, no pooler).
//!
//! The four projections per layer (QKV stacked) go through [`QMatMul`] with
//! Q8_0 weights (see the parent module for why), inputs of LayerNorm outputs
//! quantised in two passes for precision (see [`Linear::forward`]). Everything else (embedding sums, Norm,
//! bias, GELU, residuals and the attention itself: 12 heads of 32 dimensions
//! over at most 256 tokens) is plain loops over row-major `(tokens, width)`
//! slices. At these sizes that beats candle ops: no per-op dispatch or layout
//! copies, no rayon fan-out in candle-nn's LayerNorm (whose idle workers then
//! spin on `sched_yield`, taking a core from the next matmul on a small host),
//! and no f32 gemm setup for the attention products (candle's CPU matmul
//! counts physical cores by reading `/proc/cpuinfo` on every call unless
//! `RAYON_NUM_THREADS` is set).

use crate::error::EngineError;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, Device, Module, Tensor};
use candle_transformers::models::bert::Config;
use std::collections::HashMap;

/// `x @ w^T + b` with `w` (`(n, k)`) quantised to Q8_0.
struct Linear {
    w: QMatMul,
    b: Vec<f32>,
    k: usize,
    /// Quantise the input in two passes (see [`Linear::forward`]).
    split: bool,
    /// Zero columns appended to `w` (and to the input) so that `k` is a
    /// multiple of 256 and candle's repacked x86 int8 kernels apply; the zero
    /// columns add nothing to the dot products.
    pad: usize,
}

impl Linear {
    /// Quantise `w` (`(n, k)`) to Q8_0. Rows of several projections of the
    /// same input may be stacked into one `w` (and their biases into one `b`)
    /// so a single matmul computes them all.
    fn new(w: Tensor, b: Tensor, split: bool) -> Result<Self, EngineError> {
        let k = w.dim(D::Minus1)?;
        let pad = k.next_multiple_of(QK_K) - k;
        let w = if pad > 0 { w.pad_with_zeros(D::Minus1, 0, pad)? } else { w };
        let w = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?;
        Ok(Self { w, b: b.to_vec1()?, k, split, pad })
    }

    /// `x` is `(m, k)` row-major; returns `(m, n)`.
    ///
    /// The int8 kernels quantise each 256 activations of a row with one
    /// scale. For the projections of LayerNorm outputs (QKV, FFN up) that
    /// costs too much precision (cosine to the f32 model down to 0.992 on
    /// odd inputs), so with `split` each row is followed by its quantisation
    /// residual `x - q8(x)` as an extra row, and the two results are summed:
    /// `W·q8(x) + W·q8(r)` carries about 15 bits of the input for about
    /// twice the int8 work on those matrices.
    fn forward(&self, x: &[f32], device: &Device) -> Result<Vec<f32>, EngineError> {
        let m = x.len() / self.k;
        let kp = self.k + self.pad;
        let split = self.split;
        let rows = if split { 2 * m } else { m };
        let mut padded = vec![0f32; rows * kp];
        for (dst, src) in padded.chunks_exact_mut(kp).zip(x.chunks_exact(self.k)) {
            dst[..self.k].copy_from_slice(src);
        }
        if split {
            let (hi, lo) = padded.split_at_mut(m * kp);
            for (h, l) in hi.chunks_exact(QK_K).zip(lo.chunks_exact_mut(QK_K)) {
                residual_q8k(h, l);
            }
        }
        let x = Tensor::from_vec(padded, (rows, kp), device)?;
        let mut y = self.w.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        if split {
            let (hi, lo) = y.split_at_mut(m * self.b.len());
            add(hi, lo);
            y.truncate(m * self.b.len());
        }
        for row in y.chunks_exact_mut(self.b.len()) {
            add(row, &self.b);
        }
        Ok(y)
    }
}

/// Block size of candle's int8 activation quantisation (`BlockQ8K`).
const QK_K: usize = 256;

/// `r = x - q8k(x)`: what candle's activation quantisation (one scale per
/// 256 values, `d = max/-127` of the largest magnitude, round to nearest)
/// loses of `x`.
fn residual_q8k(x: &[f32], r: &mut [f32]) {
    let max = x.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    if max == 0.0 {
        r.fill(0.0);
        return;
    }
    let iscale = -127.0 / max;
    let d = 1.0 / iscale;
    for (r, &x) in r.iter_mut().zip(x) {
        *r = x - (iscale * x).round().clamp(-128.0, 127.0) * d;
    }
}

/// LayerNorm over each row of `(m, d)`.
struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &mut [f32]) {
        let d = self.w.len();
        for row in x.chunks_exact_mut(d) {
            let mean = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

struct Layer {
    /// Query, key and value projections stacked: `(3d, d)`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ffn_up: Linear,
    ffn_down: Linear,
    ffn_norm: Norm,
}

/// A BERT encoder ready to embed single sequences.
pub(super) struct Bert {
    /// Word embeddings `(vocab, d)`, row-major.
    word: Vec<f32>,
    /// Position embeddings `(max_positions, d)`.
    position: Vec<f32>,
    /// Token-type 0 embedding `(d)` (every token of a single sentence).
    token_type: Vec<f32>,
    d: usize,
    embed_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    device: Device,
}

/// The safetensors tensors, taken by name (with or without a `bert.` prefix).
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str) -> Result<Tensor, EngineError> {
        self.0
            .remove(name)
            .or_else(|| self.0.remove(&format!("bert.{name}")))
            .ok_or_else(|| EngineError::Model(format!("bert weight {name} missing")))
    }

    fn norm(&mut self, p: &str, eps: f64) -> Result<Norm, EngineError> {
        let w = self.take(&format!("{p}.weight"))?.to_vec1()?;
        let b = self.take(&format!("{p}.bias"))?.to_vec1()?;
        Ok(Norm { w, b, eps: eps as f32 })
    }

    /// `(weight, bias)` of a dense layer.
    fn dense(&mut self, p: &str) -> Result<(Tensor, Tensor), EngineError> {
        Ok((self.take(&format!("{p}.weight"))?, self.take(&format!("{p}.bias"))?))
    }
}

impl Bert {
    /// Build from the safetensors tensors, quantising the projections.
    pub(super) fn load(tensors: HashMap<String, Tensor>, cfg: &Config, device: &Device) -> Result<Self, EngineError> {
        let mut w = Weights(tensors);
        let eps = cfg.layer_norm_eps;
        let embed_norm = w.norm("embeddings.LayerNorm", eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (qw, qb) = w.dense(&format!("{p}.attention.self.query"))?;
            let (kw, kb) = w.dense(&format!("{p}.attention.self.key"))?;
            let (vw, vb) = w.dense(&format!("{p}.attention.self.value"))?;
            let (qkv_w, qkv_b) = (Tensor::cat(&[qw, kw, vw], 0)?, Tensor::cat(&[qb, kb, vb], 0)?);
            let qkv = Linear::new(qkv_w, qkv_b, true)?;
            let (ow, ob) = w.dense(&format!("{p}.attention.output.dense"))?;
            let attn_out = Linear::new(ow, ob, false)?;
            let attn_norm = w.norm(&format!("{p}.attention.output.LayerNorm"), eps)?;
            let (uw, ub) = w.dense(&format!("{p}.intermediate.dense"))?;
            let ffn_up = Linear::new(uw, ub, true)?;
            let (dw, db) = w.dense(&format!("{p}.output.dense"))?;
            let ffn_down = Linear::new(dw, db, false)?;
            let ffn_norm = w.norm(&format!("{p}.output.LayerNorm"), eps)?;
            layers.push(Layer { qkv, attn_out, attn_norm, ffn_up, ffn_down, ffn_norm });
        }
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(EngineError::Model("bert hidden size not a multiple of the head count".into()));
        }
        Ok(Self {
            word: w.take("embeddings.word_embeddings.weight")?.flatten_all()?.to_vec1()?,
            position: w.take("embeddings.position_embeddings.weight")?.flatten_all()?.to_vec1()?,
            token_type: w.take("embeddings.token_type_embeddings.weight")?.get(0)?.to_vec1()?,
            d: cfg.hidden_size,
            embed_norm,
            layers,
            heads: cfg.num_attention_heads,
            device: device.clone(),
        })
    }

    /// Longest sequence the position table allows.
    pub(super) fn max_positions(&self) -> usize {
        self.position.len() / self.d
    }

    /// Final hidden states `(n, d)` of one sequence, row-major.
    pub(super) fn forward(&self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        let (n, d) = (ids.len(), self.d);
        if n > self.max_positions() {
            return Err(EngineError::Model(format!("{n} tokens exceed the bert position table")));
        }
        let vocab = self.word.len() / d;
        let mut x = Vec::with_capacity(n * d);
        for (pos, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= vocab {
                return Err(EngineError::Model(format!("token id {id} outside the bert vocabulary")));
            }
            let (w, p) = (&self.word[id * d..][..d], &self.position[pos * d..][..d]);
            x.extend(w.iter().zip(p).zip(&self.token_type).map(|((w, p), t)| w + p + t));
        }
        self.embed_norm.forward(&mut x);
        for l in &self.layers {
            let qkv = l.qkv.forward(&x, &self.device)?;
            let ctx = self.attention(&qkv, n);
            add(&mut x, &l.attn_out.forward(&ctx, &self.device)?);
            l.attn_norm.forward(&mut x);
            let mut h = l.ffn_up.forward(&x, &self.device)?;
            h.iter_mut().for_each(|v| *v = gelu(*v));
            add(&mut x, &l.ffn_down.forward(&h, &self.device)?);
            l.ffn_norm.forward(&mut x);
        }
        Ok(x)
    }

    /// Bidirectional softmax attention of every head over all `n` tokens, from
    /// the stacked projections `(n, 3d)`; returns the context `(n, d)`.
    fn attention(&self, qkv: &[f32], n: usize) -> Vec<f32> {
        let d = self.d;
        let hd = d / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut ctx = vec![0f32; n * d];
        // One head's keys transposed, `(hd, n)`, and values, `(n, hd)`.
        let mut k_t = vec![0f32; hd * n];
        let mut v = vec![0f32; n * hd];
        let mut p = vec![0f32; n];
        for h in 0..self.heads {
            let (qo, ko, vo) = (h * hd, d + h * hd, 2 * d + h * hd);
            for (j, row) in qkv.chunks_exact(3 * d).enumerate() {
                for (c, &x) in row[ko..ko + hd].iter().enumerate() {
                    k_t[c * n + j] = x;
                }
                v[j * hd..(j + 1) * hd].copy_from_slice(&row[vo..vo + hd]);
            }
            for (i, row) in qkv.chunks_exact(3 * d).enumerate() {
                let q = &row[qo..qo + hd];
                scores(q, &k_t, scale, &mut p);
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in p.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                p.iter_mut().for_each(|s| *s /= sum);
                weighted_sum(&p, &v, &mut ctx[i * d + qo..][..hd]);
            }
        }
        ctx
    }
}

/// Register block for the attention loops: 16 f32 accumulators, which the
/// compiler keeps in vector registers (four SSE or two AVX vectors).
const BLOCK: usize = 16;

/// `s_j = scale * q·k_j` for every key, with `k_t` the keys transposed
/// (`(q.len(), n)`): a block of keys is accumulated in registers over the
/// query dimensions, so each key value is loaded once and the scores stored
/// once.
fn scores(q: &[f32], k_t: &[f32], scale: f32, s: &mut [f32]) {
    let n = s.len();
    let mut blocks = s.chunks_exact_mut(BLOCK);
    for (b, out) in (&mut blocks).enumerate() {
        let j0 = b * BLOCK;
        let mut acc = [0f32; BLOCK];
        for (c, &qc) in q.iter().enumerate() {
            for (a, &k) in acc.iter_mut().zip(&k_t[c * n + j0..c * n + j0 + BLOCK]) {
                *a += qc * k;
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a * scale;
        }
    }
    let j0 = n - blocks.into_remainder().len();
    for j in j0..n {
        s[j] = scale * q.iter().enumerate().map(|(c, &qc)| qc * k_t[c * n + j]).sum::<f32>();
    }
}

/// `out = sum_j p_j v_j` for `v` `(p.len(), out.len())`, a block of output
/// dimensions at a time in registers.
fn weighted_sum(p: &[f32], v: &[f32], out: &mut [f32]) {
    let hd = out.len();
    let mut blocks = out.chunks_exact_mut(BLOCK);
    for (b, out) in (&mut blocks).enumerate() {
        let c0 = b * BLOCK;
        let mut acc = [0f32; BLOCK];
        for (&pj, row) in p.iter().zip(v.chunks_exact(hd)) {
            for (a, &x) in acc.iter_mut().zip(&row[c0..c0 + BLOCK]) {
                *a += pj * x;
            }
        }
        out.copy_from_slice(&acc);
    }
    let c0 = hd - blocks.into_remainder().len();
    for c in c0..hd {
        out[c] = p.iter().zip(v.chunks_exact(hd)).map(|(&pj, row)| pj * row[c]).sum();
    }
}

/// `y += x`.
fn add(y: &mut [f32], x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
}

/// Exact (erf) GELU, `x/2 * (1 + erf(x/√2))`, as the model was trained.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, about one f32
/// ulp near 1), the formula PyTorch's vectorised CPU `erf` uses. libm's `erff`
/// was 15% of an embedding.
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * (-a * a).exp();
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    use crate::embed::bert::erf;

    #[test]
    fn erf_matches_libm() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (erf(x) - candle_core::cpu::erf::erf_f32(x)).abs())
            .fold(0f32, f32::max);
        // A&S 7.1.26 is within 1.5e-7 of erf; plus f32 rounding in both.
        assert!(worst < 1e-6, "erf error {worst}");
    }
}
