//! Sluice: an LLM gateway whose optimisation stages are WebAssembly plugins.
//!
//! A request flows `server` → `ingress` (HTTP, parsing, errors) → `proxy`
//! (the pipeline) → `upstream` (providers), with `api` holding the wire
//! formats, `models` the registry of public model names, `accounting`
//! tokens and cost, and `telemetry` metrics and logs. See ARCHITECTURE.md.

pub mod accounting;
pub mod api;
pub mod bench;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod ingress;
pub mod limits;
pub mod models;
pub mod plugin;
pub mod proxy;
pub mod redis_client;
pub mod routing;
pub mod server;
pub mod stage;
pub mod telemetry;
pub mod upstream;
