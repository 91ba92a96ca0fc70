//! Where one request's answer is looked up and stored: the [`StorePlan`],
//! worked out from the cache-policy stage's decision, the client's cache
//! headers and the cache's settings before the upstream call.
//!
//! Planning is pure: it reads no tier and counts nothing (see the cache
//! itself for the lookups and stores the plan drives).

use super::key;
use super::types::{CacheConfig, CacheControls, SemanticPlan, StorePlan};
use crate::api::chat::ChatRequest;
use crate::stage::CacheDecision;

/// The plan for `req`, routed to `model`: `None` bypasses the cache (the
/// policy said not cacheable, or the client asked for a zero TTL).
/// `semantic_ready`: whether the embedding model is loaded. `tenant`: the
/// client key's tenant when keys are configured; every entry of the plan
/// (exact and semantic, every tier) is then inside that tenant's scope,
/// whatever namespace the policy or the client chose.
pub(super) fn plan(
    config: &CacheConfig,
    semantic_ready: bool,
    decision: Option<&CacheDecision>,
    controls: &CacheControls,
    tenant: Option<&str>,
    req: &ChatRequest,
    model: &str,
) -> Option<StorePlan> {
    let (key_text, mut namespace, mut ttl, semantic, threshold) = match decision {
        Some(d) if !d.cacheable => return None,
        Some(d) => {
            let ns = if d.namespace.is_empty() { config.namespace.clone() } else { d.namespace.clone() };
            let ttl = if d.ttl.is_zero() { config.ttl } else { d.ttl };
            (d.key_text.clone(), ns, ttl, d.semantic, d.similarity_threshold)
        }
        None => (key::default_key_text(req), config.namespace.clone(), config.ttl, true, config.similarity_threshold),
    };
    if let Some(ns) = &controls.namespace {
        // A client namespace narrows the policy's, never escapes it.
        namespace = if namespace == config.namespace { ns.clone() } else { format!("{namespace}/{ns}") };
    }
    if let Some(tenant) = tenant {
        namespace = tenant_namespace(tenant, &namespace);
    }
    if let Some(t) = controls.ttl {
        if t.is_zero() {
            return None;
        }
        // A client may shorten the policy's lifetime, never lengthen it.
        ttl = ttl.min(t);
    }
    let semantic =
        (semantic && config.semantic && semantic_ready).then(|| key::question(req)).flatten().map(|question| {
            SemanticPlan {
                scope: key::scope(req, model, &namespace),
                question,
                threshold: if threshold > 0.0 { threshold } else { config.similarity_threshold },
                embedding: None,
            }
        });
    Some(StorePlan {
        key: key::exact(req, model, &key_text, &namespace),
        namespace,
        ttl,
        lookup: !controls.no_cache,
        store: !controls.no_store,
        overwrite: !controls.no_cache,
        semantic,
    })
}

/// `namespace` inside `tenant`'s scope. The tenant's length leads, so no
/// namespace of one tenant can spell another's.
fn tenant_namespace(tenant: &str, namespace: &str) -> String {
    format!("tenant{}:{tenant}/{namespace}", tenant.len())
}
