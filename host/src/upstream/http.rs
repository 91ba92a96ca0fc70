//! The HTTP client an upstream talks through: hyper's pooling client over
//! rustls (system and webpki roots, plus an optional extra CA), TCP_NODELAY,
//! HTTP/1.1 and HTTP/2 by ALPN; the one function that sends a request and
//! classifies what can go wrong; and the reading of an SSE body.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;

use super::config::UpstreamConfig;
use crate::error::{ApiFlavor, GatewayError};

/// Largest complete response accepted from an upstream.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The largest error body kept from an upstream.
const MAX_ERROR_BODY: usize = 64 * 1024;

fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

/// A client for one upstream, with its own pool and connect timeout.
pub fn client(cfg: &UpstreamConfig) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));

    let mut roots = system_roots().clone();
    if let Some(path) = &cfg.ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_cert {}: {e}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("unusable certificate in {}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https))
}

/// A credential header's value (`Authorization`, `x-api-key`), marked
/// sensitive so HTTP/2's HPACK never indexes it and debug output hides it.
/// The error does not repeat the value.
pub fn credential(cfg: &UpstreamConfig, value: &str) -> Result<http::HeaderValue, GatewayError> {
    let mut v = http::HeaderValue::from_str(value).map_err(|_| {
        GatewayError::Internal(format!("the API key of upstream `{}` is not a valid header value", cfg.name))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends `req` and waits for the response headers within `first_byte`.
/// A non-2xx status becomes [`GatewayError::UpstreamStatus`] carrying the body.
pub async fn send(
    client: &HttpClient,
    upstream: &str,
    api: ApiFlavor,
    req: Request<Full<Bytes>>,
    first_byte: Duration,
) -> Result<Response<Incoming>, GatewayError> {
    let response = match tokio::time::timeout(first_byte, client.request(req)).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                upstream: upstream.to_owned(),
                phase: "response headers",
                after: first_byte,
            });
        }
        Ok(Err(e)) => return Err(classify(upstream, &e)),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after =
        response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = read_body(upstream, response.into_body(), MAX_ERROR_BODY, first_byte).await.unwrap_or_default();
    Err(GatewayError::UpstreamStatus { upstream: upstream.to_owned(), upstream_api: api, status, body, retry_after })
}

/// Reads a whole body of at most `limit` bytes within `within`.
pub async fn read_body(upstream: &str, body: Incoming, limit: usize, within: Duration) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(within, Limited::new(body, limit).collect()).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            upstream: upstream.to_owned(),
            phase: "the response body",
            after: within,
        }),
        Ok(Err(e)) => Err(GatewayError::UpstreamProtocol {
            upstream: upstream.to_owned(),
            detail: format!("reading the body: {e}"),
        }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Maps a client error to unreachable (502) or timeout (504).
fn classify(upstream: &str, e: &hyper_util::client::legacy::Error) -> GatewayError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    if e.is_connect() && detail.contains("timed out") {
        return GatewayError::UpstreamTimeout {
            upstream: upstream.to_owned(),
            phase: "a connection",
            after: Duration::ZERO,
        };
    }
    GatewayError::UpstreamUnreachable { upstream: upstream.to_owned(), detail }
}

/// An upstream response Sluice could not read.
pub fn protocol(cfg: &UpstreamConfig, detail: impl Into<String>) -> GatewayError {
    GatewayError::UpstreamProtocol { upstream: cfg.name.clone(), detail: detail.into() }
}

/// Sends a `/models` request and returns the `data` entries of the answer.
pub async fn model_list(
    client: &HttpClient,
    cfg: &UpstreamConfig,
    api: ApiFlavor,
    req: Request<Full<Bytes>>,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    let limit = cfg.first_byte_timeout.min(Duration::from_secs(5));
    let response = send(client, &cfg.name, api, req, limit).await?;
    let body = read_body(&cfg.name, response.into_body(), MAX_RESPONSE, limit).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| protocol(cfg, format!("/models: {e}")))?;
    Ok(v.get("data").and_then(serde_json::Value::as_array).cloned().unwrap_or_default())
}

/// A byte-order mark, as UTF-8.
const BOM: &[u8] = "\u{feff}".as_bytes();

/// The events of an upstream's SSE body. A byte-order mark at its start is
/// dropped here, before `eventsource-stream` sees it: that crate (0.2.3)
/// slices the mark off one byte in, inside the character, and panics. As it
/// looks for a mark at the start of the first text it decodes, that text is
/// made an empty line (which dispatches nothing): a second mark is then part
/// of the first field's name, as the SSE spec reads it.
pub fn sse_events<S, E>(body: S) -> impl Stream<Item = Result<Event, EventStreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let without_bom = async_stream::stream! {
        let mut body = std::pin::pin!(body);
        // The first bytes, held until they cannot be the start of a mark.
        let mut head = Some(Vec::new());
        while let Some(item) = body.next().await {
            match (item, head.as_mut()) {
                (Ok(bytes), Some(held)) => {
                    held.extend_from_slice(&bytes);
                    if held.len() < BOM.len() && BOM.starts_with(held) {
                        continue;
                    }
                    let held = Bytes::from(head.take().unwrap_or_default());
                    yield Ok(Bytes::from_static(b"\n"));
                    yield Ok(if held.starts_with(BOM) { held.slice(BOM.len()..) } else { held });
                }
                (item, _) => yield item,
            }
        }
        if let Some(held) = head.filter(|held| !held.is_empty()) {
            yield Ok(Bytes::from(held));
        }
    };
    without_bom.eventsource()
}

/// The next event of an upstream's SSE stream: `Ok(None)` when the stream
/// ended, an error when it broke or outran the request's deadline.
pub async fn next_event<S, E>(
    events: &mut S,
    deadline: tokio::time::Instant,
    cfg: &UpstreamConfig,
) -> Result<Option<Event>, GatewayError>
where
    S: Stream<Item = Result<Event, E>> + Unpin,
    E: std::fmt::Display,
{
    match tokio::time::timeout_at(deadline, events.next()).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            upstream: cfg.name.clone(),
            phase: "the end of the stream",
            after: cfg.total_timeout,
        }),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(protocol(cfg, format!("reading the stream: {e}"))),
        Ok(Some(Ok(event))) => Ok(Some(event)),
    }
}

/// Parses a `Retry-After` value: seconds, or an HTTP date. A number too
/// large for a `Duration` saturates (`1e20` waits "for ever", which the
/// retry loop reads as "move on"); it never panics.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::{FutureExt, StreamExt};

    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<String> {
        let body = futures_util::stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c))));
        let events = sse_events(body).collect::<Vec<_>>().now_or_never().expect("an in-memory body is ready");
        events.into_iter().map(|e| e.map_or_else(|e| format!("error: {e}"), |e| e.data)).collect()
    }

    #[test]
    fn a_byte_order_mark_is_dropped_wherever_the_body_splits_it() {
        let body = "\u{feff}data: a\n\ndata: b\n\n".as_bytes();
        for cut in 0..=body.len() {
            let (head, tail) = body.split_at(cut);
            assert_eq!(events_of(&[head, tail]), ["a", "b"], "cut at {cut}");
        }
        // A second mark is the start of a field name: that line is ignored.
        let twice = "\u{feff}\u{feff}data: a\n\ndata: b\n\n".as_bytes();
        for cut in 0..=twice.len() {
            let (head, tail) = twice.split_at(cut);
            assert_eq!(events_of(&[head, tail]), ["b"], "cut at {cut}");
        }
        let [cut_short] = &events_of(&[b"\xef\xbb"])[..] else { panic!("one error expected") };
        assert!(cut_short.starts_with("error: UTF8"), "{cut_short}");
        assert_eq!(events_of(&[b"data: \xef\xbb\xbf\n\n"]), ["\u{feff}"], "a mark inside the body is data");
    }
}
