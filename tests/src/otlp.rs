//! An OTLP/HTTP trace receiver on port 0, as a collector is: it accepts
//! `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`, decodes it
//! with the OTLP protocol's own generated types, answers with an
//! `ExportTraceServiceResponse`, and keeps every span for inspection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: Option<String>,
    /// Lowercase hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(Value::as_i64)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nano.saturating_sub(self.start_unix_nano))
    }
}

/// A running receiver; it stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    exports: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// A receiver that decodes and keeps every span.
    pub async fn start() -> OtlpReceiver {
        Self::start_with(true).await
    }

    /// A receiver that reads each export and answers it without decoding
    /// or keeping anything (a collector on another host, for benchmarks):
    /// it only counts the exports.
    pub async fn start_discarding() -> OtlpReceiver {
        Self::start_with(false).await
    }

    async fn start_with(keep: bool) -> OtlpReceiver {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(AtomicU64::new(0));
        let (kept, counted) = (spans.clone(), exports.clone());
        let task = tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, counted) = (kept.clone(), counted.clone());
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (kept, counted) = (kept.clone(), counted.clone());
                        async move {
                            counted.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, Infallible>(receive(keep.then_some(&*kept), req).await)
                        }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        OtlpReceiver { addr, spans, exports, task }
    }

    /// Export requests received.
    pub fn exports(&self) -> u64 {
        self.exports.load(Ordering::Relaxed)
    }

    /// The traces URL to export to.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-protobuf"));
    response
}

/// Answers one request; `kept`: where decoded spans go (`None`: read and
/// discard the export).
async fn receive(kept: Option<&Mutex<Vec<ReceivedSpan>>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND, Vec::new());
    }
    let protobuf = req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v == "application/x-protobuf");
    if !protobuf {
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, Vec::new());
    };
    let ok = answer(StatusCode::OK, ExportTraceServiceResponse { partial_success: None }.encode_to_vec());
    let Some(kept) = kept else { return ok };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return answer(StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let service = resource_spans.resource.as_ref().and_then(|r| {
            r.attributes.iter().find(|kv| kv.key == "service.name").and_then(|kv| kv.value.as_ref()).and_then(|v| {
                match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                }
            })
        });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: kind_name(span.kind),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json_of)))
                        .collect(),
                    status: match span.status.map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    name: span.name,
                });
            }
        }
    }
    if let Ok(mut kept) = kept.lock() {
        kept.extend(spans);
    }
    ok
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn json_of(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json_of).collect()),
        _ => Value::Null,
    }
}
