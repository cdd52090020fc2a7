//! The models the router chooses between, with what the policies need to know about each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rightmodel_core::{ModelKind, Price};
use serde::{Deserialize, Serialize};

/// What a candidate can do beyond plain text in, text out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Accepts `tools` / returns tool calls.
    #[serde(default)]
    pub tools: bool,
    /// Follows a JSON schema (`response_format`).
    #[serde(default)]
    pub json_schema: bool,
    /// Returns token log-probabilities (needed to be the small model of a cascade).
    #[serde(default)]
    pub logprobs: bool,
    /// Context window in tokens (prompt + completion); `None` = unknown, not checked.
    #[serde(default)]
    pub context_tokens: Option<u32>,
    /// Takes OpenAI request content the gateway does not read itself (image and other non-text parts,
    /// `logit_bias`, ...) by passing it on: upstream models.
    #[serde(default)]
    pub passthrough: bool,
    /// Most choices (`n`) it writes for one request; `None`: as many as asked (language models), 1 for task
    /// models, which answer one way only.
    #[serde(default)]
    pub max_choices: Option<u32>,
}

/// Decides whether a task model is in its domain for a request, and how sure it is.
///
/// Implemented for any `Fn(&str) -> Option<f32>` over the last user turn, so a classifier can be
/// plugged in with a closure.
pub trait DomainFit: Send + Sync {
    /// `Some(confidence in [0, 1])` when `text` is in the model's domain, `None` otherwise.
    fn in_domain(&self, text: &str) -> Option<f32>;
}

impl<F: Fn(&str) -> Option<f32> + Send + Sync> DomainFit for F {
    fn in_domain(&self, text: &str) -> Option<f32> {
        self(text)
    }
}

/// A candidate's declared domain: it serves only requests it recognises with enough confidence.
#[derive(Clone)]
pub struct Domain {
    /// Name of the domain (for the decision record), e.g. `banking-intents`.
    pub name: String,
    /// The fit function.
    pub fit: Arc<dyn DomainFit>,
    /// Minimum confidence to serve.
    pub min_confidence: f32,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain").field("name", &self.name).field("min_confidence", &self.min_confidence).finish()
    }
}

/// Live latency of a candidate: exponentially weighted moving averages of time to first token and of
/// time per output token, updated by the server after each call and read lock-free by the router.
#[derive(Debug)]
pub struct LatencyTracker {
    first_token_ms: AtomicU64,
    per_token_ms: AtomicU64,
    alpha: f64,
}

impl LatencyTracker {
    /// A tracker starting from prior estimates; `alpha` in `(0, 1]` is the weight of each new sample.
    pub fn new(first_token_ms: f64, per_token_ms: f64, alpha: f64) -> Self {
        LatencyTracker {
            first_token_ms: AtomicU64::new(first_token_ms.max(0.0).to_bits()),
            per_token_ms: AtomicU64::new(per_token_ms.max(0.0).to_bits()),
            alpha: alpha.clamp(1e-3, 1.0),
        }
    }

    fn update(cell: &AtomicU64, sample: f64, alpha: f64) {
        if !sample.is_finite() || sample < 0.0 {
            return;
        }
        // A lost race between two updates drops one sample, which an average can afford.
        let old = f64::from_bits(cell.load(Ordering::Relaxed));
        cell.store((old + alpha * (sample - old)).to_bits(), Ordering::Relaxed);
    }

    /// Records a finished call: time to first token, total time and output tokens.
    pub fn observe(&self, first_token_ms: f64, total_ms: f64, output_tokens: u32) {
        Self::update(&self.first_token_ms, first_token_ms, self.alpha);
        if output_tokens > 1 {
            let per = (total_ms - first_token_ms) / f64::from(output_tokens - 1);
            Self::update(&self.per_token_ms, per, self.alpha);
        }
    }

    /// Records a finished call whose first token was not timed (a complete answer from an upstream):
    /// the total is split with the current per-token estimate, so only the first-token average moves.
    /// Reading the total as the first token's time would drive the per-token estimate to 0, and long
    /// answers would look as fast as short ones to `max_latency_ms`.
    pub fn observe_total(&self, total_ms: f64, output_tokens: u32) {
        let generation = self.per_token_ms() * f64::from(output_tokens.saturating_sub(1));
        Self::update(&self.first_token_ms, (total_ms - generation).max(0.0), self.alpha);
    }

    /// EWMA of the time to first token, in milliseconds.
    pub fn latency_ewma_ms(&self) -> f64 {
        f64::from_bits(self.first_token_ms.load(Ordering::Relaxed))
    }

    /// EWMA of the time per output token after the first, in milliseconds.
    pub fn per_token_ms(&self) -> f64 {
        f64::from_bits(self.per_token_ms.load(Ordering::Relaxed))
    }

    /// Estimated wall time of a call producing `output_tokens` tokens.
    pub fn estimate_ms(&self, output_tokens: u32) -> f64 {
        self.latency_ewma_ms() + self.per_token_ms() * f64::from(output_tokens.saturating_sub(1))
    }
}

/// A model the router may choose.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Name clients see (`model` in responses).
    pub name: String,
    /// Where it runs; local models are free unless priced.
    pub kind: ModelKind,
    /// Price per million tokens.
    pub price: Price,
    /// Relative capability, 0 (smallest) .. 1 (largest).
    pub tier: f32,
    /// Can return evidence (token weights, citations) for `explain: true`.
    pub explainable: bool,
    /// Live latency estimates (shared with the server, which updates them).
    pub latency: Arc<LatencyTracker>,
    /// What it supports.
    pub capabilities: Capabilities,
    /// A task model's domain; such a candidate serves only in-domain requests.
    pub domain: Option<Domain>,
}

impl Candidate {
    /// A candidate with default capabilities (an upstream passes on what it does not read), no domain
    /// and the given latency priors.
    pub fn new(name: &str, kind: ModelKind, price: Price, tier: f32, first_token_ms: f64, per_token_ms: f64) -> Self {
        Candidate {
            name: name.to_string(),
            kind,
            price,
            tier: tier.clamp(0.0, 1.0),
            explainable: false,
            latency: Arc::new(LatencyTracker::new(first_token_ms, per_token_ms, 0.2)),
            capabilities: Capabilities {
                passthrough: kind == ModelKind::Upstream,
                max_choices: (!matches!(kind, ModelKind::Upstream | ModelKind::LocalChat)).then_some(1),
                ..Capabilities::default()
            },
            domain: None,
        }
    }

    /// True when calling it costs nothing (local models, or a zero price).
    pub fn is_free(&self) -> bool {
        self.price.is_free()
    }

    /// The current latency EWMA (time to first token) in milliseconds.
    pub fn latency_ewma_ms(&self) -> f64 {
        self.latency.latency_ewma_ms()
    }
}

#[cfg(test)]
mod observe_tests {
    use super::LatencyTracker;

    #[test]
    fn an_untimed_first_token_moves_only_the_first_token_average() {
        let t = LatencyTracker::new(100.0, 20.0, 1.0);
        t.observe_total(2_100.0, 51); // 100 ms + 50 x 20 ms would be 1,100: the call was slower to start
        assert_eq!(t.per_token_ms(), 20.0);
        assert_eq!(t.latency_ewma_ms(), 1_100.0);
        t.observe_total(50.0, 51); // shorter than the generation alone: no negative first token
        assert_eq!(t.latency_ewma_ms(), 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ewma_moves_toward_samples() {
        let t = LatencyTracker::new(100.0, 10.0, 0.5);
        assert_eq!(t.estimate_ms(11), 200.0);
        t.observe(200.0, 400.0, 11);
        assert_eq!(t.latency_ewma_ms(), 150.0);
        assert_eq!(t.per_token_ms(), 15.0);
        t.observe(f64::NAN, -1.0, 0);
        assert_eq!(t.latency_ewma_ms(), 150.0);
    }

    #[test]
    fn closures_are_domain_fits() {
        let fit: Arc<dyn DomainFit> = Arc::new(|t: &str| t.contains("card").then_some(0.9));
        assert_eq!(fit.in_domain("my card is lost"), Some(0.9));
        assert_eq!(fit.in_domain("hello"), None);
    }
}
