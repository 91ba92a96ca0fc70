//! What callers send to the engine and what it streams back: prompts, sampling
//! settings and generation events. Plain data: it does not tokenize, render
//! templates or validate (the [`Engine`](crate::Engine) handle does).

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

/// Most stop sequences in one request (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Longest stop sequence in bytes. Every generated token is matched against
/// every stop sequence, and the text held back waiting for one is as long as
/// the longest.
pub const MAX_STOP_BYTES: usize = 256;

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
    /// Most tokens to generate: at least 1; more than the context window
    /// leaves room for is capped to what it leaves.
    pub max_tokens: usize,
    /// Strings that end generation (not included in the output): at most
    /// [`MAX_STOP_SEQUENCES`], each at most [`MAX_STOP_BYTES`] long.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, top_k: 0, seed: None, max_tokens: 256, stop: Vec::new() }
    }
}

/// Who a sequence belongs to: its prefix-cache scope and the client whose
/// share of the engine it uses. The default is the shared scope and no client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Sequences reuse (and fill) cached prompt blocks only within one scope,
    /// so neither the cache's speed nor `cached_prompt_tokens` tells one scope
    /// what another asked. `None` is the shared scope.
    pub scope: Option<String>,
    /// The client holding the sequence. While another client's sequence
    /// waits, one client holds at most its share of the batch slots and KV
    /// blocks ([`EngineConfig::client_share`](crate::EngineConfig::client_share)).
    /// `None` is not counted against any share.
    pub client: Option<String>,
}

/// A generation request.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Whose sequence it is.
    pub owner: Owner,
}

impl GenerateRequest {
    /// A request in the shared scope, held by no client.
    pub fn new(prompt: Prompt, sampling: SamplingParams) -> Self {
        Self { prompt, sampling, owner: Owner::default() }
    }
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
