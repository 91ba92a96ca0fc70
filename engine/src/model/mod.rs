//! The Llama-family decoder (SmolLM2, Llama 3.x, Qwen2) loaded from GGUF, with
//! a forward pass over a *flat batch*: the new tokens of many sequences are
//! concatenated, the linear layers run once for all of them, and attention reads
//! each sequence's keys and values from the paged [`KvStore`](crate::kv::KvStore).
//! It does not schedule, sample or tokenize.
//!
//! Files: `config` (hyper-parameters from the GGUF metadata), `linear` (weight
//! matrices and their storage formats), `llama` (loading), `batch` (one
//! step's input), `forward` (the step), `attention` (paged attention).

mod attention;
mod batch;
mod config;
mod forward;
mod linear;
mod llama;

pub use batch::{Batch, SeqInput};
pub use config::LlamaConfig;
pub use linear::WeightFormat;
pub use llama::{Llama, SharedModel};
