//! A run's report: the JSON document `sluice pareto` reads back, the
//! Markdown written beside it, and the table printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::BenchError;
use super::stats::{Distribution, Summary};

/// The report format's version, written into every report.
pub const FORMAT: u32 = 1;

/// How the run was driven.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSetup {
    pub workload: String,
    pub workload_items: usize,
    pub stream: bool,
    /// `closed` or `open`.
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate: Option<f64>,
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
}

/// The gateway against the upstream called directly (`--baseline`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// Target minus baseline, ms, at each percentile.
    pub added_latency_p50_ms: Option<f64>,
    pub added_latency_p95_ms: Option<f64>,
    pub added_latency_p99_ms: Option<f64>,
    pub added_ttft_p50_ms: Option<f64>,
    /// Baseline cost minus target cost, USD per 1k requests, and as a share of the baseline's.
    pub savings_per_1k_requests_usd: Option<f64>,
    pub savings_share: Option<f64>,
}

impl Comparison {
    pub fn of(target: &Summary, baseline: &Summary) -> Comparison {
        let diff = |f: fn(&Distribution) -> f64, a: &Option<Distribution>, b: &Option<Distribution>| {
            Some(f(a.as_ref()?) - f(b.as_ref()?))
        };
        let savings = match (target.cost_per_1k_requests, baseline.cost_per_1k_requests) {
            (Some(t), Some(b)) => Some(b - t),
            _ => None,
        };
        Comparison {
            added_latency_p50_ms: diff(|d| d.p50, &target.latency_ms, &baseline.latency_ms),
            added_latency_p95_ms: diff(|d| d.p95, &target.latency_ms, &baseline.latency_ms),
            added_latency_p99_ms: diff(|d| d.p99, &target.latency_ms, &baseline.latency_ms),
            added_ttft_p50_ms: diff(|d| d.p50, &target.ttft_ms, &baseline.ttft_ms),
            savings_per_1k_requests_usd: savings,
            savings_share: savings.zip(baseline.cost_per_1k_requests).filter(|(_, b)| *b > 0.0).map(|(s, b)| s / b),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub format: u32,
    /// The configuration's name.
    pub label: String,
    pub target: String,
    pub setup: RunSetup,
    /// The target, all requests.
    pub overall: Summary,
    #[serde(default)]
    pub by_model: BTreeMap<String, Summary>,
    #[serde(default)]
    pub by_arm: BTreeMap<String, Summary>,
    #[serde(default)]
    pub by_tag: BTreeMap<String, Summary>,
    #[serde(default)]
    pub baseline_url: Option<String>,
    #[serde(default)]
    pub baseline: Option<Summary>,
    #[serde(default)]
    pub comparison: Option<Comparison>,
}

impl Report {
    /// Reads a report written by `sluice bench`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Report, BenchError> {
        let bad = |message: String| BenchError::Report { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let report: Report = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." { String::new() } else { format!(" at `{at}`") };
            bad(format!("not a `sluice bench` report{at}: {}", e.inner()))
        })?;
        if report.format != FORMAT {
            return Err(bad(format!("report format {} is not the supported {FORMAT}", report.format)));
        }
        Ok(report)
    }

    /// Writes `DIR/LABEL.json` and `DIR/LABEL.md`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), BenchError> {
        let io = |path: &Path, source| BenchError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let stem: String =
            self.label.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let (json, md) = (dir.join(format!("{stem}.json")), dir.join(format!("{stem}.md")));
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&json, text + "\n").map_err(|e| io(&json, e))?;
        std::fs::write(&md, self.markdown()).map_err(|e| io(&md, e))?;
        Ok((json, md))
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let load = match s.mode.as_str() {
            "open" => format!("open loop at {} req/s", s.rate.unwrap_or(0.0)),
            _ => format!("closed loop at concurrency {}", s.concurrency.unwrap_or(0)),
        };
        let _ = writeln!(out, "# `sluice bench`: {}\n", self.label);
        let _ = writeln!(
            out,
            "Target `{}`, workload `{}` ({} distinct requests), {load}, {}.\n",
            self.target,
            s.workload,
            s.workload_items,
            if s.stream { "streaming" } else { "not streaming" }
        );
        let mut rows = vec![("overall".to_owned(), &self.overall)];
        if let Some(b) = &self.baseline {
            rows.push(("baseline (direct)".to_owned(), b));
        }
        for (title, groups) in [("model", &self.by_model), ("arm", &self.by_arm), ("tag", &self.by_tag)] {
            if groups.len() > 1 || (title == "arm" && !groups.is_empty()) {
                rows.extend(groups.iter().map(|(k, v)| (format!("{title} `{k}`"), v)));
            }
        }
        out.push_str(&table(&rows, true));
        if let Some(c) = &self.comparison {
            let _ = writeln!(out, "\n## Against the baseline (`{}`)\n", self.baseline_url.as_deref().unwrap_or("-"));
            let _ = writeln!(out, "{}", comparison_lines(c).join("\n"));
        }
        if !self.overall.first_errors.is_empty() {
            let _ = writeln!(out, "\n## Errors\n");
            for e in &self.overall.first_errors {
                let _ = writeln!(out, "- {e}");
            }
        }
        out
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn dist(d: &Option<Distribution>, f: fn(&Distribution) -> f64) -> String {
    opt(d.as_ref().map(f), 1)
}

/// Lines describing a comparison with the baseline.
pub fn comparison_lines(c: &Comparison) -> Vec<String> {
    vec![
        format!(
            "- added latency (target − baseline): p50 {} ms, p95 {} ms, p99 {} ms; TTFT p50 {} ms",
            opt(c.added_latency_p50_ms, 2),
            opt(c.added_latency_p95_ms, 2),
            opt(c.added_latency_p99_ms, 2),
            opt(c.added_ttft_p50_ms, 2)
        ),
        format!(
            "- savings: {} USD per 1k requests ({})",
            opt(c.savings_per_1k_requests_usd, 4),
            c.savings_share.map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0))
        ),
    ]
}

/// A Markdown table of summaries, one row each.
pub fn table(rows: &[(String, &Summary)], markdown: bool) -> String {
    let head = [
        "",
        "requests",
        "errors",
        "req/s",
        "out tok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "TTFT p50",
        "TPOT p50",
        "ITL p50",
        "cache hits",
        "$/1k req",
        "quality",
    ];
    let mut lines: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for (name, s) in rows {
        let cache = match s.cache_hit_rate {
            None => "-".into(),
            Some(rate) => {
                let kinds: Vec<String> = ["hit", "semantic-hit"]
                    .iter()
                    .filter_map(|k| s.cache.get(*k).map(|n| format!("{k} {n}")))
                    .collect();
                format!(
                    "{:.1}% {}",
                    rate * 100.0,
                    if kinds.is_empty() { String::new() } else { format!("({})", kinds.join(", ")) }
                )
            }
        };
        let quality = match (&s.quality, &s.quality_source) {
            (Some(q), Some(src)) => format!("{q:.3} ({src})"),
            _ => "-".into(),
        };
        lines.push(vec![
            name.clone(),
            s.requests.to_string(),
            format!("{:.1}%", s.error_rate * 100.0),
            format!("{:.1}", s.requests_per_s),
            format!("{:.1}", s.output_tokens_per_s),
            dist(&s.latency_ms, |d| d.p50),
            dist(&s.latency_ms, |d| d.p95),
            dist(&s.latency_ms, |d| d.p99),
            dist(&s.ttft_ms, |d| d.p50),
            opt(s.tpot_ms.as_ref().map(|d| d.p50), 2),
            opt(s.itl_ms.as_ref().map(|d| d.p50), 2),
            cache.trim().to_owned(),
            opt(s.cost_per_1k_requests, 4),
            quality,
        ]);
    }
    render(&lines, markdown)
}

/// Renders rows as a Markdown table, or as aligned columns for a terminal.
pub fn render(lines: &[Vec<String>], markdown: bool) -> String {
    let cols = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..cols).map(|c| lines.iter().map(|l| l.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, s)| if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) })
            .collect();
        if markdown {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let rule: Vec<String> =
                    widths
                        .iter()
                        .enumerate()
                        .map(|(c, w)| {
                            if c == 0 { "-".repeat(*w) } else { format!("{}:", "-".repeat(w.saturating_sub(1).max(1))) }
                        })
                        .collect();
                let _ = writeln!(out, "| {} |", rule.join(" | "));
            }
        } else {
            let _ = writeln!(out, "{}", cells.join("  "));
        }
    }
    out
}
