//! In-process inference.
//!
//! - [`llm`]: GGUF language models on llama.cpp (the `llama-cpp-2` crate): one model loaded once, a
//!   worker thread owning the `LlamaContext`, continuous batching of concurrent sequences, prompt-prefix
//!   reuse from the KV cache, sampling, log-probabilities and chat formatting.
//! - [`embed`]: sentence encoders (BERT family, e.g. all-MiniLM-L6-v2) on candle, with the forward
//!   pass in [`bert`].
//!
//! Nothing here blocks an async runtime: generation runs on its own threads and talks to callers over
//! channels; embedding calls are synchronous and meant to be run on a blocking pool.

pub mod bert;
pub mod candle_error;
pub mod embed;
pub mod llm;
pub mod threads;

pub use embed::MiniLm;
pub use llm::{ChatTemplate, Engine, EngineConfig, FinishReason, GenEvent, GenRequest, SamplingParams};

/// Failure of an inference engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    /// A model file could not be read or is not a valid model.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The file or directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// Bad parameters (empty prompt, invalid grammar, ...).
    #[error("{0}")]
    Invalid(String),
    /// A sampling parameter out of its range, named by its OpenAI request field (`temperature`,
    /// `stop`, ...) so that the API error can point at it.
    #[error("{message}")]
    InvalidParam {
        /// The request field.
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The prompt does not fit in one sequence's context: OpenAI clients recognise this case (code
    /// `context_length_exceeded`) and shorten the conversation, so it is kept apart from
    /// [`InferError::Invalid`].
    #[error(
        "the prompt has {}{tokens} tokens; this model's maximum context length is {limit} tokens",
        if *.at_least { "at least " } else { "" }
    )]
    ContextLength {
        /// Prompt tokens (a lower bound when `at_least`).
        tokens: usize,
        /// Most tokens (prompt and answer) one sequence may hold.
        limit: usize,
        /// The prompt was refused by its size in bytes, before tokenising: `tokens` is a lower bound.
        at_least: bool,
    },
    /// The prompt and the answer's `max_tokens` together exceed one sequence's context (only when the
    /// caller asked for that `max_tokens`, see [`llm::SamplingParams::max_tokens_must_fit`]).
    #[error(
        "the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}; this model's maximum context \
         length is {limit} tokens"
    )]
    AnswerTooLong {
        /// Prompt tokens.
        prompt_tokens: usize,
        /// The answer's `max_tokens`.
        max_tokens: usize,
        /// Most tokens (prompt and answer) one sequence may hold.
        limit: usize,
    },
    /// The request's output constraints (a grammar, e.g. from a JSON schema) allow no next token:
    /// nothing satisfies them.
    #[error("the grammar (JSON schema) {0}")]
    Unsatisfiable(String),
    /// The engine is overloaded (queue full).
    #[error("the inference queue is full")]
    Busy,
    /// The engine thread is gone.
    #[error("the inference engine has stopped")]
    Stopped,
    /// Any other engine failure.
    #[error("inference failed: {0}")]
    Engine(String),
}
