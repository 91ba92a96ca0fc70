//! Sluice: an LLM gateway whose optimisation stages are WebAssembly plugins.

pub mod api;
// Not under rustdoc's doctest pass: the WIT bindings generate a module named
// `sluice`, which is ambiguous there with the crate itself (passed as
// `--extern sluice`). The plugin module has no doctests.
#[cfg(not(doctest))]
pub mod plugin;
pub mod stage;
