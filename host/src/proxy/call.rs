//! Calls a route plan's models in order until one answers.
//!
//! For each model: the upstream's circuit breaker may refuse (open circuit:
//! next model at once); its RPM/TPM budget may queue the call up to the
//! upstream's `queue_timeout` or refuse it (next model); then the call is
//! made, and a retryable failure (429, 5xx, connection error, timeout) is
//! retried on the same upstream after an exponential back-off with jitter,
//! or after the upstream's `Retry-After` when it fits in `retry_max_wait`,
//! up to `max_retries` times; then the next model.
//!
//! A stream counts as answered once its first chunk arrives (within the
//! first-byte timeout): a stream that fails before it is retried or falls
//! back like any failed call, invisibly to the client. After it, a failure
//! is the relay's to report (an error event, then the end of the stream).
//!
//! Every attempt is timed into the model's statistics, reported to the
//! upstream's breaker, and traced as a span of its own (numbered, with the
//! retry's or fallback's reason). The policies come from `crate::routing` (breakers,
//! budgets, retry policy, statistics); this file is the loop that applies
//! them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::context::RequestContext;
use crate::api::chat::{ChatRequest, StreamOptions};
use crate::error::GatewayError;
use crate::models::{ModelRegistry, ModelRoute};
use crate::routing::breaker::Admission;
use crate::routing::retry::{UpstreamFailure, falls_back, worth_retrying};
use crate::routing::{Routing, Stats, UpstreamHealth};
use crate::telemetry;
use crate::traces::{AttemptSpan, AttemptStart};
use crate::upstream::{ChatReply, ChunkStream, UpstreamConfig, UpstreamKind};

/// Calls `models` in order; the first answer wins. `ctx.route` is the model
/// that answered (or failed last) and `req.model` its upstream id.
pub async fn call(
    routing: &Routing,
    registry: &ModelRegistry,
    ctx: &mut RequestContext,
    req: &mut ChatRequest,
    models: &[String],
) -> Result<ChatReply, GatewayError> {
    let mut failure = None;
    for model in models {
        let route = match registry.resolve(model) {
            Ok(route) => route,
            Err(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        if let Some(previous) = &ctx.route {
            metrics::counter!(telemetry::FALLBACKS, "model" => previous.label.clone()).increment(1);
            ctx.fell_back = true;
        }
        ctx.set_route(Some(route.clone()), routing);
        ctx.hold_budget(&route, req).await?;
        req.model.clone_from(&route.upstream_model);
        if req.stream && route.upstream.config.kind == UpstreamKind::OpenAi {
            // Always ask for usage so tokens and cost are known; the usage
            // chunk is dropped again for clients that did not ask for it.
            req.stream_options.get_or_insert_with(StreamOptions::default).include_usage = true;
        }
        match call_model(routing, ctx, &route, req).await {
            Ok(reply) => return Ok(reply),
            Err(e) if falls_back(&e) => {
                tracing::warn!(model = %route.public, upstream = %route.upstream.name(), error = %e, "model failed; next in plan");
                ctx.note_error(&e);
                ctx.trace.fell_back(&route.public, e.kind());
                failure = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(failure.unwrap_or_else(|| GatewayError::ModelNotFound(req.model.clone())))
}

/// One model: breaker, budget, call, retries.
async fn call_model(
    routing: &Routing,
    ctx: &mut RequestContext,
    route: &Arc<ModelRoute>,
    req: &ChatRequest,
) -> Result<ChatReply, GatewayError> {
    let upstream = &route.upstream;
    let cfg = &upstream.config;
    let health = routing.upstream(upstream.name());
    let stats = routing.model(&route.label);
    let mut retries = 0;
    let mut retry_reason = None;
    loop {
        if let Admission::Open(retry_after) = health.breaker.admit() {
            return Err(GatewayError::CircuitOpen { upstream: upstream.name().to_owned(), retry_after });
        }
        if let Err(retry_after) = health.limits.admit(cfg.queue_timeout).await {
            return Err(GatewayError::RateLimited { scope: format!("upstream `{}`", upstream.name()), retry_after });
        }
        let started = Instant::now();
        let span = AttemptSpan::start(
            &mut ctx.trace,
            &AttemptStart {
                upstream: upstream.name(),
                provider: cfg.kind.as_str(),
                model: &req.model,
                public_model: &route.public,
                retry: retries,
                retry_reason,
            },
        );
        let mut caller = ctx.caller();
        caller.traceparent = span.traceparent();
        let mut attempt = UpstreamCall::start(stats.clone(), health.clone(), started, span);
        let result = match upstream.chat(req, &caller).await {
            Ok(reply) => first_chunk(reply, cfg).await,
            Err(e) => Err(e),
        };
        ctx.upstream_time += started.elapsed();
        let error = match result {
            Ok(ChatReply::Complete { response, raw }) => {
                attempt.succeed();
                return Ok(ChatReply::Complete { response, raw });
            }
            Ok(ChatReply::Stream(stream)) => return Ok(ChatReply::Stream(attempt.observe(stream))),
            Err(e) => {
                attempt.fail(&e);
                e
            }
        };
        let retry = &health.retry;
        if !worth_retrying(&error) || retries >= retry.max_retries || health.breaker.circuit().is_open() {
            return Err(error);
        }
        retries += 1;
        retry_reason = Some(error.kind());
        let wait = retry.wait(retries, &error);
        if wait > retry.max_wait {
            // The upstream asked for a longer pause than a request should
            // wait: the next model serves instead.
            return Err(error);
        }
        tracing::debug!(upstream = %upstream.name(), retry = retries, ?wait, error = %error, "retrying");
        metrics::counter!(telemetry::RETRIES, "upstream" => upstream.name().to_owned(), "kind" => error.kind())
            .increment(1);
        tokio::time::sleep(wait).await;
    }
}

/// Waits for a stream's first chunk, so that a stream that fails before it
/// can still be retried or fall back.
async fn first_chunk(reply: ChatReply, cfg: &UpstreamConfig) -> Result<ChatReply, GatewayError> {
    let ChatReply::Stream(mut stream) = reply else { return Ok(reply) };
    match tokio::time::timeout(cfg.first_byte_timeout, stream.next()).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            upstream: cfg.name.clone(),
            phase: "the first streamed chunk",
            after: cfg.first_byte_timeout,
        }),
        Ok(None) => Err(GatewayError::UpstreamProtocol {
            upstream: cfg.name.clone(),
            detail: "the stream ended before its first chunk".to_owned(),
        }),
        Ok(Some(Err(e))) => Err(e),
        Ok(Some(Ok(first))) => {
            Ok(ChatReply::Stream(Box::pin(futures_util::stream::once(async move { Ok(first) }).chain(stream))))
        }
    }
}

/// One call to an upstream, from send to the end of its answer: counted in
/// flight while it lasts, then timed into the model's statistics and
/// reported to the breaker. A call abandoned by its client reports nothing.
struct UpstreamCall {
    stats: Arc<Stats>,
    health: Arc<UpstreamHealth>,
    started: Instant,
    ttft: Option<Duration>,
    done: bool,
    span: AttemptSpan,
}

impl UpstreamCall {
    fn start(stats: Arc<Stats>, health: Arc<UpstreamHealth>, started: Instant, span: AttemptSpan) -> UpstreamCall {
        stats.enter();
        UpstreamCall { stats, health, started, ttft: None, done: false, span }
    }

    fn succeed(&mut self) {
        self.done = true;
        self.stats.observe(self.started.elapsed(), self.ttft, false);
        self.health.breaker.success();
        self.span.succeed();
    }

    fn fail(&mut self, error: &GatewayError) {
        self.done = true;
        let status = match error {
            GatewayError::UpstreamStatus { status, .. } => Some(status.as_u16()),
            _ => None,
        };
        self.span.fail(error.kind(), status);
        let failure = UpstreamFailure::of(error);
        self.stats.observe(self.started.elapsed(), None, failure.is_some());
        match failure {
            Some(UpstreamFailure::Fault) => self.health.breaker.failure(),
            Some(UpstreamFailure::Throttled) => {}
            // Any other answer (a 4xx) shows the upstream is up.
            None => self.health.breaker.success(),
        }
    }

    /// Follows a stream to its end.
    fn observe(mut self, mut inner: ChunkStream) -> ChunkStream {
        let ttft = self.started.elapsed();
        self.ttft = Some(ttft);
        self.span.first_chunk(ttft);
        Box::pin(async_stream::stream! {
            while let Some(item) = inner.next().await {
                if let Err(e) = &item {
                    self.fail(e);
                    yield item;
                    return;
                }
                yield item;
            }
            self.succeed();
        })
    }
}

impl Drop for UpstreamCall {
    fn drop(&mut self) {
        self.stats.leave();
    }
}
