//! Shared cases for the example judges and routers: each language's plugin
//! (Rust, Python, JavaScript) must give the same answers.

use sluice::api::chat::{ChatRequest, Role};
use sluice::plugin::PluginHost;
use sluice::stage::{Health, Judge, RouteCandidate, Router};

use super::support::{NO_CONTEXT, candidate, request, response, user};

fn json_request(text: &str) -> ChatRequest {
    let mut r = user(text);
    r.response_format = Some(serde_json::json!({ "type": "json_object" }));
    r
}

/// Every judge case: (request, answer, finish reason, expected pass, reason).
fn judge_table() -> Vec<(ChatRequest, String, &'static str, bool, &'static str)> {
    let q = || user("What is the capital of France?");
    vec![
        (q(), "The capital of France is Paris.".into(), "stop", true, "ok"),
        (q(), "   ".into(), "stop", false, "empty"),
        (q(), "The capital of France is".into(), "length", false, "truncated"),
        (q(), "Paris.".into(), "content_filter", false, "content filtered"),
        (q(), "I'm sorry, but I can't help with that request.".into(), "stop", false, "refusal"),
        (q(), "I\u{2019}m unable to browse the web.".into(), "stop", false, "refusal"),
        (q(), "As an AI language model, I have no opinion.".into(), "stop", false, "refusal"),
        (json_request("Give JSON"), "{\"city\": \"Paris\"".into(), "stop", false, "invalid json"),
        (json_request("Give JSON"), "```json\n{\"city\": \"Paris\"}\n```".into(), "stop", true, "ok"),
        (json_request("Give JSON"), "{\"city\": \"Paris\"}".into(), "stop", true, "ok"),
        (q(), "Not JSON but fine: {".into(), "stop", true, "ok"),
        (q(), "I like cats. I like cats! I like cats.".into(), "stop", false, "repetition"),
        (q(), "go ".repeat(40), "stop", false, "repetition"),
        (q(), "Paris is the capital.\nParis is lovely.\nIt has the Seine.".into(), "stop", true, "ok"),
    ]
}

/// Run the judge table against the only judge loaded in `host`.
pub async fn check_judge(host: &PluginHost, plugin: &str) {
    for (req, answer, finish, pass, reason) in judge_table() {
        let v = host
            .judge(&req, &NO_CONTEXT, &response(&answer, finish))
            .await
            .unwrap_or_else(|e| panic!("{plugin}: judge failed on {answer:?}: {e}"))
            .unwrap_or_else(|| panic!("{plugin}: no verdict"));
        assert_eq!(v.votes.len(), 1, "{plugin}: one judge");
        let vote = &v.votes[0];
        assert_eq!(vote.plugin, plugin);
        assert_eq!((vote.pass, vote.reason.as_str()), (pass, reason), "{plugin} on {answer:?}");
        assert_eq!(v.pass, pass);
        if pass {
            assert!((vote.score - 1.0).abs() < 1e-6, "{plugin}: passing score is 1");
        } else {
            assert!(vote.score < 0.5, "{plugin}: failing score {} on {answer:?}", vote.score);
        }
    }
}

pub fn candidates() -> Vec<RouteCandidate> {
    vec![
        candidate("large", 2.5, 128_000, Health::Healthy),
        candidate("small", 0.15, 128_000, Health::Healthy),
        candidate("broken", 0.01, 128_000, Health::Down),
        candidate("tiny", 0.1, 20, Health::Degraded),
    ]
}

const HARD: &str = "Please prove this theorem step by step and analyze its complexity:\n\
                    ```\nfn main() { println!(\"hi\"); }\n```";

/// Run the routing table against the only router loaded in `host` (default
/// config: no cascade, no A/B split).
pub async fn check_router(host: &PluginHost, plugin: &str) {
    let cands = candidates();
    let plan = async |req: &ChatRequest, cands: &[RouteCandidate]| {
        host.route(req, &NO_CONTEXT, cands).await.unwrap_or_else(|e| panic!("{plugin}: route failed: {e}"))
    };

    // Simple: the cheapest usable candidate; the down one is never used.
    let p = plan(&user("What is the capital of France?"), &cands).await.expect("a plan");
    assert_eq!(p.plugin, plugin);
    assert_eq!(p.primary, "tiny", "{plugin}");
    assert_eq!(p.fallbacks, ["small", "large"], "{plugin}");
    assert_eq!(p.reason, "complexity 0: simple", "{plugin}");
    assert_eq!((p.cascade, p.ab_bucket), (None, None), "{plugin}");

    // The output budget no longer fits the tiny context window.
    let mut req = user("What is the capital of France?");
    req.max_tokens = Some(100);
    let p = plan(&req, &cands).await.expect("a plan");
    assert_eq!((p.primary.as_str(), p.fallbacks.as_slice()), ("small", &["large".to_owned()][..]));

    // Complex: the strongest model first, then the rest strongest first.
    let p = plan(&user(HARD), &cands).await.expect("a plan");
    assert_eq!(p.primary, "large", "{plugin}");
    assert_eq!(p.fallbacks, ["small"], "{plugin}");
    assert_eq!(p.reason, "complexity 5: complex", "{plugin}");

    // Tools and JSON add to the score; a long conversation too.
    let mut req = request(&[
        (Role::System, "You are terse."),
        (Role::User, "hi"),
        (Role::Assistant, "hello"),
        (Role::User, "debug this"),
        (Role::Assistant, "what?"),
        (Role::User, "the code"),
        (Role::Assistant, "which code?"),
        (Role::User, "please refactor it"),
    ]);
    req.response_format = Some(serde_json::json!({ "type": "json_object" }));
    let p = plan(&req, &cands).await.expect("a plan");
    assert_eq!(p.reason, "complexity 3: complex", "{plugin}");

    // Nothing usable: no plan, the gateway decides.
    let down = vec![candidate("broken", 0.01, 128_000, Health::Down)];
    assert_eq!(plan(&user("hi"), &down).await, None, "{plugin}");
}

/// Manifest of a router with a cascade and a 50% A/B split.
pub const AB_MANIFEST: &str = "order = 1\n[config]\ncascade = true\ncascade_threshold = 0.6\n\
                               ab_percent = 50\nab_model = \"large\"\n";

/// FNV-1a 32 (what the routers hash users with).
pub fn fnv1a32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// With [`AB_MANIFEST`]: buckets follow the hash; bucket b gets the A/B
/// model; simple requests in bucket a get a cheap-then-strong cascade.
pub async fn check_router_ab(host: &PluginHost, plugin: &str) -> Vec<String> {
    let cands = candidates();
    let mut buckets = Vec::new();
    for i in 0..20 {
        let name = format!("user-{i}");
        let mut req = user("What is the capital of France?");
        req.user = Some(name.clone());
        let p = host.route(&req, &NO_CONTEXT, &cands).await.expect("routes").expect("a plan");
        let b = if fnv1a32(&name) % 100 < 50 { "b" } else { "a" };
        assert_eq!(p.ab_bucket.as_deref(), Some(b), "{plugin}: bucket of {name}");
        if b == "b" {
            assert_eq!(p.primary, "large", "{plugin}");
            assert_eq!(p.cascade, None, "{plugin}");
        } else {
            assert_eq!(p.primary, "tiny", "{plugin}");
            let c = p.cascade.expect("cascade for simple requests");
            assert_eq!(c.tiers, ["tiny", "large"], "{plugin}");
            assert!((c.judge_threshold - 0.6).abs() < 1e-6, "{plugin}");
        }
        buckets.push(b.to_owned());
    }
    assert!(buckets.iter().any(|b| b == "a") && buckets.iter().any(|b| b == "b"));
    buckets
}
