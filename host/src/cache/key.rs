//! What a cached answer is filed under.
//!
//! The exact key covers everything that changes the output: the model as
//! routed, the conversation as the cache policy normalised it, every other
//! request field (temperature, top_p, max_tokens, stop, seed, tools,
//! tool_choice, response_format, n, logprobs, and fields the gateway does not
//! know) and the namespace. Fields that only change the transport (`stream`,
//! `stream_options`) or identify the caller (`user`, `metadata`) are left
//! out, so a streamed and a whole request share entries.
//!
//! The semantic scope is the same minus the last user message: two requests
//! of one scope differ only in the question, which is what the embedding
//! compares.

use serde_json::{Map, Value};

use crate::api::chat::{ChatRequest, Content, Role};

/// Request fields that do not change the answer.
const TRANSPORT_FIELDS: [&str; 5] = ["stream", "stream_options", "user", "metadata", "model"];

/// The request's output-affecting fields other than the messages, as a
/// canonical JSON object (keys sorted at every level).
fn parameters(req: &ChatRequest) -> Map<String, Value> {
    let mut value = serde_json::to_value(req).unwrap_or(Value::Null);
    let Value::Object(map) = &mut value else { return Map::new() };
    map.remove("messages");
    for field in TRANSPORT_FIELDS {
        map.remove(field);
    }
    std::mem::take(map)
}

/// Writes `value` as JSON with object keys sorted, whatever order serde_json
/// keeps them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn digest(parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..32].to_owned()
}

/// The conversation as key text when no cache policy normalised it.
pub fn default_key_text(req: &ChatRequest) -> String {
    canonical(&serde_json::to_value(&req.messages).unwrap_or(Value::Null))
}

/// The exact key: 32 hex digits.
pub fn exact(req: &ChatRequest, model: &str, key_text: &str, namespace: &str) -> String {
    let params = canonical(&Value::Object(parameters(req)));
    digest(&["exact/v1", model, namespace, &params, key_text])
}

/// The question a semantic lookup compares: the last message, when it is
/// the user's and holds text.
pub fn question(req: &ChatRequest) -> Option<String> {
    let last = req.messages.last()?;
    if last.role != Role::User {
        return None;
    }
    let text = match last.content.as_ref()? {
        Content::Text(text) => text.clone(),
        // Only text parts: an image or audio part makes the text alone a poor
        // stand-in for the question.
        Content::Parts(parts) if parts.iter().all(|p| p.kind == "text") => last.text_content(),
        Content::Parts(_) => return None,
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The semantic scope: everything but the last message.
pub fn scope(req: &ChatRequest, model: &str, namespace: &str) -> String {
    let params = canonical(&Value::Object(parameters(req)));
    let context = req.messages.split_last().map(|(_, earlier)| earlier).unwrap_or_default();
    let context = canonical(&serde_json::to_value(context).unwrap_or(Value::Null));
    digest(&["scope/v1", model, namespace, &params, &context])
}

/// A short tag of a namespace for Redis key names (namespaces are free text).
pub fn namespace_tag(namespace: &str) -> String {
    digest(&["ns/v1", namespace])[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use crate::cache::key::*;

    fn req(json: &str) -> ChatRequest {
        serde_json::from_str(json).expect("request")
    }

    fn key_of(json: &str) -> String {
        let r = req(json);
        exact(&r, "m", &default_key_text(&r), "default")
    }

    #[test]
    fn every_output_affecting_field_changes_the_key() {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let variants = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"x"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"presence_penalty":1}"#,
        ];
        let base_key = key_of(base);
        let mut seen = std::collections::HashSet::new();
        for v in variants {
            let k = key_of(v);
            assert_ne!(k, base_key, "{v} must not share the key of {base}");
            assert!(seen.insert(k), "{v} collides with another variant");
        }
        let r = req(base);
        let text = default_key_text(&r);
        assert_ne!(exact(&r, "m", &text, "default"), exact(&r, "other", &text, "default"), "model");
        assert_ne!(exact(&r, "m", &text, "default"), exact(&r, "m", &text, "tenant-b"), "namespace");
    }

    #[test]
    fn transport_fields_and_key_order_do_not_change_the_key() {
        let base = key_of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"seed":3}"#);
        let same = [
            r#"{"seed":3,"temperature":0,"messages":[{"content":"hi","role":"user"}],"model":"m"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"seed":3,"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"seed":3,"user":"u1"}"#,
            r#"{"model":"other-name","messages":[{"role":"user","content":"hi"}],"temperature":0,"seed":3}"#,
        ];
        for s in same {
            assert_eq!(key_of(s), base, "{s}");
        }
    }

    #[test]
    fn the_scope_ignores_only_the_question() {
        let a = req(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"one"}]}"#);
        let b = req(r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"two"}]}"#);
        let c = req(r#"{"model":"m","messages":[{"role":"system","content":"t"},{"role":"user","content":"one"}]}"#);
        assert_eq!(scope(&a, "m", "ns"), scope(&b, "m", "ns"));
        assert_ne!(scope(&a, "m", "ns"), scope(&c, "m", "ns"), "system prompt");
        assert_ne!(scope(&a, "m", "ns"), scope(&a, "m2", "ns"), "model");
        assert_eq!(question(&a).as_deref(), Some("one"));
        let tool_last = req(r#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"1"}]}"#);
        assert_eq!(question(&tool_last), None);
    }
}
