//! Who an upstream call is for, as far as an upstream needs to know: the
//! bundled engine keeps each tenant's prefix cache apart and each client key
//! to its share of the batch; an HTTP upstream is told the trace the call
//! belongs to.

/// The client behind a call; empty when no keys are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The virtual key's name.
    pub key: Option<String>,
    /// The key's tenant: the scope of everything cached for it.
    pub tenant: Option<String>,
    /// The W3C `traceparent` sent with the call (the attempt's span), when
    /// tracing is on.
    pub traceparent: Option<http::HeaderValue>,
}

impl Caller {
    /// Adds the call's `traceparent` to an upstream request's headers.
    pub fn add_trace_header(&self, headers: &mut http::HeaderMap) {
        if let Some(traceparent) = &self.traceparent {
            headers.insert(http::HeaderName::from_static("traceparent"), traceparent.clone());
        }
    }
}
