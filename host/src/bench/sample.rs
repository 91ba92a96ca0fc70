//! One request sent and measured: the [`Sample`] it yields (status, latency,
//! streaming timings, usage, cost and the gateway's `x-sluice-*` headers),
//! over the benchmark's pooled HTTP client.
//!
//! It sends what it is given when it is told to; when and how often is the
//! driver's business, and the figures over many samples are `stats`'.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::quality;
use super::sse::{ResponseReader, StreamFacts};

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One request's outcome.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Index into the run's endpoints (see `driver::RunPlan`).
    pub endpoint: u8,
    /// Index into the workload.
    pub item: u32,
    /// When it was sent, µs after the run started.
    pub start_us: u64,
    /// Until the last byte of the response, µs.
    pub latency_us: u64,
    /// Streams: until the first content token, µs.
    pub ttft_us: Option<u64>,
    /// Streams: gaps between content chunks, µs.
    pub itl_us: Vec<u32>,
    /// HTTP status; 0 when no response came (connect error, timeout).
    pub status: u16,
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// `x-sluice-cost-usd` (or the stream's final comment).
    pub cost_usd: Option<f64>,
    pub judge_score: Option<f64>,
    /// `x-sluice-cache`.
    pub cache: Option<String>,
    /// `x-sluice-model`, else the model in the response body.
    pub model: Option<String>,
    /// `x-sluice-ab-bucket`.
    pub arm: Option<String>,
    pub overhead_us: Option<u64>,
    /// Similarity of the answer to the workload's reference answer.
    pub similarity: Option<f64>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A request ready to send: the serialised body and what to grade it against.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub reference: Option<Arc<str>>,
}

/// The benchmark's HTTP client: one pool, many connections per host.
pub fn http_client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4096).build(https)
}

/// One request and its response, read to the end.
/// `stream`: whether the request asked for a stream; `t0`: when it was sent.
pub(super) async fn exchange(
    client: &HttpClient,
    url: &Uri,
    headers: &[(HeaderName, HeaderValue)],
    stream: bool,
    prepared: &Prepared,
    t0: Instant,
    sample: &mut Sample,
) -> Result<(), String> {
    let mut request = Request::builder()
        .method(http::Method::POST)
        .uri(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(prepared.body.clone())).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| error_chain(&e))?;
    let (parts, mut body) = response.into_parts();
    sample.status = parts.status.as_u16();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    sample.cost_usd = header("x-sluice-cost-usd").and_then(|v| v.parse().ok());
    sample.judge_score = header("x-sluice-judge-score").and_then(|v| v.parse().ok());
    sample.cache = header("x-sluice-cache").map(str::to_owned);
    sample.model = header("x-sluice-model").map(str::to_owned);
    sample.arm = header("x-sluice-ab-bucket").map(str::to_owned);
    sample.overhead_us = header("x-sluice-overhead-us").and_then(|v| v.parse().ok());
    let mut reader = ResponseReader::new(stream && parts.status.is_success());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("response body: {}", error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            reader.push(&data, t0.elapsed());
        }
    }
    let facts: StreamFacts = reader.finish();
    if !parts.status.is_success() {
        return Err(format!("HTTP {}: {}", parts.status.as_u16(), facts.error_text()));
    }
    if let Some(e) = facts.error {
        return Err(e);
    }
    sample.prompt_tokens = facts.prompt_tokens;
    sample.output_tokens = facts.output_tokens;
    sample.ttft_us = facts.ttft.map(|d| d.as_micros() as u64);
    sample.itl_us = facts.itl_us;
    if sample.cost_usd.is_none() {
        sample.cost_usd = facts.cost_usd;
    }
    if sample.model.is_none() {
        sample.model = facts.model;
    }
    if let Some(reference) = &prepared.reference {
        sample.similarity = Some(quality::rouge_l(&facts.text, reference));
    }
    Ok(())
}

/// An error and its causes, e.g. `client error (Connect): tcp connect error: Connection refused`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
