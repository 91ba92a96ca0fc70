//! Example cache-policy plugin: normalises the prompt into the cache key
//! text, refuses to cache sampled outputs unless a seed makes them
//! reproducible, picks the namespace from the tenant and the TTL per
//! namespace from config, and allows semantic matching only for single-turn
//! plain-text questions.
//!
//! It never refuses a request. Config (`cache-policy.toml`):
//! `default_namespace`, `default_ttl_seconds`, `ttl.<namespace>` (a
//! `[config.ttl]` table), `semantic` (true/false), `similarity_threshold`.

wit_bindgen::generate!({ world: "cache-policy", path: "../../../wit" });

use exports::sluice::plugin::caching::{CacheDecision, Guest};
use sluice::plugin::host;
use sluice::plugin::types::{ChatRequest, Role};

struct Policy;

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Lowercase, collapse whitespace, drop trailing `.`, `!` and `?`.
fn normalise(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").to_lowercase().trim_end_matches(['.', '!', '?']).trim_end().to_owned()
}

impl Guest for Policy {
    fn decide(req: ChatRequest) -> Result<CacheDecision, String> {
        let s = &req.sampling;
        let sampled = s.temperature.is_none_or(|t| t > 0.0);
        let refusal = if s.n.unwrap_or(1) > 1 {
            Some("several choices asked for")
        } else if req.has_tools && host::config_get("cache_tools").as_deref() != Some("true") {
            Some("request defines tools")
        } else if sampled && s.seed.is_none() {
            Some("sampled output without seed")
        } else {
            None
        };
        let namespace = req
            .metadata
            .iter()
            .find(|(k, _)| k == "tenant")
            .map(|(_, v)| v.clone())
            .or_else(|| host::config_get("default_namespace"))
            .unwrap_or_else(|| "default".to_owned());
        let ttl_seconds = host::config_get(&format!("ttl.{namespace}"))
            .or_else(|| host::config_get("default_ttl_seconds"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(3600);

        let mut key_text: Vec<String> = req
            .messages
            .iter()
            .map(|m| format!("{}: {}", role_name(m.role), normalise(&m.content)))
            .collect();
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        key_text.push(format!(
            "temperature={} top_p={} max_tokens={} seed={} stop={}",
            opt(s.temperature.map(|v| v.to_string())),
            opt(s.top_p.map(|v| v.to_string())),
            opt(s.max_tokens.map(|v| v.to_string())),
            opt(s.seed.map(|v| v.to_string())),
            s.stop.join("\u{1f}"),
        ));

        let user_turns = req.messages.iter().filter(|m| m.role == Role::User).count();
        let semantic = refusal.is_none()
            && host::config_get("semantic").as_deref() != Some("false")
            && !req.wants_json
            && !req.has_tools
            && s.seed.is_none()
            && user_turns == 1;
        let similarity_threshold = host::config_get("similarity_threshold")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.85);
        Ok(CacheDecision {
            cacheable: refusal.is_none(),
            key_text: key_text.join("\n"),
            namespace,
            ttl_seconds,
            semantic,
            similarity_threshold,
            reason: refusal.unwrap_or("cacheable").to_owned(),
        })
    }
}

export!(Policy);
