//! The example plugins' logic, called through the host: the Rust compressor,
//! cache policy, router and judge, the Python judge and the JavaScript router
//! (the last two with the same cases as their Rust twins).

use sluice::api::chat::{Message, Role, ToolCall};
use sluice::stage::{CachePolicy, Compressor, Judge, Router, StageKind};

use super::cases::{AB_MANIFEST, check_judge, check_router, check_router_ab};
use super::support::{Folder, NO_CONTEXT, built, host_with, request, response, user};

#[tokio::test]
async fn no_plugins_means_no_stage_answers() {
    built();
    let folder = Folder::new();
    let host = folder.host(false);
    let req = user("hi");
    let out = host.compress(&req, &NO_CONTEXT).await.expect("no compressor is fine");
    assert_eq!((out.request, out.tokens_saved), (req.clone(), 0));
    assert_eq!(host.cache_policy(&req, &NO_CONTEXT).await, Ok(None));
    assert_eq!(host.route(&req, &NO_CONTEXT, &super::cases::candidates()).await, Ok(None));
    assert_eq!(host.judge(&req, &NO_CONTEXT, &response("x", "stop")).await, Ok(None));
    assert!(host.list().is_empty());
}

#[test]
fn stages_are_detected_from_exports() {
    let (_f, host) = host_with(&["judge", "router", "compressor", "cache-policy"]);
    let stages: Vec<(String, Option<StageKind>)> = host.list().into_iter().map(|p| (p.name, p.stage)).collect();
    assert_eq!(
        stages,
        [
            ("cache-policy".to_owned(), Some(StageKind::CachePolicy)),
            ("compressor".to_owned(), Some(StageKind::Compressor)),
            ("judge".to_owned(), Some(StageKind::Judge)),
            ("router".to_owned(), Some(StageKind::Router)),
        ]
    );
}

#[tokio::test]
async fn rust_judge_flags_bad_answers() {
    let (_f, host) = host_with(&["judge"]);
    check_judge(&host, "judge").await;
}

#[tokio::test]
async fn python_judge_flags_bad_answers() {
    let (_f, host) = host_with(&["judge-py"]);
    assert_eq!(host.list()[0].warm, Some(true), "a CPython component reuses warm instances");
    check_judge(&host, "judge-py").await;
}

#[tokio::test]
async fn rust_router_routes_by_complexity() {
    let (_f, host) = host_with(&["router"]);
    check_router(&host, "router").await;
}

#[tokio::test]
async fn js_router_routes_by_complexity() {
    let (_f, host) = host_with(&["router-js"]);
    assert_eq!(host.list()[0].warm, Some(true), "a JS component reuses warm instances");
    check_router(&host, "router-js").await;
}

#[tokio::test]
async fn routers_split_ab_buckets_consistently_across_languages() {
    built();
    let rust = Folder::new();
    rust.add_example("router", "router");
    rust.put_toml("router", AB_MANIFEST);
    let js = Folder::new();
    js.add_example("router-js", "router-js");
    js.put_toml("router-js", &format!("instances = \"warm\"\n{AB_MANIFEST}"));
    let a = check_router_ab(&rust.host(false), "router").await;
    let b = check_router_ab(&js.host(false), "router-js").await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn judges_combine_mean_score_and_fail_if_any_fails() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    folder.add_fixture("lenient", "order = 1\n[config]\nmode = \"ok\"\ntag = \"lenient\"\n");
    let host = folder.host(false);
    let req = user("What is the capital of France?");
    let v = host.judge(&req, &NO_CONTEXT, &response("Paris.", "stop")).await.expect("judged").expect("verdict");
    assert_eq!(v.votes.iter().map(|v| v.plugin.as_str()).collect::<Vec<_>>(), ["lenient", "judge"]);
    assert!((v.score - 0.625).abs() < 1e-6, "mean of 0.25 and 1.0, got {}", v.score);
    assert!(v.pass);
    let v = host.judge(&req, &NO_CONTEXT, &response("", "stop")).await.expect("judged").expect("verdict");
    assert!(!v.pass);
    assert_eq!(v.reason, "judge: empty");
}

#[tokio::test]
async fn rust_compressor_squeezes_whitespace_and_drops_duplicate_paragraphs() {
    let (_f, host) = host_with(&["compressor"]);
    let para = "The quarterly report shows revenue grew by twelve percent year over year.";
    let req = request(&[
        (Role::System, "You   are a   helpful assistant.  \n\n\n\nBe brief."),
        (Role::User, &format!("{para}\n\nSummarise it.")),
        (Role::Assistant, "Revenue grew 12%."),
        (Role::User, para),
        (Role::User, &format!("Again:   {para}\n\nAnd what about costs?")),
    ]);
    let out = host.compress(&req, &NO_CONTEXT).await.expect("compressed");
    let texts: Vec<(Role, String)> = out.request.messages.iter().map(|m| (m.role, m.text_content())).collect();
    assert_eq!(
        texts,
        [
            (Role::System, "You are a helpful assistant.\n\nBe brief.".to_owned()),
            (Role::User, format!("{para}\n\nSummarise it.")),
            (Role::Assistant, "Revenue grew 12%.".to_owned()),
            // The repeated paragraph alone: the message is dropped.
            (Role::User, format!("Again: {para}\n\nAnd what about costs?")),
        ]
    );
    assert!(out.tokens_saved > 10, "saved {}", out.tokens_saved);
    assert_eq!(out.notes, ["compressor: 1 duplicate paragraphs, 0 old turns dropped"]);
    assert_eq!(out.request.model, req.model);
}

#[tokio::test]
async fn rust_compressor_trims_old_turns_to_budget_and_keeps_tool_calls() {
    built();
    let folder = Folder::new();
    folder.add_example("compressor", "compressor");
    folder.put_toml("compressor", "[config]\nmax_prompt_tokens = 60\n");
    let host = folder.host(false);
    let long = "This is an older turn with quite a few words in it to use up tokens. ";
    let other = "Here is an earlier answer that also goes on for a while to take space. ";
    let mut req = request(&[
        (Role::System, "Be brief."),
        (Role::User, &long.repeat(2)),
        (Role::Assistant, &other.repeat(2)),
        (Role::User, "What is the weather in Paris?"),
    ]);
    let mut call = Message::text(Role::Assistant, "");
    call.content = None;
    call.tool_calls = Some(vec![ToolCall {
        id: "call_1".into(),
        kind: "function".into(),
        function: sluice::api::chat::FunctionCall { name: "weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
    }]);
    let mut result = Message::text(Role::Tool, "18C and sunny");
    result.tool_call_id = Some("call_1".into());
    req.messages.push(call.clone());
    req.messages.push(result.clone());
    let out = host.compress(&req, &NO_CONTEXT).await.expect("compressed");
    let roles: Vec<Role> = out.request.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::Tool]);
    assert_eq!(out.request.messages[1].text_content(), "What is the weather in Paris?");
    assert_eq!(out.request.messages[2], call, "tool call kept untouched");
    assert_eq!(out.request.messages[3], result, "tool result kept untouched");
    assert!(out.notes[0].ends_with("2 old turns dropped"), "{:?}", out.notes);
}

#[tokio::test]
async fn rust_cache_policy_decides_keys_ttls_and_semantics() {
    let (_f, host) = host_with(&["cache-policy"]);
    let decide = async |req: &sluice::api::chat::ChatRequest| {
        host.cache_policy(req, &NO_CONTEXT).await.expect("decided").expect("a decision")
    };

    let mut greedy = user("What is  the capital of France?");
    greedy.temperature = Some(0.0);
    let d = decide(&greedy).await;
    assert!(d.cacheable && d.semantic, "{d:?}");
    assert_eq!((d.namespace.as_str(), d.ttl.as_secs()), ("default", 3600));
    assert_eq!(d.plugin, "cache-policy");
    assert!((d.similarity_threshold - 0.85).abs() < 1e-6);
    assert!(d.key_text.starts_with("user: what is the capital of france\n"), "{}", d.key_text);
    let mut same = user("what is the capital of france");
    same.temperature = Some(0.0);
    assert_eq!(decide(&same).await.key_text, d.key_text, "normalised text, same key");

    let d = decide(&user("What is the capital of France?")).await;
    assert!(!d.cacheable);
    assert_eq!(d.reason, "sampled output without seed");

    let mut seeded = user("Write a haiku.");
    seeded.temperature = Some(0.8);
    seeded.seed = Some(42);
    let d = decide(&seeded).await;
    assert!(d.cacheable && !d.semantic, "a seed makes it reproducible, not similar: {d:?}");

    let mut tenant = greedy.clone();
    tenant.extra.insert("metadata".into(), serde_json::json!({ "tenant": "support" }));
    let d = decide(&tenant).await;
    assert_eq!((d.namespace.as_str(), d.ttl.as_secs()), ("support", 600));

    let mut several = greedy.clone();
    several.n = Some(2);
    assert!(!decide(&several).await.cacheable);
}

#[tokio::test]
async fn first_router_with_a_plan_wins_and_compressors_chain() {
    built();
    let folder = Folder::new();
    folder.add_example("router", "router");
    folder.add_example("router-js", "router-js");
    folder.put_toml("router", "order = 30\n");
    folder.put_toml("router-js", "order = 20\ninstances = \"warm\"\n");
    folder.add_example("compressor", "squeeze");
    folder.add_example("compressor", "budget");
    folder.put_toml("squeeze", "order = 1\n");
    folder.put_toml("budget", "order = 2\n[config]\nmax_prompt_tokens = 20\n");
    let host = folder.host(false);
    let plan = host.route(&user("hi"), &NO_CONTEXT, &super::cases::candidates()).await.expect("ok").expect("plan");
    assert_eq!(plan.plugin, "router-js", "lower order runs first");

    let req = request(&[
        (Role::System, "Be   brief."),
        (Role::User, "An old question that nobody needs any more, with many words in it."),
        (Role::Assistant, "An old answer that nobody needs any more either, also quite long."),
        (Role::User, "What is   2+2?"),
    ]);
    let out = host.compress(&req, &NO_CONTEXT).await.expect("compressed");
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
    assert!(out.notes[0].starts_with("squeeze:") && out.notes[1].starts_with("budget:"));
    let texts: Vec<String> = out.request.messages.iter().map(|m| m.text_content()).collect();
    assert_eq!(texts, ["Be brief.", "What is 2+2?"]);
}
