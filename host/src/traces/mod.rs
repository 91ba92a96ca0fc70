//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when
//! `[tracing]` is configured, and off otherwise: then no span is made and
//! no header read, and each hook on the request path returns at once.
//!
//! A request is one trace: its server span (`request.rs`: HTTP method,
//! route and status, the GenAI `gen_ai.*` request and usage attributes,
//! cost, cache outcome, the client key's name), ended when its response
//! ends (a stream's last byte); under it one span per stage plugin call,
//! per cache lookup and per upstream attempt (`spans.rs`), so retries and
//! fallbacks show as attempts of their own. A client's W3C `traceparent`
//! makes the request part of the client's trace, and nothing more
//! (`propagation.rs`, `sampler.rs`); each attempt sends its own
//! `traceparent` upstream. Spans are batched and exported off the request
//! path (`exporter.rs`).
//!
//! It records no prompt or answer text and no secret, and decides nothing:
//! the pipeline (`crate::proxy`), the plugin host and the cache call its
//! hooks. Metrics and logs are `crate::telemetry`'s.

mod config;
mod exporter;
mod propagation;
mod request;
mod sampler;
mod spans;

pub use config::{DEFAULT_ENDPOINT, TracingConfig};
pub use propagation::{TRACEPARENT, parse_traceparent, traceparent_of};
pub use request::{GenAiRequest, RequestEnd, RequestTrace, TraceScope, Traces};
pub use spans::{AttemptSpan, AttemptStart, CacheSpan, StageSpan};
