//! Keeps replicas' caches in step through Redis.
//!
//! Layout under the key prefix `P`:
//! - `P:c:{ns}:{key}`: an exact entry (JSON), expiring with its TTL;
//! - `P:s:{ns}:{key}`: a semantic record (hash: scope, namespace, embedding,
//!   fingerprint, expiry), expiring with its entry;
//! - `P:events`: a stream of `add` (a semantic record) and `purge` events,
//!   capped in length.
//!
//! Each replica follows the stream from a dedicated connection. When it
//! (re)connects it rebuilds its index from the `P:s:*` records first, then
//! reads the stream from the id it noted before the rebuild, so nothing
//! added in between is missed; a replica that was cut off rebuilds again.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use super::guard::Fingerprint;
use super::key::namespace_tag;
use super::semantic::{SemanticIndex, Vector, decode_embedding, encode_embedding};
use super::types::{Entry, now_ms};
use crate::redis_client::SharedRedis;

/// Events kept in the stream; a replica that falls further behind rebuilds.
const STREAM_MAX_LEN: usize = 100_000;
/// Records fetched per round trip while rebuilding.
const REBUILD_BATCH: usize = 500;

type Local = Option<moka::sync::Cache<String, Arc<Entry>>>;

fn events_key(redis: &SharedRedis) -> String {
    redis.key("events")
}

fn record_key(redis: &SharedRedis, namespace: &str, id: &str) -> String {
    redis.key(&format!("s:{}:{id}", namespace_tag(namespace)))
}

/// Writes a semantic record and announces it to the replicas.
pub async fn publish_vector(redis: &SharedRedis, scope: &str, vector: &Vector, ttl_ms: u64) {
    let key = record_key(redis, &vector.namespace, &vector.id);
    let events = events_key(redis);
    let embedding = encode_embedding(&vector.embedding);
    let fields: [(&str, Vec<u8>); 6] = [
        ("id", vector.id.clone().into_bytes()),
        ("scope", scope.as_bytes().to_vec()),
        ("ns", vector.namespace.clone().into_bytes()),
        ("emb", embedding),
        ("fp", vector.fingerprint.encode().into_bytes()),
        ("exp", vector.expires_at_ms.to_string().into_bytes()),
    ];
    let _: Option<()> = redis
        .run("semantic_publish", |mut c| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("HSET").arg(&key);
            for (name, value) in &fields {
                pipe.arg(*name).arg(value.as_slice());
            }
            pipe.ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
            pipe.cmd("XADD").arg(&events).arg("MAXLEN").arg("~").arg(STREAM_MAX_LEN).arg("*").arg("op").arg("add");
            for (name, value) in &fields {
                pipe.arg(*name).arg(value.as_slice());
            }
            pipe.ignore();
            pipe.query_async(&mut c).await
        })
        .await;
}

/// Every key matching `pattern`, in batches of about `batch` (SCAN, so the
/// server is never blocked).
async fn scan<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    pattern: &str,
    batch: usize,
) -> redis::RedisResult<Vec<Vec<String>>> {
    let (mut batches, mut cursor) = (Vec::new(), 0u64);
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(batch).query_async(conn).await?;
        if !keys.is_empty() {
            batches.push(keys);
        }
        if next == 0 {
            return Ok(batches);
        }
        cursor = next;
    }
}

/// Deletes the entries of `namespace` (or all) from Redis and tells the
/// replicas to drop theirs. Returns the keys deleted.
pub async fn purge(redis: &SharedRedis, namespace: Option<&str>) -> u64 {
    let patterns: Vec<String> = match namespace {
        Some(ns) => {
            let tag = namespace_tag(ns);
            vec![redis.key(&format!("c:{tag}:*")), redis.key(&format!("s:{tag}:*"))]
        }
        None => vec![redis.key("c:*"), redis.key("s:*")],
    };
    let events = events_key(redis);
    let ns = namespace.unwrap_or("").to_owned();
    redis
        .run_within("cache_purge", Duration::from_secs(10), |mut c| async move {
            let mut deleted = 0u64;
            for pattern in &patterns {
                for keys in scan(&mut c, pattern, 1000).await? {
                    let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
                    deleted += n;
                }
            }
            let _: String = redis::cmd("XADD")
                .arg(&events)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("op")
                .arg("purge")
                .arg("ns")
                .arg(&ns)
                .query_async(&mut c)
                .await?;
            Ok(deleted)
        })
        .await
        .unwrap_or(0)
}

/// Exact entries in Redis and their bytes (for the stats page; a scan, so
/// bounded in time).
pub async fn usage(redis: &SharedRedis) -> Option<(u64, u64)> {
    let pattern = redis.key("c:*");
    redis
        .run_within("cache_usage", Duration::from_millis(500), |mut c| async move {
            let (mut entries, mut bytes) = (0u64, 0u64);
            for keys in scan(&mut c, &pattern, 1000).await? {
                entries += keys.len() as u64;
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("STRLEN").arg(key);
                }
                let lens: Vec<u64> = pipe.query_async(&mut c).await?;
                bytes += lens.iter().sum::<u64>();
            }
            Ok((entries, bytes))
        })
        .await
}

/// Follows the event stream until aborted.
pub fn spawn(redis: Arc<SharedRedis>, local: Local, index: Arc<SemanticIndex>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match follow(&redis, &local, &index).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(e) => {
                    tracing::debug!(error = %e, "cache event stream interrupted; reconnecting");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            tokio::time::sleep(delay).await;
        }
    })
}

async fn follow(redis: &SharedRedis, local: &Local, index: &SemanticIndex) -> redis::RedisResult<()> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(redis.config().connect_timeout))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut conn = redis.client().get_multiplexed_async_connection_with_config(&config).await?;
    let events = events_key(redis);
    // Note where the stream is before reading the records, then catch up.
    let latest: Vec<(String, Vec<(String, Value)>)> = redis::cmd("XREVRANGE")
        .arg(&events)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .map(|v: Value| parse_entries(&v))?;
    let mut last_id = latest.first().map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
    let loaded = rebuild(redis, &mut conn, index).await?;
    tracing::info!(entries = loaded, "semantic index loaded from redis");
    loop {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(5000)
            .arg("STREAMS")
            .arg(&events)
            .arg(&last_id)
            .query_async(&mut conn)
            .await?;
        for (id, fields) in stream_entries(&reply) {
            apply(&fields, local, index);
            last_id = id;
        }
    }
}

async fn rebuild(
    redis: &SharedRedis,
    conn: &mut MultiplexedConnection,
    index: &SemanticIndex,
) -> redis::RedisResult<usize> {
    let mut loaded = 0;
    for keys in scan(conn, &redis.key("s:*"), REBUILD_BATCH).await? {
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HGETALL").arg(key);
        }
        let records: Vec<Vec<(String, Value)>> = pipe.query_async(conn).await?;
        for fields in records {
            if let Some((scope, vector)) = vector_of(&fields)
                && index.insert(&scope, vector)
            {
                loaded += 1;
            }
        }
    }
    Ok(loaded)
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
        Value::BulkString(bytes) => Some(bytes.as_slice()),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    })
}

fn text<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a str> {
    field(fields, name).and_then(|b| std::str::from_utf8(b).ok())
}

fn vector_of(fields: &[(String, Value)]) -> Option<(String, Vector)> {
    let vector = Vector {
        id: text(fields, "id")?.to_owned(),
        namespace: text(fields, "ns")?.to_owned(),
        embedding: decode_embedding(field(fields, "emb")?)?,
        fingerprint: Fingerprint::decode(text(fields, "fp")?)?,
        expires_at_ms: text(fields, "exp")?.parse().ok()?,
    };
    (vector.expires_at_ms > now_ms()).then(|| (text(fields, "scope").unwrap_or_default().to_owned(), vector))
}

fn apply(fields: &[(String, Value)], local: &Local, index: &SemanticIndex) {
    match text(fields, "op") {
        Some("add") => {
            if let Some((scope, vector)) = vector_of(fields) {
                index.insert(&scope, vector);
            }
        }
        Some("purge") => purge_local(local.as_ref(), index, text(fields, "ns").filter(|ns| !ns.is_empty())),
        _ => {}
    }
}

/// Drops the entries of `namespace` (or all) from this replica.
pub fn purge_local(
    local: Option<&moka::sync::Cache<String, Arc<Entry>>>,
    index: &SemanticIndex,
    namespace: Option<&str>,
) {
    if let Some(local) = local {
        match namespace {
            None => local.invalidate_all(),
            Some(ns) => {
                let owned = ns.to_owned();
                let _ = local.invalidate_entries_if(move |_, v| v.namespace == owned);
            }
        }
    }
    index.purge(namespace);
}

/// `[[id, [k, v, k, v, ...]], ...]` as (id, fields).
fn parse_entries(value: &Value) -> Vec<(String, Vec<(String, Value)>)> {
    let Value::Array(items) = value else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else { return None };
            let id = match pair.first()? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let Value::Array(kv) = pair.get(1)? else { return None };
            let fields = kv
                .chunks(2)
                .filter_map(|c| match (&c[0], c.get(1)) {
                    (Value::BulkString(k), Some(v)) => Some((String::from_utf8_lossy(k).into_owned(), v.clone())),
                    _ => None,
                })
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// XREAD's reply: `[[stream, entries]]` (RESP2) or `{stream: entries}` (RESP3).
fn stream_entries(value: &Value) -> Vec<(String, Vec<(String, Value)>)> {
    match value {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => parse_entries(&pair[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, entries)| parse_entries(entries)).collect(),
        _ => Vec::new(),
    }
}
