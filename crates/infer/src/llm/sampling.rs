//! Sampling parameters and the llama.cpp sampler chain built from them.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

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
    /// Reuse the KV state of a cached prompt prefix (llama.cpp server's `cache_prompt`). Off, the whole
    /// prompt is computed afresh: slower, but a greedy answer then does not depend on what earlier
    /// requests left in the cache (a cached and a fresh prompt are computed in different batch shapes,
    /// and on some CPUs that flips near-ties).
    pub cache_prompt: bool,
    /// `max_tokens` is the caller's own limit rather than a default: a prompt that leaves less room
    /// than that in the context is refused ([`crate::InferError::AnswerTooLong`]) instead of having
    /// its answer cut at the context. Off, the answer fills at most the room the prompt leaves.
    pub max_tokens_must_fit: bool,
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
            cache_prompt: true,
            max_tokens_must_fit: false,
        }
    }
}

impl SamplingParams {
    /// Checks ranges, so that bad values fail the request instead of the engine.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |param: &'static str, m: &str| Err(InferError::InvalidParam { param, message: m.to_string() });
        if !(0.0..=2.0).contains(&self.temperature) || self.temperature.is_nan() {
            return bad("temperature", "`temperature` must be between 0 and 2.");
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p.is_nan() {
            return bad("top_p", "`top_p` must be between 0 and 1.");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "`min_p` must be between 0 and 1.");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return bad("frequency_penalty", "`frequency_penalty` must be between -2 and 2.");
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad("presence_penalty", "`presence_penalty` must be between -2 and 2.");
        }
        if self.repeat_penalty <= 0.0 || !self.repeat_penalty.is_finite() {
            return bad("repeat_penalty", "`repeat_penalty` must be positive.");
        }
        if self.top_logprobs > 20 {
            return bad("top_logprobs", "`top_logprobs` must be between 0 and 20.");
        }
        if self.stop.len() > 4 {
            return bad("stop", "`stop` takes at most 4 sequences.");
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop", "A stop sequence must not be empty.");
        }
        if let Some(g) = &self.grammar {
            check_grammar(g)?;
        }
        Ok(())
    }

    /// Builds the sampler chain: grammar, penalties, top-k, top-p, min-p, temperature, then the
    /// random draw (or greedy when temperature is 0). `answer_tokens` is the most tokens this answer
    /// can have: the penalties look back that far, so that, as in OpenAI's API, they count every
    /// token of the answer so far (llama.cpp keeps a window of that size per sequence).
    pub(crate) fn build(&self, model: &LlamaModel, answer_tokens: u32) -> Result<Sampler, InferError> {
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
        let grammar = match &self.grammar {
            // `validate` (run by `Engine::submit`) has checked it; parsing it here is safe.
            Some(g) => {
                let s = LlamaSampler::grammar(model, g, "root")
                    .map_err(|e| InferError::Invalid(format!("invalid grammar: {e}")))?;
                Some(s)
            }
            None => None,
        };
        if self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0 {
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                penalty_window(answer_tokens),
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
        Ok(Sampler { grammar, chain: LlamaSampler::chain_simple(chain), candidates: Vec::new() })
    }
}

/// The penalties' look-back for an answer of at most `answer_tokens` tokens: all of it (at least
/// one token; llama.cpp reads 0 as "no penalty").
fn penalty_window(answer_tokens: u32) -> i32 {
    i32::try_from(answer_tokens).unwrap_or(i32::MAX).max(1)
}

/// Longest grammar accepted (bytes); llama.cpp parses it on the engine's thread.
const MAX_GRAMMAR_BYTES: usize = 256 * 1024;
/// Largest repetition bound `{m,n}` accepted: llama.cpp expands each into that many rules and
/// refuses more than this itself (`MAX_REPETITION_THRESHOLD`), with a less helpful message.
pub const MAX_REPETITION: u64 = 2000;

/// Refuses grammars llama.cpp would choke on: too long, or with a repetition `{m,n}` where n < m
/// (its parser computes n - m unsigned and expands billions of rules, hanging the engine) or with
/// bounds so large the expansion exhausts memory. Written by hand: llama.cpp offers no validation
/// short of parsing, which is the step that hangs.
fn check_grammar(g: &str) -> Result<(), InferError> {
    let bad = |m: String| Err(InferError::Invalid(m));
    if g.len() > MAX_GRAMMAR_BYTES {
        return bad(format!("the grammar is {} bytes long; at most {MAX_GRAMMAR_BYTES} are accepted", g.len()));
    }
    let b = g.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // Skip literals and character classes, with their escapes.
            q @ (b'"' | b'[') => {
                let close = if q == b'"' { b'"' } else { b']' };
                i += 1;
                while i < b.len() && b[i] != close {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                let end = g[i..].find('}').map(|e| i + e).unwrap_or(b.len());
                let inner = &g[i + 1..end.min(g.len())];
                // llama.cpp also reads comments and line breaks inside the braces; only plain bounds
                // are accepted, so that what is checked here is what it parses.
                if !inner.bytes().all(|c| c.is_ascii_digit() || c == b',' || c == b' ') {
                    return bad(format!(
                        "the grammar repeats `{{{inner}}}`: only `{{m}}`, `{{m,}}` and `{{m,n}}` are supported"
                    ));
                }
                let mut parts = inner.splitn(2, ',').map(str::trim);
                let lo = parts.next().and_then(|p| p.parse::<u64>().ok());
                let hi = parts.next().map(|p| if p.is_empty() { None } else { p.parse::<u64>().ok() });
                if let Some(lo) = lo {
                    let hi = match hi {
                        None => Some(lo),
                        Some(h) => h,
                    };
                    if hi.is_some_and(|h| h < lo) {
                        return bad(format!("the grammar repeats `{{{inner}}}`: the upper bound is below the lower"));
                    }
                    if lo.max(hi.unwrap_or(0)) > MAX_REPETITION {
                        return bad(format!(
                            "the grammar repeats `{{{inner}}}`: bounds above {MAX_REPETITION} are not supported"
                        ));
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A sequence's sampler: the grammar (if any) kept apart from the rest of the chain.
///
/// llama.cpp's one-call sampling accepts the chosen token into the grammar and throws a C++
/// exception when the grammar refuses it (which happens when the grammar allows no token at all,
/// e.g. a JSON schema no value satisfies); an exception crossing into Rust aborts the process. With
/// the grammar apart, a sequence whose grammar allows nothing ends with an error instead, and the
/// token is accepted through the binding's exception-guarded call.
pub(crate) struct Sampler {
    grammar: Option<LlamaSampler>,
    chain: LlamaSampler,
    /// Reused candidate buffer (one entry per vocabulary token) for grammar sampling.
    candidates: Vec<LlamaTokenData>,
}

impl Sampler {
    /// Picks the next token from the logits of batch position `idx` and accepts it.
    pub(crate) fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> Result<LlamaToken, InferError> {
        let Some(grammar) = self.grammar.as_mut() else {
            return Ok(self.chain.sample(ctx, idx));
        };
        let mut buf = std::mem::take(&mut self.candidates);
        buf.clear();
        buf.extend(
            ctx.get_logits_ith(idx).iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        );
        let mut arr = LlamaTokenDataArray::new(buf, false);
        arr.apply_sampler(grammar);
        let picked = if arr.data.iter().any(|t| t.logit() > f32::NEG_INFINITY) {
            arr.apply_sampler(&mut self.chain);
            arr.selected_token()
        } else {
            None
        };
        self.candidates = arr.data;
        let token = picked.ok_or_else(|| InferError::Unsatisfiable("allows no next token".into()))?;
        grammar.try_accept(token).map_err(|e| InferError::Unsatisfiable(format!("refused the next token: {e}")))?;
        self.chain.accept(token);
        Ok(token)
    }
}

/// GBNF grammar accepting JSON that matches `schema` (a JSON Schema document), via llama.cpp's
/// converter, for `response_format: json_schema`.
pub fn json_schema_grammar(schema: &str) -> Result<String, InferError> {
    llama_cpp_2::json_schema_to_grammar(schema)
        .map_err(|e| InferError::Invalid(format!("llama.cpp could not turn the JSON schema into a grammar ({e})")))
}
