//! Upstreams: where requests go. Each [`Upstream`] wraps one configured
//! provider (an OpenAI-compatible endpoint, the Anthropic API, or the bundled
//! engine) behind the same calls: chat (complete or streamed), embeddings and
//! model listing, all in the internal shapes.
//!
//! An upstream enforces its own in-flight limit and timeouts. It does not
//! retry, fall back or cache: those are stages above it.

mod anthropic;
mod caller;
mod config;
mod engine;
pub mod http;
mod openai;
mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

pub use caller::Caller;
pub use config::{UpstreamConfig, UpstreamKind};
pub use reply::{ChatReply, ChunkEvent, ChunkStream, Slot, unix_now};

use crate::api::chat::ChatRequest;
use crate::error::GatewayError;
use crate::telemetry;

enum Backend {
    OpenAi(http::HttpClient),
    Anthropic(http::HttpClient),
    /// The engine and the id its model is served under.
    Engine(sluice_engine::Engine, String),
}

/// One configured upstream.
pub struct Upstream {
    pub config: UpstreamConfig,
    backend: Backend,
    slots: Arc<Semaphore>,
    models_cache: Mutex<Option<(Instant, Vec<Value>)>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Upstream, String> {
        let backend = match config.kind {
            UpstreamKind::OpenAi => Backend::OpenAi(http::client(&config)?),
            UpstreamKind::Anthropic => Backend::Anthropic(http::client(&config)?),
            UpstreamKind::Engine => {
                let started = engine::start(&config)?;
                let model = engine::model_id(&config, &started);
                Backend::Engine(started, model)
            }
        };
        Ok(Upstream {
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            backend,
            models_cache: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Calls holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight.saturating_sub(self.slots.available_permits())
    }

    /// Waits (up to the queue timeout) for an in-flight slot.
    async fn slot(&self) -> Result<Slot, GatewayError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(self.config.queue_timeout, self.slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(GatewayError::UpstreamBusy {
                        upstream: self.config.name.clone(),
                        limit: self.config.max_in_flight,
                    });
                }
            },
        };
        let gauge = metrics::gauge!(telemetry::IN_FLIGHT, "upstream" => self.config.name.clone());
        gauge.increment(1.0);
        Ok(Slot { _permit: permit, gauge })
    }

    /// Sends a chat request whose `model` is already the upstream's model id,
    /// on `caller`'s behalf.
    pub async fn chat(&self, req: &ChatRequest, caller: &Caller) -> Result<ChatReply, GatewayError> {
        let permit = self.slot().await?;
        match &self.backend {
            Backend::OpenAi(client) => openai::chat(client, &self.config, req, caller, permit).await,
            Backend::Anthropic(client) => anthropic::chat(client, &self.config, req, caller, permit).await,
            Backend::Engine(engine, model) => engine::chat(engine, model, &self.config, req, caller, permit).await,
        }
    }

    /// The bundled engine behind an engine upstream (its statistics).
    pub fn engine(&self) -> Option<&sluice_engine::Engine> {
        match &self.backend {
            Backend::Engine(engine, _) => Some(engine),
            _ => None,
        }
    }

    /// Sets the bundled engine's scheduler metrics (engine upstreams only).
    pub fn record_engine_stats(&self) {
        if let Backend::Engine(started, _) = &self.backend {
            engine::record_stats(&self.config.name, started);
        }
    }

    /// The model an upstream serves whatever name it is asked for: the
    /// bundled engine's one model.
    pub fn sole_model(&self) -> Option<&str> {
        match &self.backend {
            Backend::Engine(_, model) => Some(model),
            _ => None,
        }
    }

    /// Answers an embeddings request (`model` already the upstream's id) with
    /// the OpenAI-shaped JSON body.
    pub async fn embeddings(&self, body: &Map<String, Value>) -> Result<Bytes, GatewayError> {
        let _permit = self.slot().await?;
        match &self.backend {
            Backend::OpenAi(client) => {
                let payload = serde_json::to_vec(body).map_err(|e| GatewayError::Internal(e.to_string()))?;
                openai::embeddings(client, &self.config, Bytes::from(payload)).await
            }
            Backend::Engine(engine, _) => {
                let v = engine::embeddings(engine, &self.config, body).await?;
                Ok(Bytes::from(v.to_string()))
            }
            Backend::Anthropic(_) => {
                Err(GatewayError::Unsupported { upstream: self.config.name.clone(), what: "embeddings" })
            }
        }
    }

    /// The upstream's own model list (`data` entries), cached for a minute.
    /// Failures give an empty list: listing must not fail because one
    /// upstream is down.
    pub async fn list_models(&self) -> Vec<Value> {
        const FRESH: Duration = Duration::from_secs(60);
        if let Ok(cache) = self.models_cache.lock()
            && let Some((_, models)) = cache.as_ref().filter(|(at, _)| at.elapsed() < FRESH)
        {
            return models.clone();
        }
        let models = match &self.backend {
            Backend::OpenAi(client) => openai::models(client, &self.config).await,
            Backend::Anthropic(client) => anthropic::models(client, &self.config).await,
            Backend::Engine(engine, model) => return engine::models(engine, model),
        };
        match models {
            Ok(models) => {
                if let Ok(mut cache) = self.models_cache.lock() {
                    *cache = Some((Instant::now(), models.clone()));
                }
                models
            }
            Err(e) => {
                tracing::warn!(upstream = %self.config.name, error = %e, "listing upstream models failed");
                Vec::new()
            }
        }
    }
}

/// All upstreams by name.
#[derive(Default)]
pub struct Upstreams {
    by_name: HashMap<String, Arc<Upstream>>,
    ordered: Vec<Arc<Upstream>>,
}

impl Upstreams {
    pub fn build(configs: &[UpstreamConfig]) -> Result<Upstreams, String> {
        let mut out = Upstreams::default();
        for cfg in configs {
            let upstream = Arc::new(Upstream::new(cfg.clone()).map_err(|e| format!("upstream `{}`: {e}", cfg.name))?);
            out.by_name.insert(cfg.name.clone(), upstream.clone());
            out.ordered.push(upstream);
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.ordered.iter()
    }
}
