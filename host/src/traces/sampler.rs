//! Which requests are traced: a fraction of them, chosen at random by the
//! gateway. A span of the gateway's own follows its parent's decision, so
//! a request is traced whole or not at all.
//!
//! A client's `traceparent` cannot change the decision: its sampled flag is
//! dropped when it is parsed (`propagation.rs`), and the draw does not
//! depend on the trace id, which the client chose (a ratio sampler over the
//! trace id would let a client pick ids that are always traced).

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

#[derive(Debug, Clone)]
pub struct RequestSampler {
    /// In [0, 1].
    pub ratio: f64,
}

impl RequestSampler {
    fn draw(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && fastrand::f64() < self.ratio)
    }
}

impl ShouldSample for RequestSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let local_parent = parent
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(|parent| parent.is_valid() && !parent.is_remote());
        let sampled = match &local_parent {
            Some(parent) => parent.is_sampled(),
            None => self.draw(),
        };
        SamplingResult {
            decision: if sampled { SamplingDecision::RecordAndSample } else { SamplingDecision::Drop },
            attributes: Vec::new(),
            trace_state: local_parent.map(|p| p.trace_state().clone()).unwrap_or(TraceState::NONE),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags};

    use super::*;

    fn decide(sampler: &RequestSampler, parent: Option<SpanContext>) -> SamplingDecision {
        let cx = parent.map(|p| Context::new().with_remote_span_context(p));
        sampler.should_sample(cx.as_ref(), TraceId::from_bytes([7; 16]), "s", &SpanKind::Server, &[], &[]).decision
    }

    fn span(sampled: bool, remote: bool) -> SpanContext {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::NOT_SAMPLED };
        SpanContext::new(TraceId::from_bytes([7; 16]), SpanId::from_bytes([3; 8]), flags, remote, TraceState::NONE)
    }

    #[test]
    fn the_ratio_decides_roots_and_remote_parents() {
        let all = RequestSampler { ratio: 1.0 };
        let none = RequestSampler { ratio: 0.0 };
        assert_eq!(decide(&all, None), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&none, None), SamplingDecision::Drop);
        // A client's parent, sampled or not, does not change the decision.
        assert_eq!(decide(&all, Some(span(false, true))), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&none, Some(span(true, true))), SamplingDecision::Drop);
        let half = RequestSampler { ratio: 0.5 };
        let traced = (0..2000).filter(|_| decide(&half, None) == SamplingDecision::RecordAndSample).count();
        assert!((800..1200).contains(&traced), "{traced}");
    }

    #[test]
    fn the_gateway_s_own_spans_follow_their_parent() {
        let none = RequestSampler { ratio: 0.0 };
        let all = RequestSampler { ratio: 1.0 };
        assert_eq!(decide(&none, Some(span(true, false))), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&all, Some(span(false, false))), SamplingDecision::Drop);
    }
}
