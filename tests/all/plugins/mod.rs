//! Tests of the WebAssembly plugin runtime (`sluice::plugin`): the example
//! plugins' logic through the host (Rust, Python, JavaScript), fault handling,
//! hot reload, the artifact cache and the admin listing.
//!
//! The plugins are built once per test run by `plugins/build.sh` (set
//! `SLUICE_SKIP_PLUGIN_BUILD=1` to use what is already in `plugins/dist`).

mod cases;
mod examples;
mod faults;
mod pipeline;
mod reload;
pub mod support;
