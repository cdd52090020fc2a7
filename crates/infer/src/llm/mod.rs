//! GGUF language models on llama.cpp.
//!
//! One [`Engine`] per model: the model is loaded once, and a worker thread owns the `LlamaContext`
//! (which is `Send` but not `Sync`). Callers submit [`GenRequest`]s over a bounded queue and receive
//! [`GenEvent`]s on a channel; the worker decodes all active sequences in one batch per step
//! (continuous batching) and reuses the longest cached prompt prefix of any slot (KV-cache copy), so
//! concurrent requests and repeated system prompts cost less.

mod chat;
mod engine;
mod logprobs;
mod rawbench;
mod reader;
mod sampling;
mod stop;

pub use chat::{ChatTemplate, RenderedPrompt};
pub use engine::{check_context, Engine, EngineConfig, EngineStats};
pub use rawbench::raw_llama_speed;
pub use reader::LmReader;
pub use sampling::{json_schema_grammar, SamplingParams, MAX_REPETITION};

use rightmodel_core::wire::ChatMessage;

/// What to generate from.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Raw text; BOS is added, control-token text is treated as plain text.
    Text(String),
    /// Raw text in which control tokens (e.g. `<start_of_turn>`) are parsed: for trusted prompts only.
    TrustedText(String),
    /// A conversation, formatted with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// One generation job.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling and stopping parameters.
    pub params: SamplingParams,
}

/// An alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAlt {
    /// Token id.
    pub id: i32,
    /// Token text (lossy UTF-8).
    pub text: String,
    /// The token's raw bytes (a byte-fallback token may be part of a UTF-8 character).
    pub piece: Vec<u8>,
    /// Natural-log probability under the model (before sampling transforms).
    pub logprob: f32,
}

/// One generated token.
#[derive(Debug, Clone)]
pub struct TokenOut {
    /// Token id.
    pub id: i32,
    /// Text released by this token (may be empty while a multi-byte character or a possible stop
    /// sequence is held back).
    pub text: String,
    /// Log-probability of the token, when asked for (always computed when `logprobs` is set).
    pub logprob: Option<f32>,
    /// The raw bytes of the token piece.
    pub piece: Vec<u8>,
    /// Top alternatives, when asked for.
    pub top: Vec<TokenAlt>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop sequence.
    Stop,
    /// `max_tokens` or the context limit reached.
    Length,
    /// The caller went away.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::Cancelled => "length",
        }
    }
}

/// Summary sent when a sequence ends.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Why it ended.
    pub reason: FinishReason,
    /// Prompt tokens (BOS included).
    pub prompt_tokens: u32,
    /// Prompt tokens served from the KV cache instead of being decoded.
    pub cached_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Any text still held back at the end (flushed).
    pub tail: String,
}

/// Events of one generation, in order: `Started`, zero or more `Token`, then `Done` or `Error`.
#[derive(Debug, Clone)]
pub enum GenEvent {
    /// The prompt was tokenised and admitted.
    Started {
        /// Prompt tokens.
        prompt_tokens: u32,
    },
    /// A generated token.
    Token(TokenOut),
    /// The sequence ended.
    Done(Finished),
    /// The sequence failed.
    Error(crate::InferError),
}

/// A finished generation collected in one piece (CLI, tests, cascade).
#[derive(Debug, Clone)]
pub struct Completion {
    /// Generated text.
    pub text: String,
    /// Generated tokens with their log-probabilities.
    pub tokens: Vec<TokenOut>,
    /// End summary.
    pub finished: Finished,
    /// Time to the first generated token.
    pub ttft: std::time::Duration,
    /// Total time.
    pub total: std::time::Duration,
}
