//! The router's answer and its record: who serves, why, and the numbers behind it. Serialised as
//! compact JSON for the `x-rightmodel-decision` response header and the request log.

use serde::Serialize;

use super::budget::BudgetState;
use super::error::Limit;
use super::request::Strategy;
use crate::cascade::CascadePlan;

/// Why the served candidate was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The score is under the threshold: the cheapest candidate serves.
    BelowThreshold,
    /// The score needs a stronger candidate than the cheapest.
    AboveThreshold,
    /// The base threshold would have escalated, the budget-raised threshold did not.
    BudgetRaisedThreshold,
    /// The candidate the score asked for is excluded by a limit (see `constrained_by`); the best
    /// remaining one serves.
    Constrained,
    /// A task model recognised the request as in its domain.
    DomainMatch,
    /// Only one candidate could serve.
    OnlyCandidate,
    /// Cascade: the small model answers first (see `cascade`).
    Cascade,
}

/// The router's view of one candidate for this request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateEstimate {
    /// Candidate name.
    pub name: String,
    /// Predicted quality relative to the largest model, `1 - score * (1 - tier)`; absent when the
    /// request was not scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<f32>,
    /// Estimated cost in USD.
    pub cost_usd: f64,
    /// Estimated latency in ms.
    pub latency_ms: f64,
    /// The limit that excluded it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Limit>,
    /// A task model's in-domain confidence, when it has a domain and recognised the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_confidence: Option<f32>,
}

/// The outcome of [`super::Router::decide`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Candidate that serves the request (in cascade mode: the one that answers first).
    pub served: String,
    /// Why.
    pub reason: ReasonCode,
    /// The limit behind a [`ReasonCode::Constrained`] decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constrained_by: Option<Limit>,
    /// Difficulty score in `[0, 1]`; absent when no scoring was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// True when the scorer failed and the prompt-length fallback score was used.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub score_fallback: bool,
    /// Effective threshold (after the budget adjustment).
    pub threshold: f32,
    /// Threshold before the budget adjustment (config, or the request's override).
    pub base_threshold: f32,
    /// Direct or cascade.
    pub strategy: Strategy,
    /// The two calls of a cascade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadePlan>,
    /// Estimated cost of the served call in USD.
    pub cost_usd: f64,
    /// Estimated cost had the largest candidate served (for savings accounting).
    pub cost_if_largest_usd: f64,
    /// Per-candidate estimates.
    pub candidates: Vec<CandidateEstimate>,
    /// Budget at decision time, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetState>,
}

impl Decision {
    /// Compact JSON of the decision.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Compact JSON safe for an HTTP header value: non-ASCII characters are `\u` escaped.
    pub fn to_header_value(&self) -> String {
        header_safe_json(&self.to_json())
    }
}

/// JSON text made safe for an HTTP header value: every non-ASCII character `\u`-escaped (JSON
/// parsers read it back unchanged; raw UTF-8 in a header is mangled by Latin-1 clients).
pub fn header_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}
