//! Test support: build the plugins once, make throwaway plugin folders from
//! built components, and construct requests, responses, candidates and the
//! empty stage context.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sluice::api::chat::{ChatRequest, ChatResponse, Choice, Message, Role};
use sluice::plugin::{PluginConfig, PluginHost};
use sluice::stage::{Health, RouteCandidate, StageContext};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

pub fn dist() -> PathBuf {
    repo_root().join("plugins/dist")
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/plugins/dist")
}

/// Shared compiled-artifact cache, so each component compiles once per run.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target/plugin-test-cache")
}

/// Build every plugin and fixture (once per test process).
pub fn built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        if std::env::var_os("SLUICE_SKIP_PLUGIN_BUILD").is_none() {
            let out = std::process::Command::new(repo_root().join("plugins/build.sh"))
                .output()
                .map_err(|e| format!("cannot run plugins/build.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!("plugins/build.sh failed:\n{}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        for f in ["judge.wasm", "router.wasm", "compressor.wasm", "cache-policy.wasm"] {
            if !dist().join(f).is_file() {
                return Err(format!("plugins/dist/{f} is missing: run plugins/build.sh"));
            }
        }
        // Compile everything once into the shared cache.
        let mut cfg = PluginConfig::new(dist());
        cfg.cache_dir = Some(cache_dir());
        cfg.watch = false;
        PluginHost::start(cfg).map_err(|e| e.to_string())?;
        let mut cfg = PluginConfig::new(fixtures());
        cfg.cache_dir = Some(cache_dir());
        cfg.watch = false;
        PluginHost::start(cfg).map_err(|e| e.to_string())?;
        Ok(())
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// The default deadline in tests (fault tests set their own, shorter one).
pub const TEST_DEADLINE: Duration = Duration::from_secs(2);

/// A temporary plugin folder, removed on drop.
pub struct Folder {
    pub path: PathBuf,
}

impl Folder {
    pub fn new() -> Folder {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-plugin-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp plugin folder");
        Folder { path }
    }

    /// Copy built example `name` (with its manifest) in as `as_name`.
    pub fn add_example(&self, name: &str, as_name: &str) -> &Folder {
        self.put_wasm(as_name, &dist().join(format!("{name}.wasm")));
        let toml = dist().join(format!("{name}.toml"));
        if toml.is_file() {
            // Without its deadline: the tests' generous default applies (see
            // `host`), so a loaded machine does not turn into deadline faults.
            let text = std::fs::read_to_string(toml).expect("read manifest");
            let text: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("deadline_ms")).collect();
            self.put_toml(as_name, &text.join("\n"));
        }
        self
    }

    /// Copy the fault fixture in as `as_name` with this manifest.
    pub fn add_fixture(&self, as_name: &str, manifest: &str) -> &Folder {
        self.put_toml(as_name, manifest);
        self.put_wasm(as_name, &fixtures().join("faulty.wasm"));
        self
    }

    /// Atomically place `src` as `NAME.wasm`.
    pub fn put_wasm(&self, name: &str, src: &Path) {
        let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        self.put_bytes(&format!("{name}.wasm"), &bytes);
    }

    pub fn put_toml(&self, name: &str, text: &str) {
        self.put_bytes(&format!("{name}.toml"), text.as_bytes());
    }

    pub fn put_bytes(&self, file: &str, bytes: &[u8]) {
        let tmp = self.path.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).expect("write temp file");
        std::fs::rename(&tmp, self.path.join(file)).expect("rename into place");
    }

    /// The tests' config for this folder: shared artifact cache, short
    /// debounce, generous deadline; watching if asked.
    pub fn config(&self, watch: bool) -> PluginConfig {
        let mut cfg = PluginConfig::new(&self.path);
        cfg.cache_dir = Some(cache_dir());
        cfg.watch = watch;
        cfg.debounce = Duration::from_millis(50);
        // Epoch deadlines are wall-clock time; test machines can be busy.
        cfg.defaults.deadline = TEST_DEADLINE;
        cfg
    }

    /// A host over this folder with [`Folder::config`].
    pub fn host(&self, watch: bool) -> Arc<PluginHost> {
        PluginHost::start(self.config(watch)).expect("plugin host starts")
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A host with the given built examples (`(name, as_name)`), not watching.
pub fn host_with(examples: &[&str]) -> (Folder, Arc<PluginHost>) {
    built();
    let folder = Folder::new();
    for name in examples {
        folder.add_example(name, name);
    }
    let host = folder.host(false);
    (folder, host)
}

/// No gateway metadata and no client headers: what a stage call without a
/// gateway around it is given.
pub static NO_CONTEXT: StageContext = StageContext { metadata: Vec::new(), headers: Vec::new() };

pub fn request(messages: &[(Role, &str)]) -> ChatRequest {
    let messages: Vec<Message> = messages.iter().map(|(r, t)| Message::text(*r, *t)).collect();
    serde_json::from_value(serde_json::json!({ "model": "auto", "messages": messages })).expect("valid request")
}

pub fn user(text: &str) -> ChatRequest {
    request(&[(Role::User, text)])
}

pub fn response(content: &str, finish_reason: &str) -> ChatResponse {
    ChatResponse {
        id: "r".into(),
        object: "chat.completion".into(),
        created: 0,
        model: "m".into(),
        choices: vec![Choice {
            index: 0,
            message: Message::text(Role::Assistant, content),
            finish_reason: Some(finish_reason.into()),
            extra: Default::default(),
        }],
        usage: None,
        extra: Default::default(),
    }
}

pub fn candidate(model: &str, price: f64, context: u32, health: Health) -> RouteCandidate {
    RouteCandidate {
        model: model.into(),
        provider: "test".into(),
        input_price_per_mtok: price,
        output_price_per_mtok: price * 4.0,
        context_window: context,
        p50_latency_ms: 300.0,
        p95_latency_ms: 900.0,
        error_rate: 0.0,
        health,
    }
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// [`eventually`] for a check that awaits (a stage call): polls `f` until it
/// returns true or `timeout` passes, sleeping without blocking the runtime.
pub async fn eventually_async(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f().await
}
