//! The engine's single error type. It only classifies failures; it does not
//! log or retry anything.

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A model file could not be read.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The model file is malformed or of an unsupported architecture.
    #[error("unsupported or malformed model: {0}")]
    Model(String),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer could not be built or failed to encode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The chat template failed to render.
    #[error("chat template error: {0}")]
    Template(String),
    /// The request is invalid (too long, bad parameters...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// One parameter of the request is out of bounds; `param` names it as
    /// OpenAI's API does (`max_tokens`, `stop`, `input`).
    #[error("invalid request: {message}")]
    InvalidParameter {
        /// The parameter.
        param: &'static str,
        /// What is wrong with it, for the client.
        message: String,
    },
    /// No embedding model was configured.
    #[error("no embedding model is loaded")]
    NoEmbeddingModel,
    /// The engine actor has stopped.
    #[error("the engine has shut down")]
    Shutdown,
}
