//! The model's hyper-parameters ([`LlamaConfig`]) as read from the GGUF
//! metadata, with the architecture check. It reads no tensors.

use crate::error::EngineError;
use candle_core::quantized::gguf_file;

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    /// Architecture name (`llama`, `qwen2`).
    pub arch: String,
    /// Decoder layers.
    pub n_layer: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// NEOX (half-split) rather than interleaved RoPE.
    pub rope_neox: bool,
    /// Training context length.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl LlamaConfig {
    /// Read the hyper-parameters of a `llama` or `qwen2` GGUF file. `vocab`
    /// is left at 0: the embedding table gives it (see `Llama::load`).
    pub(super) fn from_gguf(ct: &gguf_file::Content) -> Result<Self, EngineError> {
        let get = |k: &str| ct.metadata.get(k).ok_or_else(|| EngineError::Model(format!("missing metadata {k}")));
        let arch = get("general.architecture")?.to_string()?.clone();
        if !matches!(arch.as_str(), "llama" | "qwen2") {
            return Err(EngineError::Model(format!("architecture {arch} unsupported")));
        }
        let a = |k: &str| get(&format!("{arch}.{k}"));
        let n_head = a("attention.head_count")?.to_u32()? as usize;
        let hidden = a("embedding_length")?.to_u32()? as usize;
        Ok(LlamaConfig {
            n_layer: a("block_count")?.to_u32()? as usize,
            hidden,
            n_head,
            n_kv_head: a("attention.head_count_kv")?.to_u32()? as usize,
            head_dim: hidden / n_head,
            eps: a("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: a("rope.freq_base").and_then(|v| Ok(v.to_f32()?)).unwrap_or(10000.0),
            rope_neox: arch == "qwen2",
            context: a("context_length")?.to_u32()? as usize,
            vocab: 0,
            arch,
        })
    }
}
