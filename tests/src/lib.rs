//! Test kit for Sluice: an in-process mock upstream, a gateway started on
//! port 0, and a small HTTP client. Shared by the integration tests
//! (`tests/all`) and the benchmarks (`tests/benches`); and the fuzz targets
//! (`fuzz`), shared by cargo-fuzz (`tests/fuzz`) and the corpus replay test.

pub mod client;
pub mod fuzz;
pub mod gateway;
pub mod mock;
pub mod redis;

pub use client::Client;
pub use gateway::TestGateway;
pub use mock::MockUpstream;
pub use redis::RedisServer;
