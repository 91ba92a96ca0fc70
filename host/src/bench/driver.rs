//! The load driver: sends a workload's requests to one or two endpoints over
//! a pooled hyper client (TCP_NODELAY, HTTP/1.1 keep-alive, HTTPS by URL),
//! closed-loop at a concurrency or open-loop at a Poisson rate, until a
//! request count or a deadline, and records one [`Sample`] per request (each
//! sent and measured by `sample`). It measures and records; the figures are
//! computed in `stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Uri};

use super::error::BenchError;
use super::sample::{HttpClient, Prepared, Sample, exchange, http_client};

/// An endpoint under load.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `target` or `baseline`.
    pub name: String,
    /// The chat completions URL.
    pub url: Uri,
}

impl Endpoint {
    /// Parses a base URL (`http://HOST:PORT`, `.../v1`) or a full
    /// `.../chat/completions` URL.
    pub fn parse(name: &str, url: &str) -> Result<Endpoint, BenchError> {
        let bad = |why: &str| BenchError::Usage(format!("--{name} `{url}` {why}"));
        let trimmed = url.trim_end_matches('/');
        let full = if trimmed.ends_with("/chat/completions") {
            trimmed.to_owned()
        } else if trimmed.ends_with("/v1") {
            format!("{trimmed}/chat/completions")
        } else {
            format!("{trimmed}/v1/chat/completions")
        };
        let uri: Uri = full.parse().map_err(|_| bad("is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad("is not an http:// or https:// URL"));
        }
        Ok(Endpoint { name: name.to_owned(), url: uri })
    }
}

/// How requests are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadMode {
    /// A fixed number of requests in flight.
    Closed { concurrency: usize },
    /// Requests started at a mean rate (requests/s), exponential gaps.
    Open { rate: f64 },
}

/// When a run stops. At least one bound is always set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// One endpoint, or two (target and baseline) taking turns request by request.
    pub endpoints: Vec<Endpoint>,
    pub mode: LoadMode,
    /// Per endpoint.
    pub bounds: Bounds,
    pub stream: bool,
    pub timeout: Duration,
    /// Requests per endpoint sent before measuring.
    pub warmup: u64,
    pub seed: u64,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub progress: bool,
}

/// All samples of a run, and its wall time.
#[derive(Debug)]
pub struct RunOutput {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

/// Fails early, with the reason, when an endpoint cannot be connected to.
pub async fn check_reachable(endpoint: &Endpoint) -> Result<(), BenchError> {
    let host = endpoint.url.host().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    let port = endpoint.url.port_u16().unwrap_or(if endpoint.url.scheme_str() == Some("https") { 443 } else { 80 });
    let unreachable = |message: String| BenchError::Unreachable { url: endpoint.url.to_string(), message };
    match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no connection within 10 s".into())),
    }
}

struct Shared {
    client: HttpClient,
    plan: RunPlan,
    items: Vec<Prepared>,
    done: AtomicU64,
    errors: AtomicU64,
}

/// Runs the plan over `items` (cycled) and returns every sample.
pub async fn run(plan: RunPlan, items: Vec<Prepared>) -> Result<RunOutput, BenchError> {
    if items.is_empty() {
        return Err(BenchError::Usage("the workload is empty: nothing to send".into()));
    }
    for endpoint in &plan.endpoints {
        check_reachable(endpoint).await?;
    }
    let shared =
        Arc::new(Shared { client: http_client(), plan, items, done: AtomicU64::new(0), errors: AtomicU64::new(0) });
    let k = shared.plan.endpoints.len() as u64;
    if shared.plan.warmup > 0 {
        let concurrency = match shared.plan.mode {
            LoadMode::Closed { concurrency } => concurrency,
            LoadMode::Open { .. } => 8,
        };
        closed_loop(&shared, concurrency, Some(shared.plan.warmup * k), None, Instant::now()).await;
        shared.done.store(0, Ordering::Relaxed);
        shared.errors.store(0, Ordering::Relaxed);
    }
    let limit = shared.plan.bounds.requests.map(|n| n * k);
    let started = Instant::now();
    let deadline = shared.plan.bounds.duration.map(|d| started + d);
    let progress = shared.plan.progress.then(|| spawn_progress(&shared, limit, started));
    let samples = match shared.plan.mode {
        LoadMode::Closed { concurrency } => closed_loop(&shared, concurrency, limit, deadline, started).await,
        LoadMode::Open { rate } => open_loop(&shared, rate, limit, deadline, started).await,
    };
    let elapsed = started.elapsed();
    if let Some((task, bar)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    Ok(RunOutput { samples, elapsed })
}

fn spawn_progress(
    shared: &Arc<Shared>,
    limit: Option<u64>,
    started: Instant,
) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let duration = shared.plan.bounds.duration;
    let (len, template) = match limit {
        Some(n) => (n, "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} requests, {msg}"),
        None => (duration.map_or(1, |d| d.as_millis() as u64), "{spinner} [{elapsed_precise}] {wide_bar} {msg}"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr_with_hz(5));
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    let (watched, shown) = (shared.clone(), bar.clone());
    let task = tokio::spawn(async move {
        loop {
            let done = watched.done.load(Ordering::Relaxed);
            let errors = watched.errors.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let pos = if limit.is_some() { done } else { started.elapsed().as_millis() as u64 };
            shown.set_position(pos.min(len));
            let msg = format!("{:.0} req/s, {errors} errors", done as f64 / secs);
            shown.set_message(if limit.is_some() { msg } else { format!("{done} requests, {msg}") });
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (task, bar)
}

/// Which endpoint and workload item the `i`-th request uses.
fn assign(shared: &Shared, i: u64) -> (u8, usize) {
    let k = shared.plan.endpoints.len() as u64;
    ((i % k) as u8, ((i / k) % shared.items.len() as u64) as usize)
}

async fn closed_loop(
    shared: &Arc<Shared>,
    concurrency: usize,
    limit: Option<u64>,
    deadline: Option<Instant>,
    started: Instant,
) -> Vec<Sample> {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (shared, next) = (shared.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if limit.is_some_and(|n| i >= n) {
                        break;
                    }
                    let (endpoint, item) = assign(&shared, i);
                    samples.push(send_one(&shared, endpoint, item, started).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for worker in workers {
        if let Ok(s) = worker.await {
            samples.extend(s);
        }
    }
    samples
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    started: Instant,
) -> Vec<Sample> {
    let mut rng = fastrand::Rng::with_seed(shared.plan.seed);
    let mut at = 0.0f64; // seconds after start of the next arrival
    let mut tasks = Vec::new();
    let mut i = 0u64;
    loop {
        if limit.is_some_and(|n| i >= n) {
            break;
        }
        // Exponential gaps: a Poisson process of the given mean rate.
        at += -(1.0 - rng.f64()).ln() / rate;
        let when = started + Duration::from_secs_f64(at);
        if deadline.is_some_and(|d| when >= d) {
            break;
        }
        tokio::time::sleep_until(when.into()).await;
        let (endpoint, item) = assign(shared, i);
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { send_one(&shared, endpoint, item, started).await }));
        i += 1;
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(s) = task.await {
            samples.push(s);
        }
    }
    samples
}

async fn send_one(shared: &Shared, endpoint: u8, item: usize, started: Instant) -> Sample {
    let prepared = &shared.items[item];
    let t0 = Instant::now();
    let mut sample = Sample {
        endpoint,
        item: item as u32,
        start_us: t0.duration_since(started).as_micros() as u64,
        ..Sample::default()
    };
    let url = &shared.plan.endpoints[endpoint as usize].url;
    let request = exchange(&shared.client, url, &shared.plan.headers, shared.plan.stream, prepared, t0, &mut sample);
    let outcome = tokio::time::timeout(shared.plan.timeout, request).await;
    sample.latency_us = t0.elapsed().as_micros() as u64;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => sample.error = Some(e),
        Err(_) => sample.error = Some(format!("no complete response within {:?}", shared.plan.timeout)),
    }
    if sample.error.is_some() {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
    shared.done.fetch_add(1, Ordering::Relaxed);
    sample
}
