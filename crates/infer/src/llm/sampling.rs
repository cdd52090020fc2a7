//! Sampling parameters and the llama.cpp sampler chain built from them.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::InferError;

/// How to pick each next token and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus mass (1 = off).
    pub top_p: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: i32,
    /// Drop tokens below `min_p` times the top probability (0 = off).
    pub min_p: f32,
    /// Seed of the random sampler.
    pub seed: u32,
    /// Stop sequences (not included in the output).
    pub stop: Vec<String>,
    /// Repetition penalty (1 = off).
    pub repeat_penalty: f32,
    /// OpenAI frequency penalty (0 = off).
    pub frequency_penalty: f32,
    /// OpenAI presence penalty (0 = off).
    pub presence_penalty: f32,
    /// GBNF grammar constraining the output.
    pub grammar: Option<String>,
    /// Compute log-probabilities of generated tokens.
    pub logprobs: bool,
    /// Alternatives per position (0..=20).
    pub top_logprobs: usize,
    /// Never pick an end-of-generation token (benchmarks that need exactly `max_tokens`).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
            stop: Vec::new(),
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            grammar: None,
            logprobs: false,
            top_logprobs: 0,
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    /// Checks ranges, so that bad values fail the request instead of the engine.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |m: &str| Err(InferError::Invalid(m.to_string()));
        if !(0.0..=2.0).contains(&self.temperature) || self.temperature.is_nan() {
            return bad("temperature must be between 0 and 2");
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p.is_nan() {
            return bad("top_p must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be between 0 and 1");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) || !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad("frequency_penalty and presence_penalty must be between -2 and 2");
        }
        if self.repeat_penalty <= 0.0 || !self.repeat_penalty.is_finite() {
            return bad("repetition penalty must be positive");
        }
        if self.top_logprobs > 20 {
            return bad("top_logprobs must be between 0 and 20");
        }
        if self.stop.len() > 4 || self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop takes at most 4 non-empty sequences");
        }
        Ok(())
    }

    /// Builds the sampler chain: grammar, penalties, top-k, top-p, min-p, temperature, then the
    /// random draw (or greedy when temperature is 0).
    pub(crate) fn build(&self, model: &LlamaModel) -> Result<LlamaSampler, InferError> {
        let mut chain = Vec::new();
        if self.ignore_eos {
            let vocab = model.vocab();
            let eog: Vec<_> = [vocab.eos(), vocab.eot()]
                .into_iter()
                .filter(|t| t.0 >= 0)
                .map(|t| llama_cpp_2::token::logit_bias::LlamaLogitBias::new(t, f32::NEG_INFINITY))
                .collect();
            chain.push(LlamaSampler::logit_bias(model.n_vocab(), &eog));
        }
        if let Some(g) = &self.grammar {
            let s = LlamaSampler::grammar(model, g, "root")
                .map_err(|e| InferError::Invalid(format!("invalid grammar: {e}")))?;
            chain.push(s);
        }
        if self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0 {
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                64,
                self.repeat_penalty,
                self.frequency_penalty,
                self.presence_penalty,
            ));
        }
        if self.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        Ok(LlamaSampler::chain_simple(chain))
    }
}

/// GBNF grammar accepting JSON that matches `schema` (a JSON Schema document), via llama.cpp's
/// converter, for `response_format: json_schema`.
pub fn json_schema_grammar(schema: &str) -> Result<String, InferError> {
    llama_cpp_2::json_schema_to_grammar(schema)
        .map_err(|e| InferError::Invalid(format!("unsupported JSON schema: {e}")))
}
