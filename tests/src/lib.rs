//! Test kit for Sluice: an in-process mock upstream, a gateway started on
//! port 0, a small HTTP client, and an OTLP trace receiver. Shared by the
//! integration tests (`tests/all`) and the benchmarks (`tests/benches`); and
//! the fuzz targets (`fuzz`), shared by cargo-fuzz (`tests/fuzz`) and the
//! corpus replay test.

pub mod client;
pub mod fuzz;
pub mod gateway;
pub mod mock;
pub mod otlp;
pub mod redis;

pub use client::Client;
pub use gateway::TestGateway;
pub use mock::MockUpstream;
pub use otlp::OtlpReceiver;
pub use redis::RedisServer;
