//! The OpenAI wire schema: requests, responses and streaming chunks, field by field.
//!
//! The server, the router, the upstream client and the CLI all use these types; nothing else in the
//! workspace defines its own copy. Unknown request fields are kept in `extra` so the server can reject
//! unsupported parameters with a clear 400 instead of ignoring them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One or several stop sequences.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StopSpec {
    /// A single stop string.
    One(String),
    /// Up to four stop strings.
    Many(Vec<String>),
}

impl StopSpec {
    /// The stop strings as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s.clone()],
            StopSpec::Many(v) => v.clone(),
        }
    }
}

/// A content part of a message (only text parts are supported).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    /// Part type; `text` is the only one served.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (text only).
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text of the content, parts joined with newlines. Non-text parts are an error for the caller
    /// to report; see [`MessageContent::non_text_part`].
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(p) => p.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join("\n"),
        }
    }
    /// The type of the first part that is not text, if any.
    pub fn non_text_part(&self) -> Option<&str> {
        match self {
            MessageContent::Text(_) => None,
            MessageContent::Parts(p) => p.iter().find(|p| p.kind != "text").map(|p| p.kind.as_str()),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Message text; may be null for assistant messages with tool calls.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `tool` messages: the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

impl ChatMessage {
    /// A message with plain-text content.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: Some(MessageContent::Text(content.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }
    /// The message text (empty when content is null).
    pub fn text(&self) -> String {
        self.content.as_ref().map(MessageContent::text).unwrap_or_default()
    }
}

/// A function the model may call (`tools[]` of a chat request).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

/// Name, description and JSON-schema parameters of a callable function.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionDef {
    /// Function name (`a-z`, `A-Z`, `0-9`, `_`, `-`; at most 64 characters).
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of its arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence (passed on to upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A call of a function by the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    /// Call id, echoed by the `tool` message that answers it.
    pub id: String,
    /// Always `function` (some upstreams leave it out).
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".into()
}

/// Function name and arguments of a call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    /// The function called.
    pub name: String,
    /// Its arguments, a JSON object serialised as a string.
    pub arguments: String,
}

/// A piece of a tool call in a streaming chunk; pieces with the same `index` concatenate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ToolCallDelta {
    /// Which call of the message this piece belongs to (some upstreams leave it out for one call).
    #[serde(default)]
    pub index: u32,
    /// Call id (first piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first piece).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first piece) and a fragment of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// Name and argument fragment of a streamed tool call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FunctionCallDelta {
    /// The function (first piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next fragment of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `stream_options` of a chat or completion request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a final chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `response_format` of a chat request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `json_schema`: `{"name", "schema", "strict"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
}

/// Sampling parameters shared by chat and text completions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SamplingFields {
    /// Legacy cap on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Cap on generated tokens (chat; preferred over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices (`n`), each an answer of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSpec>,
    /// Presence penalty, -2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty, -2..2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// End-user id (recorded, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl SamplingFields {
    /// The sampling of choice `i` of a request asking for several, generated as a request of its own:
    /// one choice, seeded with the client's seed plus `i`, so that sampled choices differ and stay
    /// reproducible.
    pub fn for_choice(&self, i: u32) -> SamplingFields {
        SamplingFields { n: None, seed: self.seed.map(|s| s.wrapping_add(i64::from(i))), ..self.clone() }
    }
}

/// `POST /v1/chat/completions` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionRequest {
    /// Model name, or `auto` to let the router choose.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling parameters.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Return log-probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Number of alternatives per position, 0..20 (needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once (passed on to upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// rightmodel's own per-request options (sent by clients as `extra_body={"rightmodel": {...}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rightmodel: Option<Value>,
    /// Every other field, kept so the server can reject what it does not support.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/completions` prompt: a string, a list of strings, or token ids (one list, or a list of
/// lists), as OpenAI's schema allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PromptInput {
    /// One prompt.
    One(String),
    /// Several prompts (only one is served).
    Many(Vec<String>),
    /// One prompt as token ids of the served model's vocabulary (passed on to upstreams).
    Tokens(Vec<i64>),
    /// Several prompts as token ids.
    ManyTokens(Vec<Vec<i64>>),
}

impl PromptInput {
    /// A rough size of the prompt in tokens, for holds and estimates before a model counts it.
    pub fn estimated_tokens(&self) -> u64 {
        match self {
            PromptInput::One(p) => crate::tokens::text_tokens(p),
            PromptInput::Many(ps) => ps.iter().map(|p| crate::tokens::text_tokens(p)).sum(),
            PromptInput::Tokens(t) => t.len() as u64,
            PromptInput::ManyTokens(ts) => ts.iter().map(|t| t.len() as u64).sum(),
        }
    }
}

/// `POST /v1/completions` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompletionRequest {
    /// Model name or `auto`.
    pub model: String,
    /// The prompt.
    pub prompt: PromptInput,
    /// Sampling parameters.
    #[serde(flatten)]
    pub sampling: SamplingFields,
    /// Number of top log-probabilities per token (legacy integer form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// Echo the prompt before the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// rightmodel's own per-request options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rightmodel: Option<Value>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token counts of a call.
///
/// Read leniently: some OpenAI-compatible servers send partial usage (vLLM behind LiteLLM sends no
/// `completion_tokens`, others an empty object), and the answer or stream must not fail to parse
/// after the upstream billed it. A missing count is derived from the total where it can be, else it
/// reads 0 and [`Usage::incomplete`] says so (the gateway then estimates the call's cost from its
/// text rather than bill a free answer); a missing total is the sum.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "UsageOnWire")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Breakdown of the prompt tokens: how many were served from a cache. Kept from upstreams (clients
    /// read their cache hits here), filled in for local models from their KV-cache reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Breakdown of the completion tokens (reasoning tokens of upstream models), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Whether the sender left out a count that could not be derived (never serialised).
    #[serde(skip)]
    pub incomplete: bool,
}

/// [`Usage`] as upstreams send it, every field optional.
#[derive(Deserialize)]
struct UsageOnWire {
    #[serde(default, deserialize_with = "lenient_count")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    total_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_details")]
    prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, deserialize_with = "lenient_details")]
    completion_tokens_details: Option<CompletionTokensDetails>,
}

/// A token count as compatible servers send it: an integer, an integral float (`10.0`) or a numeric string;
/// anything else (a negative or fractional number, text, an object) reads as missing, so that the call is
/// billed by estimate rather than failing after the upstream answered (and billed it).
fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    let n = match &v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => s.trim().parse::<u64>().ok().or_else(|| s.trim().parse::<f64>().ok().and_then(integral)),
        _ => None,
    };
    // No call has a trillion tokens; a count beyond that is garbage (and sums of it would overflow).
    Ok(n.filter(|n| *n <= COUNT_MAX))
}

/// Largest token count believed.
const COUNT_MAX: u64 = 1_000_000_000_000;

fn integral(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= COUNT_MAX as f64).then_some(f as u64)
}

/// A token breakdown, or `None` when it cannot be read (see [`lenient_count`]).
fn lenient_details<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value::<Option<T>>(v).ok().flatten())
}

/// Usage, or `None` when it cannot be read at all (not an object, say): the answer it came with is still
/// passed on, and billed by estimate.
fn lenient_usage<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value::<Option<Usage>>(v).ok().flatten())
}

impl From<UsageOnWire> for Usage {
    fn from(u: UsageOnWire) -> Self {
        // One count missing: the total minus the other, when the total is larger (a total equal to the
        // prompt may be a report sent before the answer was counted).
        let rest = |total: Option<u64>, other: Option<u64>| match (total, other) {
            (Some(t), Some(o)) if t > o => Some(t - o),
            _ => None,
        };
        let prompt = u.prompt_tokens.or_else(|| rest(u.total_tokens, u.completion_tokens));
        let completion = u.completion_tokens.or_else(|| rest(u.total_tokens, u.prompt_tokens));
        let (prompt_tokens, completion_tokens) = (prompt.unwrap_or(0), completion.unwrap_or(0));
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: u.total_tokens.unwrap_or(prompt_tokens + completion_tokens),
            prompt_tokens_details: u.prompt_tokens_details,
            completion_tokens_details: u.completion_tokens_details,
            incomplete: prompt.is_none() || completion.is_none(),
        }
    }
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Prompt tokens that came from a cache instead of being processed.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub cached_tokens: Option<u64>,
    /// Audio input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub audio_tokens: Option<u64>,
}

/// OpenAI's `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    /// Tokens the model spent reasoning before its answer.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub reasoning_tokens: Option<u64>,
    /// Audio output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub audio_tokens: Option<u64>,
    /// Predicted-output tokens that appeared in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub accepted_prediction_tokens: Option<u64>,
    /// Predicted-output tokens that did not.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_count")]
    pub rejected_prediction_tokens: Option<u64>,
}

impl Usage {
    /// Usage with `total_tokens` filled in.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
            incomplete: false,
        }
    }

    /// Prompt tokens served from a cache (`prompt_tokens_details.cached_tokens`), at most all of them:
    /// what is billed at the cached price.
    pub fn cached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0).min(self.prompt_tokens)
    }

    /// This usage with `cached` of its prompt tokens marked as served from a cache.
    pub fn with_cached_tokens(mut self, cached: u64) -> Self {
        let details = self.prompt_tokens_details.get_or_insert_with(PromptTokensDetails::default);
        details.cached_tokens = Some(cached);
        self
    }
}

/// One alternative token at a position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Option<Vec<u8>>,
}

/// Log-probability of one generated token and its alternatives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Option<Vec<u8>>,
    /// The most likely alternatives.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `logprobs` object of a chat choice.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChoiceLogprobs {
    /// One entry per generated token.
    pub content: Option<Vec<TokenLogprob>>,
}

/// A chat choice of a non-streaming response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatChoice {
    /// Choice index (always 0).
    pub index: u32,
    /// The assistant message.
    pub message: ChatMessage,
    /// `stop`, `length`, `tool_calls` or `content_filter`.
    pub finish_reason: Option<String>,
    /// Token log-probabilities when asked for.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// `POST /v1/chat/completions` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-...` id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that served the request.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts (`None` when the sender's could not be read: the answer is billed by estimate).
    #[serde(default, deserialize_with = "lenient_usage")]
    pub usage: Option<Usage>,
    /// Backend fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// rightmodel's routing decision and evidence (citations, explanations); ignored by OpenAI clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rightmodel: Option<Value>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// The incremental message of a streaming chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatDelta {
    /// Set on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// A choice of a streaming chunk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkChoice {
    /// Choice index (always 0).
    pub index: u32,
    /// The new text (absent in some providers' content-filter notes).
    #[serde(default)]
    pub delta: ChatDelta,
    /// Set on the last content chunk.
    pub finish_reason: Option<String>,
    /// Log-probabilities of the tokens in this chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// One `data:` event of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionChunk {
    /// Same id on every chunk of a stream.
    #[serde(default)]
    pub id: String,
    /// Always `chat.completion.chunk` (some servers leave it out).
    #[serde(default)]
    pub object: String,
    /// Unix seconds (some servers leave it out).
    #[serde(default)]
    pub created: i64,
    /// The model that served the request.
    #[serde(default)]
    pub model: String,
    /// Zero (usage chunk) or one choice.
    pub choices: Vec<ChunkChoice>,
    /// Present on the final chunk when `stream_options.include_usage` is set (null on the others).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_usage")]
    pub usage: Option<Usage>,
    /// rightmodel's decision, on the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rightmodel: Option<Value>,
    /// Fields rightmodel does not model (provider extensions such as `cache_control`, `refusal`,
    /// `reasoning_content`), kept so they pass through to upstreams and back to clients.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// Legacy completions log-probabilities.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<f32>,
    /// Alternatives per position.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    /// Character offsets of each token in the text.
    pub text_offset: Vec<usize>,
}

/// A choice of `POST /v1/completions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompletionChoice {
    /// The generated text.
    #[serde(default)]
    pub text: String,
    /// Choice index.
    #[serde(default)]
    pub index: u32,
    /// Log-probabilities when asked for.
    #[serde(default)]
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length` (null on intermediate stream chunks).
    pub finish_reason: Option<String>,
}

/// `POST /v1/completions` response (and stream chunk, with `object` `text_completion`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompletionResponse {
    /// `cmpl-...` id.
    #[serde(default)]
    pub id: String,
    /// Always `text_completion` (some servers leave it out of stream chunks).
    #[serde(default)]
    pub object: String,
    /// Unix seconds (some servers leave it out of stream chunks).
    #[serde(default)]
    pub created: i64,
    /// The model that served the request.
    #[serde(default)]
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_usage")]
    pub usage: Option<Usage>,
    /// Fields rightmodel does not model (`system_fingerprint`, provider extensions), passed through.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, Value>,
}

/// `input` of an embeddings request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Token ids: one list, or a list of lists (read as `cl100k_base` ids by the local encoder).
    Tokens(Vec<Value>),
}

/// `POST /v1/embeddings` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingRequest {
    /// Embedding model name.
    pub model: String,
    /// The text(s).
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Requested dimensions (only the model's own is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An embedding vector: floats, or little-endian f32 bytes in base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// One embedding of an embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// Position in the input.
    pub index: u32,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input text.
    pub data: Vec<EmbeddingData>,
    /// The model.
    pub model: String,
    /// Prompt tokens (completion tokens are zero).
    pub usage: Usage,
}

/// An entry of `GET /v1/models`. Only `id` is required when reading: some OpenAI-compatible
/// servers leave out `object`, `created` or `owned_by` (they read as empty / 0); the gateway's own
/// list always writes all four.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelObject {
    /// Model name.
    pub id: String,
    /// Always `model`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Owner (`rightmodel` for local models, the upstream's name otherwise).
    #[serde(default)]
    pub owned_by: String,
}

/// `GET /v1/models` response (`object` may be missing when reading, like [`ModelObject`]'s fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelList {
    /// Always `list`.
    #[serde(default)]
    pub object: String,
    /// The models.
    pub data: Vec<ModelObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_list_entry_needs_only_its_id() {
        let l: ModelList = serde_json::from_str(r#"{"data":[{"id":"m"}]}"#).unwrap();
        assert_eq!(
            l.data[0],
            ModelObject { id: "m".into(), object: String::new(), created: 0, owned_by: String::new() }
        );
        let full = ModelObject { id: "m".into(), object: "model".into(), created: 7, owned_by: "o".into() };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"id":"m","object":"model","created":7,"owned_by":"o"}"#,
            "the gateway still writes every field"
        );
    }

    #[test]
    fn partial_usage_derives_what_it_can_and_says_what_it_could_not() {
        let u: Usage = serde_json::from_str(r#"{"prompt_tokens":11,"total_tokens":11}"#).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens, u.incomplete), (11, 0, 11, true));
        let u: Usage = serde_json::from_str(r#"{"prompt_tokens":11,"total_tokens":15}"#).unwrap();
        assert_eq!((u.completion_tokens, u.incomplete), (4, false));
        let u: Usage =
            serde_json::from_str(r#"{"prompt_tokens":3,"completion_tokens":4,"total_tokens":null}"#).unwrap();
        assert_eq!((u.total_tokens, u.incomplete), (7, false));
        let u = serde_json::from_str::<Usage>("{}").unwrap();
        assert!(u.incomplete && u.total_tokens == 0);
        assert!(!serde_json::to_string(&u).unwrap().contains("incomplete"));
        let chunk = r#"{"choices":[],"usage":{}}"#;
        assert!(serde_json::from_str::<ChatCompletionChunk>(chunk).unwrap().usage.is_some());
    }

    #[test]
    fn usage_in_the_forms_compatible_servers_send_is_read_or_left_out() {
        let u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":10.0,"completion_tokens":"4","total_tokens":14,"prompt_tokens_details":{"cached_tokens":2.0}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens(), u.incomplete), (10, 4, 2, false));
        // A count that is not one reads as missing: billed by estimate, not failed after the answer.
        let u: Usage = serde_json::from_str(r#"{"prompt_tokens":-3,"completion_tokens":2.5}"#).unwrap();
        assert!(u.incomplete);
        let u: Usage =
            serde_json::from_str(r#"{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":"x"}"#).unwrap();
        assert_eq!((u.prompt_tokens_details, u.incomplete), (None, false));
        let chunk =
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":"many"}"#;
        assert!(serde_json::from_str::<ChatCompletionChunk>(chunk).unwrap().usage.is_none());
    }

    #[test]
    fn token_id_prompts_parse_and_serialise_as_sent() {
        for (json, tokens) in [("[1,2,3]", 3), ("[[1,2],[3]]", 3), ("\"four\"", 1)] {
            let p: PromptInput = serde_json::from_str(json).unwrap();
            assert_eq!(p.estimated_tokens(), tokens, "{json}");
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
        }
    }

    #[test]
    fn completion_chunks_without_ids_parse_and_keep_unknown_fields() {
        let c: CompletionResponse =
            serde_json::from_str(r#"{"choices":[{"text":"hi","finish_reason":null}],"system_fingerprint":"fp"}"#)
                .unwrap();
        assert_eq!(c.choices[0].text, "hi");
        assert_eq!(serde_json::to_value(&c).unwrap()["system_fingerprint"], "fp");
    }

    #[test]
    fn fields_rightmodel_does_not_model_pass_through() {
        let msg = r#"{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}],"x_note":1}"#;
        let m: ChatMessage = serde_json::from_str(msg).unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["content"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(back["x_note"], 1);
        let resp = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","service_tier":"default",
            "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"ok","refusal":null,"reasoning_content":"r"}}],
            "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let r: ChatCompletionResponse = serde_json::from_str(resp).unwrap();
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["service_tier"], "default");
        assert_eq!(back["choices"][0]["message"]["reasoning_content"], "r");
        // A content-filter note without a delta still parses as a chunk.
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"finish_reason":null,"content_filter_offsets":{"start_offset":0}}]}"#;
        let c: ChatCompletionChunk = serde_json::from_str(chunk).unwrap();
        assert!(c.choices[0].delta.content.is_none());
    }

    #[test]
    fn tool_calls_round_trip() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"weather?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"auto"}"#;
        let r: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.tools.as_ref().map(Vec::len), Some(1));
        assert_eq!(r.messages[1].tool_calls.as_ref().unwrap()[0].function.name, "get_weather");
        assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("call_1"));
        let again: ChatCompletionRequest = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
        assert!(r.extra.is_empty());
    }

    #[test]
    fn chat_request_keeps_unknown_fields() {
        let r: ChatCompletionRequest = serde_json::from_str(
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"functions":[]}"#,
        )
        .unwrap();
        assert_eq!(r.sampling.max_tokens, Some(5));
        assert!(r.extra.contains_key("functions"));
        assert_eq!(r.messages[0].text(), "hi");
    }

    #[test]
    fn content_parts_join_text() {
        let m: ChatMessage = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(m.text(), "a\nb");
        assert_eq!(m.content.unwrap().non_text_part(), None);
    }

    #[test]
    fn usage_chunk_serialises_without_choices() {
        let c = ChatCompletionChunk {
            id: "x".into(),
            object: "chat.completion.chunk".into(),
            created: 0,
            model: "m".into(),
            choices: vec![],
            usage: Some(Usage::new(3, 4)),
            rightmodel: None,
            extra: Default::default(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 7);
    }
}
