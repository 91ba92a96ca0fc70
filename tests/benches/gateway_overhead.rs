//! Gateway overhead: latency through Sluice minus latency direct to the same
//! mock upstream, at concurrency 1 and 64, plus requests/s.
//!
//! Run: `cargo bench -p sluice-tests --bench gateway_overhead`
//! (`SLUICE_BENCH_SECS` sets the seconds per phase, default 5.)
//!
//! Mock, gateway and load generator share this process and the machine's
//! cores, as they would on one host; the figures include that contention.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use sluice_testkit::{Client, MockUpstream, TestGateway};

struct Run {
    latencies: Vec<Duration>,
    overheads: Vec<u64>,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn drive(url: &str, concurrency: usize, secs: f64) -> Run {
    let client = Client::new();
    let body = Bytes::from_static(br#"{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}"#);
    // Warm the pools.
    for _ in 0..200 {
        client.call(Method::POST, url, body.clone(), &[]).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            let body = body.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut overheads: Vec<u64> = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let reply = client.call(Method::POST, &url, body.clone(), &[]).await;
                    latencies.push(t.elapsed());
                    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
                    if let Some(us) = reply.header("x-sluice-overhead-us").and_then(|v| v.parse().ok()) {
                        overheads.push(us);
                    }
                }
                (latencies, overheads)
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), overheads: Vec::new(), elapsed: Duration::ZERO };
    for task in tasks {
        let (l, o) = task.await.expect("load task");
        run.latencies.extend(l);
        run.overheads.extend(o);
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run.overheads.sort_unstable();
    run
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let secs: f64 = std::env::var("SLUICE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mock = MockUpstream::start_unrecorded().await;
        let gateway = TestGateway::passthrough(&mock.base_url()).await;
        let direct = format!("{}/chat/completions", mock.base_url());
        let through = gateway.url("/v1/chat/completions");
        println!(
            "gateway overhead benchmark: {secs} s per phase, {} CPU cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:>5} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11}",
            "conc", "path", "p50 us", "p99 us", "mean us", "req/s", "self-rep p99"
        );
        for concurrency in [1usize, 64] {
            let d = drive(&direct, concurrency, secs).await;
            let t = drive(&through, concurrency, secs).await;
            for (name, run) in [("direct", &d), ("sluice", &t)] {
                let mean = run.latencies.iter().sum::<Duration>() / run.latencies.len().max(1) as u32;
                let self_p99 = run
                    .overheads
                    .get(run.overheads.len().saturating_sub(1) * 99 / 100)
                    .map_or("-".to_owned(), |v| v.to_string());
                println!(
                    "{:>5} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.0} {:>11}",
                    concurrency,
                    name,
                    us(percentile(&run.latencies, 0.5)),
                    us(percentile(&run.latencies, 0.99)),
                    us(mean),
                    run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
                    self_p99
                );
            }
            println!(
                "{:>5} {:>8} {:>10.1} {:>10.1}   (added by the gateway: through - direct)",
                concurrency,
                "added",
                us(percentile(&t.latencies, 0.5)) - us(percentile(&d.latencies, 0.5)),
                us(percentile(&t.latencies, 0.99)) - us(percentile(&d.latencies, 0.99)),
            );
        }
    });
}
