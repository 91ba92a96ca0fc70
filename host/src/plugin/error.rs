//! Why the plugin host could not start, reload or precompile.
//!
//! A plugin that fails to load is not an error here: it is logged, counted
//! and listed with its load error while the previous version keeps serving
//! (see `registry.rs`). A stage call's failure is a `StageError`
//! (`crate::stage`).

use std::path::PathBuf;

/// Why the plugin host could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin folder {0}: {1}")]
    Dir(PathBuf, #[source] std::io::Error),
    #[error("cannot watch the plugin folder: {0}")]
    Watch(#[source] notify::Error),
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot compile {0}: {1}")]
    Compile(PathBuf, String),
    #[error("plugin registry lock poisoned")]
    Poisoned,
}
