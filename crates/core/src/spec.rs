//! What a servable model is: its name, where it runs, what it costs and what it can do.

use serde::{Deserialize, Serialize};

/// Price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Dollars per million prompt tokens.
    pub input_per_mtok: f64,
    /// Dollars per million completion tokens.
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost in dollars of a call with the given token counts.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1e6
    }

    /// Whether calls cost nothing (local models): such models serve even when the day's budget is spent.
    pub fn is_free(&self) -> bool {
        self.input_per_mtok <= 0.0 && self.output_per_mtok <= 0.0
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A GGUF language model running in-process on llama.cpp.
    LocalChat,
    /// A sentence encoder running in-process on candle.
    LocalEmbedding,
    /// A classifier trained by the user (`rightmodel train classify`).
    Classifier,
    /// A document collection answered with citations (`docs:NAME`).
    Docs,
    /// A model behind an OpenAI-compatible upstream.
    Upstream,
}

impl ModelKind {
    /// True for models that run on this machine (no network, no per-token price).
    pub fn is_local(self) -> bool {
        !matches!(self, ModelKind::Upstream)
    }
}

/// A model the gateway can serve, as the router and `/v1/models` see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Name clients use in the `model` field.
    pub name: String,
    /// Where it runs.
    pub kind: ModelKind,
    /// Price per million tokens (zero for local models unless configured).
    #[serde(default)]
    pub price: Price,
    /// Whether the model can return evidence for its answer (token weights, citations).
    #[serde(default)]
    pub explainable: bool,
    /// Relative capability, 0 (smallest) .. 1 (largest); orders candidates when the router escalates.
    #[serde(default)]
    pub tier: f32,
}
