//! The A/B split: stable per user key, across replicas, close to the
//! configured weights, and reported per arm.

use bytes::Bytes;
use http::Method;
use serde_json::json;
use sluice::routing::{Arm, RoutingConfig};
use sluice_testkit::{Client, MockUpstream, TestGateway};

use crate::support::config_for;

fn arms() -> RoutingConfig {
    let arm =
        |name: &str, weight, model: &str| Arm { name: name.into(), weight, model: Some(model.into()), route: true };
    RoutingConfig { arms: vec![arm("control", 80, "claude"), arm("cheap", 20, "priced")], ..RoutingConfig::default() }
}

#[test]
fn the_split_is_stable_and_close_to_the_weights_over_10k_keys() {
    let (one, other) = (arms(), arms());
    let mut cheap = 0;
    for i in 0..10_000 {
        let user = format!("user-{i}");
        let arm = one.arm_for(Some(&user)).expect("an arm");
        // A second replica (or a restart) puts every user in the same arm.
        assert_eq!(other.arm_for(Some(&user)).map(|a| &a.name), Some(&arm.name));
        assert_eq!(one.arm_for(Some(&user)).map(|a| &a.name), Some(&arm.name));
        cheap += usize::from(arm.name == "cheap");
    }
    // 20% of 10k: 2000, standard deviation 40.
    assert!((1_850..=2_150).contains(&cheap), "{cheap} of 10000 in the 20% arm");
}

#[tokio::test]
async fn a_user_stays_in_one_arm_on_every_replica_and_arms_are_reported() {
    let mock = MockUpstream::start().await;
    let a = TestGateway::start(config_for(&mock, |c| c.gateway.routing = arms())).await;
    let b = TestGateway::start(config_for(&mock, |c| c.gateway.routing = arms())).await;
    let client = Client::new();
    let mut seen = std::collections::HashMap::new();
    for i in 0..20 {
        let user = format!("user-{}", i % 5);
        let gw = if i % 2 == 0 { &a } else { &b };
        // The user key by field for some, by header for others.
        let (body, headers): (_, Vec<(&str, &str)>) = if i % 3 == 0 {
            (json!({"model": "any", "user": user, "messages": [{"role": "user", "content": "hi"}]}), vec![])
        } else {
            (json!({"model": "any", "messages": [{"role": "user", "content": "hi"}]}), vec![("x-sluice-user", &user)])
        };
        let reply =
            client.call(Method::POST, &gw.url("/v1/chat/completions"), Bytes::from(body.to_string()), &headers).await;
        assert_eq!(reply.status, 200);
        let arm = reply.header("x-sluice-ab-bucket").expect("arm header").to_owned();
        let served = reply.header("x-sluice-model").expect("model").to_owned();
        assert_eq!(served, if arm == "cheap" { "priced" } else { "claude" }, "the arm's model serves");
        let first = seen.entry(user.clone()).or_insert_with(|| arm.clone());
        assert_eq!(*first, arm, "{user} changed arms");
    }
    let stats = client.get(&a.url("/admin/routing/stats")).await.json();
    let requests: u64 = ["control", "cheap"].iter().filter_map(|arm| stats["arms"][arm]["requests"].as_u64()).sum();
    assert_eq!(requests, 10, "{stats}");
    let metrics = String::from_utf8_lossy(&client.get(&a.url("/metrics")).await.body).into_owned();
    assert!(metrics.contains("sluice_ab_arm_requests_total{arm="), "arms in Prometheus");
}
