//! The monitoring examples (`examples/monitoring/`) against live gateways:
//! every metric the Grafana dashboard or the alerting rules name must be in
//! `/metrics`, and the gauges added for the alerts must carry the real
//! values.
//!
//! The test drives every event those metrics record itself (successes, a
//! 5xx, a fallback past an upstream whose circuit opens, a cache hit, a
//! stream, a rate-limited key, a Redis that is down, a cascade, a
//! compressed prompt, a plugin disabled by its faults, a request to the
//! bundled engine), so it means the same alone as in the whole suite,
//! whose tests share one metrics recorder. The rules' logic is tested by
//! `promtool test rules` (`examples/monitoring/check.sh`), not here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sluice::cache::CacheConfig;
use sluice::config::Config;
use sluice::limits::KeyConfig;
use sluice::models::ModelConfig;
use sluice::plugin::PluginConfig;
use sluice::redis_client::RedisConfig;
use sluice::routing::Arm;
use sluice::upstream::{UpstreamConfig, UpstreamKind};
use sluice_testkit::client::Reply;
use sluice_testkit::{Client, MockUpstream, TestGateway};

use crate::openai::sse_data;
use crate::plugins::support::{Folder, TEST_DEADLINE, built, cache_dir, dist};
use crate::routing::cascade::ROUTER;
use crate::support::{config_for, priced};

const DASHBOARD: &str = include_str!("../../examples/monitoring/grafana/sluice.json");
const ALERTS: &str = include_str!("../../examples/monitoring/prometheus/alerts.yml");
const CHAT: &str = "/v1/chat/completions";

/// Names distinct from every other test's, whose gateways share the metrics.
const DOWN: &str = "monitoring-down";
const KEY: &str = "monitoring-team";
const FAULTY: &str = "monitoring-faulty";

#[test]
fn the_dashboard_imports_with_a_prometheus_datasource_variable() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().expect("templating variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable `DS_PROMETHEUS`"
    );
    let source = json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "panel ids are unique: {title}");
        let (x, w) = (panel["gridPos"]["x"].as_u64(), panel["gridPos"]["w"].as_u64());
        assert!(x.zip(w).is_some_and(|(x, w)| x + w <= 24), "{title} fits the 24-column grid");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], source, "{title} queries the chosen Prometheus");
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"], source, "{title}");
            assert!(target["expr"].as_str().is_some_and(|e| e.contains("sluice_")), "{title}: {target}");
            queries += 1;
        }
    }
    assert!(queries >= 50, "{queries} queries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_is_exported() {
    let mut wanted = named_metrics();
    assert!(wanted.len() >= 40, "{} metrics named: {wanted:?}", wanted.len());
    let client = Client::new();

    let mock = MockUpstream::start().await;
    let core = TestGateway::start(config_for(&mock, core_config)).await;
    drive_core(&client, &core).await;
    let staged = staged_gateway(&mock).await;
    drive_stages(&client, &staged.1).await;

    let team = format!("Bearer {KEY}-secret");
    let core_metrics = scrape(&client, &core.url("/metrics"), &[("authorization", &team)]).await;
    assert_eq!(sample(&core_metrics, "sluice_circuit_state", &[("upstream", DOWN)]), Some(2.0), "open");
    assert_eq!(
        sample(&core_metrics, "sluice_circuit_state", &[("upstream", "an")]),
        Some(0.0),
        "closed from the start"
    );
    assert_eq!(sample(&core_metrics, "sluice_plugin_state", &[("plugin", FAULTY)]), Some(1.0), "disabled");
    assert_eq!(sample(&core_metrics, "sluice_plugin_state", &[("plugin", "judge")]), Some(0.0), "enabled");
    assert_eq!(sample(&core_metrics, "sluice_key_budget_usd", &[("key", KEY)]), Some(10.0));
    let spent = sample(&core_metrics, "sluice_key_spend_usd", &[("key", KEY)]).unwrap_or_default();
    assert!(spent > 0.0 && spent < 0.01, "the key's spend this period: {spent}");

    let mut exported = metric_types(&core_metrics);
    if crate::engine::models_present() {
        let engine = crate::engine::gateway();
        let ask = json!({"model": "any", "max_tokens": 4, "temperature": 0,
                         "messages": [{"role": "user", "content": "Name a colour."}]});
        let reply = client.post_json(&engine.url(CHAT), &ask).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let engine_metrics = scrape(&client, &engine.url("/metrics"), &[]).await;
        let upstream = [("upstream", "engine")];
        let capacity = sample(&engine_metrics, "sluice_engine_kv_blocks_capacity", &upstream).unwrap_or_default();
        let free = sample(&engine_metrics, "sluice_engine_kv_blocks_free", &upstream).unwrap_or(-1.0);
        assert!(capacity > 0.0 && (0.0..=capacity).contains(&free), "KV blocks: {free} free of {capacity}");
        assert!(sample(&engine_metrics, "sluice_engine_steps_total", &upstream).is_some_and(|n| n > 0.0));
        assert!(sample(&engine_metrics, "sluice_engine_waiting_sequences", &upstream).is_some());
        exported.extend(metric_types(&engine_metrics));
    } else {
        wanted.retain(|name, _| !name.starts_with("sluice_engine_"));
    }

    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !exists(name, &exported))
        .map(|(name, used_in)| format!("{name} (in {})", used_in.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect();
    assert!(missing.is_empty(), "named in examples/monitoring but not exported:\n  {}", missing.join("\n  "));
}

/// A `[[models]]` entry with prices and fallbacks.
fn model(name: &str, upstream: &str, upstream_model: &str, fallbacks: &[&str]) -> ModelConfig {
    ModelConfig {
        fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
        ..priced(name, upstream, upstream_model)
    }
}

fn arm() -> Vec<Arm> {
    vec![Arm { name: "control".into(), weight: 1, model: None, route: true }]
}

/// The mock's gateway and: an upstream nothing listens on (its circuit
/// opens after two failures), a model the mock fails, the exact cache, a
/// Redis that is down, one A/B arm, a key with a budget and one with 2 RPM.
fn core_config(c: &mut Config) {
    let gateway = &mut c.gateway;
    gateway.upstreams.push(UpstreamConfig::new(DOWN, UpstreamKind::OpenAi, "http://127.0.0.1:1/v1"));
    gateway.models.push(model("unreliable", DOWN, "m", &["priced"]));
    gateway.models.push(model("broken", "oa", "mock-fail500", &[]));
    for upstream in ["oa", "an", DOWN] {
        gateway.routing.policy_mut(upstream).retry.base = Duration::from_millis(10);
    }
    gateway.routing.policy_mut(DOWN).breaker.failures = 2;
    gateway.routing.arms = arm();
    gateway.cache = Some(CacheConfig { semantic: false, embedding_model_dir: None, ..CacheConfig::default() });
    gateway.redis = Some(RedisConfig::new("redis://127.0.0.1:1"));
    gateway.keys = vec![
        KeyConfig {
            name: KEY.into(),
            key: format!("{KEY}-secret"),
            budget_usd: Some(10.0),
            admin: true,
            ..KeyConfig::default()
        },
        KeyConfig {
            name: "monitoring-tight".into(),
            key: "monitoring-tight-secret".into(),
            rpm: Some(2),
            ..KeyConfig::default()
        },
    ];
}

async fn drive_core(client: &Client, gw: &TestGateway) {
    let team = format!("Bearer {KEY}-secret");
    let post = async |body: Value, key: &str| {
        client.call(Method::POST, &gw.url(CHAT), Bytes::from(body.to_string()), &[("authorization", key)]).await
    };
    let ask = |model: &str, text: &str| json!({"model": model, "messages": [{"role": "user", "content": text}]});

    let first = post(ask("priced", "Name three rivers."), &team).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let again = post(ask("priced", "Name three rivers."), &team).await;
    assert_eq!(again.header("x-sluice-cache"), Some("hit"));

    let stream =
        json!({"model": "priced", "stream": true, "messages": [{"role": "user", "content": "Name a colour."}]});
    let response =
        client.send(Method::POST, &gw.url(CHAT), Bytes::from(stream.to_string()), &[("authorization", &team)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sse_data(response).await.last().map(String::as_str), Some("[DONE]"));

    let fallback = post(ask("unreliable", "hi"), &team).await;
    assert_eq!((fallback.status.as_u16(), fallback.header("x-sluice-model")), (200, Some("priced")));

    let failed = post(ask("broken", "hi"), &team).await;
    assert!(failed.status.is_server_error(), "{}", failed.status);

    let tight = "Bearer monitoring-tight-secret";
    for text in ["one", "two"] {
        let within = post(ask("priced", text), tight).await;
        assert_eq!(within.status, 200, "{}", String::from_utf8_lossy(&within.body));
    }
    assert_eq!(post(ask("priced", "three"), tight).await.status, 429, "over the key's 2 RPM");
}

/// A gateway with every stage: the example router (cascading `small`, a
/// refusal, to `large`), judge and compressor, and a judge that traps and is
/// disabled after its first fault.
async fn staged_gateway(mock: &MockUpstream) -> (Folder, TestGateway) {
    built();
    let folder = Folder::new();
    folder.add_example("judge", "judge");
    folder.add_example("compressor", "compressor");
    folder.put_wasm("router", &dist().join("router.wasm"));
    folder.put_toml("router", ROUTER);
    folder.add_fixture(FAULTY, "max_consecutive_faults = 1\n[config]\nmode = \"trap\"\n");
    // Not a component: a load error of this gateway's own, whatever other
    // tests in the process did.
    folder.put_bytes("broken.wasm", b"not a component");
    let config = config_for(mock, |c: &mut Config| {
        c.gateway.models.push(model("small", "oa", "mock-refuse", &[]));
        c.gateway.models.push(model("large", "oa", "mock-strong", &[]));
        c.gateway.routing.arms = arm();
        let mut plugins = PluginConfig::new(&folder.path);
        plugins.cache_dir = Some(cache_dir());
        plugins.defaults.deadline = TEST_DEADLINE;
        plugins.watch = false;
        c.gateway.plugins = Some(plugins);
    });
    let gateway = TestGateway::start(config).await;
    (folder, gateway)
}

async fn drive_stages(client: &Client, gw: &TestGateway) {
    let ask = json!({"model": "auto", "messages": [{"role": "user", "content": "What is a prime number?"}]});
    let cascaded = client.post_json(&gw.url(CHAT), &ask).await;
    assert_eq!(cascaded.status, 200, "{}", String::from_utf8_lossy(&cascaded.body));
    assert!(cascaded.header("x-sluice-cascade").is_some_and(|c| c.contains(">large")), "{:?}", cascaded.headers);

    let paragraph = "The quarterly report covers revenue, costs and the outlook for next year.";
    let repeated = json!({"model": "auto", "messages": [
        {"role": "user", "content": format!("{paragraph}\n\nSummarise it.")},
        {"role": "assistant", "content": "It is a report."},
        {"role": "user", "content": format!("{paragraph}\n\nName its sections.")},
    ]});
    let compressed = client.post_json(&gw.url(CHAT), &repeated).await;
    assert_eq!(compressed.status, 200, "{}", String::from_utf8_lossy(&compressed.body));
    let saved: u32 = compressed.header("x-sluice-tokens-saved").and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(saved > 0, "the repeated paragraph was dropped: {:?}", compressed.headers);
}

async fn scrape(client: &Client, url: &str, headers: &[(&str, &str)]) -> String {
    let reply: Reply = client.call(Method::GET, url, Bytes::new(), headers).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    String::from_utf8(reply.body.to_vec()).expect("UTF-8 metrics")
}

/// Every `sluice_*` metric the dashboard's queries and variables and the
/// alerts' expressions name, with where.
fn named_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs: Vec<(String, String)> = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            exprs.push((format!("panel `{title}`"), target["expr"].as_str().unwrap_or_default().to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(definition) = variable["definition"].as_str() {
            exprs.push((format!("variable `{}`", variable["name"]), definition.to_owned()));
        }
    }
    exprs.extend(alert_exprs(ALERTS));
    for (place, expr) in exprs {
        for name in metric_names(&expr) {
            named.entry(name).or_default().insert(place.clone());
        }
    }
    named
}

/// The dashboard's panels, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Each alert's name and `expr` in a rules file: written inline or as a
/// block scalar (`expr: |` and the lines indented under it).
fn alert_exprs(rules: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut alert = String::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("alert:") {
            alert = format!("alert `{}`", name.trim());
        }
        let Some(expr) = trimmed.strip_prefix("expr:") else { continue };
        let mut expr = expr.trim().to_owned();
        if expr.starts_with(['|', '>']) {
            let indent = line.len() - line.trim_start().len();
            expr.clear();
            while let Some(next) = lines.next_if(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent) {
                expr.push_str(next.trim());
                expr.push(' ');
            }
        }
        out.push((alert.clone(), expr));
    }
    out
}

/// The `sluice_*` identifiers in a PromQL expression, outside string
/// literals (label values).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut quote = None;
    let mut previous = ' ';
    let mut chars = expr.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match quote {
            Some(q) if c == q && previous != '\\' => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None if expr[at..].starts_with("sluice_") && !(previous.is_alphanumeric() || "_:".contains(previous)) => {
                let end = expr[at..].find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == ':'));
                let name = &expr[at..end.map_or(expr.len(), |e| at + e)];
                names.insert(name.to_owned());
                for _ in 1..name.len() {
                    chars.next();
                }
                previous = 'x';
                continue;
            }
            None => {}
        }
        previous = c;
    }
    names
}

/// Each exported metric's type (`# TYPE name type`).
fn metric_types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Whether `name` is exported: itself, or a histogram's series
/// (`_bucket`, `_sum`, `_count`).
fn exists(name: &str, exported: &BTreeMap<String, String>) -> bool {
    if exported.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| exported.get(base))
            .is_some_and(|kind| kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
    })
}

/// The value of the series of `name` with these labels.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if matches { value.parse().ok() } else { None }
    })
}

#[test]
fn names_are_read_from_promql_outside_label_values() {
    let names = metric_names(
        r#"sum by (le) (rate(sluice_a_bucket{x="sluice_not_a_metric"}[5m])) / on() sluice_b:ratio + xsluice_c"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["sluice_a_bucket", "sluice_b:ratio"]);
    let exprs = alert_exprs(
        "  - alert: A\n    expr: |\n      sum(sluice_x)\n        / 2\n    for: 1m\n  - alert: B\n    expr: sluice_y > 0\n",
    );
    assert_eq!(
        exprs,
        [
            ("alert `A`".to_owned(), "sum(sluice_x) / 2 ".to_owned()),
            ("alert `B`".to_owned(), "sluice_y > 0".to_owned())
        ]
    );
    let exported =
        BTreeMap::from([("sluice_h".to_owned(), "histogram".to_owned()), ("sluice_g".to_owned(), "gauge".to_owned())]);
    assert!(exists("sluice_h_bucket", &exported) && exists("sluice_g", &exported));
    assert!(!exists("sluice_g_bucket", &exported) && !exists("sluice_missing", &exported));
}
