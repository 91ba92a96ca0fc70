//! The generated WIT bindings (`sluice:plugin@0.1.0`, host view) and the
//! per-call Store state: WASI context, memory limiter, and the host imports
//! every plugin gets (log, config, token counting, monotonic clock).
//!
//! Guest stdout and stderr are sent to the log, line by line, tagged with the
//! plugin's name. This module does not create stores or call plugins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::manifest::Manifest;

wasmtime::component::bindgen!({
    world: "host-view",
    path: "../wit",
    // Stage calls run as futures on the gateway's async workers (the
    // guest on a fiber); the host imports are plain functions.
    exports: { default: async },
});

pub use exports::sluice::plugin::{caching, compression, judging, routing};
pub use sluice::plugin::{host, types};

/// What a plugin's stores share: its name and manifest.
#[derive(Debug)]
pub struct PluginMeta {
    pub name: Arc<str>,
    pub manifest: Manifest,
}

/// Denies memory and table growth past the plugin's limit, and remembers
/// that it did so (an out-of-memory fault, not a plain trap).
#[derive(Debug)]
pub struct Limiter {
    pub memory_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > 1_000_000 {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// The data of one Store: one plugin instance's world.
pub struct HostState {
    pub meta: Arc<PluginMeta>,
    pub limiter: Limiter,
    /// When the running call (or instantiation) must be over.
    pub deadline: Instant,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    /// A fresh state with the WASI capabilities the manifest grants (none
    /// by default).
    pub fn new(meta: Arc<PluginMeta>) -> HostState {
        let mut b = WasiCtxBuilder::new();
        b.stdout(LogStream::new(&meta.name, "stdout"));
        b.stderr(LogStream::new(&meta.name, "stderr"));
        let grants = &meta.manifest.grants;
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                b.env(name, value);
            }
        }
        for dir in &grants.dirs {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            if let Err(e) = b.preopened_dir(&dir.host, &dir.guest, perms) {
                tracing::warn!(plugin = %meta.name, dir = %dir.host.display(), error = %e,
                    "plugin directory grant unavailable");
            }
        }
        if grants.network {
            b.inherit_network();
            b.allow_ip_name_lookup(true);
        }
        let limiter = Limiter { memory_bytes: meta.manifest.memory_bytes, hit: false };
        HostState { meta, limiter, deadline: Instant::now(), wasi: b.build(), table: ResourceTable::new() }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

static CLOCK_START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The gateway's own token counter (`crate::accounting`), so plugins and
/// usage accounting share one copy of the tokenizer tables.
pub fn count_tokens(text: &str) -> u32 {
    u32::try_from(crate::accounting::count_tokens(text)).unwrap_or(u32::MAX)
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let plugin = &*self.meta.name;
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.meta.manifest.config.get(&key).cloned()
    }

    fn config_all(&mut self) -> Vec<(String, String)> {
        let config: &BTreeMap<String, String> = &self.meta.manifest.config;
        config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn count_tokens(&mut self, text: String) -> u32 {
        count_tokens(&text)
    }

    fn monotonic_now(&mut self) -> u64 {
        u64::try_from(CLOCK_START.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Guest stdout or stderr, sent to the log.
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    /// Bytes written so far by this instance (all its stream handles).
    written: Arc<AtomicUsize>,
}

impl LogStream {
    fn new(plugin: &Arc<str>, stream: &'static str) -> LogStream {
        LogStream { plugin: plugin.clone(), stream, written: Arc::default() }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogWriter {
            plugin: self.plugin.clone(),
            stream: self.stream,
            buf: Vec::new(),
            written: self.written.clone(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this; Sluice links WASIp2.
        Box::new(tokio::io::sink())
    }
}

/// Longest line kept before it is logged in pieces.
const MAX_LINE: usize = 4096;

/// Most output logged per stream per instance; the rest is dropped.
const MAX_OUTPUT: usize = 64 * 1024;

struct LogWriter {
    plugin: Arc<str>,
    stream: &'static str,
    buf: Vec<u8>,
    written: Arc<AtomicUsize>,
}

impl LogWriter {
    fn emit(&mut self, all: bool) {
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.line(&line[..line.len() - 1]);
        }
        if all || self.buf.len() >= MAX_LINE {
            let rest = std::mem::take(&mut self.buf);
            if !rest.is_empty() {
                self.line(&rest);
            }
        }
    }

    fn line(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        tracing::info!(plugin = %self.plugin, stream = self.stream, "{}", text.trim_end());
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.emit(true);
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LogWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let before = self.written.fetch_add(bytes.len(), Ordering::Relaxed);
        if before.saturating_add(bytes.len()) > MAX_OUTPUT {
            if before <= MAX_OUTPUT {
                self.emit(true);
                tracing::warn!(plugin = %self.plugin, stream = self.stream,
                    "plugin output over {MAX_OUTPUT} bytes; dropping the rest");
            }
            return Ok(());
        }
        self.buf.extend_from_slice(&bytes);
        self.emit(false);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.emit(true);
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}
