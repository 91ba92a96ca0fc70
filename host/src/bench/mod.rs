//! `sluice bench` and `sluice pareto`: measure before optimising.
//!
//! `bench` drives any OpenAI-compatible endpoint (Sluice, or an upstream
//! directly for a baseline) with a workload and reports latency, streaming
//! figures, throughput, errors, cache outcomes, cost and quality; `pareto`
//! compares the reports of several configurations. The parts:
//!
//! - `args`: the flags and their checks;
//! - `workload`: JSONL replay and the FAQ, MT-Bench and RAG generators;
//! - `driver`: the load driver (closed or open loop), with `sample` sending
//!   one request and measuring it, and `sse` reading responses as they arrive;
//! - `stats`: figures from samples; `quality`: ROUGE-L against references;
//! - `report`: JSON, Markdown and terminal tables;
//! - `pareto`: the frontier and the constrained choice; `plot`: its SVG;
//! - `error`: why a command failed, and its exit status.
//!
//! It does not start or configure a gateway: the configurations compared are
//! whatever is listening at the target (see `examples/bench/`).

pub mod args;
pub mod driver;
mod error;
pub mod pareto;
pub mod plot;
pub mod quality;
pub mod report;
pub mod sample;
pub mod sse;
pub mod stats;
pub mod workload;

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

pub use args::{BenchArgs, ParetoArgs};
use driver::{Endpoint, LoadMode, RunPlan};
pub use error::BenchError;
use report::{Comparison, Report, RunSetup};
use sample::Prepared;
use stats::{Prices, Summary};
use workload::Workload;

/// The workload the flags name.
pub fn load_workload(args: &BenchArgs) -> Result<Workload, BenchError> {
    args.check_shares()?;
    let n = args.requests.unwrap_or(200).clamp(1, 100_000) as usize;
    let workload = match args.workload.as_str() {
        "faq" => workload::faq(n, args.repeat_share, args.paraphrase_share, args.max_tokens, args.seed),
        "rag" => workload::rag(n, args.context_words, args.max_tokens, args.seed),
        "mtbench" => {
            let dir = args.mtbench_dir.clone().unwrap_or_else(workload::default_mtbench_dir);
            workload::mtbench(&dir, args.max_tokens)?
        }
        file => workload::from_jsonl(std::path::Path::new(file))?,
    };
    let is_file = !matches!(args.workload.as_str(), "faq" | "rag" | "mtbench");
    Ok(workload.with_model(args.model.as_deref().or((!is_file).then_some("any"))))
}

/// Runs the benchmark the flags describe and returns its report (nothing is written).
pub async fn measure(args: &BenchArgs) -> Result<Report, BenchError> {
    let mode = args.mode()?;
    let timeout = args.timeout()?;
    let headers = args.header_pairs()?;
    let target = Endpoint::parse("target", &args.target)?;
    let baseline = args.baseline.as_deref().map(|b| Endpoint::parse("baseline", b)).transpose()?;
    let prices = match (args.price_in, args.price_out) {
        (None, None) => None,
        (i, o) => Some(Prices { input_per_mtok: i.unwrap_or(0.0), output_per_mtok: o.unwrap_or(0.0) }),
    };
    let workload = load_workload(args)?;
    let default_requests =
        if matches!(args.workload.as_str(), "faq" | "rag") { 200 } else { workload.items.len() as u64 };
    let bounds = args.bounds(default_requests)?;
    let items = prepare(&workload, args.stream);
    let mut endpoints = vec![target.clone()];
    endpoints.extend(baseline.clone());
    let plan = RunPlan {
        endpoints,
        mode,
        bounds,
        stream: args.stream,
        timeout,
        warmup: args.warmup,
        seed: args.seed,
        headers,
        progress: !args.quiet,
    };
    let setup = run_setup(&workload, &plan);
    let run = driver::run(plan, items).await?;
    let duration_s = run.elapsed.as_secs_f64();
    let (target_samples, baseline_samples): (Vec<_>, Vec<_>) = run.samples.into_iter().partition(|s| s.endpoint == 0);
    let overall = Summary::of(&target_samples, duration_s, prices);
    if overall.ok == 0 {
        return Err(BenchError::AllFailed {
            url: target.url.to_string(),
            count: overall.requests,
            first: overall.first_errors.first().cloned().unwrap_or_else(|| "none sent".into()),
        });
    }
    let baseline_summary = baseline.as_ref().map(|_| Summary::of(&baseline_samples, duration_s, prices));
    let tags: Vec<&str> = workload.items.iter().map(|i| i.tag.as_str()).collect();
    let label = args.label.clone().unwrap_or_else(|| {
        let host = target.url.authority().map_or_else(String::new, |a| a.as_str().replace(':', "_"));
        format!("{}-{host}", workload.name)
    });
    Ok(Report {
        format: report::FORMAT,
        label,
        target: target.url.to_string(),
        setup,
        by_model: stats::grouped(&target_samples, |s| s.model.clone(), duration_s, prices),
        by_arm: stats::grouped(&target_samples, |s| s.arm.clone(), duration_s, prices),
        by_tag: stats::grouped(
            &target_samples,
            |s| tags.get(s.item as usize).map(|t| t.to_string()),
            duration_s,
            prices,
        ),
        comparison: baseline_summary.as_ref().map(|b| Comparison::of(&overall, b)),
        baseline_url: baseline.map(|b| b.url.to_string()),
        baseline: baseline_summary,
        overall,
    })
}

/// The workload's requests as they are sent (asking for a stream and its
/// usage when `stream`).
fn prepare(workload: &Workload, stream: bool) -> Vec<Prepared> {
    workload
        .items
        .iter()
        .map(|item| {
            let mut body = item.request.clone();
            if stream {
                body["stream"] = json!(true);
                body["stream_options"] = json!({"include_usage": true});
            }
            Prepared { body: Bytes::from(body.to_string()), reference: item.reference.as_deref().map(Arc::from) }
        })
        .collect()
}

/// How the run was set up, for the report.
fn run_setup(workload: &Workload, plan: &RunPlan) -> RunSetup {
    let (mode, concurrency, rate) = match plan.mode {
        LoadMode::Closed { concurrency } => ("closed", Some(concurrency), None),
        LoadMode::Open { rate } => ("open", None, Some(rate)),
    };
    RunSetup {
        workload: workload.name.clone(),
        workload_items: workload.items.len(),
        stream: plan.stream,
        mode: mode.into(),
        concurrency,
        rate,
        requests: plan.bounds.requests,
        duration_s: plan.bounds.duration.map(|d| d.as_secs_f64()),
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `sluice bench`: measure, print the table, write the reports.
pub fn main_bench(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(measure(&args)).and_then(|report| {
        let mut rows = vec![(report.label.clone(), &report.overall)];
        rows.extend(report.baseline.iter().map(|b| ("baseline (direct)".to_owned(), b)));
        if report.by_model.len() > 1 {
            rows.extend(report.by_model.iter().map(|(k, v)| (format!("  model {k}"), v)));
        }
        rows.extend(report.by_arm.iter().map(|(k, v)| (format!("  arm {k}"), v)));
        out!("{}", report::table(&rows, false));
        if let Some(c) = &report.comparison {
            out!("{}\n", report::comparison_lines(c).join("\n"));
        }
        if report.overall.errors > 0 {
            out!("errors: {}\n", report.overall.first_errors.join(" | "));
        }
        let (json, md) = report.write(&args.out)?;
        out!("reports: {} {}\n", json.display(), md.display());
        Ok(())
    });
    exit_code(result)
}

/// A command's outcome as its exit status, the error printed.
fn exit_code(result: Result<(), BenchError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Compares the reports the flags name.
pub fn compare(args: &ParetoArgs) -> Result<pareto::Analysis, BenchError> {
    let reports = args.reports.iter().map(|p| Report::load(p)).collect::<Result<Vec<_>, _>>()?;
    let constraints = pareto::Constraints {
        max_latency_ms: args.max_latency,
        max_cost_per_1k: args.max_cost,
        min_quality: args.min_quality,
    };
    Ok(pareto::analyse(&reports, constraints, args.prefer))
}

/// `sluice pareto`: print (and write) the table, draw the plot.
pub fn main_pareto(args: ParetoArgs) -> ExitCode {
    let result = compare(&args).and_then(|analysis| {
        let md = analysis.markdown();
        out!("{md}");
        if let Some(path) = &args.out {
            std::fs::write(path, &md).map_err(|e| BenchError::Io { path: path.display().to_string(), source: e })?;
        }
        if let Some(path) = &args.plot {
            plot::write_svg(&analysis, path)?;
            out!("plot: {}\n", path.display());
        }
        Ok(())
    });
    exit_code(result)
}
