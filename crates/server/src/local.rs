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
    /// A limit on answers set by the gateway rather than the client (a cascade's probe, see
    /// [`LocalChat::with_answer_cap`]): the answer stops there, or earlier at the context.
    pub answer_cap: Option<u32>,
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
        InferError::InvalidParam { param, message } => ApiError::invalid(param, message),
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

/// OpenAI's answer to a `max_tokens` that does not fit beside the prompt in the context: 400
/// `context_length_exceeded` on `param` (`max_tokens` or `max_completion_tokens`, the field the client
/// sent), naming the model's context and the prompt's size (`prompt_param`: `messages` or `prompt`),
/// worded as OpenAI words it. The answer would otherwise be cut at the context without saying so.
pub fn answer_room_error(
    prompt_tokens: usize,
    max_tokens: usize,
    limit: usize,
    param: &str,
    prompt_param: &str,
) -> ApiError {
    let total = prompt_tokens.saturating_add(max_tokens);
    ApiError::invalid(
        param,
        format!(
            "This model's maximum context length is {limit} tokens. However, you requested {total} tokens \
             ({prompt_tokens} in the {prompt_param}, {max_tokens} in the completion). Please reduce the length \
             of the {prompt_param} or `{param}`."
        ),
    )
    .with_code("context_length_exceeded")
}

/// The field that set a request's answer limit: `max_completion_tokens` when sent (it wins), else
/// `max_tokens`.
fn answer_limit_param(s: &rightmodel_core::wire::SamplingFields) -> &'static str {
    if s.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

/// The request field holding a prompt: `messages` for a chat, `prompt` for a text completion.
fn prompt_param(prompt: &Prompt) -> &'static str {
    match prompt {
        Prompt::Chat(_) => "messages",
        Prompt::Text(_) | Prompt::TrustedText(_) => "prompt",
    }
}

/// A prompt refused by the engine, named by the field it came from (see [`prompt_param`]); a
/// `max_tokens` that does not fit beside it names `limit_param`.
fn prompt_error(e: InferError, param: &str, limit_param: &str) -> ApiError {
    match e {
        InferError::ContextLength { tokens, limit, at_least } => context_length_error(tokens, limit, at_least, param),
        InferError::AnswerTooLong { prompt_tokens, max_tokens, limit } => {
            answer_room_error(prompt_tokens, max_tokens, limit, limit_param, param)
        }
        InferError::Invalid(m) => ApiError::invalid(param, m).with_code("invalid_prompt"),
        other => infer_error(other),
    }
}

/// Maps OpenAI sampling fields onto engine parameters (validated by the engine). Without
/// `max_tokens` / `max_completion_tokens` the answer may fill the room the prompt leaves in the
/// context, as OpenAI's does (the engine cuts it there, `finish_reason: length`); with one, prompt and
/// limit must fit in the context together (a 400 otherwise, see [`answer_room_error`]).
pub fn sampling_from(
    s: &rightmodel_core::wire::SamplingFields,
    logprobs: bool,
    top_logprobs: u32,
    grammar: Option<String>,
) -> SamplingParams {
    SamplingParams {
        max_tokens: s.max_completion_tokens.or(s.max_tokens).unwrap_or(u32::MAX),
        // JSON numbers are f64 on the wire (kept so, so that an upstream gets 0.3, not 0.30000001); the
        // engine samples in f32.
        temperature: s.temperature.unwrap_or(1.0) as f32,
        top_p: s.top_p.unwrap_or(1.0) as f32,
        seed: s.seed.map(|v| v as u32).unwrap_or_else(rand::random),
        stop: s.stop.as_ref().map(|x| x.to_vec()).unwrap_or_default(),
        frequency_penalty: s.frequency_penalty.unwrap_or(0.0) as f32,
        presence_penalty: s.presence_penalty.unwrap_or(0.0) as f32,
        grammar,
        logprobs,
        top_logprobs: top_logprobs as usize,
        max_tokens_must_fit: s.max_completion_tokens.or(s.max_tokens).is_some(),
        ..SamplingParams::default()
    }
}

/// Whether the engine may reuse a cached prompt prefix for a request: yes unless the client said
/// `false`, in its `rightmodel` options (checked at intake with the others) or, as llama.cpp's server
/// takes it, as a top-level `cache_prompt` field (`extra`), which must then be true or false.
fn cache_prompt_option(
    rightmodel: Option<&serde_json::Value>,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Result<bool, ApiError> {
    let top = match extra.get("cache_prompt") {
        None => None,
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ApiError::invalid(
                "cache_prompt",
                format!("`cache_prompt` must be true or false, got {other}."),
            ))
        }
    };
    let option = rightmodel.and_then(|o| o.get("cache_prompt")).and_then(serde_json::Value::as_bool);
    Ok(option.or(top).unwrap_or(true))
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
            check_schema(schema, is_strict(rf))?;
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

/// Refuses JSON schemas that no value satisfies (`minimum > maximum`, `minLength > maxLength`, ...),
/// that are too big to turn into a grammar, or that a local model cannot fully follow (see
/// [`unenforced`]): the first would leave generation with no valid token, the second would hold the
/// engine for seconds to minutes, and the third would be answered with JSON that breaks the schema (the
/// grammar conversion only warns in the server log and accepts more). The third is refused only for a
/// `strict` schema, as OpenAI refuses what strict mode cannot follow; without `strict`, OpenAI takes a
/// schema as guidance, and so does a local model: what the grammar can follow it follows. Checking
/// patterns converts them: call it off the async threads.
pub fn check_schema(schema: &serde_json::Value, strict: bool) -> Result<(), ApiError> {
    use serde_json::Value;
    let bad = |m: String| Err(ApiError::invalid("response_format.json_schema.schema", m));
    let max_bound = rightmodel_infer::llm::MAX_REPETITION as f64;
    if !schema.is_object() {
        return bad(format!("the schema must be a JSON object, got {}", truncated_json(schema)));
    }
    let mut nodes = 0usize;
    let mut stack = vec![(schema, 0usize, String::from("#"))];
    while let Some((v, depth, path)) = stack.pop() {
        let Value::Object(o) = v else { continue };
        if let Some(why) = malformed(o, schema) {
            return bad(format!("at `{path}`: {why}"));
        }
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
        if let Some(why) = unenforced(o).filter(|_| strict) {
            return Err(ApiError::invalid(
                "response_format.json_schema.schema",
                format!("At `{path}` of the JSON schema: {why} (an upstream model may take the schema as it is)."),
            )
            .with_code("unsupported_parameter"));
        }
        for k in SCHEMA_KEYWORDS.iter().chain(["definitions"].iter()) {
            match o.get(*k) {
                Some(Value::Object(m))
                    if matches!(*k, "properties" | "patternProperties" | "$defs" | "definitions") =>
                {
                    stack.extend(m.iter().map(|(name, c)| (c, depth + 1, format!("{path}/{k}/{name}"))))
                }
                Some(Value::Array(a)) => {
                    stack.extend(a.iter().enumerate().map(|(i, c)| (c, depth + 1, format!("{path}/{k}/{i}"))))
                }
                Some(c) => stack.push((c, depth + 1, format!("{path}/{k}"))),
                None => {}
            }
        }
    }
    Ok(())
}

/// `v` as JSON, cut to 100 characters (it is the client's input, quoted in an error).
fn truncated_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// JSON Schema's types.
const SCHEMA_TYPES: [&str; 7] = ["string", "number", "integer", "boolean", "object", "array", "null"];

/// What is malformed in schema node `o` (in the schema `root`) in a way llama.cpp's grammar
/// conversion would reject with an opaque error or an empty grammar: a `type` JSON Schema does not
/// have, `properties` / `required` / `enum` of the wrong shape, a `$ref` that is not local
/// (`#/...`), points at nothing, uses JSON-pointer escapes, refers to the whole schema (`#`), or only
/// leads to other `$ref`s in a circle.
fn malformed(o: &serde_json::Map<String, serde_json::Value>, root: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let known = |t: &Value| t.as_str().is_some_and(|t| SCHEMA_TYPES.contains(&t));
    let type_ok = match o.get("type") {
        None => true,
        Some(Value::Array(ts)) => ts.iter().all(known),
        Some(t) => known(t),
    };
    if !type_ok {
        let t = o.get("type").map(truncated_json).unwrap_or_default();
        return Some(format!("`type` {t} is not a JSON Schema type ({})", SCHEMA_TYPES.join(", ")));
    }
    if o.get("properties").is_some_and(|p| !p.is_object()) {
        return Some("`properties` must be an object of property schemas".into());
    }
    if o.get("required").is_some_and(|r| !r.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        return Some("`required` must be an array of property names".into());
    }
    if o.get("enum").is_some_and(|e| e.as_array().is_none_or(|a| a.is_empty())) {
        return Some("`enum` must be a non-empty array of values".into());
    }
    let r = match o.get("$ref") {
        None => return None,
        Some(Value::String(r)) => r,
        Some(other) => return Some(format!("`$ref` must be a string, got {}", truncated_json(other))),
    };
    if r == "#" {
        return Some(
            "`$ref` \"#\" (the whole schema) cannot be followed by a local model; put the recursive part under \
             `$defs` and refer to it as `#/$defs/NAME`"
                .into(),
        );
    }
    let Some(pointer) = r.strip_prefix('#') else {
        return Some(format!(
            "`$ref` \"{r}\" is not local: only references into the schema (`#/$defs/...`) are supported"
        ));
    };
    if pointer.contains('~') || pointer.contains('%') {
        return Some(format!("`$ref` \"{r}\" uses escapes (~0, ~1, %..), which a local model's grammar cannot follow; rename the definition"));
    }
    // Follow references that lead only to other references: a circle of them defines no value.
    let mut seen = vec![r.as_str()];
    let mut at = root.pointer(pointer);
    while let Some(next) = at.and_then(|v| v.get("$ref")).and_then(Value::as_str) {
        if seen.contains(&next) {
            return Some(format!("`$ref` \"{r}\" leads through references only back to itself: no value matches it"));
        }
        seen.push(next);
        at = next.strip_prefix('#').and_then(|p| root.pointer(p));
    }
    match root.pointer(pointer) {
        Some(_) => None,
        None => Some(format!("`$ref` \"{r}\" points at nothing in the schema")),
    }
}

/// Keywords llama.cpp's grammar conversion passes over without enforcing them: a local model's answer
/// could break any of them.
const UNENFORCED_KEYWORDS: [&str; 19] = [
    "multipleOf",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "not",
    "if",
    "then",
    "else",
];

/// String formats a local model follows (llama.cpp's grammars for them); others are not enforced.
const ENFORCED_FORMATS: [&str; 9] = ["date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"];

/// What in the schema object `o` (one node, not its subschemas) a local model would not enforce, said
/// with how to fix it; `None` when the grammar conversion honours all of it. The conversion drops such
/// keywords with at most a warning in the server log, so the client would get JSON that breaks its own
/// schema; refusing lets the client fix the schema, or `auto` send it to an upstream.
fn unenforced(o: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    use serde_json::Value;
    if let Some(k) = UNENFORCED_KEYWORDS.iter().find(|k| o.get(**k).is_some_and(|v| !constrains_nothing(k, v, o))) {
        return Some(format!("`{k}` is not enforced by local models; leave it out"));
    }
    // A constant or a list of values is followed exactly, whatever else the object says.
    if o.contains_key("const") || o.contains_key("enum") {
        return None;
    }
    let types: Vec<&str> = match o.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let has = |k: &str| o.contains_key(k);
    let bounds = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
    if types.contains(&"number") {
        if let Some(k) = bounds.iter().find(|k| has(k)) {
            return Some(format!(
                "`{k}` on a `number` is not enforced by local models (bounds are, on an `integer`); use \
                 `\"type\": \"integer\"` or leave the bound out"
            ));
        }
    }
    for (closed, open) in [("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")] {
        if has(closed) && has(open) {
            return Some(format!("local models enforce only one of `{closed}` and `{open}`; give one"));
        }
    }
    let stringy = types.is_empty() || types.contains(&"string");
    let format = o.get("format").and_then(Value::as_str).filter(|_| stringy);
    let lengths = ["minLength", "maxLength"];
    match o.get("pattern").filter(|_| stringy) {
        Some(Value::String(p)) => {
            if let Some(why) = pattern_problem(p) {
                return Some(why);
            }
            if let Some(k) = lengths.iter().chain(["format"].iter()).find(|k| has(k)) {
                return Some(format!(
                    "`{k}` is not enforced together with `pattern` by local models (the pattern alone is); \
                     put it into the pattern (e.g. `^[0-9]{{3,12}}$` for 3 to 12 digits) and leave `{k}` out"
                ));
            }
            return None;
        }
        Some(_) => return Some("`pattern` must be a string".into()),
        None => {}
    }
    if let Some(f) = format {
        if !ENFORCED_FORMATS.contains(&f) {
            return Some(format!(
                "`\"format\": \"{f}\"` is not enforced by local models (they follow date, time, date-time and \
                 uuid); use a `pattern` anchored with ^...$ or leave the format out"
            ));
        }
        if let Some(k) = lengths.iter().find(|k| has(k)) {
            return Some(format!(
                "`{k}` is not enforced together with `format` by local models (the format alone is); leave one out"
            ));
        }
    }
    None
}

/// Whether keyword `k` with value `v` allows every value, as schema generators emit by default
/// (`uniqueItems: false`, `minProperties: 0`, `multipleOf: 1` on integers...): nothing to enforce, so
/// nothing to refuse.
fn constrains_nothing(k: &str, v: &serde_json::Value, o: &serde_json::Map<String, serde_json::Value>) -> bool {
    match k {
        "uniqueItems" => v.as_bool() == Some(false),
        "minProperties" | "minContains" => v.as_f64() == Some(0.0),
        "multipleOf" => v.as_f64() == Some(1.0) && o.get("type").and_then(serde_json::Value::as_str) == Some("integer"),
        _ => false,
    }
}

/// Why a local model cannot follow the string `pattern`, with how to fix it; `None` when it can. The
/// grammar conversion follows only patterns anchored `^...$` in the syntax it knows, and accepts any
/// string in place of the others (with a warning in the log); so a pattern is converted alone here and
/// refused when it comes out as any string.
fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.len() < 2 || !pattern.starts_with('^') || !pattern.ends_with('$') {
        let inner = pattern.strip_prefix('^').unwrap_or(pattern);
        let inner = inner.strip_suffix('$').unwrap_or(inner);
        return Some(format!(
            "`pattern` {pattern:?} is not anchored; local models follow only patterns that match the whole \
             string, written ^...$ (e.g. {:?})",
            format!("^{inner}$")
        ));
    }
    let grammar = |p: &str| {
        rightmodel_infer::llm::json_schema_grammar(&serde_json::json!({"type": "string", "pattern": p}).to_string())
    };
    // What the conversion makes of a pattern it cannot follow (any string), made once: an unanchored one.
    static ANY_STRING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let any_string = ANY_STRING.get_or_init(|| grammar("unanchored").ok());
    match grammar(pattern) {
        Err(e) => Some(format!("`pattern` {pattern:?} is not a regular expression local models can read ({e})")),
        Ok(g) if any_string.as_ref() == Some(&g) => Some(format!(
            "`pattern` {pattern:?} uses regular expression syntax local models cannot follow (such as \
             lookarounds, backreferences or anchors inside); simplify it"
        )),
        Ok(_) => None,
    }
}

/// The 400 a local model answers a `response_format` it cannot fully follow with (see
/// [`check_schema`], then llama.cpp's conversion itself, for what the checks do not foresee); `None`
/// for any other format. Converts the schema: call it off the async threads.
pub fn schema_refusal(rf: &rightmodel_core::wire::ResponseFormat) -> Option<ApiError> {
    if rf.kind != "json_schema" {
        return None;
    }
    let schema = rf.json_schema.as_ref().and_then(|j| j.get("schema"))?;
    if let Err(e) = check_schema(schema, is_strict(rf)) {
        return Some(e);
    }
    // What the checks above do not foresee, the conversion itself finds.
    rightmodel_infer::llm::json_schema_grammar(&schema.to_string()).err().map(|e| {
        ApiError::invalid("response_format.json_schema.schema", e.to_string()).with_code("unsupported_parameter")
    })
}

/// Whether a `json_schema` response format asks for strict adherence (`"strict": true`).
pub fn is_strict(rf: &rightmodel_core::wire::ResponseFormat) -> bool {
    rf.json_schema.as_ref().and_then(|j| j.get("strict")).and_then(serde_json::Value::as_bool) == Some(true)
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

/// Most choices (`n`) a local model with `slots` slots and a waiting line of `queue` writes for one
/// request: every choice is a job of its engine, which holds at most its slots plus its line at once
/// (a request asking more would be refused as busy however often it is retried), and never more than
/// [`crate::chat::LOCAL_CHOICES_MAX`].
pub fn local_choices_max(slots: usize, queue: usize) -> u32 {
    let live = slots.max(1).saturating_add(queue);
    u32::try_from(live).unwrap_or(u32::MAX).min(crate::chat::LOCAL_CHOICES_MAX)
}

impl LocalChat {
    /// Most choices (`n`) this model writes for one request (see [`local_choices_max`]).
    pub fn choices_max(&self) -> u32 {
        let c = self.engine.config();
        local_choices_max(c.slots, c.queue)
    }

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
        let mut params = sampling_from(&req.sampling, logprobs, req.top_logprobs.unwrap_or(0), grammar);
        params.cache_prompt = cache_prompt_option(req.rightmodel.as_ref(), &req.extra)?;
        let prompt = Prompt::Chat(crate::tools::local_messages(&req.messages));
        self.start(GenRequest { prompt, params }, answer_limit_param(&req.sampling)).await
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
        let mut params = sampling_from(&req.sampling, req.logprobs.is_some(), k, None);
        params.cache_prompt = cache_prompt_option(req.rightmodel.as_ref(), &req.extra)?;
        self.start(GenRequest { prompt: Prompt::Text(prompt), params }, answer_limit_param(&req.sampling)).await
    }

    /// This model with answers stopped at `cap` tokens by the gateway: a limit of its own (a cascade's
    /// probe of an answer the client set no limit for), which, unlike a client's `max_tokens`, need not
    /// fit beside the prompt (the answer stops at the context first).
    pub fn with_answer_cap(&self, cap: u32) -> LocalChat {
        LocalChat { answer_cap: Some(cap), ..self.clone() }
    }

    /// Starts any generation (`limit_param`: the request field that set `max_tokens`, for the error of
    /// one that does not fit). The prompt is sized up first (a prompt far too long is refused by its
    /// length in bytes, without tokenising), then rendered and tokenised on the blocking pool, so
    /// that neither the async threads nor the engine's decoding thread wait on a long prompt.
    pub async fn start(&self, mut gen: GenRequest, limit_param: &str) -> Result<Started, ApiError> {
        if let Some(cap) = self.answer_cap {
            gen.params.max_tokens = gen.params.max_tokens.min(cap);
        }
        let param = prompt_param(&gen.prompt);
        // Checked apart so that an `Invalid` from `submit` below is the prompt's fault.
        gen.params.validate().map_err(infer_error)?;
        self.engine.check_prompt_size(&gen.prompt).map_err(|e| prompt_error(e, param, limit_param))?;
        let engine = self.engine.clone();
        let mut events = tokio::task::spawn_blocking(move || engine.submit(gen))
            .await
            .map_err(|e| ApiError::internal(format!("the prompt could not be prepared: {e}")))?
            .map_err(|e| prompt_error(e, param, limit_param))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of the refusal of `schema`, or `None` when a local model follows it.
    fn refusal(schema: serde_json::Value) -> Option<String> {
        check_schema(&schema, true).err().map(|e| {
            assert_eq!(e.param.as_deref(), Some("response_format.json_schema.schema"));
            e.message
        })
    }

    #[test]
    fn schemas_a_local_model_would_not_follow_are_refused_saying_how_to_fix_them() {
        use serde_json::json;
        let m = refusal(json!({"type": "string", "pattern": "[0-9]{3}", "maxLength": 12})).expect("refused");
        assert!(m.contains("not anchored") && m.contains("^[0-9]{3}$"), "{m}");
        let m = refusal(json!({"type": "string", "pattern": "(((("})).expect("refused");
        assert!(m.contains("not anchored"), "{m}");
        let m = refusal(json!({"type": "string", "pattern": "^(((($"})).expect("refused");
        assert!(m.contains("not a regular expression"), "{m}");
        let m = refusal(json!({"type": "string", "pattern": "^[0-9]{3}$", "maxLength": 12})).expect("refused");
        assert!(m.contains("`maxLength`") && m.contains("pattern"), "{m}");
        let m = refusal(json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a(?=b).*$"}}}))
            .expect("refused");
        assert!(m.contains("#/properties/code") && m.contains("cannot follow"), "{m}");
        let m = refusal(json!({"type": "number", "minimum": 0, "maximum": 1})).expect("refused");
        assert!(m.contains("`minimum`") || m.contains("`maximum`"), "{m}");
        let m = refusal(json!({"type": "string", "format": "email"})).expect("refused");
        assert!(m.contains("email"), "{m}");
        let m = refusal(json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true})).expect("refused");
        assert!(m.contains("uniqueItems"), "{m}");
        // Keywords at values that allow everything, and a pattern where no string can be, are no refusal.
        for ok in [
            json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": false}),
            json!({"type": "object", "minProperties": 0}),
            json!({"type": "integer", "multipleOf": 1}),
            json!({"type": "integer", "pattern": "[0-9]"}),
        ] {
            assert_eq!(refusal(ok.clone()), None, "{ok}");
        }
        assert!(refusal(json!({"type": "number", "multipleOf": 1})).is_some());
        // What the conversion follows passes.
        for ok in [
            json!({"type": "string", "pattern": "^[0-9]{3}$"}),
            json!({"type": "string", "minLength": 1, "maxLength": 12}),
            json!({"type": "string", "format": "date-time"}),
            json!({"type": "integer", "minimum": 0, "maximum": 10, "format": "int32"}),
            json!({"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"]}),
        ] {
            assert_eq!(refusal(ok.clone()), None, "{ok}");
        }
        // Without `strict` a schema is guidance, as at OpenAI: what the grammar follows, it follows.
        let loose = json!({"type": "string", "pattern": "[0-9]{3}", "format": "email", "maxLength": 12});
        assert!(check_schema(&loose, false).is_ok());
        // What no value satisfies is refused either way.
        assert!(check_schema(&json!({"type": "string", "minLength": 5, "maxLength": 2}), false).is_err());
    }

    #[test]
    fn schemas_the_grammar_conversion_would_reject_are_refused_saying_what_is_wrong() {
        use serde_json::json;
        let loose = |s: serde_json::Value| check_schema(&s, false).err().map(|e| e.message);
        for root in [json!(5), json!(true), json!("object")] {
            let m = loose(root).expect("refused");
            assert!(m.contains("JSON object"), "{m}");
        }
        let m = loose(json!({"type": "bogus"})).expect("refused");
        assert!(m.contains("\"bogus\"") && m.contains("not a JSON Schema type"), "{m}");
        let m = loose(json!({"properties": {"a": {"type": ["string", "nope"]}}})).expect("refused");
        assert!(m.contains("#/properties/a") && m.contains("nope"), "{m}");
        let m = loose(json!({"$ref": "#/defs/nope"})).expect("refused");
        assert!(m.contains("points at nothing"), "{m}");
        let m = loose(json!({"$ref": "https://example.com/s.json"})).expect("refused");
        assert!(m.contains("not local"), "{m}");
        let m = loose(json!({"type": "object", "properties": {"child": {"$ref": "#"}}})).expect("refused");
        assert!(m.contains("#/properties/child") && m.contains("$defs"), "{m}");
        let m = loose(json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}))
            .expect("refused");
        assert!(m.contains("back to itself"), "{m}");
        let m = loose(json!({"$defs": {"a/b": {"type": "string"}}, "$ref": "#/$defs/a~1b"})).expect("refused");
        assert!(m.contains("escapes"), "{m}");
        for (bad, says) in [
            (json!({"type": "object", "properties": [{"type": "string"}]}), "`properties`"),
            (json!({"enum": []}), "`enum`"),
            (json!({"type": "object", "required": "a"}), "`required`"),
        ] {
            let m = loose(bad.clone()).expect("refused");
            assert!(m.contains(says), "{bad}: {m}");
        }
        for ok in [
            json!({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a"}),
            json!({"type": ["string", "null"]}),
            json!({"type": "object", "additionalProperties": true}),
            json!({"$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
                   "$ref": "#/$defs/node"}),
        ] {
            assert_eq!(loose(ok.clone()), None, "{ok}");
            rightmodel_infer::llm::json_schema_grammar(&ok.to_string()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn auto_learns_of_schemas_only_the_conversion_itself_rejects() {
        use serde_json::json;
        let rf = |schema: serde_json::Value| rightmodel_core::wire::ResponseFormat {
            kind: "json_schema".into(),
            json_schema: Some(json!({"name": "x", "schema": schema})),
        };
        assert!(schema_refusal(&rf(json!({"type": "object", "properties": {"a": {"type": "string"}}}))).is_none());
        let e =
            schema_refusal(&rf(json!({"type": "object", "properties": {"child": {"$ref": "#"}}}))).expect("refused");
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.schema"));
    }

    #[test]
    fn a_local_model_writes_no_more_choices_than_its_engine_holds_at_once() {
        assert_eq!(local_choices_max(4, 8), 12);
        assert_eq!(local_choices_max(4, 64), crate::chat::LOCAL_CHOICES_MAX);
        assert_eq!(local_choices_max(0, 0), 1);
    }
}
