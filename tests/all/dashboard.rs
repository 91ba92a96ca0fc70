//! The live dashboard at `/ui`: its page and assets come from the binary,
//! `/ui/live` reports per-second figures that add up to the traffic served
//! (and not the dashboard's own polls), plugin reloads land on its timeline,
//! and once keys are configured it needs an admin key, which a browser may
//! send as a Basic password.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::limits::KeyConfig;
use sluice::models::ModelConfig;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::{Client, MockUpstream, TestGateway};

use crate::plugins::support::{Folder, built};
use crate::support::{Setup, config_for};

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Polls `/ui/live` until `done` holds of the figures summed over every
/// second reported (up to 30 s); the last body.
async fn live_until(client: &Client, gateway: &TestGateway, done: impl Fn(&Value, &Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = client.get(&gateway.url("/ui/live")).await.json();
        let totals = totals(&body);
        if done(&totals, &body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each counter of the reported seconds, summed.
fn totals(live: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for second in live["series"].as_array().into_iter().flatten() {
        for (k, v) in second.as_object().into_iter().flatten() {
            if let (Some(n), true) = (v.as_f64(), k != "t") {
                let sum = out.get(k).and_then(Value::as_f64).unwrap_or(0.0) + n;
                out.insert(k.clone(), json!(sum));
            }
        }
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let s = Setup::new().await;
    let client = Client::new();
    let page = client.get(&s.gateway.url("/ui")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("/ui/uplot.min.js") && html.contains("/ui/app.js"), "{html}");
    for (path, needle) in [
        ("/ui/uplot.min.js", "uPlot"),
        ("/ui/uplot.min.css", ".uplot"),
        ("/ui/app.js", "/ui/live"),
        ("/ui/uPlot-LICENSE", "MIT License"),
    ] {
        let asset = client.get(&s.gateway.url(path)).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(String::from_utf8_lossy(&asset.body).contains(needle), "{path}");
    }
    assert_eq!(client.get(&s.gateway.url("/ui/nothing-here")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_figures_add_up_to_the_traffic_and_show_plugin_reloads() {
    built();
    let folder = Folder::new();
    folder.add_example("compressor", "compressor");
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c: &mut Config| {
        c.gateway.plugins = Some(folder.config(true));
        c.gateway.cache = Some(sluice::cache::CacheConfig { semantic: false, ..Default::default() });
    }))
    .await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");
    // Six answers (the second of each pair from the cache) and one 5xx.
    for i in 0..3 {
        let reply = client.post_json(&url, &ask("priced", &format!("question {i}"))).await;
        assert_eq!(reply.status, 200);
        let again = client.post_json(&url, &ask("priced", &format!("question {i}"))).await;
        assert_eq!(again.header("x-sluice-cache"), Some("hit"));
    }
    assert_eq!(client.post_json(&url, &ask("mock-fail503", "boom")).await.status, 502);
    // Health checks, scrapes and the dashboard's own polls do not count.
    client.get(&gateway.url("/health")).await;

    let live = live_until(&client, &gateway, |t, _| t["requests"].as_f64() >= Some(7.0)).await;
    let t = totals(&live);
    assert_eq!(t["requests"], 7.0, "{live}");
    // Misses: the three first questions and the failed one.
    assert_eq!(
        (t["server_errors"].as_f64(), t["cache_hits"].as_f64(), t["cache_misses"].as_f64()),
        (Some(1.0), Some(3.0), Some(4.0)),
        "{t}"
    );
    assert!(t["tokens_in"].as_f64() > Some(0.0) && t["cost_usd"].as_f64() > Some(0.0), "{t}");
    let with_latency: Vec<&Value> =
        live["series"].as_array().into_iter().flatten().filter(|s| !s["latency_ms"].is_null()).collect();
    assert!(with_latency.iter().all(|s| s["latency_ms"].as_array().is_some_and(|p| p.len() == 3)), "{live}");
    // The same figures as the admin endpoints.
    let cache = client.get(&gateway.url("/admin/cache/stats")).await.json();
    assert_eq!(live["cache"]["requests"]["hits"], cache["requests"]["hits"]);
    let plugins = client.get(&gateway.url("/admin/plugins")).await.json();
    assert_eq!(live["plugins"][0]["calls"], plugins["plugins"][0]["calls"]);
    assert!(live["routing"]["models"]["priced"]["requests"].as_u64() >= Some(3), "{live}");

    // A new version of the compressor: a reload on the timeline.
    folder.add_example("router", "compressor");
    let live = live_until(&client, &gateway, |_, body| {
        body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == "plugin-reloaded" && e["subject"] == "compressor")
    })
    .await;
    assert!(
        live["events"].as_array().into_iter().flatten().any(|e| e["kind"] == "plugin-reloaded"),
        "no reload event: {}",
        live["events"]
    );
    // Only what came after `since`.
    let now = live["now"].as_u64().expect("now");
    let later = client.get(&gateway.url(&format!("/ui/live?since={now}"))).await.json();
    assert!(later["series"].as_array().is_some_and(|s| s.iter().all(|p| p["t"].as_u64() > Some(now))), "{later}");
    assert!(totals(&later)["requests"].as_f64().unwrap_or(0.0) == 0.0, "polls are not requests: {later}");
}

#[tokio::test]
async fn the_dashboard_needs_an_admin_key_which_a_browser_sends_as_a_basic_password() {
    let admin = KeyConfig { name: "ops".into(), key: "sk-ops".into(), admin: true, ..KeyConfig::default() };
    let user = KeyConfig { name: "app".into(), key: "sk-app".into(), ..KeyConfig::default() };
    let s = Setup::with(|c| c.gateway.keys = vec![admin, user]).await;
    let client = Client::new();
    let get = |path: &str, auth: Option<String>| {
        let url = s.gateway.url(path);
        let client = &client;
        async move {
            let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
            client.call(http::Method::GET, &url, bytes::Bytes::new(), &headers).await
        }
    };
    let basic = |password: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("anyone:{password}")))
    };
    for path in ["/ui", "/ui/live", "/ui/app.js"] {
        let anonymous = get(path, None).await;
        assert_eq!(anonymous.status, 401, "{path}");
        assert_eq!(anonymous.header("www-authenticate"), Some("Basic realm=\"sluice\""), "{path}");
        assert_eq!(get(path, Some(basic("sk-app"))).await.status, 403, "{path}: not an admin key");
        assert_eq!(get(path, Some(basic("wrong"))).await.status, 401, "{path}");
        assert_eq!(get(path, Some(basic("sk-ops"))).await.status, 200, "{path}");
        assert_eq!(get(path, Some("Bearer sk-ops".into())).await.status, 200, "{path}");
    }
}

/// Headless Chromium, if installed (`SLUICE_REQUIRE_BROWSER` makes it
/// required).
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_BROWSER").is_none(),
            "chromium missing: scripts/setup.sh --test installs it"
        );
        eprintln!("skipping: no chromium");
    }
    found
}

/// Runs headless Chromium on `url` for a few seconds of page time; the DOM
/// it ended with.
async fn browse(browser: &std::path::Path, url: &str, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--window-size=1400,1300", "--virtual-time-budget=6000", "--run-all-compositor-stages-before-draw"]);
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.arg(url).kill_on_drop(true).output())
        .await
        .expect("chromium finished")
        .expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-value` of the element with `data-figure="name"` in a DOM dump.
fn figure(dom: &str, name: &str) -> Option<f64> {
    let at = dom.find(&format!("data-figure=\"{name}\""))?;
    let rest = &dom[at..];
    let value = rest.split("data-value=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_draws_the_live_figures_the_admin_endpoints_report() {
    let Some(browser) = chromium() else { return };
    built();
    let engine = crate::engine::models_present();
    let folder = Folder::new();
    for stage in ["compressor", "cache-policy", "router", "judge"] {
        folder.add_example(stage, stage);
    }
    let mock = MockUpstream::start().await;
    let gateway = TestGateway::start(config_for(&mock, |c: &mut Config| {
        c.gateway.plugins = Some(folder.config(true));
        c.gateway.cache = Some(sluice::cache::CacheConfig { semantic: false, ..Default::default() });
        if engine {
            // The bundled engine with the real model, as `local`.
            let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            let mut upstream = UpstreamConfig::new("engine", UpstreamKind::Engine, "");
            upstream.engine.model_path = root.join(&upstream.engine.model_path);
            upstream.engine.embedding_model_dir = None;
            upstream.engine.kv_blocks = 256;
            c.gateway.upstreams.push(upstream);
            c.gateway.models.push(ModelConfig {
                name: "local".into(),
                upstream: "engine".into(),
                upstream_model: "SmolLM2-135M-Instruct".into(),
                ..ModelConfig::default()
            });
        }
    }))
    .await;
    let client = Client::new();
    let url = gateway.url("/v1/chat/completions");
    // A new version of the router's manifest: a reload on the timeline.
    let manifest = std::fs::read_to_string(folder.path.join("router.toml")).unwrap_or_default();
    folder.put_toml("router", &format!("{manifest}\nmax_concurrency = 64\n"));
    live_until(&client, &gateway, |_, body| {
        body["events"].as_array().into_iter().flatten().any(|e| e["kind"] == "plugin-reloaded")
    })
    .await;
    for i in 0..10 {
        let reply = client.post_json(&url, &ask("claude", &format!("What is {i} plus {i}?"))).await;
        assert_eq!(reply.status, 200);
    }
    let local = if engine { 3 } else { 0 };
    for i in 0..local {
        let body = json!({"model": "local", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": format!("Count to {i}.")}]});
        // Pinned: the example router would send it to a cheaper model.
        let pinned = [("x-sluice-route", "pinned")];
        let reply = client.call(http::Method::POST, &url, bytes::Bytes::from(body.to_string()), &pinned).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("x-sluice-upstream"), Some("engine"));
    }
    let total = f64::from(10 + local);
    live_until(&client, &gateway, |t, _| t["requests"].as_f64() >= Some(total)).await;

    let dom = browse(&browser, &gateway.url("/ui"), None).await;
    assert!(dom.contains("data-updated"), "the page never got its data: {dom}");
    assert_eq!(figure(&dom, "requests_total"), Some(total), "requests drawn");
    assert!(figure(&dom, "p50_ms").is_some_and(|v| v > 0.0), "latency drawn");
    assert!(figure(&dom, "tokens_in").is_some_and(|v| v > 0.0), "tokens drawn");
    // The example router sends `claude` ($3/$15) questions to `priced` ($1/$2).
    assert!(figure(&dom, "routing_saved").is_some_and(|v| v > 0.0), "what routing saved");
    assert!(figure(&dom, "cost_per_request").is_some_and(|v| v > 0.0), "cost per request");
    let plugins = client.get(&gateway.url("/admin/plugins")).await.json();
    for p in plugins["plugins"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().expect("name");
        let calls = p["calls"].as_f64();
        assert!(calls > Some(0.0), "{p}");
        assert_eq!(figure(&dom, &format!("plugin:{name}:calls")), calls, "{name}'s calls as /admin/plugins says");
    }
    let routing = client.get(&gateway.url("/admin/routing/stats")).await.json();
    let model_requests = routing["models"]["priced"]["requests"].as_f64();
    assert_eq!(figure(&dom, "model:priced:requests"), model_requests, "as /admin/routing/stats says");
    assert!(dom.contains(r#"data-event="plugin-reloaded" data-subject="router""#), "reload on the timeline");
    assert!(dom.matches(r#"data-figure="chart""#).count() >= 6, "the charts");
    assert!(dom.contains("<canvas"), "uPlot drew");
    if engine {
        // The engine's tiles, and its decode tokens on the engine chart.
        assert!(figure(&dom, "engine_running").is_some() && figure(&dom, "engine_waiting").is_some(), "engine tiles");
        assert!(figure(&dom, "engine_prefix_hit_rate").is_some_and(|r| (0.0..=1.0).contains(&r)), "prefix hit rate");
        let sums = dom.split(r#"id="chart-engine""#).nth(1).and_then(|r| r.split("data-sums=\"").nth(1));
        let sums: Vec<f64> = sums.and_then(|s| serde_json::from_str(s.split('"').next()?).ok()).unwrap_or_default();
        assert!(sums.get(3).is_some_and(|&tokens| tokens > 0.0), "decode tokens drawn: {sums:?}");
        assert_eq!(figure(&dom, "model:local:requests"), Some(f64::from(local)), "the engine's model");
    }

    let shot = std::env::temp_dir().join(format!("sluice-dashboard-{}.png", std::process::id()));
    browse(&browser, &gateway.url("/ui"), Some(&shot)).await;
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    if let Ok(dir) = std::env::var("SLUICE_SCREENSHOT_DIR") {
        std::fs::copy(&shot, std::path::Path::new(&dir).join("dashboard.png")).expect("keep the screenshot");
    }
    let _ = std::fs::remove_file(shot);
}
