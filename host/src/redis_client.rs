//! State shared by every gateway replica, kept in Redis: cache entries, the
//! semantic index, rate-limit counters and budgets.
//!
//! Redis is an accelerator here, never a dependency of a request: every
//! operation runs under a short deadline, a failure or timeout counts in
//! `sluice_redis_errors_total` and yields `None`, and after a failure the
//! gateway stops asking for a short back-off so a dead or slow server does
//! not add its timeout to every request. The connection is made lazily and
//! re-made by itself (`redis::aio::ConnectionManager`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::telemetry;

/// How the gateway reaches Redis: `[redis]` in the config, or `--redis URL`.
/// Its `Debug` shows the URL without its password ([`redact_url`]).
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Deadline of one operation on the request path.
    pub timeout: Duration,
    /// Deadline of a connection attempt.
    pub connect_timeout: Duration,
    /// How long to skip Redis after a failure.
    pub backoff: Duration,
    /// Prefix of every key the gateway writes.
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// A URL as it may be shown (errors, logs, `Debug`): the password of its
/// user part replaced by `***`, e.g. `redis://user:***@host:6379/0`. A user
/// part with no password is taken for a token and hidden whole (`***@`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let user = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

impl RedisConfig {
    pub fn new(url: &str) -> Self {
        RedisConfig {
            url: url.to_owned(),
            timeout: Duration::from_millis(5),
            connect_timeout: Duration::from_millis(250),
            backoff: Duration::from_millis(500),
            key_prefix: "sluice".to_owned(),
        }
    }
}

/// A Redis server shared by the replicas.
pub struct SharedRedis {
    config: RedisConfig,
    client: redis::Client,
    conn: ConnectionManager,
    /// Skip Redis until this many microseconds after `epoch`.
    down_until_us: AtomicU64,
    epoch: Instant,
}

impl SharedRedis {
    /// Prepares the connection; nothing is dialled until the first use, so
    /// this succeeds whether or not Redis is up. Fails only on a bad URL.
    pub fn new(config: RedisConfig) -> Result<SharedRedis, String> {
        let shown = redact_url(&config.url);
        let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("`{shown}`: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout.max(Duration::from_millis(50))))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| format!("`{shown}`: {e}"))?;
        Ok(SharedRedis { config, client, conn, down_until_us: AtomicU64::new(0), epoch: Instant::now() })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// A key under the gateway's prefix: `{prefix}:{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.config.key_prefix)
    }

    /// The client, for connections of their own (blocking reads of a stream).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Whether the last operations succeeded (no back-off in force).
    pub fn is_up(&self) -> bool {
        self.now_us() >= self.down_until_us.load(Ordering::Relaxed)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs one operation on the request path under the operation deadline.
    /// `None` when Redis is backing off, fails or is too slow; `op` names
    /// the operation in the error metric.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.run_within(op, self.config.timeout, f).await
    }

    /// [`SharedRedis::run`] with a deadline of its own (for admin and
    /// background work, which may take longer than a request may wait).
    pub async fn run_within<T, F, Fut>(&self, op: &'static str, deadline: Duration, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            metrics::counter!(telemetry::REDIS_SKIPPED, "op" => op).increment(1);
            return None;
        }
        let started = Instant::now();
        let result = tokio::time::timeout(deadline, f(self.conn.clone())).await;
        metrics::histogram!(telemetry::REDIS_LATENCY, "op" => op).record(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {deadline:?}"),
        };
        metrics::counter!(telemetry::REDIS_ERRORS, "op" => op).increment(1);
        let until = self.now_us() + u64::try_from(self.config.backoff.as_micros()).unwrap_or(u64::MAX);
        let previous = self.down_until_us.swap(until, Ordering::Relaxed);
        if previous <= self.now_us() {
            tracing::warn!(op, error = %error, backoff = ?self.config.backoff, "redis unavailable; carrying on without it");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_server_is_skipped_during_the_back_off() {
        // Port 1 refuses connections.
        let mut config = RedisConfig::new("redis://127.0.0.1:1");
        config.backoff = Duration::from_secs(60);
        let redis = SharedRedis::new(config).expect("url");
        let got: Option<String> =
            redis.run("get", |mut c| async move { redis::cmd("GET").arg("k").query_async(&mut c).await }).await;
        assert_eq!(got, None);
        assert!(!redis.is_up(), "a failure starts the back-off");
        let mut dialled = false;
        let again: Option<String> = redis
            .run("get", |mut c| {
                dialled = true;
                async move { redis::cmd("GET").arg("k").query_async(&mut c).await }
            })
            .await;
        assert_eq!(again, None);
        assert!(!dialled, "a backed-off call does not reach Redis");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(SharedRedis::new(RedisConfig::new("http://nope")).is_err());
        let e = SharedRedis::new(RedisConfig::new("http://u:hunter2@nope")).err().unwrap_or_default();
        assert!(!e.contains("hunter2") && e.contains("u:***@nope"), "{e}");
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("redis://user:hunter2@cache:6379/2"), "redis://user:***@cache:6379/2");
        assert_eq!(redact_url("rediss://:hunter2@cache"), "rediss://:***@cache");
        assert_eq!(redact_url("redis://hunter2@cache/0?x=1"), "redis://***@cache/0?x=1");
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("redis://u:p@ss@cache"), "redis://u:***@cache");
        assert_eq!(redact_url("unix:///run/redis.sock"), "unix:///run/redis.sock");
        let debug = format!("{:?}", RedisConfig::new("redis://user:hunter2@cache:6379/2"));
        assert!(!debug.contains("hunter2") && debug.contains("user:***@cache"), "{debug}");
    }
}
