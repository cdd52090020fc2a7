//! `POST /v1/chat/completions`: validation, routing, fallback, cascade, streaming.

use std::pin::Pin;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt, TryStreamExt};
use rightmodel_core::wire::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatDelta, ChatMessage,
    ChunkChoice, FunctionCallDelta, ToolCallDelta, Usage,
};
use rightmodel_core::{ApiError, ErrorKind};
use rightmodel_infer::llm::GenEvent;
use serde_json::{json, Value};

use crate::accounting::Accounting;
use crate::http_error::{error_response, json_rejection};
use crate::intake::{take_accounting, ParkedAccounting};
use crate::local::{choice_logprobs, token_logprob, LocalChat};
use crate::routing::RouteOutcome;
use crate::state::{ChatModel, SharedState};
use crate::tools::ToolMode;

/// A stream of chat chunks from any backend.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, ApiError>> + Send>>;

/// Request fields this gateway does not serve; each gets a 400 naming it rather than being ignored.
/// (`functions` / `function_call` are the legacy form of `tools` / `tool_choice`, which are served;
/// audio answers would need a response shape the gateway does not produce.)
const UNSUPPORTED: &[&str] = &["functions", "function_call", "audio", "modalities"];

/// Request fields only a model the request is passed on to (an upstream) can honour: a local model
/// refuses them with a 400 naming them instead of ignoring them.
const UPSTREAM_ONLY: &[&str] = &["prediction", "web_search_options"];

/// Most choices (`n`) one request may ask for, as at OpenAI.
pub const CHOICES_MAX: u32 = 128;

/// Most choices a local model writes for one request: they are decoded side by side in its slots, and
/// more would queue behind each other (upstreams take up to [`CHOICES_MAX`]).
pub const LOCAL_CHOICES_MAX: u32 = 16;

/// Choices the request asks for (`n`, 1 when absent).
pub fn choices_asked(req: &ChatCompletionRequest) -> u32 {
    req.sampling.n.unwrap_or(1).max(1)
}

/// Choice `i`'s own request to a local model: one choice, seeded with the client's seed plus `i`, so
/// that sampled choices differ and stay reproducible.
fn choice_request(req: &ChatCompletionRequest, i: u32) -> ChatCompletionRequest {
    ChatCompletionRequest { sampling: req.sampling.for_choice(i), ..req.clone() }
}

pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Checks what the schema cannot: supported parameters, message shape.
pub fn validate(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must contain at least one message."));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(&format!("messages[{i}].role"), format!("Invalid role `{}`.", m.role)));
        }
        // Only an assistant turn (one that called tools) may come without content.
        if m.content.is_none() && m.role != "assistant" {
            return Err(ApiError::invalid(
                &format!("messages[{i}].content"),
                format!("A `{}` message needs `content`.", m.role),
            ));
        }
    }
    crate::tools::tool_mode(req)?;
    for key in UNSUPPORTED {
        if req.extra.get(*key).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(key, format!("`{key}` is not supported by this gateway."))
                .with_code("unsupported_parameter"));
        }
    }
    if req.sampling.n.is_some_and(|n| !(1..=CHOICES_MAX).contains(&n)) {
        return Err(ApiError::invalid("n", format!("`n` must be between 1 and {CHOICES_MAX}.")));
    }
    if req.top_logprobs.is_some() && !req.logprobs.unwrap_or(false) {
        return Err(ApiError::invalid("top_logprobs", "`top_logprobs` requires `logprobs: true`."));
    }
    if req.top_logprobs.is_some_and(|k| k > 20) {
        return Err(ApiError::invalid("top_logprobs", "`top_logprobs` must be between 0 and 20."));
    }
    if req.sampling.max_tokens == Some(0) || req.sampling.max_completion_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    if let Some(t) = req.sampling.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid("temperature", "`temperature` must be between 0 and 2."));
        }
    }
    if let Some(p) = req.sampling.top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid("top_p", "`top_p` must be between 0 and 1."));
        }
    }
    if let Some(rf) = &req.response_format {
        if !matches!(rf.kind.as_str(), "text" | "json_object" | "json_schema") {
            return Err(ApiError::invalid(
                "response_format.type",
                format!("Unknown response_format type `{}`: use text, json_object or json_schema.", rf.kind),
            ));
        }
    }
    Ok(())
}

/// Whether a failure should move on to the next model of a fallback chain.
/// Notes that model `name` failed with `e` and its fallback chain moves on; returns `e` (the answer if
/// no model of the chain succeeds).
pub(crate) fn handed_over(acct: &mut Accounting, name: &str, e: ApiError) -> ApiError {
    tracing::warn!("model `{name}` failed: {} (its fallback chain, if any, goes on)", e.message);
    acct.record_failure(name, &short_message(&e.message));
    e
}

/// The error a fallback chain answers with when no model answered, given the one so far (`prev`) and
/// the latest (`e`): the latest, except that a model too small for the prompt after an outage does
/// not replace the outage (`context_length_exceeded` would tell the client to shorten a prompt the
/// failed model could take).
pub(crate) fn chain_error(prev: Option<ApiError>, e: ApiError) -> ApiError {
    let too_long = |x: &ApiError| x.code.as_deref() == Some("context_length_exceeded");
    match prev {
        Some(p) if too_long(&e) && !too_long(&p) => p,
        _ => e,
    }
}

/// Whether the next model of a fallback chain should be tried after `e`: outages, and a prompt too
/// long for this model's context (a fallback may have a larger one).
pub(crate) fn falls_back(e: &ApiError) -> bool {
    matches!(e.kind, ErrorKind::BadGateway | ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Internal)
        || e.code.as_deref() == Some("context_length_exceeded")
}

fn header_value(v: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(v).ok()
}

/// Largest `x-rightmodel-decision` value sent: clients and proxies commonly cap a response's headers
/// at 8-16 KiB and fail the whole response beyond.
const DECISION_HEADER_MAX: usize = 8 * 1024;

/// The decision as a header value: ASCII only, and within [`DECISION_HEADER_MAX`] by leaving out the
/// bulky parts (an upstream's error text, the per-candidate estimates) when it would not fit. The
/// response body and the request log keep the whole decision.
fn decision_header(d: &Value) -> Option<HeaderValue> {
    let mut text = rightmodel_router::policy::header_safe_json(&d.to_string());
    if text.len() > DECISION_HEADER_MAX {
        let mut slim = d.clone();
        if let Some(o) = slim.as_object_mut() {
            o.remove("escalation_error");
            o.remove("candidates");
            o.insert("truncated".into(), Value::Bool(true));
        }
        text = rightmodel_router::policy::header_safe_json(&slim.to_string());
    }
    (text.len() <= DECISION_HEADER_MAX).then(|| header_value(&text)).flatten()
}

/// An upstream's error message cut to a length fit for a decision record.
pub(crate) fn short_message(m: &str) -> String {
    const MAX_CHARS: usize = 300;
    match m.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}...", &m[..i]),
        None => m.to_string(),
    }
}

/// How often an SSE response sends a comment while no event is due: proxies and load balancers
/// commonly drop a connection idle for 60 s, and a slow upstream (a reasoning model thinking) can
/// be silent longer. Clients ignore comments.
const SSE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// An SSE response of `events`, kept alive with comments while they are slow to come.
pub(crate) fn sse_response<S>(events: S) -> Response
where
    S: futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> + Send + 'static,
{
    Sse::new(events).keep_alive(axum::response::sse::KeepAlive::new().interval(SSE_KEEP_ALIVE)).into_response()
}

/// Adds `x-rightmodel-*` and `x-request-id` headers.
pub fn decorate(resp: &mut Response, served: &str, decision: Option<&Value>, request_id: &str) {
    let h = resp.headers_mut();
    if let Some(v) = Some(served).filter(|s| !s.is_empty()).and_then(header_value) {
        h.insert("x-rightmodel-model", v);
    }
    if let Some(v) = decision.and_then(decision_header) {
        h.insert("x-rightmodel-decision", v);
    }
    if let Some(v) = header_value(request_id) {
        h.insert("x-request-id", v);
    }
}

/// Adds `x-rightmodel-cost-usd` to a complete (non-streamed) answer: what the request log bills for it
/// (every attempt's usage, e.g. a cascade's first call, or the estimate when a paid model reported
/// none), so clients and evaluations see real costs without reading the log. Streams end after their
/// headers and carry no such header.
pub fn cost_header(resp: &mut Response, acct: &mut Accounting) {
    if let Some(v) = header_value(&format!("{:.9}", acct.settle())) {
        resp.headers_mut().insert("x-rightmodel-cost-usd", v);
    }
}

/// The handler.
pub async fn chat_completions(
    State(st): State<SharedState>,
    parked: Option<Extension<ParkedAccounting>>,
    headers: HeaderMap,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Response {
    let mut acct = take_accounting(parked, &st, "/v1/chat/completions");
    let id = acct.id().to_string();
    match handle(&st, &headers, body, &mut acct).await {
        Ok(Reply::Full { served, decision, body }) => {
            let mut resp = Json(body).into_response();
            decorate(&mut resp, &served, decision.as_ref(), &id);
            cost_header(&mut resp, &mut acct);
            acct.finish(200, None);
            resp
        }
        Ok(Reply::Stream { served, decision, stream, include_usage, accounted }) => {
            let body = sse_body(stream, acct, served.clone(), include_usage, accounted);
            let mut resp = sse_response(body);
            decorate(&mut resp, &served, decision.as_ref(), &id);
            resp
        }
        Err(e) => {
            let status = e.kind.status();
            let msg = e.message.clone();
            let mut resp = error_response(e, &id);
            decorate_error(&mut resp, &mut acct, &id);
            acct.finish(status, Some(msg));
            resp
        }
    }
}

/// Adds the `x-rightmodel-*` headers to the error response of a request that failed after a routing
/// decision was made (`auto` chose a model that failed, was saturated or over a limit), as a success
/// carries them: the client sees which model was chosen and why, as the log row does.
pub(crate) fn decorate_error(resp: &mut Response, acct: &mut Accounting, request_id: &str) {
    let Some(d) = acct.failed_decision() else { return };
    let served = d.get("served").and_then(Value::as_str).unwrap_or_default().to_string();
    decorate(resp, &served, Some(&d), request_id);
}

enum Reply {
    /// The response is boxed: it is much larger than a stream handle.
    Full {
        served: String,
        decision: Option<Value>,
        body: Box<ChatCompletionResponse>,
    },
    Stream {
        served: String,
        decision: Option<Value>,
        stream: ChunkStream,
        include_usage: bool,
        accounted: bool,
    },
}

async fn handle(
    st: &SharedState,
    headers: &HeaderMap,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
    acct: &mut Accounting,
) -> Result<Reply, ApiError> {
    st.refuse_if_shutting_down()?;
    let caller = st.auth.identify(headers)?;
    acct.set_caller(caller.clone());
    caller.admit()?;
    let Json(mut req) = body.map_err(json_rejection)?;
    acct.set_requested(&req.model);
    validate(&req)?;
    acct.set_prompt_estimate(crate::accounting::estimate_prompt_tokens(&req));
    acct.set_output_limit(req.sampling.max_completion_tokens.or(req.sampling.max_tokens).map(u64::from));
    acct.set_choices(choices_asked(&req));
    let stream = req.sampling.stream.unwrap_or(false);
    acct.set_stream(stream);
    // The `rightmodel` options and `x-rightmodel-*` headers are checked on every request (a misspelt cap
    // must not pass unnoticed). A model the client named must fit the request's own cost and latency
    // caps; the configured defaults bind the gateway's own choices too (`auto`, a document escalation).
    let gateway_chooses = req.model == "auto" || req.model.starts_with("docs:");
    acct.set_caps(if gateway_chooses {
        st.router.overrides(req.rightmodel.as_ref(), headers)?
    } else {
        st.router.request_overrides(req.rightmodel.as_ref(), headers)?
    });
    crate::routing::AutoRouter::carry_cache_prompt(&mut req.rightmodel, acct.caps());

    // `auto` chooses among the models the key may use; a named model must be on the key's list.
    if req.model != "auto" {
        caller.check_model(&req.model)?;
    }
    let outcome = if req.model == "auto" {
        let o = st.router.decide(st, &req, acct.caps().clone(), &caller).await?;
        acct.set_decision(&o.reason, &o.decision);
        Some(o)
    } else {
        None
    };
    let target = outcome.as_ref().map(|o| o.served.clone()).unwrap_or_else(|| req.model.clone());
    if !caller.may_use(&target) {
        caller.check_model(&target)?;
    }
    if let Some(reply) =
        task_reply(st, &req, &target, outcome.is_none(), outcome.as_ref().map(|o| &o.decision), acct).await?
    {
        return Ok(reply);
    }
    let model = match st.chat.get(&target) {
        Some(m) => m,
        None => return Err(st.not_served_here(&target, "/v1/chat/completions")),
    };
    if outcome.is_none() {
        acct.check_caps(&target, model.price())?;
    }
    // The call's likely cost is held now (checked and held in one step), for `auto`'s choice too: the
    // router saw the budget a moment ago, and concurrent requests may have taken what was left since.
    // Then `auto` chooses once more with the budget as it is now (a spent budget leaves the free models)
    // instead of refusing a request a local model can serve.
    let (outcome, target) = match acct.hold_for(&target, model.price()) {
        Ok(()) => (outcome, target),
        Err(e) if outcome.is_some() && e.kind == ErrorKind::RateLimited => {
            let mut again = st.router.decide(st, &req, acct.caps().clone(), &caller).await?;
            if again.served == target || !caller.may_use(&again.served) {
                return Err(e);
            }
            if let Value::Object(d) = &mut again.decision {
                d.insert("rerouted_from".into(), json!(target));
                d.insert("rerouted_because".into(), json!(e.code));
            }
            // A task model (classifier, collection) chosen this time answers at once (a collection checks
            // the limits itself before it escalates); a language model must pass the limits first (a
            // refusal keeps the decision that was refused).
            if is_task_model(st, &again.served) {
                acct.set_decision(&again.reason, &again.decision);
                if let Some(reply) = task_reply(st, &req, &again.served, false, Some(&again.decision), acct).await? {
                    return Ok(reply);
                }
            }
            let price = st.chat_model(&again.served)?.price();
            acct.hold_for(&again.served, price)?;
            acct.set_decision(&again.reason, &again.decision);
            let served = again.served.clone();
            (Some(again), served)
        }
        Err(e) => return Err(e),
    };

    // A cascade judges the small answer by its token log-probabilities; tool calls have none.
    let no_tools = crate::tools::tool_mode(&req)? == ToolMode::Off;
    if let Some(o) = outcome.as_ref().filter(|o| o.cascade.is_some() && no_tools) {
        return cascade(st, req, o, acct).await;
    }
    let decision = outcome.map(|o| o.decision);
    if stream {
        let (served, s, accounted) = open_stream(st, &target, &req, acct).await?;
        let decision = served_decision(acct, decision, &target, &served);
        Ok(Reply::Stream { served, decision, stream: s, include_usage: include_usage(&req), accounted })
    } else {
        let (served, mut body) = call_full(st, &target, &req, acct).await?;
        let decision = served_decision(acct, decision, &target, &served);
        if let Some(d) = &decision {
            body.rightmodel = Some(json!({"decision": d}));
        }
        Ok(Reply::Full { served, decision, body: Box::new(body) })
    }
}

/// The decision to report once `served` answered a request for `target`: `auto`'s, corrected when a
/// fallback served; for a model the client named, one only when a fallback served instead (reason
/// `fallback`, with the model that failed and why), so the response and the log say so.
pub(crate) fn served_decision(
    acct: &mut Accounting,
    decision: Option<Value>,
    target: &str,
    served: &str,
) -> Option<Value> {
    match decision {
        Some(mut d) => {
            acct.correct_decision(&mut d, served);
            Some(d)
        }
        None if served != target => {
            let mut d = json!({"reason": "fallback", "requested": target, "served": target});
            acct.correct_decision(&mut d, served);
            acct.set_decision("fallback", &d);
            Some(d)
        }
        None => None,
    }
}

/// Whether `name` is a classifier configured to answer chat requests (`route = true`).
fn is_routed_classifier(st: &SharedState, name: &str) -> bool {
    st.config.classifiers.iter().any(|c| c.route && c.name == name)
}

/// Whether the gateway answers `name` itself: a routed classifier or a `docs:` collection.
fn is_task_model(st: &SharedState, name: &str) -> bool {
    name.starts_with("docs:") || is_routed_classifier(st, name)
}

/// Serves `target` when it is a model the gateway answers itself, a routed classifier or a `docs:`
/// collection (free themselves; a collection checks the limits before it escalates to a paid model);
/// `None` for language models. `named`: the client
/// asked for it by name (so it must not expect tools, JSON or log-probabilities); `decision`: the
/// router's, when `auto` chose it.
async fn task_reply(
    st: &SharedState,
    req: &ChatCompletionRequest,
    target: &str,
    named: bool,
    decision: Option<&Value>,
    acct: &mut Accounting,
) -> Result<Option<Reply>, ApiError> {
    let stream = req.sampling.stream.unwrap_or(false);
    let classifier = is_routed_classifier(st, target);
    if named && is_task_model(st, target) {
        // Named directly: it answers with a label or a cited passage, whatever the request expected.
        let (what, answers, probs) = if classifier {
            ("classifier", "a label", "see rightmodel.prediction.probs")
        } else {
            ("collection", "cited text", "see rightmodel.confidence")
        };
        if crate::tools::tool_mode(req)? != ToolMode::Off {
            return Err(ApiError::invalid("tools", format!("The {what} `{target}` does not call tools.")));
        }
        if let Some(e) = local_refusal(target, LOCAL_CHOICES_MAX, req) {
            return Err(e);
        }
        if req.response_format.as_ref().is_some_and(|rf| rf.kind != "text") {
            return Err(ApiError::invalid(
                "response_format",
                format!("The {what} `{target}` answers with {answers}, not JSON."),
            ));
        }
        if req.logprobs == Some(true) {
            return Err(ApiError::invalid(
                "logprobs",
                format!("The {what} `{target}` has no token log-probabilities; {probs}."),
            ));
        }
        if choices_asked(req) > 1 {
            return Err(ApiError::invalid("n", format!("The {what} `{target}` answers one way only (n=1)."))
                .with_code("unsupported_parameter"));
        }
    }
    if classifier {
        let explain = acct.caps().explain == Some(true);
        let mut body = crate::tasks_api::classifier_chat(st, target, req, explain, acct).await?;
        let decision = decision.cloned();
        if let (Some(d), Some(Value::Object(extra))) = (&decision, body.rightmodel.as_mut()) {
            extra.insert("decision".into(), d.clone());
        }
        if stream {
            return Ok(Some(Reply::Stream {
                served: target.to_string(),
                decision,
                stream: replay(body),
                include_usage: include_usage(req),
                accounted: true,
            }));
        }
        return Ok(Some(Reply::Full { served: target.to_string(), decision, body: Box::new(body) }));
    }
    if let Some(name) = target.strip_prefix("docs:") {
        let (served, decision, body) = crate::tasks_api::docs_chat(st, name, req, decision, acct).await?;
        if stream {
            return Ok(Some(Reply::Stream {
                served,
                decision: Some(decision),
                stream: replay(body),
                include_usage: include_usage(req),
                accounted: true,
            }));
        }
        return Ok(Some(Reply::Full { served, decision: Some(decision), body: Box::new(body) }));
    }
    Ok(None)
}

/// The fallback chain of `first`: itself, then those of its configured fallbacks the caller's key may use
/// and the day's budget allows (a spent budget leaves only free ones).
pub(crate) fn chain(st: &SharedState, first: &str, acct: &Accounting) -> Result<Vec<(String, ChatModel)>, ApiError> {
    let m = st.chat_model(first)?.clone();
    let mut out = vec![(first.to_string(), m.clone())];
    for f in m.fallbacks() {
        if !acct.caller().may_use(f) {
            continue;
        }
        if let Some(fm) = st
            .chat
            .get(f)
            .filter(|fm| st.check_limits(acct.caller(), f, fm.price(), acct.likely_cost(fm.price())).is_ok())
        {
            out.push((f.clone(), fm.clone()));
        }
    }
    Ok(out)
}

/// [`call_full`] for other modules of the server (document answers escalated upstream).
pub(crate) async fn call_full_pub(
    st: &SharedState,
    first: &str,
    req: &ChatCompletionRequest,
    acct: &mut Accounting,
) -> Result<(String, ChatCompletionResponse), ApiError> {
    call_full(st, first, req, acct).await
}

/// Calls `first` (falling back along its chain) and returns the whole answer.
async fn call_full(
    st: &SharedState,
    first: &str,
    req: &ChatCompletionRequest,
    acct: &mut Accounting,
) -> Result<(String, ChatCompletionResponse), ApiError> {
    let mode = crate::tools::tool_mode(req)?;
    // A model that cannot take the request is skipped; its refusal is the answer only when no other
    // model of the chain ran (an outage further along is the more useful error).
    let mut refused = None;
    let mut last = None;
    for (i, (name, model)) in chain(st, first, acct)?.into_iter().enumerate() {
        if let Err(e) = takes_request(&name, &model, &mode, req) {
            refused.get_or_insert(e);
            continue;
        }
        if let Some(e) = local_schema_refusal(&model, &mode, req).await {
            refused.get_or_insert(e);
            continue;
        }
        // The limits are checked and this call's cost held in one step; a fallback checks the
        // request's caps again too, since time has passed (an upstream may have timed out).
        if let Err(e) = acct.claim_in_chain(&name, model.price(), i > 0) {
            refused.get_or_insert(e);
            continue;
        }
        let r = match &model {
            ChatModel::Local(l) => local_answer(l, req, acct).await,
            ChatModel::Upstream(u) => u.chat(upstream_request(u, req)).await,
        };
        match r {
            Ok(mut body) => {
                body.model = name.clone();
                if let ChatModel::Upstream(_) = &model {
                    match body.usage {
                        Some(u) if !u.incomplete => acct.add_usage(u),
                        // No usage (or none that can be read): the log estimates the cost from the
                        // answer's length.
                        _ => acct.add_streamed(
                            body.choices
                                .iter()
                                .map(|c| {
                                    c.message.text().len()
                                        + c.message.tool_calls.as_deref().map_or(0, crate::accounting::tool_calls_len)
                                })
                                .sum(),
                        ),
                    }
                }
                return Ok((name, body));
            }
            Err(e) if falls_back(&e) => last = Some(chain_error(last, handed_over(acct, &name, e))),
            Err(e) => return Err(e),
        }
    }
    Err(last.or(refused).unwrap_or_else(|| ApiError::internal("empty fallback chain")))
}

/// A local model's whole answer, with tools handled (see [`crate::tools`]): text when tools are off,
/// a grammar-constrained call when the request forces one, a 400 when the model would have to decide.
async fn local_answer(
    l: &LocalChat,
    req: &ChatCompletionRequest,
    acct: &mut Accounting,
) -> Result<ChatCompletionResponse, ApiError> {
    match crate::tools::tool_mode(req)? {
        ToolMode::Off => local_full(l, &crate::tools::text_request(req), acct).await,
        ToolMode::Auto => Err(local_tools_refused(&l.name)),
        ToolMode::Forced(only) => {
            let forced = crate::tools::forced_call_request(req, only.as_deref());
            // The call's grammar comes from the functions' schemas: a schema it cannot follow is the
            // client's `tools`, not a `response_format` it never sent.
            let body = local_full(l, &forced, acct).await.map_err(|mut e| {
                if e.param.as_deref().is_some_and(|p| p.starts_with("response_format")) {
                    e.param = Some("tools".into());
                    e.message = format!("{} (in a function's `parameters`)", e.message);
                }
                e
            })?;
            crate::tools::into_tool_call(body, only.is_some())
        }
    }
}

fn local_tools_refused(model: &str) -> ApiError {
    ApiError::invalid(
        "tool_choice",
        format!(
            "Local model `{model}` calls tools only when `tool_choice` forces a call (`required` or a named \
             function); with `auto`, route to a model that decides (an upstream, or `auto` routing)."
        ),
    )
    .with_code("unsupported_parameter")
}

/// Why a local model `name`, which writes at most `most` choices per request, cannot serve `req`, as the
/// 400 it answers with: more choices than that ([`choices_refusal`]), or content only an upstream reads
/// ([`upstream_only_content`]); `None` when any model can take it.
pub fn local_refusal(name: &str, most: u32, req: &ChatCompletionRequest) -> Option<ApiError> {
    if choices_asked(req) > most {
        return Some(choices_refusal(name, most));
    }
    upstream_only_content(name, req)
}

/// The 400 on `n` of a local model `name` asked for more than the `most` choices it writes per request
/// (see [`crate::local::local_choices_max`]): a limit of the request, not a busy model, so not a 429
/// that a retry could never get past.
pub fn choices_refusal(name: &str, most: u32) -> ApiError {
    let why = if most < LOCAL_CHOICES_MAX { ", as many as its slots and queue hold at once" } else { "" };
    ApiError::invalid(
        "n",
        format!(
            "Model `{name}` writes at most {most} choices per request{why}; ask for fewer (upstream models take up \
             to {CHOICES_MAX})."
        ),
    )
    .with_code("unsupported_parameter")
}

/// What in `req` only an upstream can read (images and other non-text parts, a non-empty `logit_bias`,
/// [`UPSTREAM_ONLY`] fields), as the 400 a local model `name` answers it with; `None` when the request is
/// plain text that any model reads. Upstreams get such requests as they are.
pub fn upstream_only_content(name: &str, req: &ChatCompletionRequest) -> Option<ApiError> {
    for (i, m) in req.messages.iter().enumerate() {
        if let Some(kind) = m.content.as_ref().and_then(|c| c.non_text_part()) {
            return Some(
                ApiError::invalid(
                    &format!("messages[{i}].content"),
                    format!(
                        "Model `{name}` reads only text, and this message has a part of type `{kind}` \
                         (upstream models get such content as it is sent)."
                    ),
                )
                .with_code("unsupported_parameter"),
            );
        }
    }
    let bias = req.extra.get("logit_bias").is_some_and(|lb| lb.as_object().is_some_and(|o| !o.is_empty()));
    let field = UPSTREAM_ONLY.iter().copied().find(|k| req.extra.get(*k).is_some_and(|v| !v.is_null()));
    let field = if bias { Some("logit_bias") } else { field };
    field.map(|f| {
        ApiError::invalid(f, format!("`{f}` is passed on to upstream models only; model `{name}` cannot honour it."))
            .with_code("unsupported_parameter")
    })
}

/// Whether the chain's model `name` can take `req`: its tools (see [`ToolMode`]), and content only an
/// upstream reads ([`local_refusal`]).
fn takes_request(name: &str, model: &ChatModel, mode: &ToolMode, req: &ChatCompletionRequest) -> Result<(), ApiError> {
    if let ChatModel::Local(l) = model {
        if let Some(e) = local_refusal(name, l.choices_max(), req) {
            return Err(e);
        }
    }
    if let (ChatModel::Local(_), ToolMode::Forced(_)) = (model, mode) {
        if choices_asked(req) > 1 {
            return Err(ApiError::invalid(
                "n",
                format!("Model `{name}` fills in one forced tool call per request (n=1)."),
            )
            .with_code("unsupported_parameter"));
        }
    }
    takes_tools(name, model, mode)
}

/// The 400 of a local `model` for a strict JSON schema it cannot follow in full (the request's, or a
/// forced tool call's), so that fallback chains skip it as they skip other models that cannot take the
/// request. Found on a blocking thread (patterns are converted), and only for strict schemas.
async fn local_schema_refusal(model: &ChatModel, mode: &ToolMode, req: &ChatCompletionRequest) -> Option<ApiError> {
    let ChatModel::Local(_) = model else { return None };
    let rf = crate::routing::local_response_format(req, mode).filter(crate::local::is_strict)?;
    tokio::task::spawn_blocking(move || crate::local::schema_refusal(&rf)).await.ok().flatten()
}

/// Whether `model` can serve a request using tools as `mode` says; the refusal names why. Fallback
/// chains skip such models rather than stopping at them.
fn takes_tools(name: &str, model: &ChatModel, mode: &ToolMode) -> Result<(), ApiError> {
    match (model, mode) {
        (_, ToolMode::Off) => Ok(()),
        (ChatModel::Local(_), ToolMode::Auto) => Err(local_tools_refused(name)),
        (ChatModel::Local(_), ToolMode::Forced(_)) => Ok(()),
        (ChatModel::Upstream(u), _) if u.config.tools => Ok(()),
        (ChatModel::Upstream(_), _) => {
            Err(ApiError::invalid("tools", format!("Model `{name}` is configured without tool support."))
                .with_code("unsupported_parameter"))
        }
    }
}

/// The body sent to an upstream: tool fields cleaned up for it (see [`crate::tools::for_upstream`]).
fn upstream_request(u: &crate::upstream::Upstream, req: &ChatCompletionRequest) -> Value {
    serde_json::to_value(crate::tools::for_upstream(req, u.config.tools)).unwrap_or(Value::Null)
}

/// A local model's whole answer with the `n` choices asked for, billed to `acct`. Several choices are
/// generated side by side (the engine batches them) and billed as OpenAI bills them: the prompt once,
/// every choice's tokens.
async fn local_full(
    l: &LocalChat,
    req: &ChatCompletionRequest,
    acct: &mut Accounting,
) -> Result<ChatCompletionResponse, ApiError> {
    let n = choices_asked(req);
    // The text generated so far is counted as it comes, so that a client that leaves before the answer
    // is complete still has its output estimated in the log (as for a stream).
    if n <= 1 {
        let a = local_choice(l, req, |t| acct.count_token(t)).await?;
        acct.add_usage(a.usage.unwrap_or_default());
        return Ok(a);
    }
    let reqs: Vec<ChatCompletionRequest> = (0..n).map(|i| choice_request(req, i)).collect();
    let tally = crate::accounting::TokenTally::new(acct);
    let mark = |t: &str| tally.token(t);
    let answers = futures::future::try_join_all(reqs.iter().map(|r| local_choice(l, r, mark))).await?;
    let mut usage: Option<Usage> = None;
    let mut merged: Option<ChatCompletionResponse> = None;
    for (i, mut a) in answers.into_iter().enumerate() {
        usage = Some(match (usage, a.usage.take()) {
            (Some(u), Some(v)) => several_choices_usage(u, v),
            (u, v) => u.or(v).unwrap_or_default(),
        });
        let m = merged.get_or_insert_with(|| ChatCompletionResponse { choices: Vec::new(), ..a.clone() });
        m.choices.extend(a.choices.into_iter().map(|mut c| {
            c.index = i as u32;
            c
        }));
    }
    let mut merged = merged.ok_or_else(|| ApiError::internal("no choice was generated"))?;
    merged.usage = usage;
    acct.add_usage(usage.unwrap_or_default());
    Ok(merged)
}

/// The usage of two choices of one request: the prompt counted once (its cached part as the less
/// cached of the two), the answers' tokens added.
pub(crate) fn several_choices_usage(a: Usage, b: Usage) -> Usage {
    Usage::new(a.prompt_tokens.max(b.prompt_tokens), a.completion_tokens + b.completion_tokens)
        .with_cached_tokens(a.cached_prompt_tokens().min(b.cached_prompt_tokens()))
}

/// One choice of a local answer (its usage in the response, not yet billed); `on_token` runs for every
/// token as it arrives, with its text.
async fn local_choice(
    l: &LocalChat,
    req: &ChatCompletionRequest,
    mut on_token: impl FnMut(&str),
) -> Result<ChatCompletionResponse, ApiError> {
    let mut started = l.start_chat(req).await?;
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(ev) = started.events.recv().await {
        match ev {
            GenEvent::Token(t) => {
                on_token(&t.text);
                text.push_str(&t.text);
                tokens.push(t);
            }
            GenEvent::Done(f) => {
                text.push_str(&f.tail);
                let usage = Usage::new(u64::from(f.prompt_tokens), u64::from(f.completion_tokens))
                    .with_cached_tokens(u64::from(f.cached_tokens));
                let logprobs = req.logprobs.unwrap_or(false).then(|| choice_logprobs(&tokens));
                return Ok(ChatCompletionResponse {
                    id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
                    object: "chat.completion".into(),
                    created: now_secs(),
                    model: l.name.clone(),
                    choices: vec![ChatChoice {
                        index: 0,
                        message: ChatMessage::new("assistant", text),
                        finish_reason: Some(f.reason.as_str().into()),
                        logprobs,
                        extra: Default::default(),
                    }],
                    usage: Some(usage),
                    system_fingerprint: Some("rightmodel-llama.cpp".into()),
                    rightmodel: None,
                    extra: Default::default(),
                });
            }
            GenEvent::Error(m) => return Err(crate::local::generation_error(m)),
            GenEvent::Started { .. } => {}
        }
    }
    Err(ApiError::new(ErrorKind::Unavailable, "The local model stopped."))
}

/// Opens a stream on `first` (falling back along its chain while nothing has been sent). The flag
/// says whether usage was already accounted (a forced local tool call is produced whole, then
/// replayed as chunks).
async fn open_stream(
    st: &SharedState,
    first: &str,
    req: &ChatCompletionRequest,
    acct: &mut Accounting,
) -> Result<(String, ChunkStream, bool), ApiError> {
    let mode = crate::tools::tool_mode(req)?;
    // A model that cannot take the request is skipped; its refusal is the answer only when no other
    // model of the chain ran (an outage further along is the more useful error).
    let mut refused = None;
    let mut last = None;
    for (i, (name, model)) in chain(st, first, acct)?.into_iter().enumerate() {
        if let Err(e) = takes_request(&name, &model, &mode, req) {
            refused.get_or_insert(e);
            continue;
        }
        if let Some(e) = local_schema_refusal(&model, &mode, req).await {
            refused.get_or_insert(e);
            continue;
        }
        // The limits are checked and this call's cost held in one step; a fallback checks the
        // request's caps again too, since time has passed (an upstream may have timed out).
        if let Err(e) = acct.claim_in_chain(&name, model.price(), i > 0) {
            refused.get_or_insert(e);
            continue;
        }
        let r: Result<(ChunkStream, bool), ApiError> = match &model {
            ChatModel::Local(l) if mode == ToolMode::Off => {
                local_stream(l, &crate::tools::text_request(req)).await.map(|s| (s, false))
            }
            // A constrained call is short: produce it whole, then stream it as chunks.
            ChatModel::Local(l) => local_answer(l, req, acct).await.map(|mut a| {
                a.model = name.clone();
                (replay(a), true)
            }),
            ChatModel::Upstream(u) => {
                u.chat_stream(upstream_request(u, req)).await.map(|s| (Box::pin(s) as ChunkStream, false))
            }
        };
        // Nothing reaches the client before the first chunk that says something, so a stream that
        // breaks before then is a failed call like any other: the chain goes on (and a cascade keeps
        // its small answer) instead of the client getting a role chunk and an error.
        let r = match r {
            Ok((s, accounted)) => until_first_news(s).await.map(|s| (s, accounted)),
            Err(e) => Err(e),
        };
        match r {
            Ok((s, accounted)) => return Ok((name, s, accounted)),
            Err(e) if falls_back(&e) => last = Some(chain_error(last, handed_over(acct, &name, e))),
            Err(e) => return Err(e),
        }
    }
    Err(last.or(refused).unwrap_or_else(|| ApiError::internal("empty fallback chain")))
}

/// Most chunks [`until_first_news`] holds back: upstreams that send empty chunks for long are let
/// through once this many arrived.
const HELD_CHUNKS_MAX: usize = 32;

/// Reads `s` up to its first chunk that carries more than the opening role (text, a tool call, a
/// provider field such as reasoning text, a finish or usage) or to its end, and returns the stream
/// with what was read in front. An error before then is returned instead: nothing was sent yet.
async fn until_first_news(s: ChunkStream) -> Result<ChunkStream, ApiError> {
    hold_until(s, |c: &ChatCompletionChunk| {
        c.usage.is_some()
            || c.choices.iter().any(|ch| {
                ch.finish_reason.is_some()
                    || ch.delta.content.as_deref().is_some_and(|t| !t.is_empty())
                    || ch.delta.tool_calls.is_some()
                    // OpenAI's opening chunk carries `refusal: null`: only values count.
                    || ch.delta.extra.values().any(|v| !v.is_null())
                    || ch.logprobs.is_some()
            })
    })
    .await
}

/// Reads `s` up to its first item that is `news` (or [`HELD_CHUNKS_MAX`] items, or its end) and returns
/// the stream with what was read in front; an error before then is returned instead. Chat and text
/// completion streams both go through it, so a stream that breaks before saying anything falls back.
pub(crate) async fn hold_until<T: Send + 'static>(
    mut s: Pin<Box<dyn Stream<Item = Result<T, ApiError>> + Send>>,
    news: impl Fn(&T) -> bool,
) -> Result<Pin<Box<dyn Stream<Item = Result<T, ApiError>> + Send>>, ApiError> {
    let mut held = Vec::new();
    while let Some(item) = s.next().await {
        let c = item?;
        let is_news = news(&c);
        held.push(Ok(c));
        if is_news || held.len() >= HELD_CHUNKS_MAX {
            break;
        }
    }
    Ok(Box::pin(futures::stream::iter(held).chain(s)))
}

/// A local generation as OpenAI chunks: role, one chunk per released token, the finish chunk and a
/// usage chunk (always produced; dropped later if the client did not ask for it).
async fn local_stream(l: &LocalChat, req: &ChatCompletionRequest) -> Result<ChunkStream, ApiError> {
    let n = choices_asked(req);
    if n <= 1 {
        return local_choice_stream(l, req).await;
    }
    // The first choice is started here (a refusal is still an error response); the others start as
    // the merged stream is read, so that choices waiting for a free slot do not hold back the first.
    let mut streams = vec![local_choice_stream(l, &choice_request(req, 0)).await?];
    for i in 1..n {
        let (l, r) = (l.clone(), choice_request(req, i));
        let later = futures::stream::once(async move { local_choice_stream(&l, &r).await }).try_flatten();
        streams.push(Box::pin(later));
    }
    Ok(merge_choice_streams(streams))
}

/// The streams of a request's choices as one: chunks as they come, each with its choice's index and one
/// id, and one usage chunk at the end (see [`several_choices_usage`]). An error ends it.
fn merge_choice_streams(streams: Vec<ChunkStream>) -> ChunkStream {
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let mut all = futures::stream::select_all(
        streams.into_iter().enumerate().map(|(i, s)| s.map(move |c| (i as u32, c)).boxed()),
    );
    let s = async_stream::stream! {
        let mut usage_chunk: Option<ChatCompletionChunk> = None;
        while let Some((i, item)) = all.next().await {
            let mut c = match item {
                Ok(c) => c,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            c.id.clone_from(&id);
            if c.choices.is_empty() {
                if let Some(u) = c.usage.take() {
                    let held = usage_chunk.get_or_insert(c);
                    held.usage = Some(match held.usage {
                        Some(prev) => several_choices_usage(prev, u),
                        None => u,
                    });
                }
                continue;
            }
            for ch in &mut c.choices {
                ch.index = i;
            }
            yield Ok(c);
        }
        if let Some(c) = usage_chunk {
            yield Ok(c);
        }
    };
    Box::pin(s)
}

/// One choice of a local generation as OpenAI chunks (see [`local_stream`]).
async fn local_choice_stream(l: &LocalChat, req: &ChatCompletionRequest) -> Result<ChunkStream, ApiError> {
    let started = l.start_chat(req).await?;
    let want_logprobs = req.logprobs.unwrap_or(false);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let model = l.name.clone();
    let mut events = started.events;
    let s = async_stream::stream! {
        let chunk = |delta: ChatDelta, finish: Option<String>, logprobs, usage: Option<Usage>| ChatCompletionChunk {
            id: id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.clone(),
            choices: if usage.is_some() { vec![] } else { vec![ChunkChoice { index: 0, delta, finish_reason: finish, logprobs, extra: Default::default() }] },
            usage,
            rightmodel: None,
            extra: Default::default(),
        };
        yield Ok(chunk(ChatDelta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() }, None, None, None));
        while let Some(ev) = events.recv().await {
            match ev {
                GenEvent::Token(t) => {
                    if t.text.is_empty() && !want_logprobs {
                        continue;
                    }
                    let lp = want_logprobs.then(|| rightmodel_core::wire::ChoiceLogprobs { content: Some(vec![token_logprob(&t)]) });
                    yield Ok(chunk(ChatDelta { content: Some(t.text), ..Default::default() }, None, lp, None));
                }
                GenEvent::Done(f) => {
                    if !f.tail.is_empty() {
                        yield Ok(chunk(ChatDelta { content: Some(f.tail.clone()), ..Default::default() }, None, None, None));
                    }
                    yield Ok(chunk(ChatDelta::default(), Some(f.reason.as_str().into()), None, None));
                    yield Ok(chunk(ChatDelta::default(), None, None, Some(Usage::new(u64::from(f.prompt_tokens), u64::from(f.completion_tokens)).with_cached_tokens(u64::from(f.cached_tokens)))));
                    return;
                }
                GenEvent::Error(m) => {
                    yield Err(crate::local::generation_error(m));
                    return;
                }
                GenEvent::Started { .. } => {}
            }
        }
        yield Err(ApiError::new(ErrorKind::Unavailable, "The local model stopped."));
    };
    Ok(Box::pin(s))
}

/// `fut`'s output, or `None` once the shutdown grace period is over (streams then end with an error
/// event instead of being cut silently).
pub(crate) async fn unless_aborted<T>(
    aborting: &mut tokio::sync::watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = aborting.wait_for(|a| *a) => None,
        v = fut => Some(v),
    }
}

/// The SSE error event and log status of a stream cut by the end of the shutdown grace period.
pub(crate) fn aborted_event(acct: Accounting) -> Event {
    let e = ApiError::new(ErrorKind::Unavailable, "The server is shutting down; the answer was cut short.");
    let event = Event::default().event("error").data(serde_json::to_string(&e.body()).unwrap_or_default());
    acct.finish(503, Some(e.message));
    event
}

/// Turns backend chunks into SSE events: the served model's name on every chunk, usage only in one
/// chunk of its own before `[DONE]` and only when asked for (`stream_options.include_usage`, as at
/// OpenAI), `[DONE]` at the end, an `error` event if the backend breaks mid-stream.
/// The accounting guard lives inside the stream: the log row is written when the stream ends or the
/// client disconnects.
fn sse_body(
    mut stream: ChunkStream,
    mut acct: Accounting,
    served: String,
    include_usage: bool,
    accounted: bool,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> + Send {
    let mut aborting = acct.state().aborting.subscribe();
    let event = |c: &ChatCompletionChunk| match serde_json::to_string(c) {
        Ok(s) => Some(Event::default().data(s)),
        Err(e) => {
            tracing::error!("cannot serialise chunk: {e}");
            None
        }
    };
    async_stream::stream! {
        let mut reported: Option<Usage> = None;
        // The usage chunk (no choices) is held to the end of the stream, where it also says what the
        // request cost (`rightmodel.cost_usd`, the streamed counterpart of `x-rightmodel-cost-usd`).
        let mut usage_chunk: Option<ChatCompletionChunk> = None;
        // Id and time of the stream's chunks, for a usage chunk made here when none came.
        let mut meta: Option<(String, i64)> = None;
        loop {
            let Some(next) = unless_aborted(&mut aborting, stream.next()).await else {
                if let Some(e) = usage_chunk.take().as_ref().and_then(event) {
                    yield Ok(e);
                }
                yield Ok(aborted_event(acct));
                return;
            };
            let Some(item) = next else { break };
            match item {
                Ok(mut c) => {
                    c.model = served.clone();
                    if meta.is_none() {
                        meta = Some((c.id.clone(), c.created));
                    }
                    // The stream's usage is said once, in its last chunk (OpenAI's shape): usage an
                    // upstream puts on its content or finish chunks, or repeats, is counted here and
                    // taken off them, so that a client adding up usage per chunk counts it once.
                    if let Some(u) = c.usage.take() {
                        if !accounted {
                            acct.replace_usage(reported, u);
                            // Usage with counts left out is not counted (the estimate bills the call).
                            if !u.incomplete {
                                reported = Some(u);
                            }
                        }
                        if c.choices.is_empty() {
                            if include_usage {
                                c.usage = Some(u);
                                usage_chunk = Some(c);
                            }
                            continue;
                        }
                    }
                    if c.choices.iter().any(|ch| ch.delta.content.as_deref().is_some_and(|t| !t.is_empty()) || ch.delta.tool_calls.is_some()) {
                        acct.mark_first_token();
                        // A replayed answer's text was counted when it was produced.
                        if !accounted {
                            acct.add_streamed(c.choices.iter().map(|ch| delta_len(&ch.delta)).sum());
                        }
                    }
                    if let Some(e) = event(&c) {
                        yield Ok(e);
                    }
                }
                Err(e) => {
                    if let Some(e) = usage_chunk.take().as_ref().and_then(event) {
                        yield Ok(e);
                    }
                    let status = e.kind.status();
                    let body = serde_json::to_string(&e.body()).unwrap_or_default();
                    // Written before the last event: a client that closes right after it must not
                    // turn the row into a 499.
                    acct.finish(status, Some(e.message));
                    yield Ok(Event::default().event("error").data(body));
                    return;
                }
            }
        }
        let cost = acct.settle();
        // A client that asked for usage gets a usage chunk with the cost even when the model sent
        // usage only on its content chunks, or none (then the gateway's count or estimate).
        let made = || {
            let (id, created) = meta.clone()?;
            let usage = reported.unwrap_or_else(|| {
                let (input, output) = acct.tokens();
                Usage::new(input, output)
            });
            Some(ChatCompletionChunk {
                id,
                object: "chat.completion.chunk".into(),
                created,
                model: served.clone(),
                choices: vec![],
                usage: Some(usage),
                rightmodel: None,
                extra: Default::default(),
            })
        };
        if let Some(mut c) = usage_chunk.take().or_else(|| if include_usage { made() } else { None }) {
            match c.rightmodel.as_mut().and_then(Value::as_object_mut) {
                Some(obj) => {
                    obj.insert("cost_usd".into(), json!(cost));
                }
                None => c.rightmodel = Some(json!({"cost_usd": cost})),
            }
            if let Some(e) = event(&c) {
                yield Ok(e);
            }
        }
        acct.finish(200, None);
        yield Ok(Event::default().data("[DONE]"));
    }
}

/// Characters of answer a chunk's delta carries: its text and the names and arguments of tool calls
/// (the output estimate of a paid model that reports no usage).
fn delta_len(d: &ChatDelta) -> usize {
    let calls = d.tool_calls.as_deref().map_or(0, |calls| {
        calls
            .iter()
            .filter_map(|c| c.function.as_ref())
            .map(|f| f.name.as_deref().map_or(0, str::len) + f.arguments.as_deref().map_or(0, str::len))
            .sum()
    });
    d.content.as_deref().map_or(0, str::len) + calls
}

fn include_usage(req: &ChatCompletionRequest) -> bool {
    req.sampling.stream_options.as_ref().is_some_and(|o| o.include_usage)
}

/// Tokens a cascade's small model may write when the client set no limit (see [`cascade`]).
const CASCADE_PROBE_MAX_TOKENS: u32 = 512;

/// Cascade: the small model answers first with log-probabilities; its mean token probability decides
/// whether the answer is kept or the request escalates to the large model. A streamed cascade holds
/// the small answer until its confidence is known.
async fn cascade(
    st: &SharedState,
    req: ChatCompletionRequest,
    o: &RouteOutcome,
    acct: &mut Accounting,
) -> Result<Reply, ApiError> {
    let stream = req.sampling.stream.unwrap_or(false);
    let plan = o.cascade.clone().ok_or_else(|| ApiError::internal("cascade without a plan"))?;
    let small_name = plan.small.clone();
    let large_name = plan.large.clone();
    let mut decision = o.decision.clone();
    let small = st.chat_model(&small_name)?.clone();
    // The small answer is judged by its token log-probabilities, whoever serves it, so ask for them
    // (and drop them below when the client did not).
    let mut probe = req.clone();
    probe.logprobs = Some(true);
    probe.sampling.stream = Some(false);
    probe.sampling.stream_options = None;
    // Without a limit from the client the small answer gets one: a small model that runs on past it
    // is not a confident answer (it escalates), and the large model is not kept waiting for it.
    let unlimited = req.sampling.max_tokens.is_none() && req.sampling.max_completion_tokens.is_none();
    if unlimited {
        probe.sampling.max_tokens = Some(CASCADE_PROBE_MAX_TOKENS);
    }
    // The model that actually answered first (a fallback of the small one, when it failed) and its price.
    let mut first_served = (small_name.clone(), small.price());
    let first = match &small {
        ChatModel::Local(l) => match acct.claim(&small_name, l.price) {
            // The probe's limit is the gateway's, not the client's: it stops the answer, as no limit
            // would at the context, rather than refusing a prompt that leaves less room than that.
            Ok(()) if unlimited => {
                let mut own = probe.clone();
                own.sampling.max_tokens = None;
                local_full(&l.with_answer_cap(CASCADE_PROBE_MAX_TOKENS), &own, acct).await
            }
            Ok(()) => local_full(l, &probe, acct).await,
            Err(e) => Err(e),
        },
        ChatModel::Upstream(_) => call_full(st, &small_name, &probe, acct).await.map(|(served, a)| {
            let price = st.chat.get(&served).map_or(small.price(), |m| m.price());
            first_served = (served, price);
            a
        }),
    };
    let (confidence, small_answer) = match first {
        Ok(mut a) => {
            // Counted now: the large model's usage must not stand for the small one's.
            acct.settle_attempt();
            let conf =
                a.choices.first().and_then(|c| c.logprobs.as_ref()).and_then(|lp| lp.content.as_ref()).and_then(|c| {
                    let lps: Vec<f32> = c.iter().map(|t| t.logprob).collect();
                    plan.measure.confidence(&lps)
                });
            if !req.logprobs.unwrap_or(false) {
                for c in &mut a.choices {
                    c.logprobs = None;
                }
            }
            (conf.unwrap_or(0.0), Some(a))
        }
        Err(e) => {
            tracing::warn!("cascade: small model `{small_name}` failed: {}", e.message);
            (0.0, None)
        }
    };
    let ran_on = unlimited
        && small_answer.as_ref().and_then(|a| a.choices.first()).and_then(|c| c.finish_reason.as_deref())
            == Some("length");
    let keep = small_answer.is_some() && !ran_on && rightmodel_router::cascade_accept(confidence, plan.min_confidence);
    // Why the large model is asked: the small answer was unsure, or there was none.
    let escalation_reason = if small_answer.is_some() { "cascade_low_confidence" } else { "cascade_small_failed" };
    let small_cost = acct.cost();
    // The first attempt's tokens go with its cost: the row sums both calls, and `logs --summary` moves
    // this part to the small model as /metrics counts it.
    let (first_in, first_cached, first_out) = acct.tokens_with_cached();
    // The router's estimate for the small model; an escalation reports the large model's instead.
    let small_estimate = decision.get("cost_usd").cloned();
    let large_estimate = decision
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(large_name.as_str())))
        .and_then(|c| c.get("cost_usd").cloned());
    if let Some(obj) = decision.as_object_mut() {
        // `first` is the model that answered first (a fallback of the small model, when it failed): the
        // first attempt's cost and tokens are its own, and `logs --summary` moves them to it.
        obj.insert(
            "cascade".into(),
            json!({"first": first_served.0, "confidence": confidence, "min_confidence": plan.min_confidence,
                   "first_cost_usd": small_cost, "first_input_tokens": first_in,
                   "first_cached_tokens": first_cached, "first_output_tokens": first_out,
                   "escalated": !keep, "escalated_to": if keep { Value::Null } else { json!(large_name) }}),
        );
        if let Some(c) = obj.get_mut("cascade").and_then(Value::as_object_mut) {
            if ran_on {
                c.insert("first_hit_token_limit".into(), json!(CASCADE_PROBE_MAX_TOKENS));
            }
            if first_served.0 != small_name {
                c.insert("first_planned".into(), json!(small_name));
            }
        }
        // The header, the body and the log row give the same reason and estimate for who served.
        if keep {
            obj.insert("reason".into(), json!("cascade_confident"));
        } else {
            obj.insert("served".into(), json!(large_name));
            obj.insert("reason".into(), json!(escalation_reason));
            if let Some(c) = large_estimate {
                obj.insert("cost_usd".into(), c);
            }
        }
    }
    if keep {
        let served = first_served.0.clone();
        acct.correct_decision(&mut decision, &served);
        let mut a = small_answer.unwrap_or_else(|| unreachable_answer(&served));
        a.model = served.clone();
        a.rightmodel = Some(json!({"decision": decision}));
        acct.set_decision("cascade_confident", &decision);
        if stream {
            return Ok(Reply::Stream {
                served,
                decision: Some(decision),
                stream: replay(a),
                include_usage: include_usage(&req),
                accounted: true,
            });
        }
        return Ok(Reply::Full { served, decision: Some(decision), body: Box::new(a) });
    }
    acct.set_decision(escalation_reason, &decision);
    // The spending limits, checked for the small model at the start, are checked for the large one
    // now: concurrent requests may have spent the budget while the small model answered.
    let caller = acct.caller().clone();
    let large_price = st.chat_model(&large_name)?.price();
    let escalated = match st.check_limits(&caller, &large_name, large_price, acct.likely_cost(large_price)) {
        Err(e) => Err(e),
        Ok(()) if stream => open_stream(st, &large_name, &req, acct).await.map(|(served, s, accounted)| {
            // A fallback of the large model may have answered: the decision names it.
            let mut d = decision.clone();
            acct.correct_decision(&mut d, &served);
            Reply::Stream { served, decision: Some(d), stream: s, include_usage: include_usage(&req), accounted }
        }),
        Ok(()) => call_full(st, &large_name, &req, acct).await.map(|(served, mut body)| {
            let mut d = decision.clone();
            acct.correct_decision(&mut d, &served);
            body.rightmodel = Some(json!({"decision": d.clone()}));
            Reply::Full { served, decision: Some(d), body: Box::new(body) }
        }),
    };
    match (escalated, small_answer) {
        (Ok(reply), _) => Ok(reply),
        // The large model failed: the small answer, though unsure, beats an error.
        (Err(e), Some(mut a)) => {
            tracing::warn!("cascade: escalation to `{large_name}` failed ({}); returning the small answer", e.message);
            let (served, price) = first_served;
            if let Some(obj) = decision.as_object_mut() {
                obj.insert("served".into(), json!(served));
                obj.insert("reason".into(), json!("cascade_escalation_failed"));
                if let Some(c) = small_estimate {
                    obj.insert("cost_usd".into(), c);
                }
                obj.insert("escalation_error".into(), json!(short_message(&e.message)));
                // Every model that failed in this request (the escalation's chain, and the first answer's
                // model if a fallback gave that answer), not only the last one's error.
                if !acct.failures().is_empty() {
                    obj.insert("failed".into(), json!(acct.failures()));
                }
            }
            acct.restore_served(&served, price);
            acct.set_decision("cascade_escalation_failed", &decision);
            a.model = served.clone();
            a.rightmodel = Some(json!({"decision": decision}));
            if stream {
                Ok(Reply::Stream {
                    served: served.clone(),
                    decision: Some(decision),
                    stream: replay(a),
                    include_usage: include_usage(&req),
                    accounted: true,
                })
            } else {
                Ok(Reply::Full { served, decision: Some(decision), body: Box::new(a) })
            }
        }
        (Err(e), None) => Err(e),
    }
}

fn unreachable_answer(model: &str) -> ChatCompletionResponse {
    ChatCompletionResponse {
        id: String::new(),
        object: "chat.completion".into(),
        created: now_secs(),
        model: model.into(),
        choices: vec![],
        usage: None,
        system_fingerprint: None,
        rightmodel: None,
        extra: Default::default(),
    }
}

/// A finished answer replayed as a stream (a cascade's kept small answer, a document answer).
fn replay(a: ChatCompletionResponse) -> ChunkStream {
    let mk = |delta: ChatDelta, finish: Option<String>, usage: Option<Usage>| ChatCompletionChunk {
        id: a.id.clone(),
        object: "chat.completion.chunk".into(),
        created: a.created,
        model: a.model.clone(),
        choices: if usage.is_some() {
            vec![]
        } else {
            vec![ChunkChoice { index: 0, delta, finish_reason: finish, logprobs: None, extra: Default::default() }]
        },
        usage,
        rightmodel: None,
        extra: Default::default(),
    };
    let choice = a.choices.first();
    let text = choice.map(|c| c.message.text()).unwrap_or_default();
    let finish = choice.and_then(|c| c.finish_reason.clone()).unwrap_or_else(|| "stop".into());
    let calls: Vec<ToolCallDelta> = choice
        .and_then(|c| c.message.tool_calls.as_ref())
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| ToolCallDelta {
                    index: i as u32,
                    id: Some(c.id.clone()),
                    kind: Some(c.kind.clone()),
                    function: Some(FunctionCallDelta {
                        name: Some(c.function.name.clone()),
                        arguments: Some(c.function.arguments.clone()),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    // OpenAI sends `content: null` (not "") ahead of tool-call deltas.
    let role_content = calls.is_empty().then(String::new);
    let body = if calls.is_empty() {
        ChatDelta { content: Some(text), ..Default::default() }
    } else {
        ChatDelta { tool_calls: Some(calls), ..Default::default() }
    };
    let items = vec![
        Ok(mk(ChatDelta { role: Some("assistant".into()), content: role_content, ..Default::default() }, None, None)),
        // The answer's log-probabilities (a cascade asked for them) travel with its content.
        Ok({
            let mut c = mk(body, None, None);
            if let Some(ch) = c.choices.first_mut() {
                ch.logprobs = choice.and_then(|x| x.logprobs.clone());
            }
            c
        }),
        // The finishing chunk carries what the answer's `rightmodel` object said (decision, citations).
        Ok(ChatCompletionChunk { rightmodel: a.rightmodel.clone(), ..mk(ChatDelta::default(), Some(finish), None) }),
        // Usage was accounted for when the small model ran; this chunk only informs the client.
        Ok(mk(ChatDelta::default(), None, Some(a.usage.unwrap_or_default()))),
    ];
    Box::pin(futures::stream::iter(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_length_refusal_does_not_hide_an_outage() {
        let outage = ApiError::new(ErrorKind::BadGateway, "upstream down");
        let too_long = ApiError::invalid("messages", "too long").with_code("context_length_exceeded");
        assert_eq!(chain_error(Some(outage.clone()), too_long.clone()).kind, ErrorKind::BadGateway);
        assert_eq!(chain_error(None, too_long.clone()).code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(chain_error(Some(too_long), outage).kind, ErrorKind::BadGateway);
        assert!(falls_back(&ApiError::invalid("messages", "x").with_code("context_length_exceeded")));
        assert!(!falls_back(&ApiError::invalid("messages", "x")));
    }

    fn chunk(delta: ChatDelta) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: None,
                logprobs: None,
                extra: Default::default(),
            }],
            usage: None,
            rightmodel: None,
            extra: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_stream_breaking_before_text_is_an_error_and_openais_opening_chunk_is_held() {
        // OpenAI's opening chunk: role, empty content and `refusal: null`.
        let mut opening =
            ChatDelta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() };
        opening.extra.insert("refusal".into(), Value::Null);
        let broken: ChunkStream = Box::pin(futures::stream::iter(vec![
            Ok(chunk(opening.clone())),
            Err(ApiError::new(ErrorKind::BadGateway, "died")),
        ]));
        assert!(until_first_news(broken).await.is_err());
        let text = ChatDelta { content: Some("Hi".into()), ..Default::default() };
        let fine: ChunkStream = Box::pin(futures::stream::iter(vec![Ok(chunk(opening)), Ok(chunk(text))]));
        let all: Vec<_> = until_first_news(fine).await.expect("text arrived").collect().await;
        assert_eq!(all.len(), 2, "both chunks, in order");
    }
}
