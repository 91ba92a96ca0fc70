//! The stage plugins inside the gateway: the example plugins, built from
//! source, shaping real requests end to end (compress, cache policy, route
//! with fallbacks, judge), swapped live, and listed by `/admin/plugins`.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::plugin::PluginConfig;
use sluice_testkit::{Client, MockUpstream, TestGateway};

use super::support::{Folder, TEST_DEADLINE, built, cache_dir};
use crate::support::config_for;

fn with_plugins(folder: &Folder) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        let mut plugins = PluginConfig::new(&folder.path);
        plugins.cache_dir = Some(cache_dir());
        plugins.defaults.deadline = TEST_DEADLINE;
        config.gateway.plugins = Some(plugins);
    }
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_shape_requests_through_the_gateway() {
    built();
    let folder = Folder::new();
    folder.add_example("compressor", "compressor").add_example("router", "router").add_example("judge", "judge");
    folder.add_example("cache-policy", "cache-policy");
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, with_plugins(&folder))).await;
    let client = Client::new();

    let paragraph = "This paragraph is long enough to count as a duplicate paragraph.";
    let text = format!("{paragraph}\n\n{paragraph}\n\nWhat   is   two plus two?");
    let reply = client.post_json(&gateway.url("/v1/chat/completions"), &ask("claude", &text)).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));

    // compress: the duplicate paragraph and the runs of spaces never left the gateway.
    let sent = mock.last_request().expect("upstream request").body;
    let sent_text = sent["messages"][0]["content"].as_str().expect("text").to_owned();
    assert_eq!(sent_text.matches(paragraph).count(), 1, "{sent_text}");
    assert!(sent_text.contains("What is two plus two?"), "{sent_text}");
    assert!(reply.header("x-sluice-tokens-saved").and_then(|v| v.parse::<u32>().ok()).is_some_and(|n| n > 0));

    // route: a simple question goes to the cheapest candidate.
    assert_eq!(reply.header("x-sluice-router"), Some("router"));
    assert_eq!(reply.header("x-sluice-model"), Some("priced"));
    assert_eq!(sent["model"], "mock-priced");

    // judge and cache policy answered too.
    assert_eq!(reply.header("x-sluice-judge-pass"), Some("true"));
    assert!(reply.header("x-sluice-judge-score").and_then(|v| v.parse::<f32>().ok()).is_some_and(|s| s > 0.5));
    assert!(
        reply.header("x-sluice-cache-policy").is_some_and(|v| v.starts_with("no-store") || v.starts_with("cacheable"))
    );

    // A pinned request skips routing.
    let pinned = client
        .call(
            http::Method::POST,
            &gateway.url("/v1/chat/completions"),
            bytes::Bytes::from(ask("claude", "hi").to_string()),
            &[("x-sluice-route", "pinned")],
        )
        .await;
    assert_eq!(pinned.header("x-sluice-model"), Some("claude"));

    let admin = client.get(&gateway.url("/admin/plugins")).await.json();
    let plugins = admin["plugins"].as_array().expect("plugin list");
    assert_eq!(plugins.len(), 4, "{admin}");
    for p in plugins {
        assert!(p["calls"].as_u64().is_some_and(|n| n >= 1), "{p}");
        assert!(p["hash"].as_str().is_some_and(|h| h.len() >= 16), "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_primary_falls_back_to_the_plan_s_next_model() {
    built();
    let folder = Folder::new();
    folder.add_example("router", "router");
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c| {
        // The cheap model's upstream answers 503: the router's fallback serves.
        c.gateway.models[0].upstream_model = "mock-fail503".into();
        with_plugins(&folder)(c);
    }))
    .await;
    let reply = Client::new().post_json(&gateway.url("/v1/chat/completions"), &ask("priced", "hello")).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("x-sluice-model"), Some("claude"));
    assert_eq!(reply.header("x-sluice-upstream"), Some("an"));
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    // Retried twice (the default), then the plan's next model.
    assert_eq!(paths, ["/v1/chat/completions", "/v1/chat/completions", "/v1/chat/completions", "/v1/messages"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_dropped_in_takes_effect_without_a_restart() {
    built();
    let folder = Folder::new();
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, with_plugins(&folder))).await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");
    let reply = client.post_json(&url, &ask("claude", "hello")).await;
    assert_eq!(reply.header("x-sluice-model"), Some("claude"), "no router yet: the requested model");

    folder.add_example("router", "router");
    let mut routed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let reply = client.post_json(&url, &ask("claude", "hello")).await;
        assert_eq!(reply.status, 200, "no request fails while the router loads");
        if reply.header("x-sluice-model") == Some("priced") {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(routed, "the new router took over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_the_judges_fail_are_not_cached() {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |config: &mut Config| {
        with_plugins(&folder)(config);
        config.gateway.cache = Some(sluice::cache::CacheConfig {
            semantic: false,
            embedding_model_dir: None,
            ..sluice::cache::CacheConfig::default()
        });
    }))
    .await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");
    let stream = |model: &str, text: &str| {
        let mut body = ask(model, text);
        body["stream"] = json!(true);
        body
    };

    // A refusal, streamed: the client gets it, the cache does not keep it.
    let refused = client.post_json(&url, &stream("mock-refuse", "a question")).await;
    assert_eq!(refused.status, 200);
    assert!(String::from_utf8_lossy(&refused.body).contains("sorry"), "the stream carried the refusal");
    // A good answer, streamed, is kept (once the judges have passed it).
    let good = client.post_json(&url, &stream("mock-good", "a question")).await;
    assert_eq!(good.status, 200);
    let kept = |model: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            // Probes look up but store nothing of their own.
            let probe = bytes::Bytes::from(ask(model, "a question").to_string());
            for _ in 0..200 {
                let reply =
                    client.call(http::Method::POST, &url, probe.clone(), &[("cache-control", "no-store")]).await;
                if reply.header("x-sluice-cache") == Some("hit") {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            false
        }
    };
    assert!(kept("mock-good").await, "the judged good answer was stored");
    let again = client.post_json(&url, &ask("mock-refuse", "a question")).await;
    assert_eq!(again.header("x-sluice-cache"), Some("miss"), "the refusal was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_without_spaces_is_counted_by_length_by_plugins_and_the_usage_fallback() {
    built();
    let folder = Folder::new();
    // The compressor counts each message's tokens through the host.
    folder.add_example("compressor", "compressor");
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c| {
        with_plugins(&folder)(c);
        // Reports no usage: the gateway counts the tokens it is charged for.
        c.gateway.models[0].upstream_model = "mock-nousage".into();
    }))
    .await;
    let client = Client::new();
    let word = "a".repeat(1 << 20);
    let reply = client.post_json(&gateway.url("/v1/chat/completions"), &ask("priced", &word)).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    // A token per 4 bytes of the run: the prompt (plus OpenAI's message
    // framing, 4 + 3) at $1 and the echoed answer ("echo: " and the run) at
    // $2 per million tokens. Byte-pair encoding would count the run
    // differently (and take minutes).
    let cost: f64 = reply.header("x-sluice-cost-usd").and_then(|v| v.parse().ok()).expect("a cost");
    let expected = ((1 << 18) + 7) as f64 * 1e-6 + ((1 << 18) + 3) as f64 * 2e-6;
    assert!((cost - expected).abs() < 2e-5, "cost {cost}, expected about {expected}");
    let admin = client.get(&gateway.url("/admin/plugins")).await.json();
    let compressor = &admin["plugins"][0];
    let n = |field: &str| compressor[field].as_u64();
    let counts = [n("calls"), n("errors"), n("traps"), n("deadline_overruns"), n("out_of_memory")];
    assert_eq!(counts, [Some(1), Some(0), Some(0), Some(0), Some(0)], "the compressor ran cleanly: {admin}");
}
