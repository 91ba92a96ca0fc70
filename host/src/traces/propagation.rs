//! W3C Trace Context: the `traceparent` header a client may send to join
//! its own trace, and the one sent to upstreams.
//!
//! Only the trace and parent span ids are taken from a client. Its sampled
//! flag and its `tracestate` are ignored: whether a request is traced is
//! the gateway's own sampling decision, and no vendor state a client wrote
//! is passed on to upstreams.

use http::HeaderValue;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The header's name, lowercase.
pub const TRACEPARENT: &str = "traceparent";

/// The parent a client's `traceparent` names (version `00`, lowercase hex,
/// non-zero ids), as a remote span context; `None` for anything else.
pub fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if parts.next().is_some()
        || version != "00"
        || !lower_hex(trace, 32)
        || !lower_hex(span, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    // Not sampled: the flag is the gateway's to set, on its own spans.
    Some(SpanContext::new(trace_id, span_id, TraceFlags::NOT_SAMPLED, true, TraceState::NONE))
}

/// `00-TRACE-SPAN-FLAGS` for a span of the gateway's; `None` for an invalid one.
pub fn traceparent_of(span: &SpanContext) -> Option<HeaderValue> {
    if !span.is_valid() {
        return None;
    }
    let flags = span.trace_flags() & TraceFlags::SAMPLED;
    HeaderValue::from_str(&format!("00-{:032x}-{:016x}-{:02x}", span.trace_id(), span.span_id(), flags)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn a_valid_traceparent_gives_a_remote_unsampled_parent() {
        let parent = parse_traceparent(format!("00-{TRACE}-{SPAN}-01").as_bytes()).expect("valid");
        assert_eq!(format!("{:032x}", parent.trace_id()), TRACE);
        assert_eq!(format!("{:016x}", parent.span_id()), SPAN);
        assert!(parent.is_remote());
        assert!(!parent.is_sampled(), "the client's sampled flag is not taken");
        assert_eq!(parent.trace_state().header(), "");
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            String::new(),
            format!("01-{TRACE}-{SPAN}-01"),
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            format!("00-{}-{SPAN}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            format!("00-{TRACE}-{SPAN}"),
            format!("00-{TRACE}-{SPAN}-01-extra"),
            format!("00-{TRACE}x-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-zz"),
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(parse_traceparent(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn the_header_sent_names_the_span_and_its_sampling() {
        let trace = TraceId::from_hex(TRACE).expect("hex");
        let span = SpanId::from_hex(SPAN).expect("hex");
        let sampled = SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::NONE);
        let header = traceparent_of(&sampled).expect("valid");
        assert_eq!(header.to_str().ok(), Some(format!("00-{TRACE}-{SPAN}-01").as_str()));
        let round = parse_traceparent(header.as_bytes()).expect("parses back");
        assert_eq!((round.trace_id(), round.span_id()), (trace, span));
        assert!(traceparent_of(&SpanContext::empty_context()).is_none());
    }
}
