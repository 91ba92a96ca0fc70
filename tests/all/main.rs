//! Sluice's integration tests: one binary, every module a capability.
//! Real servers on port 0: the gateway under test and a mock upstream.

mod anthropic;
mod architecture;
mod bench;
mod cache;
mod config_cli;
mod connections;
mod dashboard;
mod engine;
mod errors;
mod fuzz_corpus;
mod hardening;
mod monitoring;
mod openai;
mod plugins;
mod routing;
mod sdk;
mod streaming;
mod support;
mod tls;
mod traces;
