//! The response cache: exact and semantic, in-process and in Redis.

use std::path::PathBuf;
use std::time::Duration;

/// `[cache]`: what the cache holds and for how long when the cache-policy
/// stage does not say.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes the in-process tier may hold.
    pub max_bytes: u64,
    /// Entry lifetime when the policy sets none.
    pub ttl: Duration,
    /// Namespace when the policy and the request set none.
    pub namespace: String,
    /// Whether semantic hits are allowed at all.
    pub semantic: bool,
    /// Similarity a semantic hit needs when the policy sets none.
    pub similarity_threshold: f32,
    /// The sentence-embedding model; `None` turns semantic matching off.
    pub embedding_model_dir: Option<PathBuf>,
    /// Entries the semantic index holds per replica.
    pub max_semantic_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
            namespace: "default".to_owned(),
            semantic: true,
            similarity_threshold: 0.9,
            embedding_model_dir: Some(PathBuf::from("models/all-minilm-l6-v2")),
            max_semantic_entries: 100_000,
        }
    }
}
