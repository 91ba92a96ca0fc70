//! Sluice's bundled inference engine.
//!
//! A candle-based LLM server for GGUF Llama-family models (SmolLM2, Llama 3.x,
//! Qwen2) with iteration-level continuous batching, a paged KV cache with
//! automatic prefix caching, chunked prefill, token streaming and cancellation,
//! plus a BERT sentence-embedding model. [`Engine::start`] loads the models and
//! spawns the actor threads; the returned handle is cheap to clone.
//!
//! Module map, top down: `handle` ([`Engine`], the public facade), `actor`
//! (the serving loop), `scheduler` (admission, chunking, preemption),
//! [`model`] (batched forward pass), `kernels` (packed quantised matmul),
//! [`kv`] (block pool, prefix cache), [`sampling`], `stream` (UTF-8 /
//! stop-sequence safe text), [`tokenizer`] (BPE from GGUF metadata),
//! [`template`] (chat template), `embed` (sentence embeddings), `device`
//! (CPU or CUDA); plain data in `config` ([`EngineConfig`]), `request`
//! (prompts, sampling settings, events) and `error` ([`EngineError`]).
//! This file only declares the modules and re-exports the public API.

mod actor;
mod config;
mod device;
mod embed;
mod error;
mod handle;
mod kernels;
pub mod kv;
pub mod model;
mod request;
pub mod sampling;
mod scheduler;
mod stream;
pub mod template;
pub mod tokenizer;

pub use actor::EngineStats;
pub use config::EngineConfig;
pub use embed::{EmbedHandle, Embeddings, MAX_EMBED_INPUTS};
pub use error::EngineError;
pub use handle::Engine;
pub use model::WeightFormat;
pub use request::{
    ChatMessage, FinishReason, GenerateRequest, GenerationEvent, MAX_STOP_BYTES, MAX_STOP_SEQUENCES, Owner, Prompt,
    SamplingParams,
};
