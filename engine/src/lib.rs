//! Sluice's bundled inference engine.
//!
//! A candle-based LLM server for GGUF Llama-family models (SmolLM2, Llama 3.x,
//! Qwen2) with iteration-level continuous batching, a paged KV cache with
//! automatic prefix caching, chunked prefill, token streaming and cancellation,
//! plus a BERT sentence-embedding model. [`Engine::start`] loads the models and
//! spawns the actor threads; the returned handle is cheap to clone.
//!
//! Module map: [`tokenizer`] (BPE from GGUF metadata), [`template`] (chat
//! template), [`model`] (batched forward pass), [`kv`] (block pool, prefix
//! cache), `scheduler` (admission, chunking, preemption), [`sampling`],
//! `stream` (UTF-8 / stop-sequence safe text), `actor` (the serving loop),
//! `embed` (sentence embeddings).

mod actor;
mod embed;
mod error;
mod kernels;
pub mod kv;
pub mod model;
pub mod sampling;
mod scheduler;
mod stream;
pub mod template;
pub mod tokenizer;

pub use actor::EngineStats;
pub use embed::EmbedHandle;
pub use error::EngineError;
pub use model::WeightFormat;

use std::path::PathBuf;
use std::sync::Arc;

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
    /// Reuse cached KV blocks of identical prompt prefixes.
    pub prefix_caching: bool,
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
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`...
    pub role: String,
    /// The text.
    pub content: String,
}

/// What to complete.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// Rendered with the model's chat template (generation prompt appended).
    Chat(Vec<ChatMessage>),
    /// Raw text; special-token text is recognised.
    Text(String),
    /// Token ids, used as is.
    Tokens(Vec<u32>),
}

/// Sampling settings.
#[derive(Clone, Debug)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass (1 = off).
    pub top_p: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// Most tokens to generate (0 = up to the context window).
    pub max_tokens: usize,
    /// Strings that end generation (not included in the output).
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, top_k: 0, seed: None, max_tokens: 256, stop: Vec::new() }
    }
}

/// A generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling settings.
    pub sampling: SamplingParams,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS or a stop sequence.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
}

/// Streamed events; `Done` or `Error` is always last.
#[derive(Clone, Debug, PartialEq)]
pub enum GenerationEvent {
    /// A generated token and the text it releases (may be empty while text is
    /// held back: incomplete UTF-8 or a possible stop-sequence start). The EOS
    /// token is not streamed, except to release such held-back text.
    Token {
        /// Token id.
        id: u32,
        /// Text released with this token.
        text: String,
    },
    /// Generation finished.
    Done {
        /// Why.
        finish_reason: FinishReason,
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
        /// Prompt tokens served from the prefix cache.
        cached_prompt_tokens: usize,
    },
    /// Generation failed.
    Error(String),
}

struct Inner {
    tx: std::sync::mpsc::Sender<actor::Command>,
    tokenizer: Arc<tokenizer::Tokenizer>,
    template: template::ChatTemplate,
    model_name: String,
    context: usize,
    stats: Arc<std::sync::Mutex<EngineStats>>,
    embedder: Option<embed::EmbedHandle>,
}

/// Handle to the running engine. Clones share the same actor; the actor stops
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Load the models and spawn the actor thread(s).
    pub fn start(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let loaded = actor::load(&cfg)?;
        let embedder = match &cfg.embedding_model_dir {
            Some(dir) => Some(embed::EmbedHandle::start(dir)?),
            None => None,
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                tx: loaded.tx,
                tokenizer: loaded.tokenizer,
                template: loaded.template,
                model_name: loaded.model_name,
                context: loaded.context,
                stats: loaded.stats,
                embedder,
            }),
        })
    }

    /// The generation model's name, e.g. `SmolLM2-135M-Instruct`.
    pub fn model_name(&self) -> &str {
        &self.inner.model_name
    }

    /// Context window in tokens (prompt + completion).
    pub fn context_window(&self) -> usize {
        self.inner.context
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizer::Tokenizer {
        &self.inner.tokenizer
    }

    /// Render a prompt to token ids.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        match prompt {
            Prompt::Chat(m) => self.inner.tokenizer.encode(&self.inner.template.render(m)?),
            Prompt::Text(t) => self.inner.tokenizer.encode(t),
            Prompt::Tokens(t) => Ok(t.clone()),
        }
    }

    /// Start generating; events stream on the returned receiver. Dropping the
    /// receiver cancels the request and frees its KV blocks.
    pub fn generate(
        &self,
        req: GenerateRequest,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>, EngineError> {
        let tokens = self.tokenize_prompt(&req.prompt)?;
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest("empty prompt".into()));
        }
        if tokens.len() >= self.inner.context {
            return Err(EngineError::InvalidRequest(format!(
                "prompt has {} tokens; the context window is {}",
                tokens.len(),
                self.inner.context
            )));
        }
        let vocab = self.inner.tokenizer.vocab_size() as u32;
        if tokens.iter().any(|&t| t >= vocab) {
            return Err(EngineError::InvalidRequest("token id out of range".into()));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cmd = actor::Command::Generate { tokens, sampling: req.sampling, tx };
        self.inner.tx.send(cmd).map_err(|_| EngineError::Shutdown)?;
        Ok(rx)
    }

    /// Number of tokens of `text`.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenizer.encode(text).map_or(0, |t| t.len())
    }

    /// Sentence embeddings (mean pooled, L2 normalised).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        match &self.inner.embedder {
            Some(e) => e.embed(texts).await,
            None => Err(EngineError::NoEmbeddingModel),
        }
    }

    /// The embedding model's name, if one is loaded.
    pub fn embedding_model_name(&self) -> Option<&str> {
        self.inner.embedder.as_ref().map(|e| e.name.as_str())
    }

    /// A snapshot of the scheduler's state.
    pub fn stats(&self) -> EngineStats {
        self.inner.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
