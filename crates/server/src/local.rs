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
        InferError::ContextLength { tokens, limit, at_least } => {
            context_length_error(tokens, limit, at_least, "prompt")
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// OpenAI's answer to a prompt longer than the context: 400 `context_length_exceeded` on `param`
/// (`messages` for chat, `prompt` for completions), worded as OpenAI words it, since clients
/// (LiteLLM, agent frameworks) match the code or "maximum context length" to shorten the
/// conversation and retry.
pub fn context_length_error(tokens: usize, limit: usize, at_least: bool, param: &str) -> ApiError {
    let more = if at_least { "at least " } else { "" };
    ApiError::invalid(
        param,
        format!(
            "This model's maximum context length is {limit} tokens. However, your {param} resulted in \
             {more}{tokens} tokens. Please reduce the length of the {param}."
        ),
    )
    .with_code("context_length_exceeded")
}

/// The request field holding a prompt: `messages` for a chat, `prompt` for a text completion.
fn prompt_param(prompt: &Prompt) -> &'static str {
    match prompt {
        Prompt::Chat(_) => "messages",
        Prompt::Text(_) | Prompt::TrustedText(_) => "prompt",
    }
}

/// A prompt refused by the engine, named by the field it came from (see [`prompt_param`]).
fn prompt_error(e: InferError, param: &str) -> ApiError {
    match e {
        InferError::ContextLength { tokens, limit, at_least } => context_length_error(tokens, limit, at_least, param),
        InferError::Invalid(m) => ApiError::invalid(param, m).with_code("invalid_prompt"),
        other => infer_error(other),
    }
}

/// Maps OpenAI sampling fields onto engine parameters (validated by the engine). Without
/// `max_tokens` / `max_completion_tokens` the answer may fill the room the prompt leaves in the
/// context, as OpenAI's does (the engine cuts it there, `finish_reason: length`).
pub fn sampling_from(
    s: &rightmodel_core::wire::SamplingFields,
    logprobs: bool,
    top_logprobs: u32,
    grammar: Option<String>,
) -> SamplingParams {
    SamplingParams {
        max_tokens: s.max_completion_tokens.or(s.max_tokens).unwrap_or(u32::MAX),
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

/// A local generation's failure as the client sees it: constraints nothing satisfies are the
/// request's JSON schema (400 on `response_format`); see [`infer_error`] for the rest.
pub fn generation_error(e: InferError) -> ApiError {
    match e {
        InferError::Unsatisfiable(_) => {
            ApiError::invalid("response_format", format!("No output satisfies the JSON schema: {e}."))
                .with_code("unsatisfiable_schema")
        }
        other => infer_error(other),
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
            check_schema(schema)?;
            rightmodel_infer::llm::json_schema_grammar(&schema.to_string())
                .map(Some)
                .map_err(|e| ApiError::invalid("response_format", e.to_string()))
        }
        other => Err(ApiError::invalid("response_format.type", format!("unknown response_format type `{other}`"))),
    }
}

/// Most schema objects a JSON schema may hold for local generation: llama.cpp's conversion grows
/// faster than linearly with the number of properties (2,000 took 10 s).
const MAX_SCHEMA_NODES: usize = 512;
/// Deepest nesting of a JSON schema.
const MAX_SCHEMA_DEPTH: usize = 32;

/// Keywords whose value is a schema, a list of schemas, or a map of names to schemas: the only places
/// a walk looks for more schemas (`default`, `examples`, `const`, `enum` hold data, not schemas).
const SCHEMA_KEYWORDS: [&str; 15] = [
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "$defs",
];

/// Refuses JSON schemas that no value satisfies (`minimum > maximum`, `minLength > maxLength`, ...)
/// or that are too big to turn into a grammar: the first would leave generation with no valid token,
/// the second would hold the engine for seconds to minutes.
pub fn check_schema(schema: &serde_json::Value) -> Result<(), ApiError> {
    use serde_json::Value;
    let bad = |m: String| Err(ApiError::invalid("response_format.json_schema.schema", m));
    let max_bound = rightmodel_infer::llm::MAX_REPETITION as f64;
    let mut nodes = 0usize;
    let mut stack = vec![(schema, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let Value::Object(o) = v else { continue };
        nodes += 1;
        if nodes > MAX_SCHEMA_NODES {
            return bad(format!("the schema has more than {MAX_SCHEMA_NODES} subschemas; simplify it"));
        }
        if depth > MAX_SCHEMA_DEPTH {
            return bad(format!("the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"));
        }
        let num = |k: &str| o.get(k).and_then(Value::as_f64);
        for (lo, hi) in [
            ("minimum", "maximum"),
            ("minLength", "maxLength"),
            ("minItems", "maxItems"),
            ("minProperties", "maxProperties"),
        ] {
            if let (Some(l), Some(h)) = (num(lo), num(hi)) {
                if l > h {
                    return bad(format!("`{lo}` ({l}) is above `{hi}` ({h}): no value satisfies the schema"));
                }
            }
        }
        // The numbers allowed: [lower, upper] with each end open or closed.
        let lower = [num("minimum").map(|x| (x, false)), num("exclusiveMinimum").map(|x| (x, true))]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let upper = [num("maximum").map(|x| (x, false)), num("exclusiveMaximum").map(|x| (x, true))]
            .into_iter()
            .flatten()
            .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        if let (Some((l, lx)), Some((h, hx))) = (lower, upper) {
            let integer = o.get("type").and_then(Value::as_str) == Some("integer");
            let empty = if integer {
                let first = if lx { l.floor() + 1.0 } else { l.ceil() };
                let last = if hx { h.ceil() - 1.0 } else { h.floor() };
                first > last
            } else {
                l > h || (l == h && (lx || hx))
            };
            if empty {
                return bad("the bounds (minimum / maximum, exclusive or not) leave no value".into());
            }
        }
        for k in ["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"] {
            if num(k).is_some_and(|n| n > max_bound) {
                return bad(format!("`{k}` above {max_bound} is not supported for local models"));
            }
        }
        for k in SCHEMA_KEYWORDS.iter().chain(["definitions"].iter()) {
            match o.get(*k) {
                Some(Value::Object(m))
                    if matches!(*k, "properties" | "patternProperties" | "$defs" | "definitions") =>
                {
                    stack.extend(m.values().map(|c| (c, depth + 1)))
                }
                Some(Value::Array(a)) => stack.extend(a.iter().map(|c| (c, depth + 1))),
                Some(c) => stack.push((c, depth + 1)),
                None => {}
            }
        }
    }
    Ok(())
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
        // Turning a schema into a grammar can take a while: off the async threads.
        let grammar = match &req.response_format {
            Some(rf) if rf.kind == "json_schema" => {
                let r = req.clone();
                tokio::task::spawn_blocking(move || grammar_for(&r))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))??
            }
            _ => grammar_for(req)?,
        };
        let params = sampling_from(&req.sampling, logprobs, req.top_logprobs.unwrap_or(0), grammar);
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
            PromptInput::Tokens(_) | PromptInput::ManyTokens(_) => {
                return Err(ApiError::invalid(
                    "prompt",
                    "local models take the prompt as text, not token ids; send it as a string",
                ))
            }
        };
        let k = req.logprobs.unwrap_or(0);
        let params = sampling_from(&req.sampling, req.logprobs.is_some(), k, None);
        self.start(GenRequest { prompt: Prompt::Text(prompt), params }).await
    }

    /// Starts any generation. The prompt is sized up first (a prompt far too long is refused by its
    /// length in bytes, without tokenising), then rendered and tokenised on the blocking pool, so
    /// that neither the async threads nor the engine's decoding thread wait on a long prompt.
    pub async fn start(&self, gen: GenRequest) -> Result<Started, ApiError> {
        let param = prompt_param(&gen.prompt);
        // Checked apart so that an `Invalid` from `submit` below is the prompt's fault.
        gen.params.validate().map_err(infer_error)?;
        self.engine.check_prompt_size(&gen.prompt).map_err(|e| prompt_error(e, param))?;
        let engine = self.engine.clone();
        let mut events = tokio::task::spawn_blocking(move || engine.submit(gen))
            .await
            .map_err(|e| ApiError::internal(format!("the prompt could not be prepared: {e}")))?
            .map_err(|e| prompt_error(e, param))?;
        match events.recv().await {
            Some(GenEvent::Started { prompt_tokens }) => Ok(Started { prompt_tokens, events }),
            Some(GenEvent::Error(InferError::ContextLength { tokens, limit, at_least })) => {
                Err(context_length_error(tokens, limit, at_least, param))
            }
            // The prompt was accepted: what fails now is the grammar or the engine.
            Some(GenEvent::Error(InferError::Invalid(m))) => {
                Err(ApiError::new(ErrorKind::InvalidRequest, m).with_code("invalid_prompt"))
            }
            Some(GenEvent::Error(e)) => Err(generation_error(e)),
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
            .map(|a| TopLogprob { token: a.text.clone(), logprob: a.logprob, bytes: Some(a.piece.clone()) })
            .collect(),
    }
}

/// Logprobs object for a list of tokens.
pub fn choice_logprobs(tokens: &[TokenOut]) -> ChoiceLogprobs {
    ChoiceLogprobs { content: Some(tokens.iter().map(token_logprob).collect()) }
}
