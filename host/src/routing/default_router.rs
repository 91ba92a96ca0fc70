//! The built-in router: the route a request takes when no router plugin
//! plans one. The requested model (or the A/B arm's model), then that
//! model's configured `fallbacks`; a pinned request gets exactly the model it
//! asked for.
//!
//! It implements the same [`Router`] trait as the router plugins, so the
//! pipeline (`proxy/stages.rs`) calls both the same way. It reads no live
//! statistics and never refuses: it always has a plan. It does not decide
//! whether a plugin router runs first; the pipeline does.

use async_trait::async_trait;

use crate::api::chat::ChatRequest;
use crate::models::ModelRegistry;
use crate::stage::{RouteCandidate, RoutePlan, Router, StageContext, StageError};

/// What [`RoutePlan::plugin`] says for the built-in router's plans.
pub const NAME: &str = "default";

/// The built-in router for one request.
pub struct DefaultRouter<'a> {
    models: &'a ModelRegistry,
    /// The client asked to bypass routing (`x-sluice-route: pinned`).
    pinned: bool,
    /// The model the request's A/B arm serves every request with, if any.
    arm_model: Option<&'a str>,
}

impl<'a> DefaultRouter<'a> {
    pub fn new(models: &'a ModelRegistry, pinned: bool, arm_model: Option<&'a str>) -> DefaultRouter<'a> {
        DefaultRouter { models, pinned, arm_model }
    }

    /// The plan: pinned, the requested model alone; else the arm's model or
    /// the requested one, then its configured fallbacks (none for a model
    /// the registry does not know).
    fn plan(&self, request: &ChatRequest) -> RoutePlan {
        let plan = |primary: &str, fallbacks: Vec<String>, reason: &str| RoutePlan {
            primary: primary.to_owned(),
            fallbacks,
            cascade: None,
            ab_bucket: None,
            reason: reason.to_owned(),
            plugin: NAME.to_owned(),
        };
        if self.pinned {
            return plan(&request.model, Vec::new(), "pinned");
        }
        let (first, reason) = match self.arm_model {
            Some(model) => (model, "the A/B arm's model"),
            None => (request.model.as_str(), "the requested model"),
        };
        let fallbacks = self.models.resolve(first).map(|route| route.fallbacks.clone()).unwrap_or_default();
        plan(first, fallbacks, reason)
    }
}

#[async_trait]
impl Router for DefaultRouter<'_> {
    /// Always a plan (see [`DefaultRouter::plan`]); the candidates and the
    /// context are not read.
    async fn route(
        &self,
        request: &ChatRequest,
        _ctx: &StageContext,
        _candidates: &[RouteCandidate],
    ) -> Result<Option<RoutePlan>, StageError> {
        Ok(Some(self.plan(request)))
    }
}
