//! Sluice: an LLM gateway whose optimisation stages are WebAssembly plugins.

pub mod api;
pub mod plugin;
pub mod stage;
