//! The command line: `sluice serve`, `sluice check-config`, `sluice bench`
//! and `sluice pareto` (whose flags live in `crate::bench::args`), and
//! running the gateway. `crate::config` (its `flags.rs`) applies the serve
//! flags on top of the config file; this module reads no config.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::gateway::{Gateway, GatewayConfig};
use crate::redis_client::redact_url;
use crate::server::Server;

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "An LLM gateway whose policies are WebAssembly plugins")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Check a config file; prints the first problem (key and line) and exits non-zero.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Load an OpenAI-compatible endpoint with a workload; report latency, cost and quality.
    Bench(crate::bench::BenchArgs),
    /// Compare `sluice bench` reports: the Pareto front and the best configuration.
    Pareto(crate::bench::ParetoArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Openai,
    Anthropic,
}

/// `sluice serve`'s flags. Its `Debug` hides the upstream key and the Redis
/// password; `--help` never shows their environment variables' values.
#[derive(Args)]
pub struct ServeArgs {
    /// A config file (TOML); flags override its values.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Forward every model to this upstream base URL, e.g. http://127.0.0.1:9100/v1.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The API the `--upstream` speaks.
    #[arg(long, value_enum, default_value = "openai")]
    pub upstream_kind: KindArg,
    /// API key for `--upstream`.
    #[arg(long, env = "SLUICE_UPSTREAM_KEY", hide_env_values = true)]
    pub upstream_key: Option<String>,
    /// Serve this GGUF model with the bundled engine [default: the bundled
    /// engine's default model, when no other upstream is given].
    #[arg(long)]
    pub engine_model: Option<PathBuf>,
    /// The stage plugin folder (hot-reloaded) [default: the config's `[plugins] dir`, else
    /// `plugins/dist` when it exists].
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Share cache entries, rate limits and budgets with other replicas
    /// through this Redis server, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "SLUICE_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// Cache responses (exact and semantic) with the default `[cache]` settings.
    #[arg(long)]
    pub cache: bool,
}

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("upstream", &self.upstream.as_deref().map(redact_url))
            .field("upstream_kind", &self.upstream_kind)
            .field("upstream_key", &self.upstream_key.as_ref().map(|_| "***"))
            .field("engine_model", &self.engine_model)
            .field("plugins", &self.plugins)
            .field("redis", &self.redis.as_deref().map(redact_url))
            .field("cache", &self.cache)
            .finish()
    }
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    if config.keys.is_empty() && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            address = %config.server.listen,
            "NO CLIENT KEYS CONFIGURED on a non-loopback address: anyone who can reach it may call every \
             model, read /metrics and use /admin/* (cache purge, routing stats). Configure [[keys]] \
             (with `admin = true` / `metrics = true` for operators) or listen on 127.0.0.1"
        );
    }
    let gateway = Gateway::new(config)?;
    let traces = gateway.traces.clone();
    let server = Server::bind(gateway).await?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    tracing::info!(address = %server.local_addr(), "sluice listening on {scheme}://{}", server.local_addr());
    server.run(shutdown_signal()).await;
    // The last requests' spans go out before the process ends.
    let _ = tokio::task::spawn_blocking(move || traces.flush()).await;
    tracing::info!("sluice stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
