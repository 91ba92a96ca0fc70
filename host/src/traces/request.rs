//! The gateway's tracer ([`Traces`]) and one request's trace
//! ([`RequestTrace`]): its server span, from ingress to the last byte of the
//! response (a stream's end), named and attributed after the HTTP and GenAI
//! semantic conventions.
//!
//! With tracing off, [`Traces::request`] returns an empty trace without
//! reading a header, and every later call on it returns at once: no span,
//! no allocation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::config::TracingConfig;
use super::exporter::provider;
use super::propagation::{TRACEPARENT, parse_traceparent};

/// Longest `url.path` kept on a span.
const MAX_PATH: usize = 256;

/// The gateway's tracing: off (nothing is made) or exporting over OTLP.
#[derive(Clone, Default)]
pub struct Traces {
    inner: Option<Arc<Tracing>>,
}

struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// Marks a request's context (the scope its child spans are made in) with
/// the tracer that makes them.
#[derive(Clone)]
pub(super) struct ActiveTracer(pub(super) SdkTracer);

impl Traces {
    /// Starts exporting per `config`; `None`: tracing off.
    pub fn start(config: Option<&TracingConfig>) -> Result<Traces, String> {
        let Some(config) = config else { return Ok(Traces::default()) };
        let provider = provider(config)?;
        let tracer = provider.tracer("sluice");
        Ok(Traces { inner: Some(Arc::new(Tracing { provider, tracer })) })
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// A request's trace: its server span, a child of the client's
    /// `traceparent` when it sent a valid one.
    pub fn request(&self, method: &str, path: &str, headers: &http::HeaderMap) -> RequestTrace {
        let Some(tracing) = &self.inner else { return RequestTrace::default() };
        let parent = match headers.get(TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes())) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let path: String = path.chars().take(MAX_PATH).collect();
        let span = tracing
            .tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.path", path.clone()),
            ])
            .start_with_context(&tracing.tracer, &parent);
        let cx = parent.with_span(span).with_value(ActiveTracer(tracing.tracer.clone()));
        let route = Some((method.to_owned(), path));
        RequestTrace { active: Some(Box::new(Active { cx, route, attempts: 0, fallback: None })) }
    }

    /// Exports every finished span now. Blocks until the collector has
    /// answered or the export timed out: not for a request path.
    pub fn flush(&self) {
        if let Some(tracing) = &self.inner
            && let Err(e) = tracing.provider.force_flush()
        {
            tracing::warn!(error = %e, "exporting spans failed");
        }
    }
}

/// A request's span made current around some work ([`TraceScope::run`]);
/// empty with tracing off.
pub struct TraceScope(Option<Context>);

impl TraceScope {
    /// Runs `work` with the request's span current each time it is polled.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        match self.0 {
            Some(cx) => work.with_context(cx).await,
            None => work.await,
        }
    }
}

/// What a chat or embeddings request asked for (GenAI `gen_ai.request.*`).
#[derive(Default)]
pub struct GenAiRequest<'a> {
    /// `chat` or `embeddings`.
    pub operation: &'static str,
    pub model: &'a str,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

/// How a request ended, for its span.
#[derive(Default)]
pub struct RequestEnd<'a> {
    pub status: u16,
    /// The public model that answered.
    pub model: Option<&'a str>,
    /// The upstream's id of that model (`gen_ai.response.model`).
    pub response_model: Option<&'a str>,
    /// The upstream that answered (`cache` for a cache hit).
    pub upstream: Option<&'a str>,
    /// Prompt and completion tokens.
    pub usage: Option<(u64, u64)>,
    pub cost_usd: Option<f64>,
    /// `hit`, `semantic-hit`, `miss` or `bypass`.
    pub cache: Option<&'static str>,
    /// The client key's name (never the key).
    pub client_key: Option<&'a str>,
    pub arm: Option<&'a str>,
    /// The router plugin whose plan was followed.
    pub router: Option<&'a str>,
    pub tokens_saved: u32,
    pub judge_score: Option<f32>,
    /// The gateway's error kind, when the request failed.
    pub error: Option<&'static str>,
    /// Time to the first streamed token.
    pub ttft: Option<Duration>,
}

/// One request's trace; empty when tracing is off. Cloned with the
/// request's context (a stream's relay holds a clone); the span ends in
/// [`RequestTrace::end`], called once per request.
#[derive(Clone, Default)]
pub struct RequestTrace {
    active: Option<Box<Active>>,
}

#[derive(Clone)]
struct Active {
    /// The request span, and the tracer its children are made with.
    cx: Context,
    /// The method and path, until the path turns out to be a route.
    route: Option<(String, String)>,
    /// Upstream attempts so far (retries, fallbacks, cascade tiers).
    attempts: u32,
    /// The model the next attempt falls back from, and why.
    fallback: Option<(String, &'static str)>,
}

/// What an upstream attempt's span starts from: its parent, the tracer, its
/// number in the request, and the fallback that led to it.
pub(super) struct AttemptParent {
    pub(super) cx: Context,
    pub(super) tracer: SdkTracer,
    pub(super) number: u32,
    pub(super) fallback: Option<(String, &'static str)>,
}

impl RequestTrace {
    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// The request span's scope: child spans made while it is current
    /// (stage calls, cache lookups) are the request's.
    pub fn scope(&self) -> TraceScope {
        TraceScope(self.active.as_ref().map(|a| a.cx.clone()))
    }

    /// The request's path is one of the gateway's routes: it names the span
    /// (`POST /v1/chat/completions`) and is its `http.route`. A path that is
    /// no route leaves the span named by the method alone.
    pub fn routed(&mut self) {
        let Some(active) = &mut self.active else { return };
        let Some((method, route)) = active.route.take() else { return };
        let span = active.cx.span();
        span.update_name(format!("{method} {route}"));
        span.set_attribute(KeyValue::new("http.route", route));
    }

    /// What the client asked for.
    pub fn requested(&self, request: &GenAiRequest<'_>) {
        let Some(active) = &self.active else { return };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", request.operation),
            KeyValue::new("gen_ai.request.model", request.model.to_owned()),
            KeyValue::new("sluice.stream", request.stream),
        ];
        attributes.extend(request.max_tokens.map(|n| KeyValue::new("gen_ai.request.max_tokens", i64::from(n))));
        attributes.extend(request.temperature.map(|t| KeyValue::new("gen_ai.request.temperature", t)));
        attributes.extend(request.top_p.map(|p| KeyValue::new("gen_ai.request.top_p", p)));
        active.cx.span().set_attributes(attributes);
    }

    /// The plan's next model serves: `from` failed with `reason` (an error
    /// kind), noted on the next attempt's span.
    pub fn fell_back(&mut self, from: &str, reason: &'static str) {
        if let Some(active) = &mut self.active {
            active.fallback = Some((from.to_owned(), reason));
        }
    }

    /// The next upstream attempt's parent; `None` when tracing is off.
    pub(super) fn next_attempt(&mut self) -> Option<AttemptParent> {
        let active = self.active.as_mut()?;
        let tracer = active.cx.get::<ActiveTracer>()?.0.clone();
        active.attempts += 1;
        Some(AttemptParent { cx: active.cx.clone(), tracer, number: active.attempts, fallback: active.fallback.take() })
    }

    /// Ends the request span with what the request did.
    pub fn end(&self, end: &RequestEnd<'_>) {
        let Some(active) = &self.active else { return };
        let span = active.cx.span();
        if !span.is_recording() {
            span.end();
            return;
        }
        let text = |key: &'static str, value: Option<&str>| value.map(|v| KeyValue::new(key, v.to_owned()));
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(end.status)),
            KeyValue::new("sluice.upstream.attempts", i64::from(active.attempts)),
        ];
        attributes.extend(text("sluice.model", end.model));
        attributes.extend(text("gen_ai.response.model", end.response_model));
        attributes.extend(text("sluice.upstream", end.upstream));
        if let Some((input, output)) = end.usage {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            attributes.push(KeyValue::new("gen_ai.usage.input_tokens", count(input)));
            attributes.push(KeyValue::new("gen_ai.usage.output_tokens", count(output)));
        }
        attributes.extend(end.cost_usd.map(|c| KeyValue::new("sluice.cost_usd", c)));
        attributes.extend(end.cache.map(|c| KeyValue::new("sluice.cache.outcome", c)));
        attributes.extend(text("sluice.client.key", end.client_key));
        attributes.extend(text("sluice.ab.arm", end.arm));
        attributes.extend(text("sluice.route.plugin", end.router));
        if end.tokens_saved > 0 {
            attributes.push(KeyValue::new("sluice.compress.tokens_saved", i64::from(end.tokens_saved)));
        }
        attributes.extend(end.judge_score.map(|s| KeyValue::new("sluice.judge.score", f64::from(s))));
        attributes.extend(end.ttft.map(|t| KeyValue::new("sluice.time_to_first_token_s", t.as_secs_f64())));
        attributes.extend(end.error.map(|kind| KeyValue::new("error.type", kind)));
        span.set_attributes(attributes);
        // A server span's 4xx is the client's error, not the gateway's.
        if end.status >= 500 {
            span.set_status(Status::error(Cow::Borrowed(end.error.unwrap_or("server_error"))));
        }
        span.end();
    }
}
