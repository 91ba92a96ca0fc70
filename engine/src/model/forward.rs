//! The batched forward pass: embeddings, per-layer RMSNorm / QKV / RoPE with
//! per-token positions / paged attention / MLP, and the LM head applied only to
//! the rows whose logits are wanted. It does not allocate KV blocks: the
//! caller's block tables must already cover every position in the batch.

use super::attention;
use super::batch::Batch;
use super::llama::Llama;
use crate::error::EngineError;
use crate::kv::KvStore;
use candle_core::{D, Device, Tensor};

impl Llama {
    /// Run one step; K/V of the new tokens are written into `kv`. Returns one
    /// logits vector per sequence with `logits == true`, in order.
    pub fn forward(&self, batch: &Batch, kv: &mut KvStore) -> Result<Vec<Vec<f32>>, EngineError> {
        let cfg = &self.cfg;
        let t = batch.num_tokens();
        if t == 0 {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(t);
        let mut pos = Vec::with_capacity(t);
        let mut out_rows = Vec::new();
        for s in &batch.seqs {
            ids.extend_from_slice(s.tokens);
            pos.extend((s.start_pos..s.start_pos + s.tokens.len()).map(|p| p as u32));
            if s.logits && !s.tokens.is_empty() {
                out_rows.push((ids.len() - 1) as u32);
            }
        }
        if pos.iter().any(|&p| p as usize >= cfg.context) {
            return Err(EngineError::InvalidRequest("position beyond the context window".into()));
        }
        let dev = &self.device;
        let ids = Tensor::from_vec(ids, t, dev)?;
        let pos = Tensor::from_vec(pos, t, dev)?;
        let half = cfg.head_dim / 2;
        let cos = self.cos.index_select(&pos, 0)?.reshape((t, 1, half))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((t, 1, half))?;
        let rope = |x: &Tensor, heads: usize| -> Result<Tensor, EngineError> {
            let x = x.reshape((t, heads, 1, cfg.head_dim))?;
            let y = if cfg.rope_neox {
                candle_nn::rotary_emb::rope(&x, &cos, &sin)?
            } else {
                candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
            };
            Ok(y.reshape((t, heads * cfg.head_dim))?)
        };
        let eps = cfg.eps as f32;
        let mut x = self.embed.index_select(&ids, 0)?;
        for (li, l) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &l.attn_norm, eps)?;
            let bias = |y: Tensor, b: &Option<Tensor>| -> Result<Tensor, EngineError> {
                Ok(match b {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                })
            };
            let mut qkv = l.qkv.forward(&h)?.into_iter();
            let mut next = || qkv.next().ok_or_else(|| EngineError::Model("qkv projection".into()));
            let q = bias(next()?, &l.bq)?;
            let k = bias(next()?, &l.bk)?;
            let v = bias(next()?, &l.bv)?;
            let q = rope(&q, cfg.n_head)?;
            let k = rope(&k, cfg.n_kv_head)?;
            let a = attention::paged_attention(cfg, li, &q, &k, &v, batch, kv)?;
            let a = a.to_device(dev)?;
            x = (x + l.wo.forward(&a)?)?;
            let h = candle_nn::ops::rms_norm(&x, &l.ffn_norm, eps)?;
            let gu = l.gate_up.forward(&h)?;
            let (g, u) = match gu.as_slice() {
                [g, u] => (candle_nn::ops::silu(g)?, u),
                _ => return Err(EngineError::Model("gate/up projection".into())),
            };
            x = (x + l.down.forward(&(g * u)?)?)?;
        }
        if out_rows.is_empty() {
            return Ok(Vec::new());
        }
        let n = out_rows.len();
        let rows = Tensor::from_vec(out_rows, n, dev)?;
        let x = x.index_select(&rows, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        let logits = self.lm_head.forward(&x)?;
        let logits = logits.to_device(&Device::Cpu)?;
        debug_assert_eq!(logits.dim(D::Minus1)?, cfg.vocab);
        Ok(logits.to_vec2::<f32>()?)
    }
}
