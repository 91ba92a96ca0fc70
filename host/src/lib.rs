//! Sluice: an LLM gateway whose optimisation stages are WebAssembly plugins.
//!
//! A request flows `server` → `ingress` (HTTP, parsing, admission, errors)
//! → `proxy` (the pipeline, one file per phase) → `upstream` (providers),
//! with the stages called through `stage`'s traits (implemented by `plugin`
//! and `routing`'s default router), `api` holding the wire formats, `models`
//! the registry of public model names, `accounting` tokens and cost,
//! `telemetry` metrics and logs, and `traces` OpenTelemetry spans. `config`
//! turns a file and flags into each module's own checked settings. Imports only point down: ARCHITECTURE.md
//! draws the order, and `tests/all/architecture.rs` checks it.

pub mod accounting;
pub mod api;
pub mod bench;
pub mod blocking;
pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod ingress;
pub mod limits;
pub mod live;
pub mod models;
pub mod plugin;
pub mod proxy;
pub mod redis_client;
pub mod routing;
pub mod server;
pub mod stage;
pub mod telemetry;
pub mod traces;
pub mod upstream;
