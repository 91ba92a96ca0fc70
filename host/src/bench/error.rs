//! Why `sluice bench` or `sluice pareto` could not do its work, and the exit
//! status each reason gives. Printing the error is left to the commands.

use std::process::ExitCode;

/// Why a benchmark or a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("workload {origin}: {message}")]
    Workload { origin: String, message: String },
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("all {count} requests to {url} failed; first error: {first}")]
    AllFailed { url: String, count: u64, first: String },
    #[error("report {path}: {message}")]
    Report { path: String, message: String },
    #[error("plot {path}: {message}")]
    Plot { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl BenchError {
    /// 2 for bad input (flags, workload, reports), 1 for a failed run.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            BenchError::Usage(_) | BenchError::Workload { .. } | BenchError::Report { .. } => ExitCode::from(2),
            BenchError::Unreachable { .. }
            | BenchError::AllFailed { .. }
            | BenchError::Plot { .. }
            | BenchError::Io { .. } => ExitCode::FAILURE,
        }
    }
}
