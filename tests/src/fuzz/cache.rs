//! Cache targets: the keys a cached answer is filed under
//! (`sluice::cache::key`) and the semantic cache's false-hit guard
//! (`sluice::cache::guard::Fingerprint`).
//!
//! Keys: deterministic, of a fixed shape; two namespaces (or models) never
//! share a key, a scope or a tag, even when their names only move a
//! character from one to the other; transport fields (`stream`, `user`, the
//! client's model name) never change a key and sampling fields always do;
//! the scope ignores the question and nothing else. The guard: total on any
//! text, deterministic, reflexive (a question always matches itself),
//! symmetric, indifferent to surrounding whitespace, and its text form
//! round-trips; decoding arbitrary text never panics.

use serde_json::json;
use sluice::api::chat::{ChatRequest, Content};
use sluice::cache::guard::Fingerprint;
use sluice::cache::key::{default_key_text, exact, namespace_tag, question, scope};

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Three lines: a namespace, another namespace, then a chat request (JSON).
pub fn cache_key(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(a), Some(b), Some(body)) = (parts.next(), parts.next(), parts.next()) else { return };
    let Ok(req) = serde_json::from_slice::<ChatRequest>(body) else { return };
    let (a, b) = (String::from_utf8_lossy(a).into_owned(), String::from_utf8_lossy(b).into_owned());
    let model = req.model.clone();
    let text = default_key_text(&req);
    assert_eq!(text, default_key_text(&req), "key text is deterministic");

    let key = exact(&req, &model, &text, &a);
    assert!(is_hex(&key, 32), "{key}");
    assert_eq!(key, exact(&req, &model, &text, &a), "the exact key is deterministic");
    let tag = namespace_tag(&a);
    assert!(is_hex(&tag, 12) && tag == namespace_tag(&a), "{tag}");
    let scoped = scope(&req, &model, &a);
    assert!(is_hex(&scoped, 32) && scoped == scope(&req, &model, &a), "{scoped}");
    if a != b {
        assert_ne!(key, exact(&req, &model, &text, &b), "namespaces {a:?} and {b:?} share a key");
        assert_ne!(scoped, scope(&req, &model, &b), "namespaces {a:?} and {b:?} share a scope");
        assert_ne!(tag, namespace_tag(&b), "namespaces {a:?} and {b:?} share a tag");
    }
    if b != model {
        assert_ne!(key, exact(&req, &b, &text, &a), "models {model:?} and {b:?} share a key");
    }
    // Moving a character across the model/namespace boundary is another key.
    if let Some(c) = a.chars().next() {
        let (moved_model, moved_ns) = (format!("{model}{c}"), &a[c.len_utf8()..]);
        assert_ne!(key, exact(&req, &moved_model, &text, moved_ns), "a boundary shift collides");
    }

    // Transport fields do not change the key.
    let mut transport = req.clone();
    transport.stream = !req.stream;
    transport.user = Some(format!("{}-other", req.user.clone().unwrap_or_default()));
    transport.model = format!("{model}-as-asked");
    assert_eq!(exact(&transport, &model, &text, &a), key, "a transport field changed the key");
    assert_eq!(scope(&transport, &model, &a), scoped, "a transport field changed the scope");

    // Sampling fields do.
    let mut sampled = req.clone();
    sampled.seed = Some(req.seed.map_or(0, |s| s.wrapping_add(1)));
    assert_ne!(exact(&sampled, &model, &text, &a), key, "the seed did not change the key");
    let mut limited = req.clone();
    limited.max_tokens = Some(req.max_tokens.map_or(0, |n| n.wrapping_add(1)));
    assert_ne!(exact(&limited, &model, &text, &a), key, "max_tokens did not change the key");
    let mut extra = req.clone();
    let flipped = req.extra.get("fuzz_field") != Some(&json!(true));
    extra.extra.insert("fuzz_field".to_owned(), json!(flipped));
    assert_ne!(exact(&extra, &model, &text, &a), key, "an unknown field did not change the key");

    // The scope ignores the question, and only the question.
    if let Some(q) = question(&req) {
        assert!(!q.is_empty() && q.trim() == q, "question {q:?}");
        let mut asked = req.clone();
        if let Some(last) = asked.messages.last_mut() {
            last.content = Some(Content::Text(format!("{q} and more")));
        }
        assert_eq!(scope(&asked, &model, &a), scoped, "the question changed the scope");
        assert_ne!(exact(&asked, &model, &default_key_text(&asked), &a), key, "the question did not change the key");
    }
    if req.messages.len() >= 2 {
        let mut earlier = req.clone();
        earlier.messages.swap(0, 1);
        if earlier.messages[..earlier.messages.len() - 1] != req.messages[..req.messages.len() - 1] {
            assert_ne!(scope(&earlier, &model, &a), scoped, "the context did not change the scope");
        }
    }
}

/// Two questions, one a line: each fingerprint is deterministic, matches
/// itself and its text form's decoding; matching is symmetric.
pub fn guard(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    let (fa, fb) = (Fingerprint::of(a), Fingerprint::of(b));
    assert_eq!(fa, Fingerprint::of(a), "the fingerprint of {a:?} is not deterministic");
    assert!(fa.compatible(&fa), "{a:?} does not match itself");
    assert!(fb.compatible(&fb), "{b:?} does not match itself");
    assert_eq!(fa.compatible(&fb), fb.compatible(&fa), "matching {a:?} / {b:?} is not symmetric");
    let padded = Fingerprint::of(&format!("  {a} \t"));
    assert!(fa.compatible(&padded) && padded.compatible(&fa), "whitespace around {a:?} changes its match");
    assert_eq!(Fingerprint::decode(&fa.encode()), Some(fa.clone()), "the text form of {a:?} does not round-trip");
    let _ = Fingerprint::decode(&text);
    let _ = Fingerprint::decode(b);
}
