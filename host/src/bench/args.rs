//! The flags of `sluice bench` and `sluice pareto`, and their checks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::driver::{Bounds, LoadMode};
use super::error::BenchError;
use super::pareto::Objective;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The OpenAI-compatible endpoint to load: a base URL (`http://HOST:PORT`,
    /// `.../v1`) or the full `.../chat/completions` URL.
    #[arg(long)]
    pub target: String,
    /// Also run the workload against this endpoint (the upstream, directly),
    /// interleaved with the target, and report the gateway's added latency
    /// and the savings.
    #[arg(long)]
    pub baseline: Option<String>,
    /// The workload: `faq`, `mtbench`, `rag`, or a JSONL file of OpenAI chat
    /// requests (one per line; an optional top-level `reference` string is
    /// the expected answer and is not sent).
    #[arg(long, default_value = "faq")]
    pub workload: String,
    /// Send this model name (default: `any` for the built-in workloads, the
    /// file's own for JSONL).
    #[arg(long)]
    pub model: Option<String>,
    /// Closed loop: this many requests in flight at all times [default: 8].
    #[arg(long, short = 'c', conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: start requests at this rate (requests/s, Poisson arrivals),
    /// whatever the responses do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many requests (per endpoint) [default: the JSONL
    /// file's length, or 200 for the built-in workloads, unless --duration].
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Stop starting requests after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stream the responses (measures time to first token and inter-token latency).
    #[arg(long)]
    pub stream: bool,
    /// `max_tokens` for the built-in workloads.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// FAQ workload: share of requests that repeat an earlier question word for word.
    #[arg(long, default_value_t = 0.3)]
    pub repeat_share: f64,
    /// FAQ workload: share of requests that paraphrase an earlier question.
    #[arg(long, default_value_t = 0.2)]
    pub paraphrase_share: f64,
    /// RAG workload: approximate length of the shared system prompt, in words.
    #[arg(long, default_value_t = 1500)]
    pub context_words: usize,
    /// The MT-Bench folder (`question.jsonl`, `reference_answer.jsonl`), as
    /// fetched by `scripts/fetch-data.sh` [default: `data/mtbench`].
    #[arg(long, env = "SLUICE_MTBENCH_DIR")]
    pub mtbench_dir: Option<PathBuf>,
    /// Price of input tokens, USD per million, for responses without `x-sluice-cost-usd`.
    #[arg(long)]
    pub price_in: Option<f64>,
    /// Price of output tokens, USD per million, for responses without `x-sluice-cost-usd`.
    #[arg(long)]
    pub price_out: Option<f64>,
    /// Extra request header, `NAME: VALUE` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Bearer token for the target and the baseline.
    #[arg(long, env = "SLUICE_BENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Give up on one request after this many seconds (counted as an error).
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Requests sent before measuring (warm pools and caches), not counted.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Seed for the generators and the arrival process.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The configuration's name in reports [default: the workload and target].
    #[arg(long)]
    pub label: Option<String>,
    /// Folder for the reports, written as LABEL.json and LABEL.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    pub fn mode(&self) -> Result<LoadMode, BenchError> {
        match (self.concurrency, self.rate) {
            (_, Some(rate)) if !(rate.is_finite() && rate > 0.0) => {
                Err(BenchError::Usage(format!("--rate must be a positive number of requests/s, not {rate}")))
            }
            (_, Some(rate)) => Ok(LoadMode::Open { rate }),
            (Some(0), _) => Err(BenchError::Usage("--concurrency must be at least 1".into())),
            (Some(c), None) => Ok(LoadMode::Closed { concurrency: c }),
            (None, None) => Ok(LoadMode::Closed { concurrency: 8 }),
        }
    }

    /// The stop conditions; `workload_len` is the default request count for a file.
    pub fn bounds(&self, default_requests: u64) -> Result<Bounds, BenchError> {
        if self.requests == Some(0) {
            return Err(BenchError::Usage("--requests must be at least 1".into()));
        }
        let duration = match self.duration {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                return Err(BenchError::Usage(format!("--duration must be a positive number of seconds, not {s}")));
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        let requests = match (self.requests, duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(default_requests),
        };
        Ok(Bounds { requests, duration })
    }

    pub fn timeout(&self) -> Result<Duration, BenchError> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(BenchError::Usage(format!(
                "--timeout must be a positive number of seconds, not {}",
                self.timeout
            )));
        }
        Ok(Duration::from_secs_f64(self.timeout))
    }

    /// `--header` values, parsed.
    pub fn header_pairs(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, BenchError> {
        let mut out = Vec::new();
        for h in &self.headers {
            let bad = || BenchError::Usage(format!("--header `{h}` is not `NAME: VALUE`"));
            let (name, value) = h.split_once(':').ok_or_else(bad)?;
            let name = http::HeaderName::try_from(name.trim()).map_err(|_| bad())?;
            let value = http::HeaderValue::try_from(value.trim()).map_err(|_| bad())?;
            out.push((name, value));
        }
        if let Some(key) = &self.api_key {
            let value = http::HeaderValue::try_from(format!("Bearer {key}"))
                .map_err(|_| BenchError::Usage("--api-key holds characters not allowed in a header".into()))?;
            out.push((http::header::AUTHORIZATION, value));
        }
        Ok(out)
    }

    pub fn check_shares(&self) -> Result<(), BenchError> {
        let ok = |x: f64| (0.0..=1.0).contains(&x);
        if !ok(self.repeat_share) || !ok(self.paraphrase_share) || self.repeat_share + self.paraphrase_share > 1.0 {
            return Err(BenchError::Usage(
                "--repeat-share and --paraphrase-share must lie in [0, 1] and add up to at most 1".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct ParetoArgs {
    /// Reports written by `sluice bench` (JSON), one per configuration.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Only configurations with p95 latency at most this many milliseconds qualify.
    #[arg(long)]
    pub max_latency: Option<f64>,
    /// Only configurations costing at most this many USD per 1k requests qualify.
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Only configurations with quality at least this (0..1) qualify.
    #[arg(long)]
    pub min_quality: Option<f64>,
    /// Write the scatter plot (p95 latency against cost, quality as colour) here: `.svg`.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// What "best" means among the configurations that meet the limits.
    #[arg(long, value_enum, default_value = "cost")]
    pub prefer: Objective,
    /// Write the Markdown table here (it is always printed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
