//! Tool (function) calling: validating `tools` / `tool_choice`, passing them through to upstream
//! models, and making a local model call a tool when the request forces one.
//!
//! Upstream models get the request as is and their `tool_calls` come back unchanged. A local small
//! model cannot decide on its own when to call a tool, but it can fill in a call reliably when the
//! request forces one (`tool_choice: "required"` or a named function): its output is constrained by a
//! grammar built from the functions' JSON schemas, so the arguments always parse and match them.
//! With `tool_choice: "auto"` a local model is refused with a 400 that says so; `"none"` answers in text.

use rightmodel_core::wire::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, FunctionCall, ResponseFormat,
    SamplingFields, Tool, ToolCall,
};
use rightmodel_core::ApiError;
use serde_json::{json, Value};

/// How a request uses tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// No tools, or `tool_choice: "none"`: answer in text.
    Off,
    /// The model decides whether to call a tool (`"auto"`, the default when tools are given).
    Auto,
    /// A call is required: of the named function, or (`None`) of any of the tools.
    Forced(Option<String>),
}

/// Checks `tools`, `tool_choice` and tool messages, and says how the request uses tools.
pub fn tool_mode(req: &ChatCompletionRequest) -> Result<ToolMode, ApiError> {
    let tools = req.tools.as_deref().unwrap_or_default();
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::invalid(
                &format!("tools[{i}].type"),
                format!("Tool type `{}` is not supported; use `function`.", t.kind),
            ));
        }
        let n = &t.function.name;
        if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ApiError::invalid(
                &format!("tools[{i}].function.name"),
                format!("Invalid function name `{n}`: use 1-64 letters, digits, `_` or `-`."),
            ));
        }
        if tools[..i].iter().any(|o| &o.function.name == n) {
            return Err(ApiError::invalid(
                &format!("tools[{i}].function.name"),
                format!("Function `{n}` is defined twice."),
            ));
        }
        if t.function.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(ApiError::invalid(
                &format!("tools[{i}].function.parameters"),
                "`parameters` must be a JSON schema object.",
            ));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role == "tool" && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                &format!("messages[{i}].tool_call_id"),
                "A `tool` message needs the `tool_call_id` it answers.",
            ));
        }
    }
    let choice = match &req.tool_choice {
        None | Some(Value::Null) => return Ok(if tools.is_empty() { ToolMode::Off } else { ToolMode::Auto }),
        Some(c) => c,
    };
    let mode = match choice {
        Value::String(s) if s == "none" => ToolMode::Off,
        Value::String(s) if s == "auto" => ToolMode::Auto,
        Value::String(s) if s == "required" => ToolMode::Forced(None),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid("tool_choice", "`tool_choice.function.name` is required when `tool_choice` is an object.")
            })?;
            if !tools.iter().any(|t| t.function.name == name) {
                return Err(ApiError::invalid("tool_choice", format!("`tool_choice` names `{name}`, which is not in `tools`.")));
            }
            ToolMode::Forced(Some(name.to_string()))
        }
        _ => {
            return Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice` must be `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
            ))
        }
    };
    if tools.is_empty() && mode != ToolMode::Off {
        return Err(ApiError::invalid("tool_choice", "`tool_choice` needs `tools`."));
    }
    Ok(mode)
}

/// The conversation as a local model sees it: tool results and earlier calls become plain text turns
/// (its chat template has no tool roles).
pub fn local_messages(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| match (m.role.as_str(), &m.tool_calls) {
            ("tool", _) => ChatMessage::new(
                "user",
                format!("Result of call {}: {}", m.tool_call_id.as_deref().unwrap_or_default(), m.text()),
            ),
            ("assistant", Some(calls)) if !calls.is_empty() => {
                let mut text = m.text();
                for c in calls {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&format!("Called {}({}) as {}.", c.function.name, c.function.arguments, c.id));
                }
                ChatMessage::new("assistant", text)
            }
            _ => ChatMessage { tool_calls: None, tool_call_id: None, ..m.clone() },
        })
        .collect()
}

/// The request a local model answers in text: tools dropped, tool turns as text.
pub fn text_request(req: &ChatCompletionRequest) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: local_messages(&req.messages),
        tools: None,
        tool_choice: None,
        parallel_tool_calls: None,
        ..req.clone()
    }
}

/// The request as an upstream gets it: when it takes tools, without empty `tools` and without
/// `tool_choice` / `parallel_tool_calls` that name no tools (OpenAI rejects both); when it does not,
/// the text-only form of [`text_request`].
pub fn for_upstream(req: &ChatCompletionRequest, takes_tools: bool) -> ChatCompletionRequest {
    if !takes_tools {
        return text_request(req);
    }
    let mut r = req.clone();
    if r.tools.as_ref().is_some_and(Vec::is_empty) {
        r.tools = None;
    }
    if r.tools.is_none() {
        r.tool_choice = None;
        r.parallel_tool_calls = None;
    }
    r
}

/// The request a local model answers to make a forced call: the functions described in a first
/// message, and the output constrained to `{"name": ..., "arguments": {...}}` of one of them.
pub fn forced_call_request(req: &ChatCompletionRequest, only: Option<&str>) -> ChatCompletionRequest {
    let tools: Vec<&Tool> = req.tools.iter().flatten().filter(|t| only.is_none_or(|n| t.function.name == n)).collect();
    let mut intro = String::from(
        "You can call these functions. Reply with one call as a JSON object {\"name\": ..., \"arguments\": {...}}.\n",
    );
    let mut variants = Vec::new();
    for t in &tools {
        let f = &t.function;
        let params = f.parameters.clone().unwrap_or_else(|| json!({"type": "object"}));
        intro.push_str(&format!("- {}: {} Parameters: {}\n", f.name, f.description.as_deref().unwrap_or(""), params));
        variants.push(json!({
            "type": "object",
            "properties": {"name": {"const": f.name}, "arguments": params},
            "required": ["name", "arguments"],
        }));
    }
    let schema = if variants.len() == 1 { variants.remove(0) } else { json!({"anyOf": variants}) };
    let strict = tools.iter().any(|t| t.function.strict == Some(true));
    let mut messages = vec![ChatMessage::new("system", intro.trim_end())];
    messages.extend(local_messages(&req.messages));
    ChatCompletionRequest {
        messages,
        tools: None,
        tool_choice: None,
        parallel_tool_calls: None,
        response_format: Some(ResponseFormat {
            kind: "json_schema".into(),
            // Strict when a function asks for it, as OpenAI's `function.strict`: then a schema the
            // local model cannot fully follow is refused rather than followed in part.
            json_schema: Some(json!({"name": "tool_call", "schema": schema, "strict": strict})),
        }),
        // The grammar decides where the call ends; a client's stop sequence (say "\n", which JSON
        // whitespace may contain) would cut it short.
        sampling: SamplingFields { stop: None, ..req.sampling.clone() },
        ..req.clone()
    }
}

/// Turns a local answer to [`forced_call_request`] into an assistant message with one tool call. Its
/// `finish_reason` is OpenAI's: `stop` when the request named the function (`named`), `tool_calls`
/// when it required a call of any (`"required"`).
pub fn into_tool_call(mut body: ChatCompletionResponse, named: bool) -> Result<ChatCompletionResponse, ApiError> {
    let Some(choice) = body.choices.first_mut() else {
        return Err(ApiError::internal("the local model returned no choice"));
    };
    if choice.finish_reason.as_deref() == Some("length") {
        return Err(ApiError::invalid(
            "max_tokens",
            "`max_tokens` ran out before the tool call was complete; raise it.",
        ));
    }
    let text = choice.message.text();
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| ApiError::internal(format!("the local model's tool call is not valid JSON ({e}): {text}")))?;
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let arguments = v.get("arguments").cloned().unwrap_or_else(|| json!({}));
    let call = ToolCall {
        id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
        kind: "function".into(),
        function: FunctionCall { name, arguments: arguments.to_string() },
    };
    *choice = ChatChoice {
        index: 0,
        message: ChatMessage { content: None, tool_calls: Some(vec![call]), ..ChatMessage::new("assistant", "") },
        finish_reason: Some(if named { "stop" } else { "tool_calls" }.into()),
        logprobs: None,
        extra: Default::default(),
    };
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: Value) -> ChatCompletionRequest {
        let mut v = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time"}}
            ]
        });
        for (k, x) in extra.as_object().cloned().unwrap_or_default() {
            v[k] = x;
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn modes_from_tool_choice() {
        assert_eq!(tool_mode(&req(json!({}))).unwrap(), ToolMode::Auto);
        assert_eq!(tool_mode(&req(json!({"tool_choice": "none"}))).unwrap(), ToolMode::Off);
        assert_eq!(tool_mode(&req(json!({"tool_choice": "required"}))).unwrap(), ToolMode::Forced(None));
        let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}});
        assert_eq!(tool_mode(&req(named)).unwrap(), ToolMode::Forced(Some("get_time".into())));
        assert_eq!(tool_mode(&req(json!({"tools": null}))).unwrap(), ToolMode::Off);
    }

    #[test]
    fn bad_tool_requests_name_the_field() {
        let unknown = json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}});
        assert_eq!(tool_mode(&req(unknown)).unwrap_err().param.as_deref(), Some("tool_choice"));
        assert_eq!(tool_mode(&req(json!({"tool_choice": 3}))).unwrap_err().param.as_deref(), Some("tool_choice"));
        let bad_name = json!({"tools": [{"type": "function", "function": {"name": "has space"}}]});
        assert_eq!(tool_mode(&req(bad_name)).unwrap_err().param.as_deref(), Some("tools[0].function.name"));
        let no_tools = json!({"tools": null, "tool_choice": "required"});
        assert_eq!(tool_mode(&req(no_tools)).unwrap_err().param.as_deref(), Some("tool_choice"));
        let orphan = json!({"messages": [{"role": "tool", "content": "x"}]});
        assert_eq!(tool_mode(&req(orphan)).unwrap_err().param.as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn forced_request_constrains_to_the_named_function() {
        let r = forced_call_request(&req(json!({})), Some("get_weather"));
        let schema = &r.response_format.as_ref().unwrap().json_schema.as_ref().unwrap()["schema"];
        assert_eq!(schema["properties"]["name"]["const"], "get_weather");
        assert_eq!(schema["properties"]["arguments"]["required"][0], "city");
        assert!(r.tools.is_none() && r.messages[0].text().contains("get_weather: Weather now."));
        let any = forced_call_request(&req(json!({})), None);
        let schema = &any.response_format.as_ref().unwrap().json_schema.as_ref().unwrap()["schema"];
        assert_eq!(schema["anyOf"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn tool_history_becomes_text_for_local_models() {
        let r = req(json!({"messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]}));
        let m = text_request(&r).messages;
        assert_eq!(m[1].text(), "Called get_weather({\"city\":\"Paris\"}) as call_1.");
        assert_eq!((m[2].role.as_str(), m[2].text().as_str()), ("user", "Result of call call_1: sunny"));
        assert!(m.iter().all(|x| x.tool_calls.is_none() && x.tool_call_id.is_none()));
    }

    #[test]
    fn upstream_requests_drop_tool_fields_that_name_no_tools() {
        let r = for_upstream(&req(json!({"tools": [], "tool_choice": "none", "parallel_tool_calls": false})), true);
        assert!(r.tools.is_none() && r.tool_choice.is_none() && r.parallel_tool_calls.is_none());
        let kept = for_upstream(&req(json!({"tool_choice": "auto"})), true);
        assert!(kept.tools.is_some() && kept.tool_choice.is_some());
        let text = for_upstream(&req(json!({"tool_choice": "none"})), false);
        assert!(text.tools.is_none() && text.tool_choice.is_none());
    }

    #[test]
    fn local_json_becomes_a_tool_call() {
        let body = ChatCompletionResponse {
            id: "x".into(),
            object: "chat.completion".into(),
            created: 0,
            model: "m".into(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage::new("assistant", r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#),
                finish_reason: Some("stop".into()),
                logprobs: None,
                extra: Default::default(),
            }],
            usage: None,
            system_fingerprint: None,
            rightmodel: None,
            extra: Default::default(),
        };
        let out = into_tool_call(body.clone(), false).unwrap();
        let c = &out.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        // A named function: OpenAI finishes with `stop`.
        assert_eq!(into_tool_call(body.clone(), true).unwrap().choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(c.message.content.is_none());
        let call = &c.message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(serde_json::from_str::<Value>(&call.function.arguments).unwrap(), json!({"city": "Paris"}));
        let mut cut = body;
        cut.choices[0].finish_reason = Some("length".into());
        assert_eq!(into_tool_call(cut, false).unwrap_err().param.as_deref(), Some("max_tokens"));
    }
}
