//! Why a request cannot be routed. A request no candidate can serve within its limits gets a 422 that
//! names the limit; malformed options get a 400 naming the field.

use rightmodel_core::{ApiError, ErrorKind};
use serde::Serialize;

/// A policy that can exclude a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The request needs tools / JSON schema / logprobs the model lacks.
    Capability,
    /// Prompt plus completion exceed the model's context window.
    Context,
    /// `explain: true` and the model cannot return evidence.
    Explain,
    /// The daily budget is spent (or too little is left for this call).
    Budget,
    /// The request's `max_cost_usd`.
    MaxCost,
    /// The request's `max_latency_ms`.
    MaxLatency,
    /// A task model that is not confident this request is in its domain.
    Domain,
    /// The caller's API key may not use the model.
    NotAllowed,
}

impl Limit {
    /// Machine-readable error code.
    pub fn code(self) -> &'static str {
        match self {
            Limit::Capability => "capability_unavailable",
            Limit::Context => "context_length_exceeded",
            Limit::Explain => "no_explainable_model",
            Limit::Budget => "daily_budget_exhausted",
            Limit::MaxCost => "max_cost_exceeded",
            Limit::MaxLatency => "max_latency_exceeded",
            Limit::Domain => "out_of_domain",
            Limit::NotAllowed => "model_not_allowed",
        }
    }

    /// The request field or setting behind the limit.
    pub fn param(self) -> &'static str {
        match self {
            Limit::Capability => "tools",
            Limit::Context => "max_tokens",
            Limit::Explain => "rightmodel.explain",
            Limit::Budget => "budget.daily_usd",
            Limit::MaxCost => "rightmodel.max_cost_usd",
            Limit::MaxLatency => "rightmodel.max_latency_ms",
            Limit::Domain | Limit::NotAllowed => "model",
        }
    }
}

/// A routing failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// Every candidate is excluded by some limit (HTTP 422).
    #[error("{message}")]
    NoCandidate {
        /// The limit named to the client: the one that excluded the most candidates.
        limit: Limit,
        /// Human-readable explanation with the estimates.
        message: String,
        /// Each candidate and the limit that excluded it.
        excluded: Vec<(String, Limit)>,
        /// The request field the client can change ([`Limit::param`], or for a missing capability the
        /// field that asked for it).
        param: &'static str,
    },
    /// A malformed per-request option (HTTP 400).
    #[error("{message}")]
    Invalid {
        /// The field.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// The router is misconfigured or scoring failed (HTTP 500).
    #[error("routing failed: {0}")]
    Internal(String),
}

impl RouteError {
    /// A 400 for `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        RouteError::Invalid { param: param.to_string(), message: message.into() }
    }

    /// The OpenAI-shaped error for the client.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            RouteError::NoCandidate { limit, message, param, .. } => {
                let kind =
                    if *limit == Limit::NotAllowed { ErrorKind::PermissionDenied } else { ErrorKind::Unprocessable };
                ApiError::new(kind, message.clone()).with_param(param).with_code(limit.code())
            }
            RouteError::Invalid { param, message } => ApiError::invalid(param, message.clone()),
            RouteError::Internal(m) => ApiError::internal(m.clone()),
        }
    }
}
