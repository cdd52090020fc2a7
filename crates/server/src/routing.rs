//! Serving `model: "auto"`: builds the router's candidates from the configured chat models, turns a
//! chat request (body options and `x-rightmodel-*` headers) into a routing request, and runs the
//! decision off the async threads (scoring embeds the conversation).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use rightmodel_core::wire::{ChatCompletionRequest, ChatMessage, CompletionRequest, PromptInput};
use rightmodel_core::{ApiError, ErrorKind};
use rightmodel_router::{
    BudgetState, Candidate, CascadePlan, Conversation, DifficultyScorer, Overrides, RouteRequest, Router, RouterConfig,
    RouterWeights, Scorer, Strategy,
};
use serde_json::{Map, Value};

use crate::config::{Config, Strategy as ConfigStrategy};
use crate::state::{AppState, ChatModel, EmbedModel};

/// What the gateway does with an `auto` request.
#[derive(Debug, Clone)]
pub struct RouteOutcome {
    /// The model to call first.
    pub served: String,
    /// Reason code (`below_threshold`, `constrained`, `cascade`, ...).
    pub reason: String,
    /// Cascade plan: answer with `small`, escalate to `large` below the confidence threshold.
    pub cascade: Option<CascadePlan>,
    /// The full decision, for the `x-rightmodel-decision` header and the log.
    pub decision: Value,
}

/// The router as the gateway holds it.
pub struct AutoRouter {
    router: Option<Arc<Router>>,
    default_overrides: Map<String, Value>,
}

/// Latency priors before any call was observed: local small models answer fast, upstreams slower.
const LOCAL_PRIOR: (f64, f64) = (150.0, 30.0);
const UPSTREAM_PRIOR: (f64, f64) = (800.0, 20.0);

/// `$RIGHTMODEL_HOME/router` when `rightmodel router train` or `calibrate` wrote weights there (the
/// CLI's default too).
fn home_router_dir() -> Option<std::path::PathBuf> {
    let d = rightmodel_models::home::rightmodel_home().join("router");
    d.join(rightmodel_router::scorer::WEIGHTS_FILE).is_file().then_some(d)
}

/// Characters of the last user turn a routed classifier reads: the encoder reads 256 tokens, and
/// tokenising a whole megabyte on the shared encoder thread took 0.6 s per request.
pub const CLASSIFIER_READ_CHARS: usize = 2000;

/// The start of `text` a classifier reads (see [`CLASSIFIER_READ_CHARS`]), surrounding space trimmed
/// first so that leading blanks cannot leave nothing to read.
pub fn classifier_input(text: &str) -> &str {
    let text = text.trim();
    match text.char_indices().nth(CLASSIFIER_READ_CHARS) {
        Some((i, _)) => text[..i].trim_end(),
        None => text,
    }
}

/// Longest wait of a routed classifier's domain check for the encoder; past it the classifier sits
/// the request out.
pub const CLASSIFIER_PERMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A classifier as an `auto` candidate: free, quick, explainable, and only for requests whose last user
/// turn resembles its training data (`in_domain >= min_in_domain`) and that it classifies with at least
/// `min_confidence` (the router compares the confidence this fit returns).
fn classifier_candidate(
    entry: &crate::config::ClassifierEntry,
    tasks: Arc<crate::tasks_api::TaskModels>,
    embedder: Arc<crate::embed_batch::EmbedBatcher>,
    permits: Arc<tokio::sync::Semaphore>,
) -> Candidate {
    let mut c = Candidate::new(&entry.name, rightmodel_core::ModelKind::Classifier, Default::default(), 0.0, 10.0, 0.0);
    c.explainable = true;
    // It answers with a label: no tool calls, JSON schemas or token log-probabilities.
    c.capabilities.tools = false;
    c.capabilities.json_schema = false;
    c.capabilities.logprobs = false;
    let (owned, min_in_domain) = (entry.name.clone(), entry.min_in_domain);
    let last_warning = std::sync::Mutex::new(None::<std::time::Instant>);
    // Runs inside `Router::decide`, which the gateway calls on a blocking thread of the runtime. It
    // shares the encoder's capacity with the other encoder work and waits its turn like them (a busy
    // encoder must not read as "out of domain", which would send the request elsewhere or fail it);
    // only after a long wait does the classifier sit the request out.
    let fit = move |text: &str| -> Option<f32> {
        let text = classifier_input(text);
        if text.is_empty() {
            return None;
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let _permit = handle.block_on(crate::state::permit_within(&permits, CLASSIFIER_PERMIT_WAIT))?;
        let result = tasks
            .classifier(&owned)
            .map_err(|e| e.message)
            .and_then(|clf| clf.predict(embedder.as_ref(), &[text], false).map_err(|e| e.to_string()));
        match result {
            Ok(mut preds) => {
                let p = preds.pop().filter(|p| p.in_domain >= min_in_domain)?;
                let confidence = p.confidence;
                // Should the router choose this classifier, its answer is this prediction.
                tasks.remember(&owned, text, p);
                Some(confidence)
            }
            Err(e) => {
                // Said once a minute, not on every request.
                if let Ok(mut last) = last_warning.lock() {
                    if last.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                        tracing::warn!(classifier = %owned, error = %e, "routed classifier failed; it serves no requests");
                        *last = Some(std::time::Instant::now());
                    }
                }
                None
            }
        }
    };
    c.domain = Some(rightmodel_router::policy::Domain {
        name: entry.name.clone(),
        fit: Arc::new(fit),
        min_confidence: entry.min_confidence,
    });
    c
}

impl AutoRouter {
    /// Whether `auto` can serve anything: some chat model or routed classifier to choose among.
    /// Without one, `auto` answers 422 and is not listed among the models.
    pub fn is_available(&self) -> bool {
        self.router.is_some()
    }

    /// Builds the router over the configured candidates, with the shipped scorer (or
    /// `route.router_dir`) on the local encoder.
    pub fn new(
        config: &Config,
        chat: &BTreeMap<String, ChatModel>,
        embed: Option<&EmbedModel>,
        tasks: &Arc<crate::tasks_api::TaskModels>,
        permits: &Arc<tokio::sync::Semaphore>,
    ) -> Result<Self, String> {
        let names: Vec<String> =
            if config.route.candidates.is_empty() { config.chat_models() } else { config.route.candidates.clone() };
        let mut default_overrides = Map::new();
        if let Some(c) = config.route.max_cost_usd {
            default_overrides.insert("max_cost_usd".into(), c.into());
        }
        if let Some(l) = config.route.max_latency_ms {
            default_overrides.insert("max_latency_ms".into(), l.into());
        }
        // Routed classifiers alone still make a router: it answers what they recognise, and says
        // (422) that nothing else can be served.
        if names.is_empty() && !config.classifiers.iter().any(|c| c.route) {
            return Ok(AutoRouter { router: None, default_overrides });
        }
        let mut candidates = Vec::new();
        for name in &names {
            let Some(m) = chat.get(name) else { return Err(format!("route candidate `{name}` is not a chat model")) };
            let mut c = match m {
                ChatModel::Local(l) => {
                    let mut c = Candidate::new(name, m.kind(), l.price, 0.1, LOCAL_PRIOR.0, LOCAL_PRIOR.1);
                    c.capabilities.context_tokens = Some(l.engine.config().ctx_per_slot);
                    c.capabilities.max_choices = Some(l.choices_max());
                    c
                }
                ChatModel::Upstream(u) => {
                    let mut c = Candidate::new(
                        name,
                        m.kind(),
                        u.config.price(),
                        u.config.tier,
                        UPSTREAM_PRIOR.0,
                        UPSTREAM_PRIOR.1,
                    );
                    c.explainable = u.config.explainable;
                    c.capabilities.tools = u.config.tools;
                    c
                }
            };
            // Both kinds return token log-probabilities (a cascade's small model needs them) and
            // follow JSON schemas. Local models take tools only when a call is forced, so a request
            // that leaves the call to the model goes to upstreams that take tools.
            c.capabilities.logprobs = true;
            c.capabilities.json_schema = true;
            candidates.push(c);
        }
        // Classifiers that may answer chat requests in their domain (`route = true`).
        for entry in config.classifiers.iter().filter(|c| c.route) {
            let Some(e) = embed else {
                return Err(format!("classifier `{}` has route = true, which needs an [embedding] model", entry.name));
            };
            // Loaded and checked against the encoder now, so that a missing, broken or mismatched
            // classifier stops the start rather than quietly serving nothing.
            let clf =
                tasks.classifier(&entry.name).map_err(|err| format!("classifier `{}`: {}", entry.name, err.message))?;
            clf.check_encoder(e.batcher.as_ref()).map_err(|err| format!("classifier `{}`: {err}", entry.name))?;
            candidates.push(classifier_candidate(entry, tasks.clone(), e.batcher.clone(), permits.clone()));
        }
        // The trained weights carry the score distribution they were calibrated on, which turns a
        // target strong share into a threshold.
        let length_scorer = || -> (Arc<dyn Scorer>, RouterConfig) {
            if config.route.strong_share.is_some() && config.route.threshold.is_none() {
                tracing::warn!("route.strong_share needs the difficulty scorer's calibration: ignored (threshold 0.5)");
            }
            (Arc::new(rightmodel_router::scorer::LengthScorer), RouterConfig::default())
        };
        let scored =
            |dir: Option<&std::path::Path>, e: &EmbedModel| -> Result<(Arc<dyn Scorer>, RouterConfig), String> {
                let weights = match dir {
                    Some(d) => RouterWeights::load(d),
                    None => RouterWeights::shipped(),
                };
                let emb: Arc<dyn rightmodel_core::Embedder> = e.model.clone();
                let s = weights
                    .and_then(|w| DifficultyScorer::with_encoder_dir(w, &e.dir, Some(emb)))
                    .map_err(|err| err.to_string())?;
                let rc = RouterConfig::from_calibration(s.calibration());
                Ok((Arc::new(s), rc))
            };
        let (scorer, mut rc): (Arc<dyn Scorer>, RouterConfig) = match (embed, &config.route.router_dir) {
            // Weights the config names: failing to use them is an error, not a silent downgrade.
            (Some(e), Some(dir)) => {
                tracing::info!(dir = %dir.display(), "router weights");
                scored(Some(dir), e).map_err(|err| format!("router weights in {}: {err}", dir.display()))?
            }
            // Otherwise weights trained into the home folder, then the shipped ones (which fit the
            // default encoder), then prompt length: an unusable file there must not stop the gateway.
            (Some(e), None) => {
                let home = home_router_dir().and_then(|dir| match scored(Some(&dir), e) {
                    Ok(s) => {
                        tracing::info!(dir = %dir.display(), "router weights");
                        Some(s)
                    }
                    Err(err) => {
                        tracing::warn!(dir = %dir.display(), error = %err, "cannot use these router weights; trying the shipped ones");
                        None
                    }
                });
                match home.map(Ok).unwrap_or_else(|| scored(None, e)) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(error = %err, "the shipped router weights do not fit the [embedding] model: routing `auto` by prompt length (train your own with `rightmodel router train`)");
                        length_scorer()
                    }
                }
            }
            (None, _) => {
                tracing::warn!("no [embedding] model configured: routing `auto` by prompt length");
                length_scorer()
            }
        };
        if let Some(share) = config.route.strong_share {
            if let Some(cal) = &rc.calibration {
                rc.threshold = cal.threshold_for_share(share);
            }
        }
        if let Some(t) = config.route.threshold {
            rc.threshold = t;
        }
        rc.strategy = match config.route.strategy {
            ConfigStrategy::Threshold => Strategy::Direct,
            ConfigStrategy::Cascade => Strategy::Cascade,
        };
        rc.cascade_min_confidence = config.route.min_confidence;
        // The router's estimates count the answer tokens admission holds, no more.
        rc.output_estimate_max = crate::accounting::HELD_OUTPUT_MAX;
        let router = Router::new(candidates, scorer, rc).map_err(|e| e.to_string())?;
        Ok(AutoRouter { router: Some(Arc::new(router)), default_overrides })
    }

    /// Feeds an observed call into the candidate's live latency estimate (`ttft_ms`: `None` when the
    /// first token was not timed, e.g. a complete answer from an upstream).
    pub fn observe(&self, model: &str, ttft_ms: Option<f64>, total_ms: f64, output_tokens: u64) {
        if let Some(r) = &self.router {
            if let Some(c) = r.candidates().iter().find(|c| c.name == model) {
                let n = output_tokens.min(u64::from(u32::MAX)) as u32;
                match ttft_ms {
                    Some(t) => c.latency.observe(t, total_ms, n),
                    None => c.latency.observe_total(total_ms, n),
                }
            }
        }
    }

    /// Per-request options: the body's `rightmodel` object, then `x-rightmodel-*` headers, over the
    /// configured defaults (`[route] max_cost_usd` / `max_latency_ms`). Errors name the field or header
    /// the client sent; a null lifts a default for this request.
    pub fn overrides(&self, rightmodel: Option<&Value>, headers: &HeaderMap) -> Result<Overrides, ApiError> {
        self.merged_overrides(rightmodel, headers, true)
    }

    /// The request's own options alone, without the configured defaults: what binds a model the client
    /// named (the defaults are for the gateway's own choices).
    pub fn request_overrides(&self, rightmodel: Option<&Value>, headers: &HeaderMap) -> Result<Overrides, ApiError> {
        self.merged_overrides(rightmodel, headers, false)
    }

    fn merged_overrides(
        &self,
        rightmodel: Option<&Value>,
        headers: &HeaderMap,
        defaults: bool,
    ) -> Result<Overrides, ApiError> {
        let mut o = if defaults { self.default_overrides.clone() } else { Map::new() };
        match rightmodel {
            Some(Value::Object(m)) => {
                // The client's own fields are checked on their own, so an error names them.
                Overrides::from_json(&Value::Object(m.clone())).map_err(|e| e.to_api_error())?;
                o.extend(m.clone());
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(ApiError::invalid("rightmodel", "`rightmodel` must be an object.")),
        }
        const OPTION_HEADERS: [(&str, &str); 7] = [
            ("x-rightmodel-strong-share", "strong_share"),
            ("x-rightmodel-threshold", "threshold"),
            ("x-rightmodel-max-cost-usd", "max_cost_usd"),
            ("x-rightmodel-max-latency-ms", "max_latency_ms"),
            ("x-rightmodel-explain", "explain"),
            ("x-rightmodel-strategy", "strategy"),
            ("x-rightmodel-cache-prompt", "cache_prompt"),
        ];
        // A misspelt option header must not pass unnoticed, as a misspelt body option does not. The
        // gateway's own response headers are let through (a client or proxy may echo them back).
        const RESPONSE_HEADERS: [&str; 3] = ["x-rightmodel-model", "x-rightmodel-decision", "x-rightmodel-cost-usd"];
        if let Some(name) = headers.keys().map(|k| k.as_str()).find(|k| {
            k.starts_with("x-rightmodel-")
                && !OPTION_HEADERS.iter().any(|(h, _)| h == k)
                && !RESPONSE_HEADERS.contains(k)
        }) {
            let known: Vec<&str> = OPTION_HEADERS.iter().map(|(h, _)| *h).collect();
            return Err(ApiError::invalid(
                name,
                format!("Unknown option header `{name}`; the option headers are {}.", known.join(", ")),
            ));
        }
        for (header, key) in OPTION_HEADERS {
            let Some(raw) = headers.get(header) else { continue };
            let v = raw
                .to_str()
                .map_err(|_| ApiError::invalid(header, format!("`{header}` must be plain ASCII text.")))?
                .trim();
            let parsed = match key {
                "explain" | "cache_prompt" => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Value::Bool(true),
                    "false" | "0" | "no" => Value::Bool(false),
                    _ => {
                        return Err(ApiError::invalid(header, format!("`{header}` must be true or false, got `{v}`.")))
                    }
                },
                "strategy" => Value::String(v.to_string()),
                _ => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Value::from)
                    .ok_or_else(|| ApiError::invalid(header, format!("`{header}` must be a number.")))?,
            };
            // Checked alone, so that an error names the header rather than a body field.
            let one = Value::Object(Map::from_iter([(key.to_string(), parsed.clone())]));
            Overrides::from_json(&one).map_err(|e| {
                let mut e = e.to_api_error();
                e.param = Some(header.to_string());
                e.message = format!("{} (header `{header}`)", e.message);
                e
            })?;
            o.insert(key.into(), parsed);
        }
        Overrides::from_json(&Value::Object(o)).map_err(|e| e.to_api_error())
    }

    /// Puts the request's `cache_prompt` option, however it came (the `rightmodel` object or the
    /// `x-rightmodel-cache-prompt` header, which wins), into its `rightmodel` object, where a local
    /// model's generation reads it (`caps`: the options as [`AutoRouter::overrides`] merged them).
    pub fn carry_cache_prompt(rightmodel: &mut Option<Value>, caps: &rightmodel_router::Overrides) {
        let Some(cache) = caps.cache_prompt else { return };
        match rightmodel {
            Some(Value::Object(o)) => {
                o.insert("cache_prompt".into(), Value::Bool(cache));
            }
            _ => *rightmodel = Some(serde_json::json!({ "cache_prompt": cache })),
        }
    }

    /// Checks the request's own cost and latency caps (`max_cost_usd`, `max_latency_ms`) for a model the
    /// gateway did not choose with `auto` (a named model, a fallback, an escalation): the estimates
    /// `auto` would make (price x prompt and `max_tokens` up to [`crate::accounting::HELD_OUTPUT_MAX`], or
    /// 256 answer tokens; live latency of the
    /// models `auto` tracks), after `spent` dollars of earlier calls of the request. A model whose
    /// latency is not tracked is checked for cost only.
    #[allow(clippy::too_many_arguments)]
    pub fn check_named(
        &self,
        name: &str,
        price: rightmodel_core::Price,
        overrides: &Overrides,
        input_tokens: u64,
        max_output_tokens: Option<u32>,
        choices: u32,
        spent: f64,
    ) -> Result<(), ApiError> {
        let out = crate::accounting::sized_output_tokens(max_output_tokens)
            .unwrap_or_else(|| self.router.as_ref().map_or(256, |r| r.config().default_output_tokens));
        if let Some(cap) = overrides.max_cost_usd {
            let cost = spent + price.cost(input_tokens, u64::from(out) * u64::from(choices.max(1)));
            if cost > cap {
                return Err(ApiError::new(
                    ErrorKind::Unprocessable,
                    format!("`{name}` would cost about ${cost:.6} for this request, over max_cost_usd={cap}"),
                )
                .with_param("rightmodel.max_cost_usd")
                .with_code("max_cost_exceeded"));
            }
        }
        if let Some(cap) = overrides.max_latency_ms {
            let tracked = self.router.as_ref().and_then(|r| r.candidates().iter().find(|c| c.name == name));
            if let Some(ms) = tracked.map(|c| c.latency.estimate_ms(out)).filter(|ms| *ms > cap) {
                return Err(ApiError::new(
                    ErrorKind::Unprocessable,
                    format!("`{name}` would take about {ms:.0} ms for this request, over max_latency_ms={cap}"),
                )
                .with_param("rightmodel.max_latency_ms")
                .with_code("max_latency_exceeded"));
            }
        }
        Ok(())
    }

    /// Chooses a model for `req` under its options (see [`AutoRouter::overrides`]).
    pub async fn decide(
        &self,
        st: &AppState,
        req: &ChatCompletionRequest,
        overrides: Overrides,
        caller: &crate::auth::Caller,
    ) -> Result<RouteOutcome, ApiError> {
        self.decide_for(st, req, overrides, caller, None).await
    }

    /// Chooses a model for a text completion (`POST /v1/completions` with `model: "auto"`) as for a chat
    /// request whose one user turn is the prompt, among the language models only (classifiers and
    /// collections answer chat requests), directly (a cascade judges a chat answer; a text completion
    /// is not one). A prompt only an upstream takes (token ids, several prompts) goes to an upstream.
    pub async fn decide_completion(
        &self,
        st: &AppState,
        req: &CompletionRequest,
        overrides: Overrides,
        caller: &crate::auth::Caller,
    ) -> Result<RouteOutcome, ApiError> {
        let (text, upstream_only) = match &req.prompt {
            PromptInput::One(p) => (p.clone(), false),
            PromptInput::Many(ps) if ps.len() == 1 => (ps[0].clone(), false),
            PromptInput::Many(ps) => (ps.join("\n"), true),
            PromptInput::Tokens(_) | PromptInput::ManyTokens(_) => (String::new(), true),
        };
        let view = ChatCompletionRequest {
            model: req.model.clone(),
            messages: vec![ChatMessage::new("user", text)],
            sampling: req.sampling.clone(),
            logprobs: req.logprobs.map(|_| true),
            top_logprobs: None,
            response_format: None,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            rightmodel: req.rightmodel.clone(),
            extra: Map::new(),
        };
        let text = TextCompletion { input_tokens: req.prompt.estimated_tokens(), upstream_only };
        self.decide_for(st, &view, overrides, caller, Some(text)).await
    }

    /// [`AutoRouter::decide`] for a chat request, or with `text` for a text completion seen as one
    /// (see [`AutoRouter::decide_completion`]).
    async fn decide_for(
        &self,
        st: &AppState,
        req: &ChatCompletionRequest,
        mut overrides: Overrides,
        caller: &crate::auth::Caller,
        text: Option<TextCompletion>,
    ) -> Result<RouteOutcome, ApiError> {
        let mut allowed = caller.allowed_models();
        if text.is_some() {
            // Language models only: the key's, or all of them.
            let language = st.chat.keys().filter(|n| allowed.as_ref().is_none_or(|a| a.contains(n))).cloned();
            allowed = Some(language.collect());
        }
        let router = self
            .router
            .clone()
            .ok_or_else(|| ApiError::new(ErrorKind::Unprocessable, "No chat model is configured for `auto`."))?;
        let mode = crate::tools::tool_mode(req)?;
        // A cascade judges the small answer by its token log-probabilities; a tool call has none, so the
        // server would serve the small model unjudged. Requests with tools are routed directly.
        // Several choices (`n`) are answered by one model; a cascade judges one answer.
        let choices = crate::chat::choices_asked(req);
        if mode != crate::tools::ToolMode::Off || choices > 1 || text.is_some() {
            overrides.strategy = Some(rightmodel_router::Strategy::Direct);
        }
        let mut rr = RouteRequest {
            conversation: Conversation::from_chat(&req.messages),
            input_tokens: crate::accounting::estimate_prompt_tokens(req),
            // As sent: the router sizes its estimates as admission holds them (`output_estimate_max`),
            // and checks the context with all of it.
            max_output_tokens: req.sampling.max_completion_tokens.or(req.sampling.max_tokens),
            choices,
            overrides,
            needs: rightmodel_router::policy::Needs {
                // Local models fill in forced calls (through a JSON-schema grammar); only `auto`
                // needs a model that decides whether to call.
                tools: mode == crate::tools::ToolMode::Auto,
                json_schema: matches!(mode, crate::tools::ToolMode::Forced(_))
                    || req
                        .response_format
                        .as_ref()
                        .is_some_and(|rf| matches!(rf.kind.as_str(), "json_object" | "json_schema")),
                logprobs: req.logprobs == Some(true),
                // A local model also fills in only one forced tool call per request (n=1).
                passthrough: crate::chat::upstream_only_content("", req).is_some()
                    || (matches!(mode, crate::tools::ToolMode::Forced(_)) && choices > 1),
            },
            allowed,
        };
        if let Some(t) = &text {
            // The prompt as sent, without a chat template's tokens; token ids count as they are.
            rr.input_tokens = t.input_tokens;
            rr.needs.passthrough |= t.upstream_only;
        }
        let daily = st.config.budget.daily_usd;
        // Spend plus what running requests hold: concurrent `auto` calls must not all pass a nearly spent budget.
        let mut budget = BudgetState {
            daily_usd: (daily > 0.0).then_some(daily),
            spent_today_usd: st.spend.committed(),
            other_remaining_usd: None,
            key_limit: false,
        };
        // The key's own limit steers `auto`'s threshold the same way when less of it is left than of the
        // gateway's; a paid model must fit the dollars left under both.
        if let Some((limit, spent)) = caller.spend_limit() {
            let key = BudgetState {
                daily_usd: Some(limit),
                spent_today_usd: spent,
                other_remaining_usd: None,
                key_limit: true,
            };
            let key_steers = budget.daily_usd.is_none_or(|_| key.remaining_fraction() < budget.remaining_fraction());
            let (main, other) = if key_steers { (key, budget) } else { (budget, key) };
            budget = BudgetState { other_remaining_usd: other.remaining_usd(), ..main };
        }
        let local_format = local_response_format(req, &mode);
        let d = tokio::task::spawn_blocking(move || decide_for_schema(&router, rr, &budget, local_format.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("routing task failed: {e}")))?
            .map_err(|r| key_refusal(st, req, caller, r))?;
        let decision = serde_json::to_value(&d).unwrap_or(Value::Null);
        let reason = decision.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_string();
        Ok(RouteOutcome { served: d.served.clone(), reason, cascade: d.cascade.clone(), decision })
    }
}

/// What [`AutoRouter::decide_completion`] adds to the chat view of a text completion.
struct TextCompletion {
    /// The prompt's estimated tokens.
    input_tokens: u64,
    /// Only an upstream takes the prompt (token ids, several prompts).
    upstream_only: bool,
}

/// The `response_format` a local model would follow for `req` under its tool `mode`: the request's, or
/// for a forced tool call the call's own schema (the functions' parameters).
pub(crate) fn local_response_format(
    req: &ChatCompletionRequest,
    mode: &crate::tools::ToolMode,
) -> Option<rightmodel_core::wire::ResponseFormat> {
    match mode {
        crate::tools::ToolMode::Forced(only) => crate::tools::forced_call_request(req, only.as_deref()).response_format,
        _ => req.response_format.clone(),
    }
}

/// Why `auto` found no model: the error for the client, and the models the budget kept out (those a
/// spending limit alone excluded), so that a key's limit can answer as it does for a named model.
pub(crate) struct Refusal {
    /// The router's error.
    error: ApiError,
    /// The paid models excluded for the budget ([`rightmodel_router::Limit::Budget`]).
    over_budget: Vec<String>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal { error, over_budget: Vec::new() }
    }
}

/// `auto` found no model within the budget and the caller's key's daily limit is what kept the cheapest
/// paid model out: the key's refusal as a named model gets it ([`crate::auth::Caller::spend_refusal`]: a
/// 429 `insufficient_quota` with Retry-After, midnight UTC or a few seconds when running requests hold
/// the rest; a 422 on `max_tokens` only when the call costs more than the whole limit), quoting what is
/// left. The router's 422 said "waiting won't help" and blamed the gateway's budget. Otherwise the
/// router's error stands (the gateway's budget, or no limit in the way).
fn key_refusal(st: &AppState, req: &ChatCompletionRequest, caller: &crate::auth::Caller, r: Refusal) -> ApiError {
    if r.error.code.as_deref() != Some(rightmodel_router::Limit::Budget.code()) {
        return r.error;
    }
    // The cheapest model the budget kept out, at the cost admission would hold for it.
    let cheapest = r
        .over_budget
        .iter()
        .filter_map(|n| st.chat.get(n).map(|m| (n.as_str(), m.price())))
        .filter(|(_, p)| !p.is_free())
        .map(|(n, p)| (n, p, crate::accounting::likely_cost_of(req, p)))
        .min_by(|a, b| a.2.total_cmp(&b.2));
    let Some((name, price, cost)) = cheapest else { return r.error };
    let Some(key_error) = caller.spend_refusal(name, cost) else { return r.error };
    // Both limits refuse: the one with less of itself left is named (as it steered `auto`).
    if st.check_budget(name, price, cost).is_err() {
        let daily = st.config.budget.daily_usd;
        let gateway_left = 1.0 - st.spend.committed() / daily;
        let key_left = caller.spend_limit().map_or(1.0, |(limit, committed)| 1.0 - committed / limit);
        if gateway_left < key_left {
            return r.error;
        }
    }
    key_error
}

/// `router`'s decision for `rr` when local models cannot fully follow the request's JSON schema
/// (`local_format`, see [`crate::local::schema_refusal`]): only models the request is passed on to (upstreams)
/// are candidates then, as for content only an upstream reads; when none can serve it, the local
/// models' 400 saying what in the schema to change. Converts patterns: runs on a blocking thread.
fn decide_for_schema(
    router: &Router,
    mut rr: RouteRequest,
    budget: &BudgetState,
    local_format: Option<&rightmodel_core::wire::ResponseFormat>,
) -> Result<rightmodel_router::Decision, Refusal> {
    let refusal = local_format.and_then(crate::local::schema_refusal);
    if refusal.is_some() {
        rr.needs.passthrough = true;
    }
    router.decide(&rr, budget).map_err(|e| match (e, refusal) {
        (rightmodel_router::RouteError::NoCandidate { limit: rightmodel_router::Limit::Capability, .. }, Some(r)) => {
            r.into()
        }
        (e, _) => {
            let over_budget = match &e {
                rightmodel_router::RouteError::NoCandidate { excluded, .. } => excluded
                    .iter()
                    .filter(|(_, l)| *l == rightmodel_router::Limit::Budget)
                    .map(|(n, _)| n.clone())
                    .collect(),
                _ => Vec::new(),
            };
            Refusal { error: e.to_api_error(), over_budget }
        }
    })
}
