//! The smaller endpoints: completions, embeddings, models, health and metrics.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use futures::{Stream, StreamExt};
use rightmodel_core::wire::{
    CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, EmbeddingData, EmbeddingInput,
    EmbeddingRequest, EmbeddingResponse, EmbeddingVector, ModelList, ModelObject, Usage,
};
use rightmodel_core::{ApiError, Embedder, ErrorKind};
use rightmodel_infer::llm::GenEvent;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::accounting::Accounting;
use crate::chat::{aborted_event, cost_header, decorate, now_secs, sse_response, unless_aborted};
use crate::http_error::{error_response, json_rejection, HttpError};
use crate::intake::{take_accounting, ParkedAccounting};
use crate::local::LocalChat;
use crate::state::{ChatModel, SharedState};

/// The error response of a request, its log row written; after a routing decision (or a fallback
/// chain that failed through) it carries the `x-rightmodel-*` headers, as chat errors do.
fn fail(mut acct: Accounting, e: ApiError) -> Response {
    let status = e.kind.status();
    acct.set_stream(false);
    let msg = e.message.clone();
    let id = acct.id().to_string();
    let mut resp = error_response(e, &id);
    crate::chat::decorate_error(&mut resp, &mut acct, &id);
    acct.finish(status, Some(msg));
    resp
}

/// Streams an upstream text completion (already opened): chunks re-labelled with the served model's
/// name, usage logged (and passed on only if the client asked), an SSE `error` event and a 502 row
/// when the upstream breaks off mid-stream.
fn upstream_completion_stream(
    mut acct: Accounting,
    chunks: impl Stream<Item = Result<CompletionResponse, ApiError>> + Send + 'static,
    name: String,
    include_usage: bool,
    decision: Option<&Value>,
) -> Response {
    let id = acct.id().to_string();
    let mut chunks = Box::pin(chunks);
    let served = name.clone();
    let mut aborting = acct.state().aborting.subscribe();
    let s = async_stream::stream! {
        let mut reported: Option<Usage> = None;
        // The stream's one usage chunk, sent last (see `crate::chat`'s `sse_body`), and the id and time
        // of its chunks for one made here.
        let mut usage_chunk: Option<CompletionResponse> = None;
        let mut meta: Option<(String, i64)> = None;
        loop {
            let Some(next) = unless_aborted(&mut aborting, chunks.next()).await else {
                yield Ok(aborted_event(acct));
                return;
            };
            let Some(item) = next else { break };
            match item {
                Ok(mut c) => {
                    c.model = name.clone();
                    if meta.is_none() {
                        meta = Some((c.id.clone(), c.created));
                    }
                    // Usage on text chunks, or repeated, is counted and taken off them: a client adding up
                    // usage per chunk must count it once.
                    if let Some(usage) = c.usage.take() {
                        acct.replace_usage(reported, usage);
                        // Usage with counts left out is not counted (the estimate bills the call).
                        if !usage.incomplete {
                            reported = Some(usage);
                        }
                        if c.choices.is_empty() {
                            if include_usage {
                                c.usage = Some(usage);
                                usage_chunk = Some(c);
                            }
                            continue;
                        }
                    }
                    if c.choices.iter().any(|ch| !ch.text.is_empty()) {
                        acct.mark_first_token();
                        acct.add_streamed(c.choices.iter().map(|ch| ch.text.len()).sum());
                    }
                    yield Ok::<_, std::convert::Infallible>(Event::default().data(serde_json::to_string(&c).unwrap_or_default()));
                }
                Err(e) => {
                    yield error_event(acct, e);
                    return;
                }
            }
        }
        let made = || {
            let (id, created) = meta.clone()?;
            // No usage the upstream reported in full: what the gateway counted, as chat streams say it
            // (a client that asked for usage gets its chunk).
            let usage = reported.unwrap_or_else(|| {
                let (input, output) = acct.tokens();
                Usage::new(input, output)
            });
            Some(CompletionResponse {
                id, object: "text_completion".into(), created, model: name.clone(), choices: vec![],
                usage: Some(usage), extra: Default::default(),
            })
        };
        if let Some(c) = usage_chunk.take().or_else(|| if include_usage { made() } else { None }) {
            yield Ok(Event::default().data(serde_json::to_string(&c).unwrap_or_default()));
        }
        // The row is written before the last event: a client that closes right after it must not
        // turn it into a 499.
        acct.finish(200, None);
        yield Ok(Event::default().data("[DONE]"));
    };
    let mut resp = sse_response(s);
    decorate(&mut resp, &served, decision, &id);
    resp
}

/// The SSE `error` event ending a stream, with the request's log row written first (a client that
/// closes right after the event must not turn the row into a 499).
fn error_event(acct: Accounting, e: ApiError) -> Result<Event, std::convert::Infallible> {
    let body = serde_json::to_string(&e.body()).unwrap_or_default();
    acct.finish(e.kind.status(), Some(e.message));
    Ok(Event::default().event("error").data(body))
}

/// Refuses the legacy completion fields the gateway cannot honour, but accepts the values that
/// change nothing (`best_of: 1`, an empty `logit_bias`, an empty `suffix`, or null), which older
/// clients (LangChain.js) send by default.
fn check_unsupported_fields(extra: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for key in ["suffix", "best_of", "logit_bias"] {
        let Some(v) = extra.get(key) else { continue };
        let no_op = match (key, v) {
            (_, Value::Null) => true,
            ("best_of", Value::Number(n)) => n.as_f64() == Some(1.0),
            ("logit_bias", Value::Object(o)) => o.is_empty(),
            ("suffix", Value::String(t)) => t.is_empty(),
            _ => false,
        };
        if !no_op {
            let only = match key {
                "best_of" => "only `best_of: 1` is accepted",
                "logit_bias" => "only an empty `logit_bias` is accepted",
                _ => "only an empty `suffix` is accepted",
            };
            return Err(ApiError::invalid(key, format!("`{key}` is not supported ({only})."))
                .with_code("unsupported_parameter"));
        }
    }
    Ok(())
}

/// Appends one generated token to completion log-probabilities; `offset` counts the characters of
/// the tokens so far (OpenAI's `text_offset` is in characters, not bytes).
fn push_token_logprobs(lp: &mut CompletionLogprobs, t: &rightmodel_infer::llm::TokenOut, offset: &mut usize) {
    let token = String::from_utf8_lossy(&t.piece).into_owned();
    lp.text_offset.push(*offset);
    // Characters of the text so far: its non-continuation bytes. A character split over several byte
    // tokens counts once, as in the text (decoding each piece alone would count each part).
    *offset += t.piece.iter().filter(|&&b| b & 0xC0 != 0x80).count();
    lp.tokens.push(token);
    lp.token_logprobs.push(t.logprob.unwrap_or(0.0));
    lp.top_logprobs.push(t.top.iter().map(|a| (a.text.clone(), a.logprob)).collect());
}

/// `POST /v1/completions` (legacy text completions), local or upstream, streaming or not.
pub async fn completions(
    State(st): State<SharedState>,
    parked: Option<Extension<ParkedAccounting>>,
    headers: HeaderMap,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let mut acct = take_accounting(parked, &st, "/v1/completions");
    if let Err(e) = st.refuse_if_shutting_down() {
        return fail(acct, e);
    }
    // The key is recorded before its rate may refuse it, so that a 429 row names its key.
    let caller = match st.auth.identify(&headers) {
        Ok(c) => c,
        Err(e) => return fail(acct, e),
    };
    acct.set_caller(caller.clone());
    if let Err(e) = caller.admit() {
        return fail(acct, e);
    }
    let mut req = match body.map_err(json_rejection) {
        Ok(Json(r)) => r,
        Err(e) => return fail(acct, e),
    };
    acct.set_requested(&req.model);
    if req.sampling.n.is_some_and(|n| !(1..=crate::chat::CHOICES_MAX).contains(&n)) {
        let max = crate::chat::CHOICES_MAX;
        return fail(acct, ApiError::invalid("n", format!("`n` must be between 1 and {max}.")));
    }
    if req.sampling.max_tokens == Some(0) || req.sampling.max_completion_tokens == Some(0) {
        return fail(acct, ApiError::invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    if req.echo == Some(true) {
        return fail(acct, ApiError::invalid("echo", "`echo` is not supported.").with_code("unsupported_parameter"));
    }
    if let Err(e) = check_unsupported_fields(&req.extra) {
        return fail(acct, e);
    }
    let routed = req.model == "auto";
    // `auto` chooses among the models the key may use; a named model must be on the key's list.
    if !routed {
        if let Err(e) = caller.check_model(&req.model) {
            return fail(acct, e);
        }
    }
    acct.set_prompt_estimate(req.prompt.estimated_tokens());
    acct.set_choices(req.sampling.n.unwrap_or(1));
    acct.set_output_limit(req.sampling.max_completion_tokens.or(req.sampling.max_tokens).map(u64::from));
    // The request's own caps (`rightmodel` object, `x-rightmodel-*` headers) hold for a named model
    // and its fallbacks; the configured defaults bind `auto`'s choice too, as for chat.
    let caps = if routed {
        st.router.overrides(req.rightmodel.as_ref(), &headers)
    } else {
        st.router.request_overrides(req.rightmodel.as_ref(), &headers)
    };
    match caps {
        Ok(caps) => {
            crate::routing::AutoRouter::carry_cache_prompt(&mut req.rightmodel, &caps);
            acct.set_caps(caps)
        }
        Err(e) => return fail(acct, e),
    }
    // `auto` chooses as for chat, among the language models; the decision goes to the headers and the
    // log, and the chosen model's fallback chain serves as a named model's does.
    let decision = if routed {
        match st.router.decide_completion(&st, &req, acct.caps().clone(), &caller).await {
            Ok(o) => {
                acct.set_decision(&o.reason, &o.decision);
                Some(o)
            }
            Err(e) => return fail(acct, e),
        }
    } else {
        None
    };
    let target = decision.as_ref().map_or_else(|| req.model.clone(), |o| o.served.clone());
    let decision = decision.map(|o| o.decision);
    let model = match st.chat.get(&target) {
        Some(m) => m.clone(),
        None => return fail(acct, st.not_served_here(&target, "/v1/completions")),
    };
    // The router weighed `auto`'s choice against the caps already.
    if !routed {
        if let Err(e) = acct.check_caps(&target, model.price()) {
            return fail(acct, e);
        }
    }
    if let Err(e) = st.check_limits(&caller, &target, model.price(), acct.likely_cost(model.price())) {
        return fail(acct, e);
    }
    let id = acct.id().to_string();
    let stream = req.sampling.stream.unwrap_or(false);
    acct.set_stream(stream);
    let chain = match crate::chat::chain(&st, &target, &acct) {
        Ok(c) => c,
        Err(e) => return fail(acct, e),
    };
    // The model's fallback chain, as for chat: a model that fails before anything reached the client
    // hands over to the next.
    let mut last = None;
    for (i, (name, model)) in chain.into_iter().enumerate() {
        // The limits are checked and this call's cost held in one step; a fallback takes over later,
        // so the request's caps are checked again for it.
        // Upstreams write up to `CHOICES_MAX` choices, local models what their engine holds at once.
        if let ChatModel::Local(l) = &model {
            let most = l.choices_max();
            if req.sampling.n.is_some_and(|n| n > most) {
                last.get_or_insert(crate::chat::choices_refusal(&name, most));
                continue;
            }
        }
        if let Err(e) = acct.claim_in_chain(&name, model.price(), i > 0) {
            last.get_or_insert(e);
            continue;
        }
        match model {
            ChatModel::Upstream(u) => {
                let body = serde_json::to_value(&req).unwrap_or(Value::Null);
                let r = if stream {
                    // Held until it says something, as chat streams are: one that breaks before then
                    // falls back instead of sending the client an error event.
                    let opened = match u.sse_stream::<CompletionResponse>("completions", body).await {
                        Ok(s) => {
                            crate::chat::hold_until(Box::pin(s), |c: &CompletionResponse| {
                                c.usage.is_some()
                                    || c.choices.iter().any(|ch| !ch.text.is_empty() || ch.finish_reason.is_some())
                            })
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok(s) => {
                            let include_usage = req.sampling.stream_options.as_ref().is_some_and(|o| o.include_usage);
                            let d = crate::chat::served_decision(&mut acct, decision, &target, &name);
                            return upstream_completion_stream(acct, s, name, include_usage, d.as_ref());
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    u.call_json("completions", body).await
                };
                match r {
                    Ok(v) => {
                        let d = crate::chat::served_decision(&mut acct, decision, &target, &name);
                        return upstream_completion(acct, v, &name, &u.config.name, &id, d.as_ref());
                    }
                    Err(e) if crate::chat::falls_back(&e) => {
                        last = Some(crate::chat::chain_error(last, crate::chat::handed_over(&mut acct, &name, e)))
                    }
                    Err(e) => return fail(acct, e),
                }
            }
            ChatModel::Local(l) => match open_local_choices(&l, &req, stream, &mut acct).await {
                Ok(LocalRuns::Streams(runs)) => {
                    let d = crate::chat::served_decision(&mut acct, decision, &target, &name);
                    return local_completion_stream(acct, runs, &req, name, &id, d.as_ref());
                }
                Ok(LocalRuns::Whole(answers)) => {
                    let d = crate::chat::served_decision(&mut acct, decision, &target, &name);
                    return local_completion(acct, answers, name, &id, d.as_ref());
                }
                Err(e) if crate::chat::falls_back(&e) => {
                    last = Some(crate::chat::chain_error(last, crate::chat::handed_over(&mut acct, &name, e)))
                }
                Err(e) => return fail(acct, e),
            },
        }
    }
    fail(acct, last.unwrap_or_else(|| ApiError::internal("empty fallback chain")))
}

/// A whole upstream text completion, re-labelled with the served model's name (`decision`: the routing
/// or fallback decision for the headers).
fn upstream_completion(
    mut acct: Accounting,
    mut v: Value,
    name: &str,
    upstream: &str,
    id: &str,
    decision: Option<&Value>,
) -> Response {
    match v.get("usage").and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok()) {
        Some(u) if !u.incomplete => acct.add_usage(u),
        // No usage (or none that can be read): the log estimates the cost from the answer's length.
        _ => acct.add_streamed(
            v.get("choices")
                .and_then(Value::as_array)
                .map_or(0, |cs| cs.iter().filter_map(|c| c.get("text").and_then(Value::as_str)).map(str::len).sum()),
        ),
    }
    let Some(obj) = v.as_object_mut() else {
        return fail(
            acct,
            ApiError::new(ErrorKind::BadGateway, format!("upstream `{upstream}` sent a non-object answer")),
        );
    };
    obj.insert("model".into(), Value::String(name.to_string()));
    let mut resp = Json(v).into_response();
    decorate(&mut resp, name, decision, id);
    cost_header(&mut resp, &mut acct);
    acct.finish(200, None);
    resp
}

/// A local completion taken as far as the point where something would reach the client.
enum LocalRun {
    /// A stream: the events up to its first visible token (or its end), then the rest.
    Stream { held: Vec<GenEvent>, events: UnboundedReceiver<GenEvent> },
    /// A whole answer.
    Whole(LocalAnswer),
}

/// The `n` choices of a local completion, opened (see [`LocalRun`]), in choice order.
enum LocalRuns {
    /// Streams, one per choice.
    Streams(Vec<ChoiceEvents>),
    /// Whole answers.
    Whole(Vec<LocalAnswer>),
}

/// One streamed choice's events as they come, or the error that stopped it before its first token.
type ChoiceEvents = futures::stream::BoxStream<'static, Result<GenEvent, ApiError>>;

/// A stream opened by [`open_local`]: its held events, then the rest.
fn held_events(held: Vec<GenEvent>, events: UnboundedReceiver<GenEvent>) -> ChoiceEvents {
    futures::stream::iter(held).chain(UnboundedReceiverStream::new(events)).map(Ok).boxed()
}

/// Opens the `n` choices of a local completion side by side (the engine batches them), each with its
/// own request: one choice, seeded with the client's seed plus its index, as chat choices are.
/// Streamed, the first choice is opened before the response starts (a failure then can still fall
/// back) and the others as it streams, so that its first token waits for none of them. Whole, the time
/// of the first token of any choice is the request's.
async fn open_local_choices(
    l: &LocalChat,
    req: &CompletionRequest,
    stream: bool,
    acct: &mut Accounting,
) -> Result<LocalRuns, ApiError> {
    let n = req.sampling.n.unwrap_or(1).max(1);
    let reqs: Vec<CompletionRequest> =
        (0..n).map(|i| CompletionRequest { sampling: req.sampling.for_choice(i), ..req.clone() }).collect();
    if stream {
        let mut streams = Vec::with_capacity(reqs.len());
        let mut reqs = reqs.into_iter();
        let first = reqs.next().ok_or_else(|| ApiError::internal("no choice was asked for"))?;
        streams.push(opened_stream(open_local(l, &first, true, &|_| {}).await?));
        for r in reqs {
            let l = l.clone();
            let later = async move {
                match open_local(&l, &r, true, &|_| {}).await {
                    Ok(run) => opened_stream(run),
                    Err(e) => futures::stream::iter([Err(e)]).boxed(),
                }
            };
            streams.push(futures::stream::once(later).flatten().boxed());
        }
        return Ok(LocalRuns::Streams(streams));
    }
    // The text generated so far is counted as it comes, so that a client that leaves before the answer
    // is complete still has its output estimated in the log (as for a stream).
    let tally = crate::accounting::TokenTally::new(acct);
    let on_token = |t: &str| tally.token(t);
    let runs = futures::future::try_join_all(reqs.iter().map(|r| open_local(l, r, false, &on_token))).await?;
    let whole = runs
        .into_iter()
        .map(|run| match run {
            LocalRun::Whole(answer) => Ok(answer),
            LocalRun::Stream { .. } => Err(ApiError::internal("a whole completion was opened as a stream")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LocalRuns::Whole(whole))
}

/// The events of a choice [`open_local`] opened for streaming.
fn opened_stream(run: LocalRun) -> ChoiceEvents {
    match run {
        LocalRun::Stream { held, events } => held_events(held, events),
        LocalRun::Whole(_) => futures::stream::iter([Err(ApiError::internal("a stream was opened whole"))]).boxed(),
    }
}

/// A local model's whole text completion.
struct LocalAnswer {
    text: String,
    logprobs: Option<CompletionLogprobs>,
    finished: rightmodel_infer::llm::Finished,
}

/// Starts a local completion and runs it up to its first visible token when streaming (or to its
/// end otherwise, calling `on_token` with each token's text). A failure before then has sent the
/// client nothing: it is returned, so that the fallback chain can go on (an engine that stopped, a
/// decode that failed).
async fn open_local(
    l: &LocalChat,
    req: &CompletionRequest,
    stream: bool,
    on_token: &(dyn Fn(&str) + Sync),
) -> Result<LocalRun, ApiError> {
    let mut events = l.start_completion(req).await?.events;
    let want_lp = req.logprobs.is_some();
    if stream {
        let mut held = Vec::new();
        while let Some(ev) = events.recv().await {
            let shows = match ev {
                GenEvent::Error(m) => return Err(crate::local::generation_error(m)),
                GenEvent::Token(ref t) => want_lp || !t.text.is_empty(),
                GenEvent::Done(_) => true,
                GenEvent::Started { .. } => false,
            };
            held.push(ev);
            if shows {
                return Ok(LocalRun::Stream { held, events });
            }
        }
        return Err(ApiError::new(ErrorKind::Unavailable, "The local model stopped."));
    }
    let mut text = String::new();
    let mut lp = CompletionLogprobs::default();
    let mut offset = 0usize;
    while let Some(ev) = events.recv().await {
        match ev {
            GenEvent::Token(t) => {
                on_token(&t.text);
                if want_lp {
                    push_token_logprobs(&mut lp, &t, &mut offset);
                }
                text.push_str(&t.text);
            }
            GenEvent::Done(f) => {
                text.push_str(&f.tail);
                return Ok(LocalRun::Whole(LocalAnswer { text, logprobs: want_lp.then_some(lp), finished: f }));
            }
            GenEvent::Error(m) => return Err(crate::local::generation_error(m)),
            GenEvent::Started { .. } => {}
        }
    }
    Err(ApiError::new(ErrorKind::Unavailable, "The local model stopped."))
}

/// Streams the choices of a local completion opened by [`open_local_choices`]: each choice's held
/// events, then the rest, merged as they come (each chunk names its choice's index); one usage for all
/// (the prompt once, every choice's tokens) once the last choice ends.
fn local_completion_stream(
    mut acct: Accounting,
    runs: Vec<ChoiceEvents>,
    req: &CompletionRequest,
    name: String,
    id: &str,
    decision: Option<&Value>,
) -> Response {
    let cid = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let include_usage = req.sampling.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let name2 = name.clone();
    let want_lp = req.logprobs.is_some();
    let mut aborting = acct.state().aborting.subscribe();
    let mut open = runs.len();
    let mut offsets = vec![0usize; runs.len()];
    let mut events =
        futures::stream::select_all(runs.into_iter().enumerate().map(|(i, s)| s.map(move |ev| (i as u32, ev))));
    let s = async_stream::stream! {
        let mk = |index: u32, text: String, finish: Option<String>, usage: Option<Usage>, logprobs: Option<CompletionLogprobs>| CompletionResponse {
            id: cid.clone(), object: "text_completion".into(), created, model: name2.clone(),
            choices: if usage.is_some() { vec![] } else { vec![CompletionChoice { text, index, logprobs, finish_reason: finish }] },
            usage,
            extra: Default::default(),
        };
        let mut usage: Option<Usage> = None;
        loop {
            let Some(next) = unless_aborted(&mut aborting, events.next()).await else {
                yield Ok(aborted_event(acct));
                return;
            };
            let Some((index, ev)) = next else { break };
            match ev {
                // With logprobs every token has its chunk (its text may be held back by a
                // stop sequence in progress and arrive in a later one).
                Ok(GenEvent::Token(t)) if want_lp || !t.text.is_empty() => {
                    acct.mark_first_token();
                    // The text sent so far estimates the answer of a stream cut before its usage.
                    acct.add_streamed(t.text.len());
                    let lp = want_lp.then(|| {
                        let mut lp = CompletionLogprobs::default();
                        push_token_logprobs(&mut lp, &t, &mut offsets[index as usize]);
                        lp
                    });
                    yield Ok::<_, std::convert::Infallible>(Event::default().data(serde_json::to_string(&mk(index, t.text, None, None, lp)).unwrap_or_default()));
                }
                Ok(GenEvent::Done(f)) => {
                    acct.add_streamed(f.tail.len());
                    let u = Usage::new(u64::from(f.prompt_tokens), u64::from(f.completion_tokens)).with_cached_tokens(u64::from(f.cached_tokens));
                    usage = Some(usage.map_or(u, |prev| crate::chat::several_choices_usage(prev, u)));
                    yield Ok(Event::default().data(serde_json::to_string(&mk(index, f.tail, Some(f.reason.as_str().into()), None, None)).unwrap_or_default()));
                    open -= 1;
                    if open > 0 {
                        continue;
                    }
                    let usage = usage.unwrap_or_default();
                    acct.add_usage(usage);
                    if include_usage {
                        yield Ok(Event::default().data(serde_json::to_string(&mk(0, String::new(), None, Some(usage), None)).unwrap_or_default()));
                    }
                    // Written before the last event: a client that closes right after it must not
                    // turn the row into a 499.
                    acct.finish(200, None);
                    yield Ok(Event::default().data("[DONE]"));
                    return;
                }
                Ok(GenEvent::Error(m)) => {
                    yield error_event(acct, crate::local::generation_error(m));
                    return;
                }
                // A later choice that could not be opened.
                Err(e) => {
                    yield error_event(acct, e);
                    return;
                }
                Ok(_) => {}
            }
        }
        yield error_event(acct, ApiError::new(ErrorKind::Unavailable, "The local model stopped."));
    };
    let mut resp = sse_response(s);
    decorate(&mut resp, &name, decision, id);
    resp
}

/// A local model's whole text completion, as OpenAI's response.
/// Several choices are billed as OpenAI bills them: the prompt once, every choice's tokens.
fn local_completion(
    mut acct: Accounting,
    answers: Vec<LocalAnswer>,
    name: String,
    id: &str,
    decision: Option<&Value>,
) -> Response {
    let mut usage: Option<Usage> = None;
    let mut choices = Vec::with_capacity(answers.len());
    for (i, answer) in answers.into_iter().enumerate() {
        let f = answer.finished;
        let u = Usage::new(u64::from(f.prompt_tokens), u64::from(f.completion_tokens))
            .with_cached_tokens(u64::from(f.cached_tokens));
        usage = Some(usage.map_or(u, |prev| crate::chat::several_choices_usage(prev, u)));
        choices.push(CompletionChoice {
            text: answer.text,
            index: i as u32,
            logprobs: answer.logprobs,
            finish_reason: Some(f.reason.as_str().into()),
        });
    }
    let usage = usage.unwrap_or_default();
    acct.add_usage(usage);
    let body = CompletionResponse {
        id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
        object: "text_completion".into(),
        created: now_secs(),
        model: name.clone(),
        choices,
        usage: Some(usage),
        extra: Default::default(),
    };
    let mut resp = Json(body).into_response();
    decorate(&mut resp, &name, decision, id);
    cost_header(&mut resp, &mut acct);
    acct.finish(200, None);
    resp
}

/// `POST /v1/embeddings`: the local encoder, on the blocking pool, with a concurrency cap (429 past it).
pub async fn embeddings(
    State(st): State<SharedState>,
    parked: Option<Extension<ParkedAccounting>>,
    headers: HeaderMap,
    body: Result<Json<EmbeddingRequest>, JsonRejection>,
) -> Response {
    let mut acct = take_accounting(parked, &st, "/v1/embeddings");
    if let Err(e) = st.refuse_if_shutting_down() {
        return fail(acct, e);
    }
    // The key is recorded before its rate may refuse it, so that a 429 row names its key.
    let caller = match st.auth.identify(&headers) {
        Ok(c) => c,
        Err(e) => return fail(acct, e),
    };
    acct.set_caller(caller.clone());
    if let Err(e) = caller.admit() {
        return fail(acct, e);
    }
    let req = match body.map_err(json_rejection) {
        Ok(Json(r)) => r,
        Err(e) => return fail(acct, e),
    };
    acct.set_requested(&req.model);
    // The `rightmodel` options and `x-rightmodel-*` headers are checked here too, as for chat: a
    // misspelt option must not pass unnoticed (none of them changes what an encoder does).
    if let Err(e) = st.router.request_overrides(req.extra.get("rightmodel"), &headers) {
        return fail(acct, e);
    }
    if let Err(e) = caller.check_model(&req.model) {
        return fail(acct, e);
    }
    let Some(em) = st.embed.as_ref().filter(|e| e.name == req.model) else {
        return fail(acct, st.not_served_here(&req.model, "/v1/embeddings"));
    };
    let texts: Vec<String> = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
        // Token ids as tiktoken makes them (LangChain's OpenAIEmbeddings sends them by default): embedded
        // as the text they encode (see `token_input`).
        EmbeddingInput::Tokens(ids) => {
            match tokio::task::spawn_blocking(move || crate::token_input::cl100k_texts(&ids)).await {
                Ok(Ok(texts)) => texts,
                Ok(Err(e)) => return fail(acct, e),
                Err(_) => return fail(acct, ApiError::internal("reading token ids failed")),
            }
        }
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return fail(
            acct,
            ApiError::invalid("input", "`input` must be a non-empty string or a list of non-empty strings."),
        );
    }
    if texts.len() > 2048 {
        return fail(acct, ApiError::invalid("input", "At most 2048 inputs per request."));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return fail(
                acct,
                ApiError::invalid(
                    "encoding_format",
                    format!("Unknown encoding_format `{other}`; use float or base64."),
                ),
            )
        }
    };
    if let Some(d) = req.dimensions {
        if d as usize != em.model.dim() {
            return fail(
                acct,
                ApiError::invalid("dimensions", format!("This model produces {} dimensions.", em.model.dim())),
            );
        }
    }
    acct.set_served(&em.name, Default::default());
    let permit = match st.embed_permit() {
        Ok(p) => p,
        Err(e) => return fail(acct, e),
    };
    // Concurrent requests share encoder calls (see `embed_batch`); the permits bound how many wait.
    // The permit goes with the job: a client that leaves frees its place only once the encoder
    // has stopped working for it.
    let result = em.batcher.submit(texts, Some(permit)).await;
    let (vectors, tokens) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return fail(acct, ApiError::internal(e)),
        Err(_) => return fail(acct, ApiError::internal("the embedding worker stopped")),
    };
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| EmbeddingData {
            object: "embedding".into(),
            index: i as u32,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(v)
            },
        })
        .collect();
    let usage = Usage::new(tokens as u64, 0);
    acct.add_usage(usage);
    let id = acct.id().to_string();
    let body = EmbeddingResponse { object: "list".into(), data, model: em.name.clone(), usage };
    let mut resp = Json(body).into_response();
    decorate(&mut resp, &em.name, None, &id);
    acct.finish(200, None);
    resp
}

/// `GET /v1/models`.
pub async fn models(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    // Listing models is not a request to a model: it takes nothing from the key's rate.
    let caller = match st.auth.identify(&headers) {
        Ok(c) => c,
        Err(e) => return HttpError(e).into_response(),
    };
    let data = visible_models(&st, &caller).await;
    Json(ModelList { object: "list".into(), data }).into_response()
}

/// `GET /v1/models/{model}`: one model as the list shows it, or 404 `model_not_found` (also for a model
/// the caller's key may not use, as OpenAI answers for models a key cannot see). Names may hold `/`.
pub async fn model(
    State(st): State<SharedState>,
    id: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(axum::extract::Path(id)) = id else {
        return HttpError(ApiError::invalid("model", "The model name in the path is not valid UTF-8 text."))
            .into_response();
    };
    let caller = match st.auth.identify(&headers) {
        Ok(c) => c,
        Err(e) => return HttpError(e).into_response(),
    };
    match visible_models(&st, &caller).await.into_iter().find(|m| m.id == id) {
        Some(m) => Json(m).into_response(),
        None => HttpError(ApiError::model_not_found(&id)).into_response(),
    }
}

/// The models `caller` may see: `auto` (when it has models to choose among), chat models, the encoder, routed classifiers and `docs:NAME`
/// collections (a key limited to some models sees only those, and `auto`, which chooses among them).
async fn visible_models(st: &SharedState, caller: &crate::auth::Caller) -> Vec<ModelObject> {
    let created = now_secs();
    let mut data: Vec<ModelObject> = Vec::new();
    let mut push = |id: &str, owner: &str| {
        if id == "auto" || caller.check_model(id).is_ok() {
            data.push(ModelObject { id: id.to_string(), object: "model".into(), created, owned_by: owner.into() });
        }
    };
    // Listed only when there is something to choose among (an encoder alone makes no `auto`).
    if st.router.is_available() {
        push("auto", "rightmodel");
    }
    for (name, m) in &st.chat {
        push(name, if matches!(m, ChatModel::Local(_)) { "rightmodel" } else { "upstream" });
    }
    if let Some(e) = &st.embed {
        push(&e.name, "rightmodel");
    }
    // Routed classifiers answer chat requests too (with a label).
    for c in st.config.classifiers.iter().filter(|c| c.route) {
        push(&c.name, "rightmodel");
    }
    // Document collections answer chat requests as `docs:NAME` (they need the encoder): the configured
    // ones whose folder holds a collection, and those `docs add` put in the home folder. Blocking I/O.
    if st.embed.is_some() {
        let state = st.clone();
        let names = tokio::task::spawn_blocking(move || served_collections(&state)).await.unwrap_or_default();
        for n in names {
            push(&format!("docs:{n}"), "rightmodel");
        }
    }
    data
}

/// Names of the collections a `docs:NAME` request would find: the configured ones that exist, then the
/// others in `$RIGHTMODEL_HOME/docs`, sorted.
fn served_collections(st: &crate::state::AppState) -> Vec<String> {
    use rightmodel_docs::{catalog, store};
    let configured: Vec<&str> = st.config.docs.iter().map(|d| d.name.as_str()).collect();
    let mut names: Vec<String> = configured
        .iter()
        .filter(|name| st.tasks.collection_dir(name).is_some_and(|d| store::exists(&d)))
        .map(|name| name.to_string())
        .collect();
    let Ok(entries) = std::fs::read_dir(catalog::collections_root()) else { return names };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| store::exists(&e.path()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        // A configured name is served from its configured folder only, even when that is missing.
        .filter(|n| catalog::validate_name(n).is_ok() && !configured.contains(&n.as_str()))
        .collect();
    found.sort();
    names.extend(found);
    names
}

/// `GET /healthz`: liveness. 200 whenever the process answers, while it drains at shutdown too (a
/// liveness probe that failed then would have the process killed mid-drain); the body says whether it is
/// shutting down. Whether it can serve is `GET /readyz`'s question ([`crate::readiness`]).
pub async fn healthz(State(st): State<SharedState>) -> Response {
    let stopping = st.shutting_down.load(std::sync::atomic::Ordering::Relaxed);
    let log = st.log.stats();
    let (pending, dropped) = (
        log.pending.load(std::sync::atomic::Ordering::Relaxed),
        log.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    Json(serde_json::json!({
        "status": if stopping { "shutting_down" } else { "ok" },
        "models": st.chat.keys().collect::<Vec<_>>(),
        "request_log": {"rows_pending": pending, "rows_dropped": dropped},
    }))
    .into_response()
}

/// `GET /metrics`: Prometheus text format (behind a key with `[server] metrics_require_key`).
pub async fn metrics(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    if st.config.server.metrics_require_key {
        if let Err(e) = st.auth.identify(&headers) {
            return HttpError(e).into_response();
        }
    }
    let log = st.log.stats();
    st.metrics.log_pending.set(log.pending.load(std::sync::atomic::Ordering::Relaxed) as i64);
    st.metrics.sync_log_dropped(log.dropped.load(std::sync::atomic::Ordering::Relaxed));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// A known endpoint called with the wrong HTTP method: OpenAI's error shape, not an empty 405.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    HttpError(
        ApiError::new(ErrorKind::MethodNotAllowed, format!("`{method}` is not supported on `{}`.", uri.path()))
            .with_code("method_not_allowed"),
    )
    .into_response()
}

/// An unknown endpoint: 404 in OpenAI's error shape.
pub async fn not_found() -> Response {
    HttpError(ApiError::new(ErrorKind::NotFound, "Unknown endpoint.").with_code("unknown_url")).into_response()
}
