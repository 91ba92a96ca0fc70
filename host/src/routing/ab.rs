//! A/B arms: each request lands in one arm, chosen by a stable hash of its
//! user key (the `user` field, else the `x-sluice-user` header, else the
//! client's key name), so a user stays in one arm on every replica and
//! across restarts. Requests with no user key are spread at random.
//!
//! An arm can change how a request is routed (`model`: always this model;
//! `route = false`: skip the router stage) and is reported in
//! `x-sluice-ab-bucket`, metrics and `/admin/routing/stats`, so arms can be
//! compared on latency, cost and judge score.

use super::config::{Arm, RoutingConfig};

/// The point of `key` on [0, 1): the first 8 bytes of its BLAKE3 hash.
pub fn point(key: &str) -> f64 {
    let hash = blake3::hash(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

impl RoutingConfig {
    /// The arm for a user key (`None`: a random arm).
    pub fn arm_for(&self, user: Option<&str>) -> Option<&Arm> {
        let total: u32 = self.arms.iter().map(|a| a.weight).sum();
        if total == 0 {
            return None;
        }
        let at = user.map_or_else(fastrand::f64, point) * f64::from(total);
        let mut edge = 0.0;
        for arm in &self.arms {
            edge += f64::from(arm.weight);
            if at < edge {
                return Some(arm);
            }
        }
        self.arms.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_stable_and_spread() {
        assert_eq!(point("alice"), point("alice"));
        assert_ne!(point("alice"), point("bob"));
        let below = (0..10_000).filter(|i| point(&format!("user-{i}")) < 0.3).count();
        assert!((2_800..3_200).contains(&below), "{below}");
    }
}
