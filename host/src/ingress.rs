//! Ingress: the HTTP routes clients call, request bodies read and checked
//! into typed requests, and every response finished the same way (the
//! `x-sluice-*` headers, request metrics, errors in the client's API shape).
//!
//! The work of a request happens in `crate::proxy`; this module only decides
//! which work and speaks HTTP.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::api::anthropic::MessagesRequest;
use crate::api::chat::ChatRequest;
use crate::body::{Body, full};
use crate::dashboard;
use crate::error::{ApiFlavor, GatewayError};
use crate::gateway::{Gateway, ServerConfig};
use crate::proxy::{self, RequestContext};

/// Answers one request. Never fails: errors become responses here.
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().trim_end_matches('/');
    let api = if path.ends_with("/messages") { ApiFlavor::Anthropic } else { ApiFlavor::OpenAi };
    let mut ctx = RequestContext::new(api, started);
    if is_api_call(path) {
        // API calls count on the live dashboard; its own polls, health
        // checks and scrapes do not.
        ctx.live = Some(gw.live.clone());
    }
    ctx.trace = gw.traces.request(req.method().as_str(), path, req.headers());
    ctx.pinned = req.headers().get("x-sluice-route").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"pinned"));
    if gw.cache.is_some() {
        ctx.cache_controls = crate::cache::CacheControls::from_headers(req.headers());
    }
    if let Err(error) = admit(&gw, &mut ctx, path, req.headers()).await {
        ctx.note_error(&error);
        let mut response = error.into_response(api);
        if dashboard::owns(path) && response.status() == StatusCode::UNAUTHORIZED {
            // A browser asks for the admin key (as the password).
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"sluice\""));
        }
        return ctx.finish(response);
    }
    let result = match (req.method(), path) {
        (&Method::GET, "/health") => Ok(json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))),
        (&Method::GET, "/metrics") => Ok(metrics_response(&gw)),
        (&Method::GET, "/admin/plugins") => {
            let list = gw.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
            let body = serde_json::json!({"dir": gw.config.plugins.as_ref().map(|p| p.dir.display().to_string()), "plugins": list});
            Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
        }
        (&Method::GET, "/admin/cache/stats") => match &gw.cache {
            Some(cache) => Ok(json_response(StatusCode::OK, Bytes::from(cache.stats().await.to_string()))),
            None => Err(GatewayError::CacheDisabled),
        },
        (&Method::DELETE, "/admin/cache") => match &gw.cache {
            Some(cache) => {
                let namespace = query_param(req.uri(), "namespace");
                let deleted = cache.purge(namespace.as_deref()).await;
                let body = serde_json::json!({"purged": true, "namespace": namespace, "redis_keys_deleted": deleted});
                Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
            }
            None => Err(GatewayError::CacheDisabled),
        },
        (&Method::GET, "/admin/routing/stats") => {
            Ok(json_response(StatusCode::OK, Bytes::from(gw.routing.admin_json(&gw.models).to_string())))
        }
        (&Method::GET, path) if dashboard::owns(path) => dashboard::respond(&gw, path, req.uri().query()).await,
        (&Method::GET, "/v1/models" | "/models") => {
            let list = gw.models.list(&gw.upstreams).await;
            Ok(json_response(StatusCode::OK, Bytes::from(list.to_string())))
        }
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => {
            match read_json::<ChatRequest>(req, &gw.config.server).await {
                Ok(chat) => proxy::chat(&gw, &mut ctx, chat).await,
                Err(e) => Err(e),
            }
        }
        (&Method::POST, "/v1/messages" | "/messages") => {
            match read_json::<MessagesRequest>(req, &gw.config.server).await {
                Ok(messages) => match messages.into_chat() {
                    Ok(chat) => proxy::chat(&gw, &mut ctx, chat).await,
                    Err(e) => Err(e.into()),
                },
                Err(e) => Err(e),
            }
        }
        (&Method::POST, "/v1/embeddings" | "/embeddings") => {
            match read_json::<serde_json::Map<String, serde_json::Value>>(req, &gw.config.server).await {
                Ok(body) => proxy::embeddings(&gw, &mut ctx, body).await,
                Err(e) => Err(e),
            }
        }
        (method, path) => Err(GatewayError::RouteNotFound { method: method.to_string(), path: path.to_owned() }),
    };
    if !matches!(result, Err(GatewayError::RouteNotFound { .. })) {
        ctx.trace.routed();
    }
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            ctx.note_error(&error);
            error.into_response(api)
        }
    };
    ctx.finish(response)
}

/// Admits a client request: with `[[keys]]` configured, the caller must
/// present a known key within its limits (401 / 429 otherwise); admin paths
/// need an admin key, metrics a metrics or admin key. Notes the client and
/// the `x-sluice-user` header in the request's context. Health is not an
/// API call and passes.
async fn admit(
    gw: &Gateway,
    ctx: &mut RequestContext,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<(), GatewayError> {
    if path == "/health" {
        return Ok(());
    }
    if path == "/metrics" {
        return gw.keys.admit_metrics(headers);
    }
    if path.starts_with("/admin/") || path == "/admin" || dashboard::owns(path) {
        return gw.keys.admit_admin(headers);
    }
    ctx.user_header = headers.get("x-sluice-user").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ctx.client = gw.keys.admit(headers).await?;
    if ctx.pinned && ctx.client.as_ref().is_some_and(|c| !c.pin) {
        return Err(GatewayError::Forbidden(
            "this key may not pin a route (`x-sluice-route: pinned`); that needs a key with `pin = true`".to_owned(),
        ));
    }
    Ok(())
}

/// The OpenAI and Anthropic API calls (not health, metrics, admin, the
/// dashboard or the model list).
fn is_api_call(path: &str) -> bool {
    path.ends_with("/chat/completions") || path.ends_with("/messages") || path.ends_with("/embeddings")
}

/// A query parameter's value, percent-decoded.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn metrics_response(gw: &Gateway) -> Response<Body> {
    let text = gw.render_metrics();
    let mut response = Response::new(full(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Reads a JSON body of at most `max_body_bytes` into `T`, within
/// `body_read_timeout`. Oversized bodies are 413, late ones 408; malformed
/// JSON, missing fields and wrong types are 400 naming the offending field in
/// `param`.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, server: &ServerConfig) -> Result<T, GatewayError> {
    let limit = server.max_body_bytes;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(server.body_read_timeout, Limited::new(req.into_body(), limit).collect());
    let Ok(read) = read.await else {
        return Err(GatewayError::RequestTimeout { after: server.body_read_timeout });
    };
    let bytes = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        Err(e) => {
            return Err(GatewayError::invalid(format!("Could not read the request body: {e}"), None));
        }
    };
    parse_json(&bytes)
}

/// Parses a request body, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                GatewayError::invalid(format!("The request body is not valid JSON: {inner}"), None)
            }
            _ if path == "." => GatewayError::invalid(format!("Invalid request body: {inner}"), None),
            _ => GatewayError::invalid(format!("Invalid value for `{path}`: {inner}"), Some(&path)),
        }
    })?;
    de.end().map_err(|e| GatewayError::invalid(format!("The request body is not valid JSON: {e}"), None))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_the_field() {
        let e =
            parse_json::<ChatRequest>(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#).expect_err("bad");
        let GatewayError::InvalidRequest { param, .. } = e else { panic!("400 expected") };
        assert_eq!(param.as_deref(), Some("messages[0].content"));
        let e = parse_json::<ChatRequest>(br#"{"messages":[]}"#).expect_err("missing model");
        assert!(e.to_string().contains("model"), "{e}");
        let e = parse_json::<ChatRequest>(b"{not json").expect_err("syntax");
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }
}
