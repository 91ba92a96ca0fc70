//! Serves the mock upstream (`sluice_testkit::MockUpstream`) until killed: a
//! fixed, fast target for measuring load generators against each other
//! (`sluice bench` and `wrk`, see `examples/bench/`).
//!
//! Usage: `sluice-mock [PORT] [THREADS]` (defaults: a free port, 1 thread);
//! prints the base URL on its first line.

use sluice_testkit::MockUpstream;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mock = MockUpstream::start_unrecorded_on(port).await;
        println!("{}", mock.base_url());
        std::future::pending::<()>().await;
    });
}
