//! CPU-heavy or blocking work called from async code (counting a huge prompt,
//! loading plugins) without stalling the other tasks of the worker it runs on.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f` where it holds no async worker: on a multi-threaded runtime the
/// worker's other tasks are first handed to another thread
/// (`block_in_place`); on a current-thread runtime `f` runs on a thread of
/// its own; outside a runtime, in place. `f` may also enter a Tokio runtime
/// of its own, which panics inside an async task otherwise.
pub fn off_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}
