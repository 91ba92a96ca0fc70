//! The command line: `sluice serve`, `sluice check-config`, `sluice bench`
//! and `sluice pareto` (whose flags live in `crate::bench::args`). Flags are
//! applied on top of the config file (or the defaults) here, and nowhere else.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError, UpstreamKind};

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

#[derive(Debug, Args)]
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
    /// The stage plugin folder (hot-reloaded) [default: `plugins/dist` when it exists].
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Share cache entries, rate limits and budgets with other replicas
    /// through this Redis server, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "SLUICE_REDIS_URL")]
    pub redis: Option<String>,
    /// Cache responses (exact and semantic) with the default `[cache]` settings.
    #[arg(long)]
    pub cache: bool,
}

impl ServeArgs {
    /// The config these flags describe.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(url) = &self.upstream {
            let ok = url
                .parse::<http::Uri>()
                .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if !ok {
                return Err(ConfigError {
                    origin: "command line".to_owned(),
                    location: String::new(),
                    key: "--upstream".to_owned(),
                    message: format!("`{url}` is not an http:// or https:// URL"),
                });
            }
            let kind = match self.upstream_kind {
                KindArg::Openai => UpstreamKind::OpenAi,
                KindArg::Anthropic => UpstreamKind::Anthropic,
            };
            config = config.with_upstream(url, kind, self.upstream_key.clone());
        }
        if let Some(url) = &self.redis {
            let ok = ["redis://", "rediss://", "unix://"].iter().any(|s| url.starts_with(s));
            if !ok {
                return Err(ConfigError {
                    origin: "command line".to_owned(),
                    location: String::new(),
                    key: "--redis".to_owned(),
                    message: format!("`{url}` is not a redis:// URL"),
                });
            }
            let mut redis = config.redis.take().unwrap_or_else(|| crate::shared::RedisConfig::new(url));
            redis.url.clone_from(url);
            config.redis = Some(redis);
        }
        if self.cache && config.cache.is_none() {
            config.cache = Some(crate::cache::CacheConfig::default());
        }
        if let Some(dir) = &self.plugins {
            let mut plugins = config.plugins.take().unwrap_or_else(|| crate::plugin::PluginConfig::new(dir));
            plugins.dir.clone_from(dir);
            config.plugins = Some(plugins);
        } else if config.plugins.is_none() {
            config.plugins = crate::plugin::PluginConfig::default_dir().map(crate::plugin::PluginConfig::new);
        }
        // No upstream at all, or an explicit engine model: the bundled engine serves.
        if config.upstreams.is_empty() || self.engine_model.is_some() {
            config = config.with_engine(self.engine_model.clone());
        }
        Ok(config)
    }
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let gateway = crate::gateway::Gateway::new(config)?;
    let server = crate::server::Server::bind(gateway).await?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    tracing::info!(address = %server.local_addr(), "sluice listening on {scheme}://{}", server.local_addr());
    server.run(shutdown_signal()).await;
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
