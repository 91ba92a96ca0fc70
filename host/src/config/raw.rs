//! The configuration file as written: serde structs that mirror the TOML
//! one-to-one, each field documented with its default. Nothing here is
//! validated beyond types; the section checkers beside this file turn a
//! [`RawConfig`] into the checked types of the modules that use them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub logging: RawLogging,
    /// Upstreams by name: `[upstreams.NAME]`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    /// Public models: `[[models]]`.
    #[serde(default)]
    pub models: Vec<Spanned<RawModel>>,
    /// The plugin folder and runtime limits: `[plugins]`.
    #[serde(default)]
    pub plugins: RawPlugins,
    /// The Redis server shared by replicas: `[redis]`.
    pub redis: Option<RawRedis>,
    /// The response cache: `[cache]`.
    pub cache: Option<RawCache>,
    /// A/B arms: `[routing]` with `[[routing.arms]]`.
    pub routing: Option<RawRouting>,
    /// Client API keys (virtual keys): `[[keys]]`. With none, the gateway
    /// needs no key; with any, an unknown or missing key gets 401.
    #[serde(default)]
    pub keys: Vec<Spanned<RawKey>>,
    /// OpenTelemetry traces over OTLP/HTTP: `[tracing]`. Off when absent.
    pub tracing: Option<RawTracing>,
}

/// `[tracing]` (its `Debug` hides the header values)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Default true once the section is present.
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP traces URL. Default `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: Option<Spanned<String>>,
    /// `service.name` of the spans. Default `sluice`.
    pub service_name: Option<String>,
    /// Fraction of requests traced, 0 to 1; a client's `traceparent` does not change it. Default 1.
    pub sample_ratio: Option<Spanned<f64>>,
    /// Headers sent with each export; `${VAR}` is replaced by the environment variable VAR.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// How long one export may take, in ms. Default 10000.
    pub export_timeout_ms: Option<Spanned<u64>>,
}

/// `[routing]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// A/B arms. Each request lands in one, by a stable hash of its user key
    /// (`user` field, else `x-sluice-user` header, else the client key's name).
    #[serde(default)]
    pub arms: Vec<Spanned<RawArm>>,
}

/// `[[routing.arms]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArm {
    /// The arm's label in `x-sluice-ab-bucket`, metrics and admin stats. Required.
    pub name: String,
    /// Relative share of users. Default 1.
    pub weight: Option<u32>,
    /// Serve this arm's requests with this `[[models]]` name, bypassing the router.
    pub model: Option<Spanned<String>>,
    /// Run the router stage for this arm. Default true.
    pub route: Option<bool>,
}

/// `[[keys]]` (its `Debug` hides the secret)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// The client's name in logs, metrics and stats. Required.
    pub name: String,
    /// The secret sent as `Authorization: Bearer KEY` (or `x-api-key`);
    /// `${VAR}` is replaced by the environment variable VAR. Required.
    pub key: Spanned<String>,
    /// Requests per minute. Default unlimited.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute. Default unlimited.
    pub tpm: Option<u64>,
    /// Spend allowed per period in USD (configured model prices). Default unlimited.
    pub budget_usd: Option<f64>,
    /// `hour`, `day`, `week`, `month` (30 days) or `total` (never resets). Default `total`.
    pub budget_period: Option<Spanned<String>>,
    /// May call the `/admin/*` endpoints (stats, cache purge) and read
    /// `/metrics`. Once keys are configured, only such keys may. Default false.
    pub admin: Option<bool>,
    /// May read `/metrics` (and nothing more of the admin endpoints). Once
    /// keys are configured, `/metrics` needs a key with `metrics` or
    /// `admin`. Default false.
    pub metrics: Option<bool>,
    /// May send `x-sluice-route: pinned` to bypass routing and get exactly
    /// the model asked for. Once keys are configured, only such keys may
    /// (others get 403). Default false.
    pub pin: Option<bool>,
    /// The cache scope this key's requests share with other keys of the
    /// same tenant. Once keys are configured, every cache entry (exact and
    /// semantic, in-process and Redis) is scoped to the client key's tenant:
    /// no header, body field or plugin reaches another tenant's entries.
    /// Default: the key's own name.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKey").field("name", &self.name).field("key", &"***").finish_non_exhaustive()
    }
}

/// `[redis]` (its `Debug` hides the URL, which may hold a password)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db`; `${VAR}` is replaced by the environment variable VAR.
    pub url: Spanned<String>,
    /// Deadline of one Redis operation on the request path, in ms. Default 5.
    pub timeout_ms: Option<u64>,
    /// Deadline of a connection attempt, in ms. Default 250.
    pub connect_timeout_ms: Option<u64>,
    /// How long to leave Redis alone after a failure, in ms. Default 500.
    pub backoff_ms: Option<u64>,
    /// Prefix of every key Sluice writes. Default `sluice`.
    pub key_prefix: Option<String>,
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Default true once the section is present.
    pub enabled: Option<bool>,
    /// Bytes the in-process tier may hold; 0 keeps entries in Redis only. Default 256 MiB.
    pub max_bytes: Option<u64>,
    /// Entry lifetime when the cache-policy stage sets none, in seconds. Default 3600.
    pub ttl_s: Option<u64>,
    /// Namespace when the policy and the request set none. Default `default`.
    pub namespace: Option<String>,
    /// Allow semantic (similar-question) hits. Default true.
    pub semantic: Option<bool>,
    /// Cosine similarity a semantic hit needs when the policy sets none. Default 0.85.
    pub similarity_threshold: Option<f32>,
    /// The sentence-embedding model folder (`model.safetensors`,
    /// `tokenizer.json`, `config.json`). Default `models/all-minilm-l6-v2`.
    pub embedding_model_dir: Option<String>,
    /// Entries the semantic index holds per replica. Default 100000.
    pub max_semantic_entries: Option<usize>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// Largest accepted request body in bytes. Default 4 MiB.
    pub max_body_bytes: Option<usize>,
    /// Interval of `: keep-alive` comments on a silent stream, in ms. Default 15000.
    pub sse_keepalive_ms: Option<u64>,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<RawTls>,
    /// Time a connection with no request in progress has to bring the next
    /// request's whole head, in ms (HTTP/1 and HTTP/2; from connecting, and
    /// from the end of the previous request): the connection is closed after
    /// it, so it also bounds idle keep-alive connections. Default 10000.
    pub header_read_timeout_ms: Option<Spanned<u64>>,
    /// Time a client has to complete the TLS handshake, in ms. Default 10000.
    pub tls_handshake_timeout_ms: Option<Spanned<u64>>,
    /// Time a client has to send a whole request body, in ms; 408 after it.
    /// Default 30000.
    pub body_read_timeout_ms: Option<Spanned<u64>>,
    /// Time a client may leave the gateway's bytes unread, in ms: a stream
    /// whose next chunk waits longer is dropped with its upstream request,
    /// and a connection whose writes stall longer is closed. Default 30000.
    pub sse_send_timeout_ms: Option<Spanned<u64>>,
    /// Connections served at once; more are closed as soon as accepted.
    /// Default 10000.
    pub max_connections: Option<Spanned<usize>>,
}

/// `[server.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// `[logging]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// A tracing filter such as `info` or `sluice=debug`. Default `info`;
    /// the `RUST_LOG` environment variable wins when set.
    pub level: Option<String>,
    /// `text` (default) or `json`.
    pub format: Option<Spanned<String>>,
}

/// `[upstreams.NAME]` (its `Debug` hides the API key)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `openai`, `anthropic` or `engine`.
    pub kind: Spanned<String>,
    /// Base URL including the version prefix, e.g. `http://127.0.0.1:8000/v1`.
    /// Required for `openai` and `anthropic`.
    pub base_url: Option<Spanned<String>>,
    /// API key; `${VAR}` is replaced by the environment variable VAR.
    pub api_key: Option<Spanned<String>>,
    /// Extra CA certificate (PEM) trusted for this upstream besides the system
    /// and webpki roots.
    pub ca_cert: Option<String>,
    /// TCP+TLS connect timeout in ms. Default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// Time to the response headers in ms. Default 60000.
    pub first_byte_timeout_ms: Option<u64>,
    /// Whole-request limit in ms (for streams: the whole stream). Default 600000.
    pub total_timeout_ms: Option<u64>,
    /// Concurrent requests allowed to this upstream. Default 512.
    pub max_in_flight: Option<usize>,
    /// How long a request waits for an in-flight slot, in ms. Default 1000.
    pub queue_timeout_ms: Option<u64>,
    /// Forward model names that no `[[models]]` entry names to this upstream
    /// unchanged. Default false (true for `--upstream`).
    pub passthrough: Option<bool>,
    /// Include this upstream's own `/models` list in `GET /v1/models`.
    /// Default: the value of `passthrough`.
    pub list_models: Option<bool>,
    /// `max_tokens` sent to Anthropic upstreams, and generated by the bundled
    /// engine, when the client gave none; greater than 0. Default 4096.
    pub default_max_tokens: Option<u32>,
    /// `anthropic-version` header for Anthropic upstreams. Default `2023-06-01`.
    pub anthropic_version: Option<String>,
    /// Further tries of this upstream after a 429, 5xx, connection error or
    /// timeout, before the next fallback. Default 2.
    pub max_retries: Option<u32>,
    /// First retry back-off in ms; it doubles each retry (full jitter). Default 100.
    pub retry_base_ms: Option<u64>,
    /// Longest wait before a retry in ms, the upstream's `Retry-After`
    /// included; a longer `Retry-After` moves on to the next fallback at once.
    /// Default 2000.
    pub retry_max_wait_ms: Option<u64>,
    /// Consecutive failures (connection errors, timeouts, 5xx) that open the
    /// circuit breaker; 0 never opens it. Default 5.
    pub breaker_failures: Option<u32>,
    /// How long an open circuit sends calls elsewhere before one probe is
    /// let through, in ms. Default 10000.
    pub breaker_open_ms: Option<u64>,
    /// Requests per minute sent to this upstream (shared by replicas through
    /// `[redis]`). Calls over it wait up to `queue_timeout_ms`, then go to
    /// the next fallback (or get 429). Default unlimited.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute, charged as answers end.
    /// Default unlimited.
    pub tpm: Option<u64>,
    /// `engine` only: the GGUF model file.
    /// Default `models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub model_path: Option<String>,
    /// `engine` only: the embedding model folder (`model.safetensors`,
    /// `tokenizer.json`, `config.json`); `""` disables embeddings.
    /// Default `models/all-minilm-l6-v2`.
    pub embedding_model_dir: Option<String>,
    /// `engine` only: KV cache blocks of 16 tokens. Default 1024.
    pub kv_blocks: Option<usize>,
    /// `engine` only: most sequences decoded together. Default 32.
    pub max_batch: Option<usize>,
    /// `engine` only: the largest fraction of the batch and of the KV blocks
    /// one client key holds while another key's request waits, in (0, 1].
    /// A key alone may use all of it. Default 0.5.
    pub client_share: Option<f64>,
}

/// `[[models]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The name clients ask for.
    pub name: String,
    /// The `[upstreams.NAME]` that serves it.
    pub upstream: Spanned<String>,
    /// The model id sent upstream. Default: `name`.
    pub upstream_model: Option<String>,
    /// USD per million input tokens.
    pub input_price_per_mtok: Option<f64>,
    /// USD per million output tokens.
    pub output_price_per_mtok: Option<f64>,
    /// Context window in tokens.
    pub context_window: Option<u32>,
    /// A tier or quality label shown to routers (e.g. `small`, `frontier`).
    pub tier: Option<String>,
    /// Models tried, in order, when this one fails and no router planned
    /// otherwise. Default none.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

/// `[plugins]`; every key optional.
///
/// ```toml
/// [plugins]
/// dir = "plugins/dist"
/// cache_dir = "/var/cache/sluice/plugins"
/// watch = true
/// debounce_ms = 100
/// baseline_min_mib = 4    # 0: every new component; false: never
/// deadline_ms = 50
/// memory_mib = 64
/// max_consecutive_faults = 5
/// warm_pool = 4
/// spares = 2
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugins {
    /// The plugin folder, hot-reloaded. Default `plugins/dist` when it
    /// exists (else no plugins run).
    pub dir: Option<String>,
    /// Where compiled components are cached. Default `DIR/.cache`.
    pub cache_dir: Option<String>,
    /// Watch the folder and reload on changes. Default true.
    pub watch: Option<bool>,
    /// Quiet time after a change before reloading, in ms. Default 100.
    pub debounce_ms: Option<u64>,
    /// Components at least this many MiB, with no optimised build cached,
    /// first go live on a quick baseline build; `false`: never, `true`: the
    /// default. Default 4.
    pub baseline_min_mib: Option<Baseline>,
    /// Longest a plugin call may run, in ms, unless its manifest says
    /// otherwise. Default 50.
    pub deadline_ms: Option<Spanned<u64>>,
    /// Most linear memory an instance may grow to, in MiB. Default 64.
    pub memory_mib: Option<Spanned<u64>>,
    /// Faults of the plugin's own in a row (traps, out of memory, deadline
    /// overruns on a host that was not overloaded) after which it is
    /// disabled (at least 1). Default 5.
    pub max_consecutive_faults: Option<u32>,
    /// How long a disabled plugin stays off before one probe call runs, in
    /// ms; a failed probe doubles it. Default 30000.
    pub disabled_backoff_ms: Option<Spanned<u64>>,
    /// Longest back-off of a disabled plugin, in ms. Default 600000.
    pub disabled_backoff_max_ms: Option<Spanned<u64>>,
    /// Most calls of one plugin running at once (a manifest may override
    /// it). Default 64.
    pub max_concurrency: Option<Spanned<usize>>,
    /// How long a call over `max_concurrency` waits for a slot, in ms,
    /// before the stage's failure mode applies (open: skipped; closed:
    /// 503). Default 10.
    pub concurrency_wait_ms: Option<u64>,
    /// Most idle warm instances kept per warm plugin. Default 4.
    pub warm_pool: Option<usize>,
    /// Fresh instances made ahead of their calls per fresh-instance plugin;
    /// 0 instantiates in the call. Default 2.
    pub spares: Option<usize>,
}

/// `baseline_min_mib`: a size in MiB, `false` for no baseline builds, or
/// `true` for the default size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Baseline {
    MiB(u64),
    Flag(bool),
}

impl std::fmt::Debug for RawRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = crate::redis_client::redact_url(self.url.get_ref());
        f.debug_struct("RawRedis").field("url", &url).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RawTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("RawTracing")
            .field("endpoint", &self.endpoint)
            .field("headers", &headers)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RawUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawUpstream")
            .field("kind", self.kind.get_ref())
            .field("base_url", &self.base_url.as_ref().map(|u| u.get_ref()))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}
