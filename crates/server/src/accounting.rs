//! Per-request bookkeeping: exactly one log row, metrics and spend per request, whichever way it ends
//! (success, error, or a client that disconnects mid-stream — then the row is written on drop).

use std::time::Instant;

use rightmodel_core::wire::Usage;
use serde_json::Value;

use crate::auth::Caller;
use crate::reqlog::LogRow;
use crate::state::SharedState;

/// Bookkeeping of one request.
pub struct Accounting {
    state: SharedState,
    row: LogRow,
    start: Instant,
    caller: Caller,
    price: rightmodel_core::Price,
    done: bool,
    /// Whether the current call's usage is counted, reported or estimated (otherwise an abandoned
    /// request's cost is estimated).
    usage_seen: bool,
    /// Answer tokens assumed when holding the cost of a paid call (the request's `max_tokens`, else
    /// [`HELD_OUTPUT_TOKENS`]).
    hold_output: u64,
    /// Prompt tokens estimated from the request's text.
    prompt_estimate: u64,
    /// Characters of answer text passed on to the client so far.
    streamed_chars: u64,
    /// Models of a fallback chain that failed before one served: `{"model", "error"}`.
    failed: Vec<Value>,
    /// Dollars held against the gateway's and the key's limits while the request runs.
    held_usd: f64,
    /// Tokens (in, out) counted by estimate because the served model reported no usage (a paid model
    /// that answered without it, or any model cut before it reported).
    estimated: Option<(u64, u64)>,
    /// More than one model was tried (a cascade's escalation, a fallback): the request's timing is not
    /// one model's, so it does not feed the router's latency estimates.
    several_models: bool,
    /// Input tokens, output tokens and dollars already added to the per-model metrics under an earlier
    /// model of this request (a cascade's small answer), so each model's counters get its own share.
    metered: (u64, u64, f64),
    /// The request's own cost and latency caps, which every model that serves it must fit (fallbacks
    /// and escalations included).
    caps: rightmodel_router::Overrides,
    /// The request's `max_tokens` as its cost is sized ([`sized_output_tokens`]), for checking its caps
    /// as `auto` does.
    max_tokens: Option<u32>,
    /// Choices asked for (`n`): each is an answer, so holds and estimates count them all.
    choices: u64,
}

impl Accounting {
    /// Starts the clock for a request to `endpoint`.
    pub fn new(state: SharedState, endpoint: &str) -> Self {
        let row = LogRow {
            id: format!("req-{}", uuid::Uuid::new_v4().simple()),
            ts_ms: chrono::Utc::now().timestamp_millis(),
            endpoint: endpoint.to_string(),
            ..Default::default()
        };
        state.metrics.in_flight.inc();
        Accounting {
            state,
            row,
            start: Instant::now(),
            caller: Caller::default(),
            price: Default::default(),
            done: false,
            usage_seen: false,
            hold_output: HELD_OUTPUT_TOKENS,
            prompt_estimate: 0,
            streamed_chars: 0,
            failed: Vec::new(),
            held_usd: 0.0,
            estimated: None,
            several_models: false,
            metered: (0, 0, 0.0),
            caps: Default::default(),
            max_tokens: None,
            choices: 1,
        }
    }

    /// Starts the latency clock again, when the handler takes over a request whose accounting began on
    /// arrival (see [`crate::intake`]): its latency and time to first token are the gateway's and the
    /// model's, not the client's upload time (which would skew the live latency estimates routing uses).
    /// The row's arrival time stays.
    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
    }

    /// Records the request's options (see [`crate::routing::AutoRouter::overrides`]): their cost and
    /// latency caps bind every model that serves the request.
    pub fn set_caps(&mut self, caps: rightmodel_router::Overrides) {
        self.caps = caps;
    }

    /// The request's options, as [`Accounting::set_caps`] recorded them.
    pub fn caps(&self) -> &rightmodel_router::Overrides {
        &self.caps
    }

    /// 422 when a call to `name` at `price`, after what earlier calls of this request cost (a cascade's
    /// small answer, a billed failed attempt), would break the request's own cost or latency cap, or
    /// when the request asks for evidence (`explain: true`) that `name` does not return.
    pub fn check_caps(&self, name: &str, price: rightmodel_core::Price) -> Result<(), rightmodel_core::ApiError> {
        if self.caps.explain == Some(true) && !self.returns_evidence(name) {
            return Err(rightmodel_core::ApiError::new(
                rightmodel_core::ErrorKind::Unprocessable,
                format!(
                    "`{name}` returns no evidence for its answers, and the request asks for it (explain: true): \
                     use a classifier, a `docs:` collection or an upstream configured with `explainable = true`"
                ),
            )
            .with_param("rightmodel.explain")
            .with_code("no_explainable_model"));
        }
        let out = self.max_tokens;
        let choices = u32::try_from(self.choices).unwrap_or(u32::MAX);
        self.state.router.check_named(name, price, &self.caps, self.prompt_estimate, out, choices, self.row.cost_usd)
    }

    /// Whether model `name` returns evidence for its answers (what `explain: true` asks for): an upstream
    /// configured `explainable`; never a local language model; classifiers and collections always (they
    /// are not chat models).
    fn returns_evidence(&self, name: &str) -> bool {
        match self.state.chat.get(name) {
            Some(crate::state::ChatModel::Upstream(u)) => u.config.explainable,
            Some(crate::state::ChatModel::Local(_)) => false,
            None => true,
        }
    }

    /// The models of fallback chains that failed so far, `{"model", "error"}` each (for a decision that
    /// reports an escalation that failed through its whole chain).
    pub fn failures(&self) -> &[Value] {
        &self.failed
    }

    /// Records that `model` failed with `error` and the next of its fallback chain is tried.
    pub fn record_failure(&mut self, model: &str, error: &str) {
        self.failed.push(serde_json::json!({"model": model, "error": error}));
    }

    /// When a fallback served instead of the routed model, `decision` is corrected to say so: `served`
    /// becomes the model that answered, `fallback_from` the one chosen, and `failed` lists what went
    /// wrong; the log row gets the corrected decision.
    pub fn correct_decision(&mut self, decision: &mut Value, served: &str) {
        let Some(obj) = decision.as_object_mut() else { return };
        let chosen = obj.get("served").and_then(Value::as_str).unwrap_or_default().to_string();
        if chosen == served {
            return;
        }
        obj.insert("fallback_from".into(), Value::String(chosen));
        obj.insert("served".into(), Value::String(served.to_string()));
        obj.insert("failed".into(), Value::Array(self.failed.clone()));
        self.row.decision = Some(decision.to_string());
    }

    /// The routing decision of a request that failed after one was made (`auto`'s, a fallback's), for
    /// the error response's `x-rightmodel-*` headers: as the log row records it, with the models of the
    /// fallback chain that failed and why (`failed`), which the row then records too. A named model
    /// whose whole fallback chain failed gets one too (reason `fallback_failed`), so that the client and
    /// the log see every model tried. `None` when no decision was made (a named model that failed alone,
    /// or a failure before routing).
    pub fn failed_decision(&mut self) -> Option<Value> {
        if self.row.decision.is_none() && self.failed.len() >= 2 {
            // `served` is the chain's last model, as the log row and the per-model metrics count it.
            let d = serde_json::json!({
                "reason": "fallback_failed",
                "requested": self.row.requested_model,
                "served": self.row.served_model,
                "failed": self.failed,
            });
            self.row.reason = Some("fallback_failed".into());
            self.row.decision = Some(d.to_string());
            return Some(d);
        }
        let mut d: Value = serde_json::from_str(self.row.decision.as_deref()?).ok()?;
        if let (Some(obj), false) = (d.as_object_mut(), self.failed.is_empty()) {
            obj.entry("failed").or_insert_with(|| Value::Array(self.failed.clone()));
            self.row.decision = Some(d.to_string());
        }
        Some(d)
    }

    /// The request id (returned in `x-request-id`).
    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// The server's state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Who is calling (anonymous until [`Accounting::set_caller`]).
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Records who is calling: the key's name goes into the row, its spend is charged at the end.
    pub fn set_caller(&mut self, caller: Caller) {
        self.row.key_name = caller.name().map(str::to_string);
        self.caller = caller;
    }

    /// Records the requested model.
    pub fn set_requested(&mut self, model: &str) {
        let mut m = model.to_string();
        truncate_chars(&mut m, MODEL_MAX_CHARS);
        self.row.requested_model = m;
    }

    /// Sets this stream's usage to `new`, replacing what it reported before (`prev`): usage in a stream
    /// is cumulative, and some upstreams repeat it on every chunk.
    pub fn replace_usage(&mut self, prev: Option<Usage>, new: Usage) {
        if new.incomplete {
            return;
        }
        if let Some(p) = prev {
            self.row.input_tokens = self.row.input_tokens.saturating_sub(p.prompt_tokens);
            self.row.output_tokens = self.row.output_tokens.saturating_sub(p.completion_tokens);
            self.row.cached_tokens = self.row.cached_tokens.saturating_sub(p.cached_prompt_tokens());
            self.row.cost_usd -= self.price.cost_of(&p);
        }
        self.add_usage(new);
    }

    /// Records the routing decision.
    pub fn set_decision(&mut self, reason: &str, decision: &Value) {
        self.row.reason = Some(reason.to_string());
        self.row.decision = Some(decision.to_string());
    }

    /// The answer's token limit, for the cost held while a paid call runs (`None`: a typical answer).
    pub fn set_output_limit(&mut self, max_tokens: Option<u64>) {
        // Capped: a client that always sends a huge max_tokens must not hold a whole day's budget (and
        // so block every other paid request) for an answer that will be far shorter.
        let sized = sized_output_tokens(max_tokens.map(|t| u32::try_from(t).unwrap_or(u32::MAX)));
        self.hold_output = sized.map_or(HELD_OUTPUT_TOKENS, u64::from);
        self.max_tokens = sized;
    }

    /// Records how many choices (`n`) the request asks for.
    pub fn set_choices(&mut self, n: u32) {
        self.choices = u64::from(n.max(1));
    }

    /// Records the free model (a local or task model at no price) that serves the next call; paid calls
    /// go through [`Accounting::claim`], which may refuse them.
    pub fn set_served(&mut self, model: &str, price: rightmodel_core::Price) {
        self.begin_call(model, price);
        // What earlier calls of this request cost (a cascade's small answer) stays held until the end.
        self.hold(self.likely_cost(price) + self.row.cost_usd);
    }

    /// Records the model that serves the next call once the spending limits allow it: this call's
    /// likely cost (prompt estimate and the answer's token limit), with what earlier calls of this
    /// request cost (a cascade's small answer, spent only when the request ends), replaces what the
    /// request holds against the gateway's budget and the key's limit, checked and held in one step, so
    /// concurrent requests cannot all pass a nearly spent limit. A refusal changes nothing.
    pub fn claim(&mut self, model: &str, price: rightmodel_core::Price) -> Result<(), rightmodel_core::ApiError> {
        self.hold_for(model, price)?;
        self.begin_call(model, price);
        Ok(())
    }

    /// The hold of [`Accounting::claim`] without starting the call: taken as soon as `auto` has chosen
    /// `model`, so that the claim when the call starts finds it held (a request that loses the budget to
    /// a concurrent one learns it here, where `auto` can still choose a free model).
    pub fn hold_for(&mut self, model: &str, price: rightmodel_core::Price) -> Result<(), rightmodel_core::ApiError> {
        let cost = self.likely_cost(price);
        let new = cost + self.row.cost_usd;
        self.state.swap_hold(&self.caller, model, price, cost, self.held_usd, new)?;
        self.held_usd = new;
        Ok(())
    }

    /// [`Accounting::claim`] for a model of a fallback chain, which takes over from one that failed
    /// (`fallback`: the request's own caps are checked again too, since time has passed). A refusal is
    /// recorded as that model's failure.
    pub fn claim_in_chain(
        &mut self,
        name: &str,
        price: rightmodel_core::Price,
        fallback: bool,
    ) -> Result<(), rightmodel_core::ApiError> {
        // A fallback: what this request already spent (a cascade's small answer) stays held; the failed
        // call's estimate does not. The first model's claim replaces what is held (what
        // [`Accounting::hold_for`] took for it, an earlier attempt's estimate) in one step.
        let claimed = if fallback {
            self.hold(self.row.cost_usd);
            self.check_caps(name, price)
        } else {
            Ok(())
        }
        .and_then(|()| self.claim(name, price));
        if let Err(e) = &claimed {
            self.record_failure(name, &e.message);
        }
        claimed
    }

    /// Starts the bookkeeping of a call to `model` at `price`. Each call is billed on its own: usage or
    /// text of an earlier call (a cascade's first attempt, the same model asked again down a fallback
    /// chain) says nothing about this one.
    fn begin_call(&mut self, model: &str, price: rightmodel_core::Price) {
        self.usage_seen = false;
        self.streamed_chars = 0;
        if self.row.served_model != model && !self.row.served_model.is_empty() {
            // The first token the client sees comes from this model (a cascade's small answer was
            // held back), and the timing mixes models.
            self.several_models = true;
            self.row.ttft_ms = None;
        }
        self.row.served_model = model.to_string();
        self.price = price;
    }

    /// A cascade whose escalation failed answers with its small model's answer after all: that model
    /// is the served one again, its call already billed (its cost stays held until the end).
    pub fn restore_served(&mut self, model: &str, price: rightmodel_core::Price) {
        self.row.served_model = model.to_string();
        self.price = price;
        self.usage_seen = true;
        self.streamed_chars = 0;
        self.hold(self.row.cost_usd);
    }

    /// What a call at `price` likely costs: the prompt estimate and the answer's token limit (what
    /// [`Accounting::set_served`] holds while it runs).
    pub fn likely_cost(&self, price: rightmodel_core::Price) -> f64 {
        price.cost(self.prompt_estimate, self.hold_output.saturating_mul(self.choices))
    }

    /// Replaces what this request holds against the limits with `usd`.
    fn hold(&mut self, usd: f64) {
        self.release_hold();
        if usd > 0.0 {
            self.state.spend.reserve(usd);
            self.caller.reserve(usd);
            self.held_usd = usd;
        }
    }

    fn release_hold(&mut self) {
        if self.held_usd > 0.0 {
            self.state.spend.release(self.held_usd);
            self.caller.release(self.held_usd);
            self.held_usd = 0.0;
        }
    }

    /// Records an estimate of the prompt's tokens, charged if the client leaves before the served model
    /// reports usage (an upstream bills the call all the same).
    pub fn set_prompt_estimate(&mut self, tokens: u64) {
        self.prompt_estimate = tokens;
    }

    /// Counts one generated token's text as it arrives (its time if it is the first, its text toward
    /// the output estimate), so that a client that leaves before a whole answer still has the work
    /// done logged.
    pub fn count_token(&mut self, text: &str) {
        self.mark_first_token();
        self.add_streamed(text.len());
    }

    /// Counts answer text passed on to the client (the output estimate of an abandoned stream).
    pub fn add_streamed(&mut self, chars: usize) {
        self.streamed_chars += chars as u64;
    }

    /// Marks the response as streamed.
    pub fn set_stream(&mut self, stream: bool) {
        self.row.stream = stream;
    }

    /// Records the time to the first token. The per-model histogram only counts requests one model
    /// served alone: after a cascade's small attempt or a failed fallback, the time includes another
    /// model's work and would make this one look slow.
    pub fn mark_first_token(&mut self) {
        self.mark_first_token_at(Instant::now());
    }

    /// [`Accounting::mark_first_token`] for a token that arrived at `at` (the first of several choices
    /// generated side by side, known once they all ended).
    pub fn mark_first_token_at(&mut self, at: Instant) {
        if self.row.ttft_ms.is_none() {
            let t = at.saturating_duration_since(self.start);
            self.row.ttft_ms = Some(t.as_secs_f64() * 1e3);
            if !self.several_models {
                self.state.metrics.ttft.with_label_values(&[&self.row.served_model]).observe(t.as_secs_f64());
            }
        }
    }

    /// Adds usage (and its cost at the served model's price); extra cost (e.g. a cascade's first
    /// attempt) can be added with [`Accounting::add_cost`].
    pub fn add_usage(&mut self, usage: Usage) {
        // Counts the upstream left out: the call is billed the estimate from its text instead of a
        // free answer.
        if usage.incomplete {
            return;
        }
        self.mark_settled();
        self.row.input_tokens += usage.prompt_tokens;
        self.row.output_tokens += usage.completion_tokens;
        self.row.cached_tokens += usage.cached_prompt_tokens();
        self.row.cost_usd += self.price.cost_of(&usage);
    }

    /// Adds a cost incurred outside the served model.
    pub fn add_cost(&mut self, usd: f64, input: u64, output: u64) {
        self.row.cost_usd += usd;
        self.row.input_tokens += input;
        self.row.output_tokens += output;
    }

    /// Tokens (in, out) billed so far, reported or estimated.
    pub fn tokens(&self) -> (u64, u64) {
        (self.row.input_tokens, self.row.output_tokens)
    }

    /// Dollars so far.
    pub fn cost(&self) -> f64 {
        self.row.cost_usd
    }

    /// Tokens counted so far, with the cached ones: prompt, of them cached, and completion (after a cascade's first attempt,
    /// that attempt's, which the decision records so that `logs --summary` can count them for the small
    /// model).
    pub fn tokens_with_cached(&self) -> (u64, u64, u64) {
        (self.row.input_tokens, self.row.cached_tokens, self.row.output_tokens)
    }

    /// What a request that got its answer is billed: the reported usage at its prices, or, when the
    /// served paid model reported none, an estimate (4 characters per token of prompt and answer).
    /// Charging the estimate here rather than in the log write lets a response header carry the same
    /// number the log bills; it is charged once.
    pub fn settle(&mut self) -> f64 {
        self.charge_estimate();
        self.row.cost_usd
    }

    /// The served model answered and another one is asked next (a cascade escalating): its cost is
    /// counted now, estimated when it reported no usage, so that the next model's usage does not
    /// stand for it and its text does not count as the next model's.
    pub fn settle_attempt(&mut self) {
        self.charge_estimate();
        self.mark_settled();
        self.meter();
    }

    /// Adds the tokens and dollars not yet in the per-model metrics to the served model's counters.
    fn meter(&mut self) {
        let model = if self.row.served_model.is_empty() { "none" } else { self.row.served_model.as_str() };
        let m = &self.state.metrics;
        let (input, output, cost) = self.metered;
        m.tokens.with_label_values(&[model, "input"]).inc_by(self.row.input_tokens.saturating_sub(input));
        m.tokens.with_label_values(&[model, "output"]).inc_by(self.row.output_tokens.saturating_sub(output));
        let cost = self.row.cost_usd - cost;
        if cost > 0.0 {
            m.cost.with_label_values(&[model]).inc_by(cost);
        }
        self.metered = (self.row.input_tokens, self.row.output_tokens, self.row.cost_usd);
    }

    fn mark_settled(&mut self) {
        self.usage_seen = true;
    }

    /// Charges the served model's no-usage estimate (see [`Accounting::settle`]) unless its usage is
    /// counted already.
    fn charge_estimate(&mut self) {
        self.estimate_usage(false);
    }

    /// Counts the served model's estimated tokens and dollars when it reported no usage. A free model
    /// counts only with `free_too` (a request cut before a local model reported usage: no one is billed,
    /// but the log and the token metrics should show the work it did); a free model that answered
    /// without usage (a task model) is left at the counts it gave.
    fn estimate_usage(&mut self, free_too: bool) {
        if self.usage_seen || self.row.served_model.is_empty() {
            return;
        }
        let (input, output) = (self.prompt_estimate, self.streamed_chars.div_ceil(4));
        let usd = self.price.cost(input, output);
        if usd > 0.0 || (free_too && input + output > 0) {
            self.add_cost(usd, input, output);
            let (i, o) = self.estimated.unwrap_or_default();
            self.estimated = Some((i + input, o + output));
            self.mark_settled();
        }
    }

    /// Ends the request with `status` (and an error message for failures).
    pub fn finish(mut self, status: u16, error: Option<String>) {
        self.write(status, error);
    }

    fn write(&mut self, status: u16, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        self.release_hold();
        let mut error = error;
        // A paid model that reported no usage (the client left first, the upstream broke off mid-stream,
        // or it never sends usage) still bills the call: charge an estimate (4 characters per token)
        // rather than nothing, so budgets and key limits see it.
        let aborted = *self.state.aborting.borrow();
        let billed = (200..300).contains(&status) || status == 499 || aborted || self.streamed_chars > 0;
        if billed {
            self.estimate_usage(!(200..300).contains(&status));
        }
        if let Some((input, output)) = self.estimated {
            let what = error.take().unwrap_or_else(|| "no usage reported".into());
            error = Some(format!("{what}; usage estimated: ~{input} in, ~{output} out"));
        }
        // Bounded: the message may quote client input.
        if let Some(e) = error.as_mut() {
            truncate_chars(e, ERROR_MAX_CHARS);
        }
        let latency = self.start.elapsed();
        self.row.latency_ms = latency.as_secs_f64() * 1e3;
        self.row.status = status;
        self.row.error = error;
        self.meter();
        let m = &self.state.metrics;
        let model = if self.row.served_model.is_empty() { "none" } else { self.row.served_model.as_str() };
        let outcome = match status {
            200..=299 => "ok",
            499 => "cancelled",
            // Limits and a full queue: load to watch, not a client's mistake.
            429 => "rate_limited",
            400..=498 => "client_error",
            _ => "server_error",
        };
        m.requests.with_label_values(&[&self.row.endpoint, model, outcome]).inc();
        m.latency.with_label_values(&[&self.row.endpoint, model]).observe(latency.as_secs_f64());
        if self.row.cost_usd > 0.0 {
            self.state.spend.add(self.row.cost_usd);
            self.caller.add_spend(self.row.cost_usd);
        }
        if let Some(r) = &self.row.reason {
            m.decisions.with_label_values(&[model, r]).inc();
        }
        if (200..300).contains(&status)
            && !self.row.served_model.is_empty()
            && !self.several_models
            // Several choices written side by side: the tokens are many answers' in one answer's time.
            && self.choices == 1
            && self.row.endpoint.ends_with("completions")
        {
            self.state.router.observe(
                &self.row.served_model,
                self.row.ttft_ms,
                self.row.latency_ms,
                self.row.output_tokens,
            );
        }
        m.in_flight.dec();
        self.state.log.record(std::mem::take(&mut self.row));
    }
}

/// [`Accounting::count_token`] for several generations polled side by side in one task (the `n`
/// choices of a local answer), each counting through a shared reference. The mutex is never contended.
pub struct TokenTally<'a>(std::sync::Mutex<&'a mut Accounting>);

impl<'a> TokenTally<'a> {
    /// A tally that counts into `acct` (which is free again once the tally is last used).
    pub fn new(acct: &'a mut Accounting) -> Self {
        TokenTally(std::sync::Mutex::new(acct))
    }

    /// Counts one token's text.
    pub fn token(&self, text: &str) {
        if let Ok(mut a) = self.0.lock() {
            a.count_token(text);
        }
    }
}

impl Drop for Accounting {
    /// A request dropped before it finished was abandoned by its client (499, as nginx logs it), or cut
    /// by the end of the shutdown grace period (503).
    fn drop(&mut self) {
        if *self.state.aborting.borrow() {
            self.write(503, Some("the server shut down before the request finished".into()));
            return;
        }
        self.write(499, Some("client closed the connection".into()));
    }
}

/// Prompt tokens of a chat request estimated from its text ([`rightmodel_core::tokens::text_tokens`]), for
/// holds, estimates and routing before a model has counted them: the messages with what the chat format
/// adds around each, the tool calls in them and the tool definitions, which a model reads too (a tool's
/// JSON schema often outweighs the question). Parts that are not text (images, audio, files passed on
/// to an upstream) count [`NON_TEXT_PART_TOKENS`] each, or [`LOW_DETAIL_IMAGE_TOKENS`] for an image sent
/// with `detail: "low"`.
pub fn estimate_prompt_tokens(req: &rightmodel_core::wire::ChatCompletionRequest) -> u64 {
    use rightmodel_core::tokens::{text_tokens, PER_MESSAGE_TOKENS, REPLY_PRIMING_TOKENS};
    let messages: u64 = req
        .messages
        .iter()
        .map(|m| {
            let calls = m.tool_calls.as_deref().unwrap_or_default();
            PER_MESSAGE_TOKENS
                + text_tokens(&m.text())
                + calls.iter().map(|c| text_tokens(&c.function.name) + text_tokens(&c.function.arguments)).sum::<u64>()
                + non_text_tokens(m)
        })
        .sum();
    // A schema's JSON punctuation merges into few tokens: about three bytes a token.
    let tools = req.tools.as_ref().map_or(0, |t| serde_json::to_string(t).map_or(0, |s| s.len() as u64).div_ceil(3));
    messages + tools + REPLY_PRIMING_TOKENS
}

/// Tokens assumed for a part that is not text: OpenAI's count for a 1024 x 1024 image at high detail,
/// the size vision models scale most photos to.
pub const NON_TEXT_PART_TOKENS: u64 = 765;
/// Tokens of an image sent with `detail: "low"` (a fixed count at OpenAI).
pub const LOW_DETAIL_IMAGE_TOKENS: u64 = 85;

fn non_text_tokens(m: &rightmodel_core::wire::ChatMessage) -> u64 {
    let Some(rightmodel_core::wire::MessageContent::Parts(parts)) = &m.content else { return 0 };
    parts
        .iter()
        .filter(|p| p.kind != "text")
        .map(|p| {
            let detail = p.extra.get("image_url").and_then(|i| i.get("detail")).and_then(|d| d.as_str());
            if detail == Some("low") {
                LOW_DETAIL_IMAGE_TOKENS
            } else {
                NON_TEXT_PART_TOKENS
            }
        })
        .sum()
}

/// Characters of tool calls as a model writes them (names and arguments), for estimates.
pub fn tool_calls_len(calls: &[rightmodel_core::wire::ToolCall]) -> usize {
    calls.iter().map(|c| c.function.name.len() + c.function.arguments.len()).sum()
}

/// What a chat request's call at `price` likely costs, as admission holds it ([`Accounting::likely_cost`]
/// for a chat request): the prompt estimate and the answer's token limit (sized as
/// [`sized_output_tokens`] sizes it, a typical answer without one), times `n`. Lets a refusal quote the
/// cost a named model's refusal would quote.
pub fn likely_cost_of(req: &rightmodel_core::wire::ChatCompletionRequest, price: rightmodel_core::Price) -> f64 {
    let max_tokens = req.sampling.max_completion_tokens.or(req.sampling.max_tokens);
    let out = sized_output_tokens(max_tokens).map_or(HELD_OUTPUT_TOKENS, u64::from);
    let choices = u64::from(crate::chat::choices_asked(req));
    price.cost(estimate_prompt_tokens(req), out.saturating_mul(choices))
}

/// Answer tokens assumed when holding a running request's cost against the limits.
const HELD_OUTPUT_TOKENS: u64 = 256;
/// Most answer tokens a request's cost is sized on, whatever its max_tokens (see
/// [`sized_output_tokens`]).
pub const HELD_OUTPUT_MAX: u32 = 4096;

/// The answer tokens a request's likely cost is sized on, given its `max_tokens` (`None`: not set, a
/// typical answer is assumed by whoever estimates). Every estimate of a request uses it: the hold
/// admission takes, `auto`'s routing (budget and `max_cost_usd` exclusions, the decision's estimates and
/// the savings `logs --summary` reports from them) and the `max_cost_usd` check of a named model. One
/// cap for all, so that they agree: a client that sends a huge max_tokens (2^32 - 1 as "no limit") must
/// not be refused by one estimate while another admits it, nor make `auto` skip a model for a cost no
/// answer will reach.
pub fn sized_output_tokens(max_tokens: Option<u32>) -> Option<u32> {
    max_tokens.map(|t| t.min(HELD_OUTPUT_MAX))
}

/// Longest requested model name kept in a log row (the request may carry any string there).
const MODEL_MAX_CHARS: usize = 256;
/// Longest error message kept in a log row.
const ERROR_MAX_CHARS: usize = 2048;

/// Cuts `s` to at most `max` characters, marking the cut.
fn truncate_chars(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rightmodel_core::wire::ChatCompletionRequest;

    #[test]
    fn every_message_counts_even_empty_and_dense_text_counts_in_full() {
        let req = |messages: serde_json::Value| -> ChatCompletionRequest {
            serde_json::from_value(serde_json::json!({"model": "m", "messages": messages})).unwrap()
        };
        // 299 empty messages: the chat format alone is about 1,500 tokens (bytes / 4 said 0).
        let empty: Vec<_> = (0..299).map(|_| serde_json::json!({"role": "user", "content": ""})).collect();
        assert!(estimate_prompt_tokens(&req(serde_json::json!(empty))) >= 299 * 5);
        // 600 bytes of digits and spaces are about 600 tokens for Gemma (bytes / 4 said 150).
        let digits = req(serde_json::json!([{"role": "user", "content": "7 ".repeat(300)}]));
        assert!(estimate_prompt_tokens(&digits) >= 600);
    }

    #[test]
    fn every_estimate_sizes_the_answer_with_the_cap_admission_holds() {
        assert_eq!(sized_output_tokens(None), None);
        assert_eq!(sized_output_tokens(Some(16)), Some(16));
        assert_eq!(sized_output_tokens(Some(2_000_000)), Some(HELD_OUTPUT_MAX));
        assert_eq!(sized_output_tokens(Some(u32::MAX)), Some(HELD_OUTPUT_MAX));
    }

    #[test]
    fn images_count_towards_the_prompt_estimate() {
        let req = |content: serde_json::Value| -> ChatCompletionRequest {
            serde_json::from_value(
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": content}]}),
            )
            .unwrap()
        };
        let text = estimate_prompt_tokens(&req(serde_json::json!("What is this?")));
        // Four tokens of text, the message's format and the answer's opening.
        assert_eq!(text, 4 + 5 + 3);
        let image = |detail: &str| {
            serde_json::json!([{"type": "text", "text": "What is this?"},
                               {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": detail}}])
        };
        assert_eq!(estimate_prompt_tokens(&req(image("high"))), text + NON_TEXT_PART_TOKENS);
        assert_eq!(estimate_prompt_tokens(&req(image("low"))), text + LOW_DETAIL_IMAGE_TOKENS);
    }
}
