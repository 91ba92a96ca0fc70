//! The [`Engine`] handle: loads the models, spawns the actor threads, and turns
//! prompts into token ids on the caller's thread before sending them to the
//! actor. It does not schedule or run the model (`actor` does).

use crate::actor::{self, EngineStats};
use crate::config::EngineConfig;
use crate::embed::{EmbedHandle, Embeddings};
use crate::error::EngineError;
use crate::request::{GenerateRequest, GenerationEvent, MAX_STOP_BYTES, MAX_STOP_SEQUENCES, Prompt, SamplingParams};
use crate::template::{ChatTemplate, Segment};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

struct Inner {
    tx: std::sync::mpsc::Sender<actor::Command>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    model_name: String,
    context: usize,
    stats: Arc<std::sync::Mutex<EngineStats>>,
    embedder: Option<EmbedHandle>,
}

/// Refuses sampling settings the engine will not run: no tokens to generate,
/// too many or too long stop sequences.
fn check_sampling(sampling: &SamplingParams) -> Result<(), EngineError> {
    let invalid = |param, message: String| Err(EngineError::InvalidParameter { param, message });
    if sampling.max_tokens == 0 {
        return invalid("max_tokens", "max_tokens must be at least 1".into());
    }
    if sampling.stop.len() > MAX_STOP_SEQUENCES {
        return invalid(
            "stop",
            format!("{} stop sequences given; at most {MAX_STOP_SEQUENCES} are allowed", sampling.stop.len()),
        );
    }
    if let Some(long) = sampling.stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return invalid(
            "stop",
            format!("a stop sequence is {} bytes long; at most {MAX_STOP_BYTES} are allowed", long.len()),
        );
    }
    Ok(())
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
            Some(dir) => Some(EmbedHandle::start(dir)?),
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
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// Render a prompt to token ids. In a chat, only the template's own
    /// markers are special tokens: special-token text in a message's content
    /// is encoded as the plain text it is.
    pub fn tokenize_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        match prompt {
            Prompt::Chat(m) => {
                let segments = self.inner.template.render_segments(m)?;
                self.inner.tokenizer.encode_parts(segments.iter().map(|s| match s {
                    Segment::Template(t) => (t.as_str(), true),
                    Segment::Content(c) => (*c, false),
                }))
            }
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
        check_sampling(&req.sampling)?;
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
        let cmd = actor::Command::Generate { tokens, sampling: req.sampling, owner: req.owner, tx };
        self.inner.tx.send(cmd).map_err(|_| EngineError::Shutdown)?;
        Ok(rx)
    }

    /// Number of tokens of `text`.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenizer.encode(text).map_or(0, |t| t.len())
    }

    /// Sentence embeddings (mean pooled, L2 normalised); over-long inputs
    /// are truncated.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        match &self.inner.embedder {
            Some(e) => e.embed(texts).await,
            None => Err(EngineError::NoEmbeddingModel),
        }
    }

    /// Sentence embeddings of a client's inputs, refused when too many or
    /// too long; see [`EmbedHandle::embed_inputs`].
    pub async fn embed_inputs(&self, texts: Vec<String>) -> Result<Embeddings, EngineError> {
        match &self.inner.embedder {
            Some(e) => e.embed_inputs(texts).await,
            None => Err(EngineError::NoEmbeddingModel),
        }
    }

    /// Inputs the embedding model has embedded since start (0 without one).
    pub fn embedded_inputs(&self) -> u64 {
        self.inner.embedder.as_ref().map_or(0, EmbedHandle::embedded_inputs)
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
