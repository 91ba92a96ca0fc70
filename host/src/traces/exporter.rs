//! The span pipeline: the SDK's batch processor, on a thread of its own,
//! hands finished spans to the OTLP/HTTP exporter (protobuf), which sends
//! them through hyper and rustls (the gateway's own HTTP stack, no client
//! library of its own) on a single-threaded runtime that lives on that
//! thread. Exports never run on the gateway's async workers, and a slow or
//! absent collector costs requests nothing: spans past the queue's bound
//! are dropped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

use super::config::TracingConfig;
use super::sampler::RequestSampler;

/// The largest collector answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Builds the tracer provider that exports to `cfg.endpoint`.
pub fn provider(cfg: &TracingConfig) -> Result<SdkTracerProvider, String> {
    let client = OtlpHttp::new(cfg.export_timeout)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(cfg.export_timeout)
        .with_headers(cfg.headers.iter().cloned().collect())
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter).build();
    let resource = Resource::builder().with_service_name(cfg.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(RequestSampler { ratio: cfg.sample_ratio })
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: hyper over rustls (webpki roots), driven
/// by a runtime of its own on the calling thread (the batch processor's).
struct OtlpHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Made on first use, on the batch processor's thread, and dropped
    /// there: a runtime may not be dropped on an async worker.
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    timeout: Duration,
}

impl OtlpHttp {
    fn new(timeout: Duration) -> Result<OtlpHttp, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        // No idle connections kept: the runtime only runs while an export
        // waits, so a kept connection would not notice the collector closing it.
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(https);
        Ok(OtlpHttp { client, runtime: OnceLock::new(), timeout })
    }
}

impl std::fmt::Debug for OtlpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttp").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpClient for OtlpHttp {
    /// Blocks the calling thread (the batch processor's, never an async
    /// worker's) until the collector answers or the timeout passes.
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("the OTLP exporter's runtime: {e}"))
        });
        let runtime = runtime.as_ref().map_err(|e| HttpError::from(e.clone()))?;
        // The timer is made inside the runtime: it needs its clock.
        match runtime.block_on(async { tokio::time::timeout(self.timeout, exchange).await }) {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer from the collector within {:?}", self.timeout).into()),
        }
    }
}
