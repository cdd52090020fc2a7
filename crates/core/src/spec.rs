//! What a servable model is: its name, where it runs, what it costs and what it can do.

use serde::{Deserialize, Serialize};

/// Price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Dollars per million prompt tokens.
    pub input_per_mtok: f64,
    /// Dollars per million completion tokens.
    pub output_per_mtok: f64,
    /// Dollars per million prompt tokens the provider served from its prompt cache (providers bill
    /// them at a fraction of the input price); `None`: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
}

impl Price {
    /// A price without a separate price for cached prompt tokens.
    pub fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Price { input_per_mtok, output_per_mtok, cached_input_per_mtok: None }
    }

    /// Cost in dollars of a call with the given token counts, every prompt token at the input price
    /// (estimates made before the call, when cache hits are not known).
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1e6
    }

    /// Cost in dollars of a call as its usage reports it: the prompt tokens it says came from a cache
    /// at the cached price (at most all of the prompt), the rest at the input price.
    pub fn cost_of(&self, usage: &crate::wire::Usage) -> f64 {
        let cached = usage.cached_prompt_tokens();
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        self.cost(usage.prompt_tokens - cached, usage.completion_tokens) + cached as f64 * cached_price / 1e6
    }

    /// Whether calls cost nothing (local models): such models serve even when the day's budget is spent.
    pub fn is_free(&self) -> bool {
        self.input_per_mtok <= 0.0 && self.output_per_mtok <= 0.0 && self.cached_input_per_mtok.is_none_or(|c| c <= 0.0)
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

#[cfg(test)]
mod tests {
    use super::Price;
    use crate::wire::Usage;

    #[test]
    fn cached_prompt_tokens_cost_the_cached_price() {
        let price = Price { cached_input_per_mtok: Some(0.5), ..Price::new(2.0, 8.0) };
        let plain = Usage::new(1000, 100);
        assert!((price.cost_of(&plain) - (1000.0 * 2.0 + 100.0 * 8.0) / 1e6).abs() < 1e-15);
        let cached = Usage::new(1000, 100).with_cached_tokens(600);
        assert!((price.cost_of(&cached) - (400.0 * 2.0 + 600.0 * 0.5 + 100.0 * 8.0) / 1e6).abs() < 1e-15);
        // Without a cached price, cache hits cost the input price; a report of more cached tokens than
        // prompt tokens counts the prompt only.
        assert_eq!(Price::new(2.0, 8.0).cost_of(&cached), Price::new(2.0, 8.0).cost(1000, 100));
        let over = Usage::new(10, 0).with_cached_tokens(50);
        assert!((price.cost_of(&over) - 10.0 * 0.5 / 1e6).abs() < 1e-15);
    }
}
