//! `[routing]` and the resilience keys of `[upstreams.NAME]`, checked:
//! [`RoutingConfig`] holds the A/B arms and each upstream's
//! [`UpstreamPolicy`]. How a request finds its arm is `ab.rs`'s business.

use std::collections::BTreeMap;

use super::policy::UpstreamPolicy;

/// `[routing]`, with each upstream's policy.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    /// `[[routing.arms]]`, in config order.
    pub arms: Vec<Arm>,
    /// Resilience settings by upstream name; an upstream not listed has the
    /// defaults.
    pub upstreams: BTreeMap<String, UpstreamPolicy>,
}

impl RoutingConfig {
    /// An upstream's policy (the defaults for an unlisted one).
    pub fn policy(&self, upstream: &str) -> UpstreamPolicy {
        self.upstreams.get(upstream).copied().unwrap_or_default()
    }

    /// An upstream's policy, to change it (added with the defaults).
    pub fn policy_mut(&mut self, upstream: &str) -> &mut UpstreamPolicy {
        self.upstreams.entry(upstream.to_owned()).or_default()
    }
}

/// `[[routing.arms]]`: one arm of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// Relative share of users.
    pub weight: u32,
    /// Serve every request of this arm with this model (no router).
    pub model: Option<String>,
    /// Whether the router stage runs for this arm. Default true.
    pub route: bool,
}
