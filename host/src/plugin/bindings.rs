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

/// What a plugin's stores share: its name and manifest, and the count of
/// the whole host's plugin calls in flight (to tell load from a slow plugin).
#[derive(Debug)]
pub struct PluginMeta {
    pub name: Arc<str>,
    pub manifest: Manifest,
    pub host_in_flight: Arc<AtomicUsize>,
}

/// What the running call has seen and done so far (reset when a call's
/// deadline is armed).
#[derive(Debug, Default, Clone, Copy)]
pub struct CallWatch {
    /// Most host plugin calls in flight at a tick (or at the start).
    pub peak_in_flight: usize,
    /// `host.log` lines logged.
    pub log_lines: u32,
    /// `host.log` lines dropped over the per-call cap.
    pub log_dropped: u32,
}

impl CallWatch {
    /// Note the host's calls in flight at an epoch tick of the running guest.
    pub fn tick(&mut self, in_flight: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }
}

/// Most `host.log` lines one call may log; the rest are dropped and
/// counted.
pub const MAX_LOG_LINES: u32 = 100;

/// Longest `host.log` message logged; longer ones are cut (on a character
/// boundary) and marked.
pub const MAX_LOG_BYTES: usize = 4096;

/// `message` cut to [`MAX_LOG_BYTES`] at a character boundary.
pub fn clip_log(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_LOG_BYTES {
        return message.into();
    }
    let mut end = MAX_LOG_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes cut]", &message[..end], message.len() - end).into()
}

/// Denies memory and table growth that would take the whole instance past
/// the plugin's limit, and remembers that it did so (an out-of-memory fault,
/// not a plain trap). The limit bounds the sum over every memory and table
/// of the instance (a component may hold several core instances, each with
/// its own), not each one alone.
#[derive(Debug)]
pub struct Limiter {
    pub memory_bytes: usize,
    pub hit: bool,
    /// Bytes of every memory and table of the instance, as granted so far.
    total: usize,
    /// The growth granted last, taken back if wasmtime then fails it.
    last_grant: usize,
}

/// What a table element is counted as (a function reference: a pointer).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Most memories and tables one instance may have.
const MAX_MEMORIES: usize = 32;
const MAX_TABLES: usize = 64;

impl Limiter {
    pub fn new(memory_bytes: usize) -> Limiter {
        Limiter { memory_bytes, hit: false, total: 0, last_grant: 0 }
    }

    /// Bytes the instance holds in memories and tables.
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.total
    }

    /// Grant growing one memory or table from `current` to `desired` bytes
    /// if the whole instance stays within the limit.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let more = desired.saturating_sub(current);
        let total = self.total.saturating_add(more);
        if total > self.memory_bytes {
            self.hit = true;
            self.last_grant = 0;
            return false;
        }
        self.total = total;
        self.last_grant = more;
        true
    }

    fn grow_failed(&mut self) {
        self.total = self.total.saturating_sub(std::mem::take(&mut self.last_grant));
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > 1_000_000 {
            self.hit = true;
            return Ok(false);
        }
        Ok(self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_MEMORIES.max(MAX_TABLES)
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// The data of one Store: one plugin instance's world.
pub struct HostState {
    pub meta: Arc<PluginMeta>,
    pub limiter: Limiter,
    /// When the running call (or instantiation) must be over.
    pub deadline: Instant,
    /// What the running call has seen and done.
    pub watch: CallWatch,
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
        let limiter = Limiter::new(meta.manifest.memory_bytes);
        HostState {
            meta,
            limiter,
            deadline: Instant::now(),
            watch: CallWatch::default(),
            wasi: b.build(),
            table: ResourceTable::new(),
        }
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
        let watch = &mut self.watch;
        if watch.log_lines >= MAX_LOG_LINES {
            if watch.log_dropped == 0 {
                tracing::warn!(plugin = %self.meta.name, "plugin logged over {MAX_LOG_LINES} lines in one call; dropping the rest");
            }
            watch.log_dropped = watch.log_dropped.saturating_add(1);
            return;
        }
        watch.log_lines += 1;
        let message = clip_log(&message);
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

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::super::config::PluginDefaults;
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_memory_limit_bounds_the_whole_instance() {
        let mut l = Limiter::new(10 * MIB);
        // Two memories of 6 MiB each: the second takes the instance over.
        assert!(l.memory_growing(0, 6 * MIB, None).expect("no error"));
        assert!(!l.memory_growing(0, 6 * MIB, None).expect("no error"));
        assert!(l.hit);
        assert_eq!(l.total(), 6 * MIB);
        // Growth is counted by what it adds; a failed growth is taken back.
        assert!(l.memory_growing(6 * MIB, 8 * MIB, None).expect("no error"));
        l.memory_grow_failed(wasmtime::Error::msg("no room")).expect("no error");
        assert_eq!(l.total(), 6 * MIB);
        // Tables count too.
        assert!(!l.table_growing(0, 600_000, None).expect("no error"));
        assert!(l.table_growing(0, 1000, None).expect("no error"));
        assert_eq!(l.total(), 6 * MIB + 8000);
    }

    fn state() -> HostState {
        let manifest = Manifest::defaults(&PluginDefaults::default());
        HostState::new(Arc::new(PluginMeta { name: "noisy".into(), manifest, host_in_flight: Arc::default() }))
    }

    #[test]
    fn host_log_is_capped_in_lines_and_length() {
        let mut s = state();
        for i in 0..150 {
            host::Host::log(&mut s, host::LogLevel::Info, format!("line {i}"));
        }
        assert_eq!((s.watch.log_lines, s.watch.log_dropped), (MAX_LOG_LINES, 50));
        let long = "é".repeat(10_000);
        let clipped = clip_log(&long);
        assert!(clipped.len() < MAX_LOG_BYTES + 40, "{}", clipped.len());
        assert!(clipped.ends_with("bytes cut]"), "{clipped}");
        assert_eq!(clip_log("short"), "short");
    }
}
