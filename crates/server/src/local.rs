//! Local chat models: the llama.cpp engine adapted to OpenAI requests and chunks.

use rightmodel_core::wire::{
    ChatCompletionRequest, ChoiceLogprobs, CompletionRequest, PromptInput, TokenLogprob, TopLogprob,
};
use rightmodel_core::{ApiError, ErrorKind, Price};
use rightmodel_infer::llm::{GenEvent, GenRequest, Prompt, SamplingParams, TokenOut};
use rightmodel_infer::{Engine, InferError};
use tokio::sync::mpsc::UnboundedReceiver;

/// A local GGUF model being served.
#[derive(Clone)]
pub struct LocalChat {
    /// Name clients use.
    pub name: String,
    /// The engine.
    pub engine: Engine,
    /// Configured price (normally zero).
    pub price: Price,
}

/// A started local generation: the admitted prompt's size and the event stream.
pub struct Started {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Remaining events (tokens, then done or error).
    pub events: UnboundedReceiver<GenEvent>,
}

fn infer_error(e: InferError) -> ApiError {
    match e {
        InferError::Busy => ApiError::new(ErrorKind::RateLimited, "The local model is at capacity; retry shortly.")
            .with_code("server_overloaded")
            .with_retry_after(1),
        InferError::Invalid(m) => ApiError::new(ErrorKind::InvalidRequest, m),
        InferError::Stopped => ApiError::new(ErrorKind::Unavailable, "The local model has stopped."),
        other => ApiError::internal(other.to_string()),
    }
}

/// Maps OpenAI sampling fields onto engine parameters (validated by the engine).
pub fn sampling_from(
    s: &rightmodel_core::wire::SamplingFields,
    logprobs: bool,
    top_logprobs: u32,
    grammar: Option<String>,
) -> SamplingParams {
    SamplingParams {
        max_tokens: s.max_completion_tokens.or(s.max_tokens).unwrap_or(512),
        temperature: s.temperature.unwrap_or(1.0),
        top_p: s.top_p.unwrap_or(1.0),
        seed: s.seed.map(|v| v as u32).unwrap_or_else(rand::random),
        stop: s.stop.as_ref().map(|x| x.to_vec()).unwrap_or_default(),
        frequency_penalty: s.frequency_penalty.unwrap_or(0.0),
        presence_penalty: s.presence_penalty.unwrap_or(0.0),
        grammar,
        logprobs,
        top_logprobs: top_logprobs as usize,
        ..SamplingParams::default()
    }
}

/// GBNF grammar for a `response_format`, if it asks for JSON.
pub fn grammar_for(req: &ChatCompletionRequest) -> Result<Option<String>, ApiError> {
    let Some(rf) = &req.response_format else { return Ok(None) };
    match rf.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(JSON_GRAMMAR.to_string())),
        "json_schema" => {
            let schema = rf.json_schema.as_ref().and_then(|j| j.get("schema")).ok_or_else(|| {
                ApiError::invalid("response_format.json_schema.schema", "json_schema needs a `schema`")
            })?;
            rightmodel_infer::llm::json_schema_grammar(&schema.to_string())
                .map(Some)
                .map_err(|e| ApiError::invalid("response_format", e.to_string()))
        }
        other => Err(ApiError::invalid("response_format.type", format!("unknown response_format type `{other}`"))),
    }
}

/// llama.cpp's generic JSON grammar (any JSON object).
const JSON_GRAMMAR: &str = r#"root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

impl LocalChat {
    /// Starts a chat generation and waits until the prompt is admitted, so that prompt errors
    /// (too long, bad grammar) become a 400 before any response is sent.
    pub async fn start_chat(&self, req: &ChatCompletionRequest) -> Result<Started, ApiError> {
        let logprobs = req.logprobs.unwrap_or(false);
        let params = sampling_from(&req.sampling, logprobs, req.top_logprobs.unwrap_or(0), grammar_for(req)?);
        self.start(GenRequest { prompt: Prompt::Chat(crate::tools::local_messages(&req.messages)), params }).await
    }

    /// Starts a text completion.
    pub async fn start_completion(&self, req: &CompletionRequest) -> Result<Started, ApiError> {
        let prompt = match &req.prompt {
            PromptInput::One(p) => p.clone(),
            PromptInput::Many(v) if v.len() == 1 => v[0].clone(),
            PromptInput::Many(_) => {
                return Err(ApiError::invalid("prompt", "only one prompt per request is supported"))
            }
        };
        let k = req.logprobs.unwrap_or(0);
        let params = sampling_from(&req.sampling, req.logprobs.is_some(), k, None);
        self.start(GenRequest { prompt: Prompt::Text(prompt), params }).await
    }

    /// Starts any generation.
    pub async fn start(&self, gen: GenRequest) -> Result<Started, ApiError> {
        let mut events = self.engine.submit(gen).map_err(infer_error)?;
        match events.recv().await {
            Some(GenEvent::Started { prompt_tokens }) => Ok(Started { prompt_tokens, events }),
            Some(GenEvent::Error(m)) => Err(ApiError::new(ErrorKind::InvalidRequest, m).with_code("invalid_prompt")),
            _ => Err(ApiError::new(ErrorKind::Unavailable, "The local model stopped before starting.")),
        }
    }
}

/// OpenAI logprobs entry for one generated token.
pub fn token_logprob(t: &TokenOut) -> TokenLogprob {
    TokenLogprob {
        token: String::from_utf8_lossy(&t.piece).into_owned(),
        logprob: t.logprob.unwrap_or(0.0),
        bytes: Some(t.piece.clone()),
        top_logprobs: t
            .top
            .iter()
            .map(|a| TopLogprob { token: a.text.clone(), logprob: a.logprob, bytes: Some(a.text.as_bytes().to_vec()) })
            .collect(),
    }
}

/// Logprobs object for a list of tokens.
pub fn choice_logprobs(tokens: &[TokenOut]) -> ChoiceLogprobs {
    ChoiceLogprobs { content: Some(tokens.iter().map(token_logprob).collect()) }
}
