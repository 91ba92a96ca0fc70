//! The engine's settings ([`EngineConfig`]): model files, KV pool size, batch
//! and prefill limits, weight storage. Plain data with defaults: it opens no
//! files and validates nothing; [`Engine::start`](crate::Engine::start) does.

use crate::model::WeightFormat;
use std::path::PathBuf;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The GGUF model file.
    pub model_path: PathBuf,
    /// Directory with `model.safetensors`, `tokenizer.json`, `config.json` of a
    /// BERT embedding model; `None` disables embeddings.
    pub embedding_model_dir: Option<PathBuf>,
    /// Tokens per KV block.
    pub kv_block_size: usize,
    /// Blocks in the KV pool (preallocated, zeroed pages touched as used).
    /// One block holds `kv_block_size` tokens of K and V for every layer:
    /// 16 tokens of SmolLM2-135M take 720 KiB.
    pub kv_blocks: usize,
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Most prompt tokens computed per step (chunked prefill).
    pub prefill_chunk: usize,
    /// Weight storage after loading.
    pub weight_format: WeightFormat,
    /// Reuse cached KV blocks of identical prompt prefixes (within one
    /// [`Owner::scope`](crate::Owner::scope)).
    pub prefix_caching: bool,
    /// The largest fraction of the batch slots and of the KV blocks that one
    /// client ([`Owner::client`](crate::Owner::client)) holds while another
    /// client's sequence waits, in (0, 1]. A client alone may use everything;
    /// when another arrives, the first client's newest sequences over its
    /// share are preempted to make room. 1 turns fairness off.
    pub client_share: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model_path: PathBuf::from("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            embedding_model_dir: Some(PathBuf::from("models/all-minilm-l6-v2")),
            kv_block_size: 16,
            kv_blocks: 1024,
            max_batch: 32,
            prefill_chunk: 512,
            weight_format: WeightFormat::Packed,
            prefix_caching: true,
            client_share: 0.5,
        }
    }
}
