//! A request's child spans: one per upstream attempt ([`AttemptSpan`],
//! a client span after the GenAI conventions), one per stage plugin call
//! ([`StageSpan`]) and one per cache lookup ([`CacheSpan`]).
//!
//! An attempt's parent is the request's trace, handed over explicitly. A
//! stage call or a cache lookup happens deep in the plugin host or the
//! cache, which know nothing of requests: their parent is the request span
//! made current around the pipeline (`RequestTrace::scope`). Outside such a
//! scope, as always with tracing off, they make nothing.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;

use super::propagation::traceparent_of;
use super::request::{ActiveTracer, RequestTrace};

/// A span under the current request's, if there is one; its name and
/// attributes are only made then.
fn child(make: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>)) -> Option<Box<Span>> {
    Context::map_current(|cx| {
        let ActiveTracer(tracer) = cx.get::<ActiveTracer>()?;
        let (name, attributes) = make();
        Some(Box::new(
            tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .with_attributes(attributes)
                .start_with_context(tracer, cx),
        ))
    })
}

/// What an upstream attempt is.
pub struct AttemptStart<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// `openai`, `anthropic` or `engine` (`gen_ai.provider.name`).
    pub provider: &'static str,
    /// The model id sent upstream (`gen_ai.request.model`).
    pub model: &'a str,
    /// The public model it serves.
    pub public_model: &'a str,
    /// Retries of this model before this attempt.
    pub retry: u32,
    /// Why the previous try of this model failed (an error kind).
    pub retry_reason: Option<&'static str>,
}

/// One call to an upstream, from send to the end of its answer (a stream's
/// last chunk). Ends as failed, succeeded or, dropped before either,
/// cancelled. Boxed, so that with tracing off the futures that hold it grow
/// by a pointer, not by a span.
#[derive(Default)]
pub struct AttemptSpan {
    span: Option<Box<Span>>,
}

impl AttemptSpan {
    /// The span of `trace`'s next attempt; empty when tracing is off.
    pub fn start(trace: &mut RequestTrace, what: &AttemptStart<'_>) -> AttemptSpan {
        let Some(parent) = trace.next_attempt() else { return AttemptSpan::default() };
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", what.provider),
            KeyValue::new("gen_ai.request.model", what.model.to_owned()),
            KeyValue::new("sluice.model", what.public_model.to_owned()),
            KeyValue::new("sluice.upstream", what.upstream.to_owned()),
            KeyValue::new("sluice.attempt", i64::from(parent.number)),
            KeyValue::new("sluice.attempt.retry", i64::from(what.retry)),
        ];
        attributes.extend(what.retry_reason.map(|r| KeyValue::new("sluice.retry.reason", r)));
        if let Some((from, reason)) = parent.fallback {
            attributes.push(KeyValue::new("sluice.fallback.from", from));
            attributes.push(KeyValue::new("sluice.fallback.reason", reason));
        }
        let span = parent
            .tracer
            .span_builder(format!("chat {}", what.model))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&parent.tracer, &parent.cx);
        AttemptSpan { span: Some(Box::new(span)) }
    }

    /// The `traceparent` to send upstream: this attempt's span.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        traceparent_of(self.span.as_ref()?.span_context())
    }

    /// A stream's first chunk arrived `after` the call was sent.
    pub fn first_chunk(&mut self, after: Duration) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("sluice.time_to_first_chunk_s", after.as_secs_f64()));
        }
    }

    pub fn succeed(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.set_attribute(KeyValue::new("sluice.attempt.outcome", "ok"));
            span.end();
        }
    }

    /// Failed with the gateway error kind `kind`; `status`: the upstream's
    /// own HTTP status, when it answered with one.
    pub fn fail(&mut self, kind: &'static str, status: Option<u16>) {
        if let Some(mut span) = self.span.take() {
            span.set_attribute(KeyValue::new("sluice.attempt.outcome", "error"));
            span.set_attribute(KeyValue::new("error.type", kind));
            if let Some(status) = status {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
            }
            span.set_status(Status::error(Cow::Borrowed(kind)));
            span.end();
        }
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.set_attribute(KeyValue::new("sluice.attempt.outcome", "cancelled"));
            span.end();
        }
    }
}

/// One call of a stage plugin.
pub struct StageSpan {
    span: Option<Box<Span>>,
}

impl StageSpan {
    /// A call of `plugin` (the version with content hash `hash`) in
    /// `stage`, if a request's trace is current.
    pub fn start(plugin: &str, stage: &'static str, hash: &str) -> StageSpan {
        let span = child(|| {
            let attributes = vec![
                KeyValue::new("sluice.stage", stage),
                KeyValue::new("sluice.plugin.name", plugin.to_owned()),
                KeyValue::new("sluice.plugin.hash", hash.to_owned()),
            ];
            (Cow::Owned(format!("{stage} {plugin}")), attributes)
        });
        StageSpan { span }
    }

    /// `outcome`: `ok`, `error` (the plugin's refusal), `trap`, `deadline`
    /// or `skipped`; `fault`: the fault's own kind, if it faulted.
    pub fn end(mut self, outcome: &'static str, fault: Option<&'static str>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("sluice.plugin.outcome", outcome));
            if let Some(fault) = fault {
                span.set_attribute(KeyValue::new("sluice.plugin.fault", fault));
                span.set_status(Status::error(Cow::Borrowed(fault)));
            }
            span.end();
        }
    }
}

/// One cache lookup: `exact` (the key, local tier then Redis) or
/// `semantic` (embedding, index search, guard, fetch).
pub struct CacheSpan {
    span: Option<Box<Span>>,
}

impl CacheSpan {
    pub fn start(kind: &'static str) -> CacheSpan {
        let span = child(|| (Cow::Owned(format!("cache {kind}")), vec![KeyValue::new("sluice.cache.kind", kind)]));
        CacheSpan { span }
    }

    /// `tier`: where a hit was found (`local`, `redis`); `similarity`: a
    /// semantic hit's.
    pub fn end(mut self, hit: bool, tier: Option<&'static str>, similarity: Option<f32>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("sluice.cache.hit", hit));
            if let Some(tier) = tier {
                span.set_attribute(KeyValue::new("sluice.cache.tier", tier));
            }
            if let Some(similarity) = similarity {
                span.set_attribute(KeyValue::new("sluice.cache.similarity", f64::from(similarity)));
            }
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_tracing_off_a_span_is_a_pointer_wide() {
        let word = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<AttemptSpan>(), word);
        assert_eq!(std::mem::size_of::<StageSpan>(), word);
        assert_eq!(std::mem::size_of::<CacheSpan>(), word);
        // Outside a request's scope nothing is made.
        assert!(StageSpan::start("p", "router", "hash").span.is_none());
        assert!(AttemptSpan::start(&mut RequestTrace::default(), &start()).traceparent().is_none());
    }

    fn start() -> AttemptStart<'static> {
        AttemptStart { upstream: "u", provider: "openai", model: "m", public_model: "m", retry: 0, retry_reason: None }
    }
}
