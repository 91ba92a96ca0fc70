//! The live dashboard at `/ui`: one page, its script and the vendored uPlot
//! charting library (MIT, `assets/uPlot-LICENSE`) embedded in the binary,
//! polling `/ui/live` once a second. That JSON is the history the
//! [`sampler`] keeps in [`crate::live`] (per-second requests, errors,
//! latency and time-to-first-token percentiles, tokens, cost, what the cache,
//! compression, cascades and fallbacks saved or did, the engine's load), the
//! timeline of plugin events, and the current state of models, A/B arms,
//! upstreams, the cache and the plugins from their own statistics. Nothing
//! of it costs the request path more than `crate::live`'s atomic additions.
//! Behind an admin key once keys are configured (ingress admits it; a
//! browser can send the key as a Basic password).

mod sampler;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::{Body, full};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::upstream::unix_now;

pub use sampler::spawn as spawn_sampler;

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
const UPLOT_JS: &str = include_str!("assets/uplot.min.js");
const UPLOT_CSS: &str = include_str!("assets/uplot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/uPlot-LICENSE");

/// Whether `path` is the dashboard's.
pub fn owns(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Answers a `GET` of one of the dashboard's paths.
pub async fn respond(gw: &Gateway, path: &str, query: Option<&str>) -> Result<Response<Body>, GatewayError> {
    let (content_type, body) = match path {
        "/ui" | "/ui/index.html" => ("text/html; charset=utf-8", Bytes::from_static(INDEX.as_bytes())),
        "/ui/app.js" => ("text/javascript; charset=utf-8", Bytes::from_static(APP.as_bytes())),
        "/ui/uplot.min.js" => ("text/javascript; charset=utf-8", Bytes::from_static(UPLOT_JS.as_bytes())),
        "/ui/uplot.min.css" => ("text/css; charset=utf-8", Bytes::from_static(UPLOT_CSS.as_bytes())),
        "/ui/uPlot-LICENSE" => ("text/plain; charset=utf-8", Bytes::from_static(UPLOT_LICENSE.as_bytes())),
        "/ui/live" => ("application/json", Bytes::from(live(gw, since(query)).await.to_string())),
        _ => return Err(GatewayError::RouteNotFound { method: "GET".to_owned(), path: path.to_owned() }),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `since=T` of `/ui/live`: only seconds and events after unix time T.
fn since(query: Option<&str>) -> u64 {
    query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "since"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The dashboard's data: history since `since`, events, and the current
/// state of each component.
async fn live(gw: &Gateway, since: u64) -> serde_json::Value {
    let (series, events) = gw.live.since(since);
    let cache = match &gw.cache {
        Some(cache) => cache.stats().await,
        None => serde_json::Value::Null,
    };
    let plugins = gw.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    let engine = gw.upstreams.iter().find_map(|u| u.engine()).map(|e| {
        let s = e.stats();
        json!({"running": s.running, "waiting": s.waiting, "kv_blocks_free": s.free_blocks,
            "kv_blocks_total": s.total_blocks, "prefix_cache_hit_tokens": s.prefix_cache_hit_tokens,
            "preemptions": s.preemptions, "generated_tokens": s.generated_tokens})
    });
    let in_flight: serde_json::Map<String, serde_json::Value> =
        gw.upstreams.iter().map(|u| (u.name().to_owned(), json!(u.in_flight()))).collect();
    json!({
        "now": unix_now(),
        "series": series,
        "events": events,
        "routing": gw.routing.admin_json(&gw.models),
        "in_flight": in_flight,
        "cache": cache,
        "plugins": plugins,
        "engine": engine,
    })
}
