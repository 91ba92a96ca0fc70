//! Virtual API keys (`[[keys]]`): who a client is, from `Authorization:
//! Bearer KEY` (or Anthropic's `x-api-key`), and that client's own RPM, TPM
//! and spend budget. With no key configured the gateway is open; with keys
//! configured an unknown or missing key is answered 401.
//!
//! Keys are held as BLAKE3 hashes, never as the secrets themselves.
//!
//! A spend budget ([`super::budget`]) is held before it is spent: a request
//! reserves its estimated cost when its model is known
//! ([`ClientKey::reserve`]) and settles the difference when it ends
//! ([`ClientKey::charge`]), so concurrent requests cannot all pass one
//! check and overspend together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;

use super::budget::{Budget, BudgetHold, Held, HeldState};
use super::gcra::{Mode, Rate};
use super::limiter::Limiter;
use crate::error::GatewayError;
use crate::redis_client::SharedRedis;
use crate::telemetry;

/// `[[keys]]`: one client's key and allowances. Its `Debug` hides the secret.
#[derive(Clone, Default)]
pub struct KeyConfig {
    /// The client's name in logs, metrics and plugin metadata.
    pub name: String,
    /// The secret the client sends.
    pub key: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Spend allowed per budget period, in USD.
    pub budget_usd: Option<f64>,
    /// The budget's period; `None`: the budget never resets.
    pub budget_period: Option<Duration>,
    /// May call the `/admin/*` endpoints (and read `/metrics`).
    pub admin: bool,
    /// May read `/metrics` (once keys are configured, only such keys and
    /// admin keys may).
    pub metrics: bool,
    /// May bypass routing with `x-sluice-route: pinned` (once keys are
    /// configured, only such keys may).
    pub pin: bool,
    /// The cache scope the key's requests share; `None`: the key's own
    /// (its name).
    pub tenant: Option<String>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("name", &self.name)
            .field("key", &"***")
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("budget_usd", &self.budget_usd)
            .field("budget_period", &self.budget_period)
            .field("admin", &self.admin)
            .field("metrics", &self.metrics)
            .field("pin", &self.pin)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// A known client and its limits.
pub struct ClientKey {
    pub name: String,
    pub admin: bool,
    /// May read `/metrics`.
    pub metrics: bool,
    /// May pin a route (`x-sluice-route: pinned`).
    pub pin: bool,
    /// The cache scope of its requests: its tenant, or its own name.
    pub tenant: String,
    rpm: Option<Limiter>,
    tpm: Option<Arc<Limiter>>,
    budget: Option<Arc<Budget>>,
}

impl ClientKey {
    /// Checks the client's RPM, TPM and budget before a request.
    async fn admit(&self) -> Result<(), GatewayError> {
        let limited = |retry_after| GatewayError::RateLimited { scope: format!("key `{}`", self.name), retry_after };
        if let Some(rpm) = &self.rpm {
            rpm.acquire(1.0, Duration::ZERO, Mode::Take).await.map_err(limited)?;
        }
        if let Some(tpm) = &self.tpm {
            tpm.acquire(0.0, Duration::ZERO, Mode::Peek).await.map_err(limited)?;
        }
        if let Some(budget) = &self.budget
            && budget.spent(&self.name).await >= budget.limit_usd
        {
            return Err(GatewayError::BudgetExceeded { key: self.name.clone(), budget_usd: budget.limit_usd });
        }
        Ok(())
    }

    /// Whether the key has a spend budget (so may use priced models only).
    pub fn has_budget(&self) -> bool {
        self.budget.is_some()
    }

    /// Reserves a request's estimated cost before it is sent (`prompt_usd`
    /// of it for the prompt alone), raising `hold` to `estimate_usd`. The
    /// first reservation is refused (429) when spend and reservations
    /// already reach the budget; a later one (a fallback or cascade tier of
    /// the same admitted request) only tops the hold up.
    pub async fn reserve(&self, hold: &mut BudgetHold, estimate_usd: f64, prompt_usd: f64) -> Result<(), GatewayError> {
        let Some(budget) = &self.budget else { return Ok(()) };
        let sane = |usd: f64| if usd.is_finite() { usd.max(0.0) } else { budget.limit_usd };
        let (estimate, prompt) = (sane(estimate_usd), sane(prompt_usd));
        if let Some(held) = &hold.held {
            if let Ok(mut state) = held.state.lock()
                && !state.settled
                && estimate > state.reserved
            {
                held.budget.add(&held.name, held.window, estimate - state.reserved);
                *state = HeldState { reserved: estimate, prompt: prompt.max(state.prompt), settled: false };
            }
            return Ok(());
        }
        let window = budget.window();
        if !budget.reserve(&self.name, window, estimate).await {
            return Err(GatewayError::BudgetExceeded { key: self.name.clone(), budget_usd: budget.limit_usd });
        }
        hold.held = Some(Arc::new(Held {
            budget: budget.clone(),
            name: self.name.clone(),
            window,
            state: Mutex::new(HeldState { reserved: estimate, prompt: prompt.min(estimate), settled: false }),
        }));
        Ok(())
    }

    /// Charges a finished request's tokens and cost, settling what it held
    /// of the budget (the difference is charged, or given back).
    pub fn charge(&self, tokens: u64, cost_usd: f64, hold: &BudgetHold) {
        if let Some(tpm) = &self.tpm {
            tpm.charge(tokens as f64);
        }
        let Some(budget) = &self.budget else { return };
        let cost = if cost_usd.is_finite() { cost_usd.max(0.0) } else { budget.limit_usd };
        if !hold.settle(cost) && cost > 0.0 {
            budget.add(&self.name, budget.window(), cost);
        }
    }
}

/// Every configured key, by the hash of its secret.
#[derive(Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Arc<ClientKey>>,
}

impl KeyRing {
    pub fn build(keys: &[KeyConfig], redis: Option<Arc<SharedRedis>>) -> KeyRing {
        let mut by_hash = HashMap::new();
        for k in keys {
            let scope = |what: &str| format!("key:{}:{what}", k.name);
            let client = ClientKey {
                name: k.name.clone(),
                admin: k.admin,
                metrics: k.metrics || k.admin,
                pin: k.pin,
                tenant: k.tenant.clone().unwrap_or_else(|| k.name.clone()),
                rpm: k.rpm.map(|n| Limiter::new(scope("rpm"), Rate::per_minute(n), redis.clone())),
                tpm: k.tpm.map(|n| Arc::new(Limiter::new(scope("tpm"), Rate::per_minute(n), redis.clone()))),
                budget: k.budget_usd.map(|limit_usd| {
                    Arc::new(Budget {
                        limit_usd,
                        period: k.budget_period,
                        redis: redis.clone(),
                        local: Mutex::new((0, 0.0)),
                    })
                }),
            };
            by_hash.insert(*blake3::hash(k.key.as_bytes()).as_bytes(), Arc::new(client));
        }
        KeyRing { by_hash }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Sets each budgeted key's budget and its spend this period on this
    /// replica (when `/metrics` is scraped, so a new period shows at once).
    pub fn record_budgets(&self) {
        for client in self.by_hash.values() {
            let Some(budget) = &client.budget else { continue };
            let key = [("key", client.name.clone())];
            metrics::gauge!(telemetry::KEY_BUDGET, &key).set(budget.limit_usd);
            metrics::gauge!(telemetry::KEY_SPEND, &key).set(budget.local_spent(budget.window()));
        }
    }

    /// Who is calling, and whether they may: `Ok(None)` when no keys are
    /// configured, 401 for a missing or unknown key, 429 over a limit.
    pub async fn admit(&self, headers: &HeaderMap) -> Result<Option<Arc<ClientKey>>, GatewayError> {
        let Some(client) = self.identify(headers)? else { return Ok(None) };
        client.admit().await?;
        Ok(Some(client))
    }

    /// Whether the caller may use the admin endpoints: anyone when no keys
    /// are configured, else only keys with `admin = true` (401 for a
    /// missing or unknown key, 403 for another key). No limits are charged.
    pub fn admit_admin(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        match self.identify(headers)? {
            Some(client) if !client.admin => {
                Err(GatewayError::Forbidden(format!("Key `{}` may not use the admin endpoints", client.name)))
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may read `/metrics`: anyone when no keys are
    /// configured, else only keys with `metrics = true` or `admin = true`
    /// (401 for a missing or unknown key, 403 for another key).
    pub fn admit_metrics(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        match self.identify(headers)? {
            Some(client) if !client.metrics => {
                Err(GatewayError::Forbidden(format!("Key `{}` may not read the metrics", client.name)))
            }
            _ => Ok(()),
        }
    }

    /// The caller's key: `None` when no keys are configured.
    fn identify(&self, headers: &HeaderMap) -> Result<Option<Arc<ClientKey>>, GatewayError> {
        if self.by_hash.is_empty() {
            return Ok(None);
        }
        let authorization = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // A browser (the dashboard) sends the key as a Basic password.
        let basic = authorization.and_then(basic_password);
        let bearer = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .or(basic.as_deref())
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(secret) = bearer else {
            return Err(GatewayError::Unauthorized("Missing API key: send `Authorization: Bearer KEY`".to_owned()));
        };
        let Some(client) = self.by_hash.get(blake3::hash(secret.as_bytes()).as_bytes()) else {
            return Err(GatewayError::Unauthorized("Incorrect API key provided".to_owned()));
        };
        Ok(Some(client.clone()))
    }
}

/// The password of a `Basic` authorization (any user name).
fn basic_password(authorization: &str) -> Option<String> {
    use base64::Engine;
    let encoded = authorization.strip_prefix("Basic ").or_else(|| authorization.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, password)| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(budget_usd: f64) -> (KeyRing, HeaderMap) {
        let key = KeyConfig {
            name: "k".into(),
            key: "sk-k-secret".into(),
            budget_usd: Some(budget_usd),
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer sk-k-secret"));
        (KeyRing::build(&[key], None), headers)
    }

    #[tokio::test]
    async fn reservations_count_against_the_budget_until_settled() {
        let (keys, headers) = ring(1.0);
        let client = keys.admit(&headers).await.expect("admitted").expect("a key");
        let mut first = BudgetHold::default();
        client.reserve(&mut first, 0.6, 0.1).await.expect("reserved");
        let mut second = BudgetHold::default();
        client.reserve(&mut second, 0.6, 0.1).await.expect("0.6 < 1.0: reserved");
        let mut third = BudgetHold::default();
        assert!(client.reserve(&mut third, 0.6, 0.1).await.is_err(), "1.2 reserved of 1.0");
        client.charge(0, 0.2, &first);
        client.charge(0, 0.2, &first.clone());
        assert!((first.usd() - 0.6).abs() < 1e-9);
        drop(second);
        let budget = client.budget.as_ref().expect("budget");
        let spent = budget.spent("k").await;
        assert!((spent - 0.3).abs() < 1e-9, "settled once at 0.2, the dropped hold keeps its prompt's 0.1: {spent}");
    }
}
