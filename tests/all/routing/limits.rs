//! Client keys (401, per-key RPM, spend budget) and an upstream RPM limit
//! that two replicas enforce together through a real Redis.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::json;
use sluice::limits::KeyConfig;
use sluice::redis_client::RedisConfig;
use sluice_testkit::{Client, MockUpstream, RedisServer, TestGateway, require_redis};

use super::ask;
use crate::support::{Setup, config_for};

fn key(name: &str, secret: &str) -> KeyConfig {
    KeyConfig { name: name.into(), key: secret.into(), ..KeyConfig::default() }
}

#[tokio::test]
async fn only_keys_allowed_to_pin_may_bypass_routing() {
    let s = Setup::with(|c| {
        c.gateway.keys = vec![key("plain", "sk-plain-key"), KeyConfig { pin: true, ..key("pinner", "sk-pinner-key") }];
    })
    .await;
    let url = s.gateway.url("/v1/chat/completions");
    let body = Bytes::from(ask("priced", "hi").to_string());
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let (url, body) = (url.clone(), body.clone());
        async move { Client::new().call(Method::POST, &url, body, &headers).await }
    };
    let pinned = |secret: &'static str| vec![("authorization", secret), ("x-sluice-route", "pinned")];
    let refused = send(pinned("Bearer sk-plain-key")).await;
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["type"], "permission_error", "{}", String::from_utf8_lossy(&refused.body));
    let allowed = send(pinned("Bearer sk-pinner-key")).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-sluice-model"), Some("priced"));
    // Without the header, the plain key is routed as usual.
    let plain = send(vec![("authorization", "Bearer sk-plain-key")]).await;
    assert_eq!(plain.status, 200);
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_key_once_keys_are_configured() {
    let s = Setup::with(|c| {
        let mut ops = key("ops", "sk-ops-admin-secret");
        ops.admin = true;
        c.gateway.keys = vec![ops, key("team-a", "sk-team-a-secret")];
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/admin/routing/stats");
    assert_eq!(client.call(Method::GET, &url, Bytes::new(), &[]).await.status, 401);
    let team = client.call(Method::GET, &url, Bytes::new(), &[("authorization", "Bearer sk-team-a-secret")]).await;
    assert_eq!(team.status, 403);
    assert_eq!(team.json()["error"]["type"], "permission_error");
    let ops = [("authorization", "Bearer sk-ops-admin-secret")];
    assert_eq!(client.call(Method::GET, &url, Bytes::new(), &ops).await.status, 200);
    let purge = client.call(Method::DELETE, &s.gateway.url("/admin/cache"), Bytes::new(), &[]).await;
    assert_eq!(purge.status, 401, "a purge needs the admin key too");
    // Health stays open for probes; metrics need a metrics (or admin) key.
    assert_eq!(client.get(&s.gateway.url("/health")).await.status, 200);
    assert_eq!(client.get(&s.gateway.url("/metrics")).await.status, 401);
    assert_eq!(client.call(Method::GET, &s.gateway.url("/metrics"), Bytes::new(), &ops).await.status, 200);
}

#[tokio::test]
async fn unknown_keys_get_401_and_a_key_s_rpm_gets_429() {
    let s = Setup::with(|c| {
        let mut team = key("team-a", "sk-team-a-secret");
        team.rpm = Some(2);
        c.gateway.keys = vec![team, key("team-b", "sk-team-b-secret")];
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let body = || Bytes::from(ask("priced", "hi").to_string());

    let reply = client.call(Method::POST, &url, body(), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    let reply = client.call(Method::POST, &url, body(), &[("authorization", "Bearer sk-wrong-key")]).await;
    assert_eq!(reply.status, 401);
    let anthropic = json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let reply = client
        .call(
            Method::POST,
            &s.gateway.url("/v1/messages"),
            Bytes::from(anthropic.to_string()),
            &[("x-api-key", "nope")],
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    assert_eq!(s.mock.requests().len(), 0, "refused before any upstream call");

    let team_a = [("authorization", "Bearer sk-team-a-secret")];
    for _ in 0..2 {
        assert_eq!(client.call(Method::POST, &url, body(), &team_a).await.status, 200);
    }
    let reply = client.call(Method::POST, &url, body(), &team_a).await;
    assert_eq!(reply.status, 429);
    assert!(reply.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    assert_eq!(reply.json()["error"]["code"], "rate_limited");
    // Another key has its own allowance; health needs no key.
    let team_b = [("authorization", "Bearer sk-team-b-secret")];
    assert_eq!(client.call(Method::POST, &url, body(), &team_b).await.status, 200);
    assert_eq!(client.get(&s.gateway.url("/health")).await.status, 200);
}

#[tokio::test]
async fn a_spent_budget_gets_429() {
    let s = Setup::with(|c| {
        let mut team = key("team-a", "sk-team-a-secret");
        team.budget_usd = Some(0.000_01);
        c.gateway.keys = vec![team];
    })
    .await;
    let client = Client::new();
    let url = s.gateway.url("/v1/chat/completions");
    let auth = [("authorization", "Bearer sk-team-a-secret")];
    let body = Bytes::from(ask("priced", "a question long enough to cost something").to_string());
    let first = client.call(Method::POST, &url, body.clone(), &auth).await;
    assert_eq!(first.status, 200);
    assert!(first.header("x-sluice-cost-usd").and_then(|c| c.parse::<f64>().ok()).is_some_and(|c| c > 0.000_01));
    let second = client.call(Method::POST, &url, body, &auth).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.json()["error"]["code"], "budget_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_enforce_one_rpm_limit() {
    require_redis!();
    let mut redis = RedisServer::start().await;
    let mock = MockUpstream::start().await;
    let replica = |prefix: &str| {
        let mut shared = RedisConfig::new(&redis.url());
        // Generous for a busy test machine; the first call also connects.
        shared.timeout = Duration::from_millis(500);
        shared.key_prefix = prefix.to_owned();
        config_for(&mock, move |c| {
            c.gateway.routing.policy_mut("oa").rpm = Some(5);
            c.gateway.upstreams[0].queue_timeout = Duration::ZERO;
            c.gateway.redis = Some(shared);
        })
    };
    let a = TestGateway::start(replica("rpm-test")).await;
    let b = TestGateway::start(replica("rpm-test")).await;
    let client = Client::new();
    let mut statuses = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let reply = client.post_json(&gw.url("/v1/chat/completions"), &ask("priced", "hi")).await;
        if reply.status == 429 {
            assert!(reply.header("retry-after").is_some());
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "one limit of 5 for both replicas: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert_eq!(mock.calls("mock-priced"), 5);

    // Redis goes away: each replica keeps serving on its local bucket.
    redis.kill();
    for gw in [&a, &b] {
        let reply = client.post_json(&gw.url("/v1/chat/completions"), &ask("priced", "hi")).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }
}
