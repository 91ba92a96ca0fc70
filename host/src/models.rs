//! The model registry: public model names → the upstream that serves them,
//! the upstream's own model id, prices and context window.
//!
//! Names no `[[models]]` entry claims go to the pass-through upstream, when
//! one is configured, under their own name and without prices. Those names
//! are the client's choice, so their label in metrics and statistics is
//! bounded: the first [`MAX_PASSTHROUGH_LABELS`] short ones keep their
//! name, every later one counts as [`OTHER_LABEL`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::accounting::Pricing;
use crate::error::GatewayError;
use crate::upstream::{Upstream, Upstreams, unix_now};

/// `[[models]]`, checked: a public model name and where it goes.
#[derive(Debug, Clone, Default)]
pub struct ModelConfig {
    pub name: String,
    pub upstream: String,
    pub upstream_model: String,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
    pub context_window: Option<u32>,
    /// Tier or quality label for routers.
    pub tier: Option<String>,
    /// Models tried when this one fails and no router planned otherwise.
    pub fallbacks: Vec<String>,
}

/// Distinct pass-through model names that get a metrics label of their own.
pub const MAX_PASSTHROUGH_LABELS: usize = 100;
/// The longest pass-through name that gets a label of its own, in bytes.
const MAX_LABEL_BYTES: usize = 128;
/// The label of every other pass-through name.
pub const OTHER_LABEL: &str = "(other)";

/// Where one public model name goes.
#[derive(Clone)]
pub struct ModelRoute {
    pub public: String,
    /// The model's name in metrics and statistics: `public`, or
    /// [`OTHER_LABEL`] for pass-through names beyond the bound.
    pub label: String,
    pub upstream: Arc<Upstream>,
    pub upstream_model: String,
    pub pricing: Option<Pricing>,
    pub context_window: Option<u32>,
    /// Tier or quality label for routers.
    pub tier: Option<String>,
    /// Models to try when this one fails (the default route plan).
    pub fallbacks: Vec<String>,
}

pub struct ModelRegistry {
    models: HashMap<String, Arc<ModelRoute>>,
    ordered: Vec<Arc<ModelRoute>>,
    passthrough: Option<Arc<Upstream>>,
    /// Pass-through names labelled under their own name so far.
    labels: Mutex<HashSet<String>>,
}

impl ModelRegistry {
    /// Builds the registry; the config has been validated, so every model's
    /// upstream exists.
    pub fn build(configs: &[ModelConfig], upstreams: &Upstreams) -> Result<ModelRegistry, String> {
        let mut models = HashMap::new();
        let mut ordered = Vec::new();
        for m in configs {
            let upstream = upstreams
                .get(&m.upstream)
                .ok_or_else(|| format!("model `{}`: no upstream `{}`", m.name, m.upstream))?;
            let route = Arc::new(ModelRoute {
                public: m.name.clone(),
                label: m.name.clone(),
                upstream: upstream.clone(),
                upstream_model: m.upstream_model.clone(),
                pricing: Pricing::from_config(m.input_price_per_mtok, m.output_price_per_mtok),
                context_window: m.context_window,
                tier: m.tier.clone(),
                fallbacks: m.fallbacks.clone(),
            });
            models.insert(m.name.clone(), route.clone());
            ordered.push(route);
        }
        let passthrough = upstreams.iter().find(|u| u.config.passthrough).cloned();
        Ok(ModelRegistry { models, ordered, passthrough, labels: Mutex::new(HashSet::new()) })
    }

    /// The configured routes, in config order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.ordered.iter()
    }

    /// The route for a requested model name.
    pub fn resolve(&self, name: &str) -> Result<Arc<ModelRoute>, GatewayError> {
        if let Some(route) = self.models.get(name) {
            return Ok(route.clone());
        }
        match &self.passthrough {
            Some(upstream) if !name.is_empty() => {
                // An upstream with one model (the bundled engine) serves it
                // under any name, and reports the model it really used.
                let model = upstream.sole_model().unwrap_or(name).to_owned();
                Ok(Arc::new(ModelRoute {
                    label: self.passthrough_label(&model),
                    public: model.clone(),
                    upstream: upstream.clone(),
                    upstream_model: model,
                    pricing: None,
                    context_window: None,
                    tier: None,
                    fallbacks: Vec::new(),
                }))
            }
            _ => Err(GatewayError::ModelNotFound(name.to_owned())),
        }
    }

    /// A pass-through name's label: its own while fewer than
    /// [`MAX_PASSTHROUGH_LABELS`] names have one (and it is short), else
    /// [`OTHER_LABEL`].
    fn passthrough_label(&self, name: &str) -> String {
        let Ok(mut labels) = self.labels.lock() else { return OTHER_LABEL.to_owned() };
        if labels.contains(name) {
            return name.to_owned();
        }
        if name.len() <= MAX_LABEL_BYTES && labels.len() < MAX_PASSTHROUGH_LABELS {
            labels.insert(name.to_owned());
            return name.to_owned();
        }
        OTHER_LABEL.to_owned()
    }

    /// `GET /v1/models`: the configured models, then each listing upstream's
    /// own models, without duplicates.
    pub async fn list(&self, upstreams: &Upstreams) -> Value {
        let created = unix_now();
        let mut seen = BTreeSet::new();
        let mut data = Vec::new();
        for route in &self.ordered {
            if seen.insert(route.public.clone()) {
                data.push(json!({
                    "id": route.public, "object": "model", "created": created,
                    "owned_by": route.upstream.name(),
                    "context_window": route.context_window,
                }));
            }
        }
        let listing: Vec<_> = upstreams.iter().filter(|u| u.config.list_models).collect();
        let fetched = futures_util::future::join_all(listing.iter().map(|u| u.list_models())).await;
        for (upstream, models) in listing.iter().zip(fetched) {
            for mut m in models {
                let Some(id) = m.get("id").and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                if seen.insert(id) {
                    if let Some(obj) = m.as_object_mut() {
                        obj.entry("object").or_insert_with(|| json!("model"));
                        obj.entry("owned_by").or_insert_with(|| json!(upstream.name()));
                        obj.entry("created").or_insert_with(|| json!(created));
                    }
                    data.push(m);
                }
            }
        }
        json!({"object": "list", "data": data})
    }
}
