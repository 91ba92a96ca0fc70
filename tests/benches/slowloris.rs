//! Slowloris: thousands of sockets trickling a request head that never ends
//! at a gateway, while a closed-loop client measures normal requests'
//! latency (p50, p99) and requests/s; the same measured first without the
//! slowloris sockets, in the same run, for comparison. It measures; it
//! asserts nothing.
//!
//! Normal requests are measured twice per phase: over pooled keep-alive
//! connections, and on a fresh connection each (`Connection: close`), which
//! must get past the accept loop the slowloris sockets crowd.
//!
//! Run: `ulimit -n 10000; cargo bench -p sluice-tests --bench slowloris`
//! (`SLOWLORIS_SOCKETS` the slowloris sockets, default 2,000, capped to
//! what the open-file limit allows; `SLOWLORIS_TRICKLE_MS` the pause between
//! their bytes, default 1,000; `SLUICE_BENCH_SECS` the seconds per
//! measurement, default 5; `SLOWLORIS_CONCURRENCY` the normal clients,
//! default 16.)
//!
//! The gateway runs with its default limits except a header-read timeout of
//! 2 s (default 10 s), so that within each measurement every slowloris
//! socket is closed by the gateway at least once and reconnects: the figures
//! include that churn. Attackers, gateway, mock and clients share this
//! process and the machine's cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice::config::Config;
use sluice::upstream::UpstreamKind;
use sluice_testkit::{MockUpstream, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Http = HyperClient<HttpConnector, Full<Bytes>>;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Attack {
    stop: AtomicBool,
    /// Sockets connected now.
    open: AtomicU64,
    /// Connections made, reconnections included.
    connects: AtomicU64,
    /// Connections the gateway closed (EOF or error while trickling).
    closed_by_gateway: AtomicU64,
    /// Connect attempts that failed.
    refused: AtomicU64,
}

/// One slowloris socket, reconnecting whenever the gateway closes it: sends
/// the start of a request head, then one byte every `trickle`.
async fn slowloris(addr: SocketAddr, trickle: Duration, attack: Arc<Attack>) {
    while !attack.stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(addr).await else {
            attack.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(trickle).await;
            continue;
        };
        attack.connects.fetch_add(1, Ordering::Relaxed);
        attack.open.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = stream.into_split();
        let mut closed = Box::pin(async move {
            let mut buf = [0u8; 256];
            while let Ok(n) = reader.read(&mut buf).await
                && n > 0
            {}
        });
        let mut sent = writer.write_all(b"GET /health HTTP/1.1\r\nHost: sluice\r\nX-Slow: ").await.is_ok();
        while sent && !attack.stop.load(Ordering::Relaxed) {
            tokio::select! {
                () = &mut closed => break,
                () = tokio::time::sleep(trickle) => sent = writer.write_all(b"x").await.is_ok(),
            }
        }
        attack.open.fetch_sub(1, Ordering::Relaxed);
        if !attack.stop.load(Ordering::Relaxed) {
            attack.closed_by_gateway.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Closed loop of normal chat requests for `secs`; `fresh`: each on a new
/// connection.
async fn drive(client: &Http, url: &str, concurrency: usize, secs: f64, fresh: bool) -> Run {
    let body = Bytes::from_static(
        br#"{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}"#,
    );
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let mut request = http::Request::post(&url).header("content-type", "application/json");
                    if fresh {
                        request = request.header("connection", "close");
                    }
                    let request = request.body(Full::new(body.clone())).expect("request");
                    let t = Instant::now();
                    let ok = match client.request(request).await {
                        Ok(r) if r.status() == 200 => r.into_body().collect().await.is_ok(),
                        _ => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut run = Run { latencies: Vec::new(), errors: 0, elapsed: Duration::ZERO };
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        run.latencies.extend(l);
        run.errors += e;
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    run
}

fn report(phase: &str, connections: &str, run: &Run) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{phase:<22} {connections:<11} {:>9.2} {:>9.2} {:>9.0} {:>7}",
        ms(percentile(&run.latencies, 0.5)),
        ms(percentile(&run.latencies, 0.99)),
        run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
        run.errors
    );
}

/// The soft open-file limit (`Max open files` in /proc/self/limits).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.replace(['_', ','], "").parse().ok()).unwrap_or(default)
}

fn main() {
    let wanted = env_or("SLOWLORIS_SOCKETS", 2000.0) as usize;
    let trickle = Duration::from_millis(env_or("SLOWLORIS_TRICKLE_MS", 1000.0) as u64);
    let secs = env_or("SLUICE_BENCH_SECS", 5.0);
    let concurrency = env_or("SLOWLORIS_CONCURRENCY", 16.0) as usize;
    // Each slowloris socket is two descriptors in this process (its end and
    // the gateway's); keep 500 for everything else.
    let limit = open_file_limit();
    let sockets = limit.map_or(wanted, |l| wanted.min(l.saturating_sub(500) / 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mock = MockUpstream::start_unrecorded().await;
        let mut config = Config::default().with_upstream(&mock.base_url(), UpstreamKind::OpenAi, None);
        config.gateway.server.header_read_timeout = HEADER_READ_TIMEOUT;
        let gateway = TestGateway::start(config).await;
        let url = gateway.url("/v1/chat/completions");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Http = HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);

        println!(
            "slowloris benchmark: {sockets} sockets (asked {wanted}, open-file limit {}), a byte every {} ms, \
             header-read timeout {} ms; {concurrency} normal clients, {secs} s per measurement, {} CPU cores",
            limit.map_or("unknown".to_owned(), |l| l.to_string()),
            trickle.as_millis(),
            HEADER_READ_TIMEOUT.as_millis(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        // Warm the pools and the runtime.
        drive(&client, &url, concurrency, 1.0, false).await;
        println!("{:<22} {:<11} {:>9} {:>9} {:>9} {:>7}", "phase", "connection", "p50 ms", "p99 ms", "req/s", "errors");
        let quiet_pooled = drive(&client, &url, concurrency, secs, false).await;
        let quiet_fresh = drive(&client, &url, concurrency, secs, true).await;
        report("without slowloris", "keep-alive", &quiet_pooled);
        report("without slowloris", "fresh", &quiet_fresh);

        let attack = Arc::new(Attack::default());
        let addr = gateway.addr;
        let attackers: Vec<_> = (0..sockets).map(|_| tokio::spawn(slowloris(addr, trickle, attack.clone()))).collect();
        // Let them all connect.
        let deadline = Instant::now() + Duration::from_secs(10);
        while attack.open.load(Ordering::Relaxed) < sockets as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open_at_start = attack.open.load(Ordering::Relaxed);
        let loud_pooled = drive(&client, &url, concurrency, secs, false).await;
        let open_mid = attack.open.load(Ordering::Relaxed);
        let loud_fresh = drive(&client, &url, concurrency, secs, true).await;
        let open_end = attack.open.load(Ordering::Relaxed);
        report(&format!("with {sockets} slowloris"), "keep-alive", &loud_pooled);
        report(&format!("with {sockets} slowloris"), "fresh", &loud_fresh);
        attack.stop.store(true, Ordering::Relaxed);
        for a in attackers {
            a.abort();
        }
        println!(
            "slowloris sockets open: {open_at_start} when measuring began, {open_mid} midway, {open_end} at the end; \
             {} connections made, {} closed by the gateway, {} connects failed",
            attack.connects.load(Ordering::Relaxed),
            attack.closed_by_gateway.load(Ordering::Relaxed),
            attack.refused.load(Ordering::Relaxed)
        );
    });
}
