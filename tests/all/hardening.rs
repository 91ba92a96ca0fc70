//! Hostile and absurd input that must neither panic the gateway nor leak
//! its secrets nor escape a budget: upstream numbers too large for their
//! types, an upstream refusing the gateway's own key, `/metrics` behind
//! keys, secrets in `Debug` and `--help`, budgets under concurrency and
//! clients that leave mid-stream.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice::limits::KeyConfig;
use sluice_testkit::Client;

use crate::support::{Setup, priced};

fn key(name: &str, secret: &str) -> KeyConfig {
    KeyConfig { name: name.into(), key: secret.into(), ..KeyConfig::default() }
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn body(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

#[tokio::test]
async fn a_retry_after_of_1e20_saturates_instead_of_panicking() {
    let s = Setup::new().await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    // Passed through to the mock: one 429 with `Retry-After: 1e20`.
    let reply = client.post_json(&url, &ask("mock-throttled1-retryafterhuge", "hi")).await;
    assert_eq!(reply.status, 429, "{}", String::from_utf8_lossy(&reply.body));
    let after: u64 = reply.header("retry-after").and_then(|v| v.parse().ok()).expect("a Retry-After in seconds");
    assert!((1..=86_400).contains(&after), "told to wait {after} s");
    assert_eq!(s.mock.calls("mock-throttled1-retryafterhuge"), 1, "no retry into an endless wait");
    // The gateway is still there.
    assert_eq!(client.post_json(&url, &ask("priced", "hi")).await.status, 200);
}

#[tokio::test]
async fn huge_usage_numbers_saturate_in_limits_and_cost() {
    let s = Setup::with(|c| {
        let mut big = key("big", "sk-big-usage-key");
        big.tpm = Some(1_000);
        c.gateway.keys = vec![big];
        c.gateway.routing.policy_mut("oa").tpm = Some(1_000_000);
        c.gateway.models.push(priced("huge", "oa", "mock-hugeusage"));
        c.gateway.models.push(priced("huge-claude", "an", "claude-hugeusage"));
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let auth = [("authorization", "Bearer sk-big-usage-key")];
    for model in ["huge", "huge-claude"] {
        let reply = client.call(Method::POST, &url, body(&ask(model, "hi")), &auth).await;
        if reply.status == 429 {
            // The first answer's debt already reached the key's bucket.
            continue;
        }
        assert_eq!(reply.status, 200, "{model}: {}", String::from_utf8_lossy(&reply.body));
        let cost: f64 = reply.header("x-sluice-cost-usd").and_then(|c| c.parse().ok()).expect("a cost");
        assert!(cost.is_finite() && cost > 1e12, "{model}: cost {cost}");
    }
    let mut stream = ask("huge", "hi");
    stream["stream"] = json!(true);
    let reply = client.call(Method::POST, &url, body(&stream), &auth).await;
    assert!(reply.status == 200 || reply.status == 429, "{}", reply.status);

    // The key is now a year in debt: refused, with a sane Retry-After.
    let mut last = None;
    for _ in 0..100 {
        let reply = client.call(Method::POST, &url, body(&ask("priced", "hi")), &auth).await;
        if reply.status == 429 {
            last = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = last.expect("the key's token budget is spent");
    let after: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=86_400).contains(&after), "{after}");
    assert_eq!(client.get(&s.gateway.url("/health")).await.status, 200);
}

#[tokio::test]
async fn an_upstream_refusing_the_gateway_s_key_is_a_502_that_does_not_echo_it() {
    let s = Setup::with(|c| {
        c.gateway.models.push(priced("locked-out", "oa", "mock-fail401"));
        c.gateway.models.push(priced("forbidden-claude", "an", "claude-fail403"));
    })
    .await;
    let client = Client::new();
    for (path, request) in [
        ("/v1/chat/completions", ask("locked-out", "hi")),
        (
            "/v1/chat/completions",
            json!({"model": "locked-out", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/chat/completions", ask("forbidden-claude", "hi")),
        (
            "/v1/messages",
            json!({"model": "locked-out", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "forbidden-claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let reply = client.post_json(&s.gateway.url(path), &request).await;
        assert_eq!(reply.status, 502, "{path} {request}");
        let text = String::from_utf8_lossy(&reply.body);
        assert!(!text.contains("mock failure"), "the upstream's body is not echoed: {text}");
        let named = if request["model"] == "locked-out" { "`oa`" } else { "`an`" };
        assert!(text.contains(named), "the upstream is named: {text}");
        assert_ne!(reply.json()["error"]["type"], "authentication_error", "not the client's key: {text}");
    }
}

#[tokio::test]
async fn metrics_need_a_metrics_or_admin_key_once_keys_are_configured() {
    let s = Setup::with(|c| {
        let mut scraper = key("scraper", "sk-prometheus-scraper");
        scraper.metrics = true;
        let mut ops = key("ops", "sk-ops-admin-secret");
        ops.admin = true;
        c.gateway.keys = vec![scraper, ops, key("team-a", "sk-team-a-secret")];
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/metrics");
    let get = |auth: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> = if auth.is_empty() { vec![] } else { vec![("authorization", auth)] };
            client.call(Method::GET, &url, Bytes::new(), &headers).await
        }
    };
    let none = get("").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["type"], "authentication_error");
    assert_eq!(get("Bearer sk-not-a-key-at-all").await.status, 401);
    let other = get("Bearer sk-team-a-secret").await;
    assert_eq!(other.status, 403, "a client key without the flag");
    assert_eq!(other.json()["error"]["type"], "permission_error");
    let scraped = get("Bearer sk-prometheus-scraper").await;
    assert_eq!(scraped.status, 200);
    assert!(String::from_utf8_lossy(&scraped.body).contains("sluice_"), "the metrics text");
    assert_eq!(get("Bearer sk-ops-admin-secret").await.status, 200);
    // A metrics key is no admin key.
    let admin = client
        .call(
            Method::GET,
            &s.gateway.url("/admin/routing/stats"),
            Bytes::new(),
            &[("authorization", "Bearer sk-prometheus-scraper")],
        )
        .await;
    assert_eq!(admin.status, 403);
}

#[test]
fn secrets_do_not_show_in_debug_output_or_help() {
    let text = r#"
[redis]
url = "redis://cacheuser:redis-hunter2@cache.internal:6379/0"

[upstreams.oa]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-upstream-hunter2"

[[keys]]
name = "team"
key = "sk-client-hunter2"
"#;
    let config = sluice::config::Config::parse(text, "test", &|_| None).expect("valid config");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redis://cacheuser:***@cache.internal:6379/0"), "{debug}");

    use clap::{CommandFactory, Parser};
    let cli = sluice::cli::Cli::try_parse_from([
        "sluice",
        "serve",
        "--redis",
        "redis://u:redis-hunter2@h:6379",
        "--upstream-key",
        "sk-upstream-hunter2",
    ])
    .expect("flags parse");
    let debug = format!("{cli:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let command = sluice::cli::Cli::command();
    let serve = command.find_subcommand("serve").expect("serve");
    for flag in ["redis", "upstream_key"] {
        let arg = serve.get_arguments().find(|a| a.get_id() == flag).expect("flag");
        assert!(arg.is_hide_env_values_set(), "--help must not print the value of {flag}'s variable");
    }
}

#[tokio::test]
async fn a_key_with_a_budget_may_not_use_unpriced_models() {
    let s = Setup::with(|c| {
        let mut capped = key("capped", "sk-capped-budget-key");
        capped.budget_usd = Some(10.0);
        c.gateway.keys = vec![capped, key("open", "sk-open-unlimited-key")];
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let capped = [("authorization", "Bearer sk-capped-budget-key")];
    // `mock-free` passes through: no price.
    let reply = client.call(Method::POST, &url, body(&ask("mock-free", "hi")), &capped).await;
    assert_eq!(reply.status, 403, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["error"]["type"], "permission_error");
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("mock-free") && m.contains("price")));
    let anthropic = json!({"model": "mock-free", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let reply = client
        .call(Method::POST, &s.gateway.url("/v1/messages"), body(&anthropic), &[("x-api-key", "sk-capped-budget-key")])
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["type"], "error");
    let embed = json!({"model": "mock-free", "input": "hi"});
    let reply = client.call(Method::POST, &s.gateway.url("/v1/embeddings"), body(&embed), &capped).await;
    assert_eq!(reply.status, 403);
    assert_eq!(s.mock.requests().len(), 0, "refused before any upstream call");
    // Priced models are fine, and so are unpriced ones for a key without a budget.
    assert_eq!(client.call(Method::POST, &url, body(&ask("priced", "hi")), &capped).await.status, 200);
    let open = [("authorization", "Bearer sk-open-unlimited-key")];
    assert_eq!(client.call(Method::POST, &url, body(&ask("mock-free", "hi")), &open).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_overspend_a_budget() {
    let budget = 0.000_05;
    let s = Setup::with(|c| {
        let mut tiny = key("tiny", "sk-tiny-budget-key");
        tiny.budget_usd = Some(budget);
        c.gateway.keys = vec![tiny];
        // Slow answers: every request is admitted before any is charged.
        c.gateway.models.push(priced("slow", "oa", "mock-slow500"));
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let mut request = ask("slow", "a question long enough to cost something");
    request["max_tokens"] = json!(16);
    let replies =
        futures_util::future::join_all(
            (0..12).map(|_| {
                let (client, url, request) = (client.clone(), url.clone(), body(&request));
                async move {
                    client.call(Method::POST, &url, request, &[("authorization", "Bearer sk-tiny-budget-key")]).await
                }
            }),
        )
        .await;
    let mut spent = 0.0;
    let mut most = 0.0f64;
    for reply in &replies {
        match reply.status.as_u16() {
            200 => {
                let cost: f64 = reply.header("x-sluice-cost-usd").and_then(|c| c.parse().ok()).expect("cost");
                spent += cost;
                most = most.max(cost);
            }
            429 => assert_eq!(reply.json()["error"]["code"], "budget_exceeded"),
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    assert!(most > 0.0, "at least one request was served");
    assert!(spent <= budget + most, "spent {spent} of a {budget} budget (one request costs up to {most})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_pays_for_what_it_was_sent() {
    let s = Setup::with(|c| {
        let mut leaver = key("leaver", "sk-leaves-mid-stream");
        leaver.budget_usd = Some(0.000_01);
        leaver.metrics = true;
        c.gateway.keys = vec![leaver];
        c.gateway.models.push(priced("dripper", "oa", "mock-drip50"));
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let auth = [("authorization", "Bearer sk-leaves-mid-stream")];
    let words = vec!["word"; 60].join(" ");
    let request = json!({"model": "dripper", "stream": true, "messages": [{"role": "user", "content": words}]});
    let response = client.send(Method::POST, &url, body(&request), &auth).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.frame()).await.expect("a first chunk in time");
    assert!(first.is_some(), "the stream started");
    drop(stream);

    // The gateway notices at its next write and records the request (499).
    let metrics = s.gateway.url("/metrics");
    let mut recorded = false;
    for _ in 0..500 {
        let text = client.call(Method::GET, &metrics, Bytes::new(), &auth).await;
        let text = String::from_utf8_lossy(&text.body).into_owned();
        if text.lines().any(|l| l.contains("model=\"dripper\"") && l.contains("status=\"499\"")) {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorded, "the dropped stream was recorded");
    // Its prompt alone costs more than the budget: the key is spent.
    let reply = client.call(Method::POST, &url, body(&ask("priced", "hi")), &auth).await;
    assert_eq!(reply.status, 429, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["error"]["code"], "budget_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_cannot_overspend_one_budget() {
    sluice_testkit::require_redis!();
    let redis = sluice_testkit::RedisServer::start().await;
    let mock = sluice_testkit::MockUpstream::start().await;
    // Below one request's estimate (its prompt, and 16 tokens of output).
    let budget = 0.000_04;
    let replica = || {
        let mut shared = sluice::redis_client::RedisConfig::new(&redis.url());
        // Generous for a busy test machine; the first call also connects.
        shared.timeout = Duration::from_millis(500);
        shared.key_prefix = "budget-test".to_owned();
        crate::support::config_for(&mock, move |c| {
            let mut tiny = key("tiny", "sk-tiny-budget-key");
            tiny.budget_usd = Some(budget);
            c.gateway.keys = vec![tiny];
            c.gateway.models.push(priced("slow", "oa", "mock-slow500"));
            c.gateway.redis = Some(shared);
        })
    };
    let a = sluice_testkit::TestGateway::start(replica()).await;
    let b = sluice_testkit::TestGateway::start(replica()).await;
    let client = Client::new();
    let mut request = ask("slow", "a question long enough to cost something");
    request["max_tokens"] = json!(16);
    let replies =
        futures_util::future::join_all(
            (0..12).map(|i| {
                let url = if i % 2 == 0 { a.url("/v1/chat/completions") } else { b.url("/v1/chat/completions") };
                let (client, request) = (client.clone(), body(&request));
                async move {
                    client.call(Method::POST, &url, request, &[("authorization", "Bearer sk-tiny-budget-key")]).await
                }
            }),
        )
        .await;
    let costs: Vec<f64> = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.header("x-sluice-cost-usd").and_then(|c| c.parse().ok()).expect("cost"))
        .collect();
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 429));
    let most = costs.iter().copied().fold(0.0, f64::max);
    let spent: f64 = costs.iter().sum();
    assert!(most > 0.0 && spent <= budget + most, "spent {spent} of {budget} across two replicas ({costs:?})");
    assert_eq!(costs.len(), 1, "one reservation in Redis fills the budget for both replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_model_names_do_not_grow_metrics_without_bound() {
    use sluice::models::{MAX_PASSTHROUGH_LABELS, OTHER_LABEL};
    let s = Setup::new().await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let names: Vec<String> = (0..MAX_PASSTHROUGH_LABELS + 20).map(|i| format!("mock-cardinality-{i}")).collect();
    for chunk in names.chunks(20) {
        let replies = futures_util::future::join_all(chunk.iter().map(|name| {
            let (client, url, request) = (client.clone(), url.clone(), ask(name, "hi"));
            async move { client.post_json(&url, &request).await }
        }))
        .await;
        assert!(replies.iter().all(|r| r.status == 200));
    }
    let long = format!("mock-{}", "x".repeat(4096));
    assert_eq!(client.post_json(&url, &ask(&long, "hi")).await.status, 200);
    let metrics = String::from_utf8_lossy(&client.get(&s.gateway.url("/metrics")).await.body).into_owned();
    let labelled: std::collections::HashSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_requests_total{"))
        .filter_map(|l| l.split("model=\"mock-cardinality-").nth(1)?.split('"').next())
        .collect();
    assert_eq!(labelled.len(), MAX_PASSTHROUGH_LABELS, "one series per name up to the bound");
    assert!(metrics.contains(&format!("model=\"{OTHER_LABEL}\"")), "the rest share one label");
    assert!(!metrics.contains(&"x".repeat(200)), "a long name gets no label of its own");
    let stats = client.get(&s.gateway.url("/admin/routing/stats")).await;
    assert!(!String::from_utf8_lossy(&stats.body).contains("mock-cardinality-119"), "nor statistics");
}
