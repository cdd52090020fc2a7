//! Serving `model: "auto"`: asks the router for a decision over the configured candidates.

use std::sync::Arc;

use rightmodel_core::wire::ChatCompletionRequest;
use rightmodel_core::{ApiError, ErrorKind};
use serde_json::{json, Value};

use crate::config::{Config, Strategy};

/// What the gateway does with an `auto` request.
#[derive(Debug, Clone)]
pub struct RouteOutcome {
    /// The model to call first.
    pub served: String,
    /// Reason code (`difficulty_below_threshold`, `budget_exhausted`, ...).
    pub reason: String,
    /// Cascade plan: escalate to this model when the first answer's confidence is below `min_confidence`.
    pub escalate_to: Option<String>,
    /// Cascade confidence threshold.
    pub min_confidence: f32,
    /// The full decision, for the `x-rightmodel-decision` header and the log.
    pub decision: Value,
}

/// The router as the gateway holds it.
pub struct AutoRouter {
    candidates: Vec<String>,
    strategy: Strategy,
    min_confidence: f32,
    _inner: Option<Arc<()>>,
}

impl AutoRouter {
    /// Builds the router from the config.
    pub fn new(
        config: &Config,
        _chat: &std::collections::BTreeMap<String, crate::state::ChatModel>,
        _embed: Option<&crate::state::EmbedModel>,
    ) -> Result<Self, String> {
        let candidates = if config.route.candidates.is_empty() { config.chat_models() } else { config.route.candidates.clone() };
        Ok(AutoRouter { candidates, strategy: config.route.strategy, min_confidence: config.route.min_confidence, _inner: None })
    }

    /// Chooses a model for `req`.
    pub fn decide(
        &self,
        _st: &crate::state::AppState,
        _req: &ChatCompletionRequest,
        _headers: &axum::http::HeaderMap,
    ) -> Result<RouteOutcome, ApiError> {
        let first = self
            .candidates
            .first()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorKind::Unprocessable, "No chat model is configured for `auto`."))?;
        let escalate_to = if self.strategy == Strategy::Cascade { self.candidates.get(1).cloned() } else { None };
        Ok(RouteOutcome {
            decision: json!({"served": first, "reason": "first_candidate"}),
            served: first,
            reason: "first_candidate".into(),
            escalate_to,
            min_confidence: self.min_confidence,
        })
    }
}
