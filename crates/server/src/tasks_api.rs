//! Task small models in the gateway: `POST /v1/classify` over trained classifiers, and
//! `model: "docs:NAME"` chat completions answered from a document collection with citations —
//! escalated to the strongest upstream, with the retrieved passages as context, when the collection's
//! answer is unsure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use parking_lot::Mutex;
use rightmodel_core::wire::{ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, Usage};
use rightmodel_core::{ApiError, Embedder, ErrorKind};
use rightmodel_docs::Collection;
use rightmodel_infer::llm::LmReader;
use rightmodel_tasks::{Classifier, Prediction};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::accounting::Accounting;
use crate::chat::{decorate, now_secs};
use crate::http_error::{error_response, json_rejection};
use crate::intake::{take_accounting, ParkedAccounting};
use crate::state::{AppState, ChatModel, SharedState};

/// Loaded classifiers and collections, opened on first use and kept.
#[derive(Default)]
pub struct TaskModels {
    /// Loaded classifiers with the modification time of the manifest they were loaded from.
    classifiers: Mutex<HashMap<String, LoadedClassifier>>,
    collections: Mutex<HashMap<String, Arc<Collection>>>,
    /// One gate per existing collection: after `docs add` changes it, the first request reopens it and
    /// the others wait for that copy instead of each loading the index again (memory, encoder slots).
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Configured locations (`[[classifier]]`, `[[docs]]` with a `path`).
    pub paths: HashMap<String, PathBuf>,
    /// Collections whose passages a language model reads (`rerank_lm`, `read_lm`).
    pub readers: HashMap<String, DocsReader>,
    /// Predictions routed classifiers just made for the router, so the answer reuses the prediction its
    /// routing decision was based on instead of embedding the text again (newest last).
    recent: Mutex<std::collections::VecDeque<Remembered>>,
}

/// A routed classifier's prediction for one text, kept briefly for the answer.
struct Remembered {
    classifier: String,
    text: String,
    prediction: Prediction,
    at: std::time::Instant,
}

/// Predictions kept for answers (the answer follows its routing decision within milliseconds).
const RECENT_PREDICTIONS: usize = 64;
/// Age past which a kept prediction is not used.
const RECENT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// A local language model reading passages on its own thread, shared by every collection configured
/// with it (one thread and context per model, not per collection: several busy collections would
/// otherwise compete for the cores with each other and with the chat engine), and the requests waiting
/// for it.
pub struct SharedReader {
    lm: LmReader,
    /// Beyond this many requests waiting for the reader, answers skip the model (they stay right, only
    /// less often first or less exact) instead of queueing for seconds.
    waiting: tokio::sync::Semaphore,
}

/// Requests that may wait for one reader (about 0.5-1 s each on 2 cores).
const READER_QUEUE: usize = 4;

/// Collections of at most this many passages have them decoded into their reader's cache at start
/// (the cache holds about 35 passages of 200 tokens; a larger collection would only churn it).
pub const WARM_MAX_PASSAGES: usize = 32;

impl SharedReader {
    /// Wraps a started reader for sharing.
    pub fn new(lm: LmReader) -> Arc<Self> {
        Arc::new(SharedReader { lm, waiting: tokio::sync::Semaphore::new(READER_QUEUE) })
    }

    /// Starts decoding the passages of `collection` into the cache in the background when it is small
    /// enough to fit (see [`WARM_MAX_PASSAGES`]); returns how many were queued.
    pub fn warm(&self, collection: &Collection) -> usize {
        let n = collection.passage_count();
        if n == 0 || n > WARM_MAX_PASSAGES {
            return 0;
        }
        self.lm.warm(&collection.passage_texts().collect::<Vec<_>>());
        n
    }
}

/// How one collection uses its language model (re-ranking passages, reading answers).
pub struct DocsReader {
    reader: Arc<SharedReader>,
    /// Passages it re-orders (0: none).
    depth: usize,
    /// Whether it reads the answer span.
    read: bool,
}

impl DocsReader {
    /// A collection's use of `reader`: re-ordering the first `depth` passages (0: none) and, with
    /// `read`, reading the answer.
    pub fn new(reader: Arc<SharedReader>, depth: usize, read: bool) -> Self {
        DocsReader { reader, depth, read }
    }
}

/// A classifier in memory and the identity of the manifest it was read from.
type LoadedClassifier = (Arc<Classifier>, FileStamp);

/// What tells a replaced file from the one read: modification time, size and (on Unix) inode, since
/// a copy that keeps timestamps or a coarse clock can leave the time alone.
#[derive(Debug, Clone, PartialEq)]
struct FileStamp(Option<std::time::SystemTime>, u64, u64);

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let ino = 0;
        FileStamp(meta.modified().ok(), meta.len(), ino)
    }
}

/// Encoder work one `/v1/classify` request with `explain` may cost, in words through the encoder (see
/// `explain::cost_in_words`): about 85k tokens, several seconds of the shared encoder.
const MAX_EXPLAIN_WORDS: usize = 65_536;

/// The API error for a failed prediction. The input was checked before, so what is left is the server's
/// side: a stopped or failing encoder (503), or a classifier that does not fit it (500).
fn task_error(e: rightmodel_tasks::TaskError) -> ApiError {
    match e {
        rightmodel_tasks::TaskError::Embed(e) => {
            ApiError::new(ErrorKind::Unavailable, format!("The encoder failed: {e}")).with_retry_after(1)
        }
        other => {
            tracing::error!("classifier failed: {other}");
            ApiError::internal("The classifier failed; the server log says why.")
        }
    }
}

/// A document-collection failure as the client sees it: its own question is a 400, an empty collection
/// (one being built has no documents until its first add finishes) and the encoder failing are 503s,
/// the rest 500s.
fn docs_error(e: rightmodel_docs::DocsError) -> ApiError {
    use rightmodel_docs::DocsError;
    match e {
        DocsError::EmptyQuestion | DocsError::QuestionTooLong { .. } => {
            ApiError::invalid("messages", format!("The question cannot be answered: {e}."))
        }
        DocsError::EmptyCollection => ApiError::new(ErrorKind::Unavailable, format!("{e} (it may be being indexed)."))
            .with_code("collection_empty")
            .with_retry_after(5),
        DocsError::Embed(e) => {
            ApiError::new(ErrorKind::Unavailable, format!("The encoder failed: {e}")).with_retry_after(1)
        }
        // The detail may name where this host keeps the collection: the log's, not the client's.
        other => {
            tracing::error!("document collection failed: {other}");
            ApiError::internal("The document collection failed; the server log says why.")
        }
    }
}

/// The shared encoder, through the batching worker (so task-model requests share its calls).
fn embedder(st: &AppState) -> Result<Arc<dyn rightmodel_core::Embedder>, ApiError> {
    st.embed.as_ref().map(|e| e.batcher.clone() as Arc<dyn rightmodel_core::Embedder>).ok_or_else(|| {
        ApiError::new(ErrorKind::Unavailable, "No [embedding] model is configured; task models need it.")
    })
}

impl TaskModels {
    /// The classifier `name`: a configured `[[classifier]]` or one saved under `$RIGHTMODEL_HOME/classifiers`,
    /// never a path from the request (a client must not make the server load arbitrary directories).
    /// Blocking on first use (reads the weights), so call it off the runtime.
    pub(crate) fn classifier(&self, name: &str) -> Result<Arc<Classifier>, ApiError> {
        let dir = match self.paths.get(&format!("classifier:{name}")) {
            Some(p) => p.clone(),
            None => {
                rightmodel_tasks::registry::validate_name(name).map_err(|_| ApiError::model_not_found(name))?;
                let home = rightmodel_models::home::rightmodel_home();
                rightmodel_tasks::registry::classifiers_root(&home).join(name)
            }
        };
        // A classifier retrained (`--force`) or removed while the server runs is noticed by its
        // manifest's modification time: one metadata call per request.
        let manifest = dir.join(rightmodel_tasks::manifest::MANIFEST_FILE);
        let Ok(meta) = std::fs::metadata(&manifest) else {
            self.classifiers.lock().remove(name);
            return Err(ApiError::model_not_found(name));
        };
        let modified = FileStamp::of(&meta);
        if let Some((c, m)) = self.classifiers.lock().get(name) {
            if *m == modified {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Classifier::load(&dir).map_err(|e| {
            // The detail names where this host keeps its files: the log's, not the client's.
            tracing::error!(classifier = name, "cannot load the classifier: {e}");
            ApiError::internal(format!(
                "The classifier `{name}` cannot be loaded (damaged or incomplete); the server log says why."
            ))
        })?);
        self.classifiers.lock().insert(name.to_string(), (c.clone(), modified));
        Ok(c)
    }

    /// Keeps `prediction` of classifier `name` for `text` for the answer that may follow.
    pub(crate) fn remember(&self, name: &str, text: &str, prediction: Prediction) {
        let mut recent = self.recent.lock();
        if recent.len() >= RECENT_PREDICTIONS {
            recent.pop_front();
        }
        let at = std::time::Instant::now();
        recent.push_back(Remembered { classifier: name.to_string(), text: text.to_string(), prediction, at });
    }

    /// Takes the kept prediction of classifier `name` for `text`, if one is recent enough.
    pub(crate) fn recall(&self, name: &str, text: &str) -> Option<Prediction> {
        let mut recent = self.recent.lock();
        let i = recent.iter().rposition(|r| r.classifier == name && r.text == text)?;
        let r = recent.remove(i)?;
        (r.at.elapsed() <= RECENT_MAX_AGE).then_some(r.prediction)
    }

    /// Where the collection `name` lives: its configured `path`, else `$RIGHTMODEL_HOME/docs/NAME`
    /// (`None` for a name that cannot be a collection).
    pub(crate) fn collection_dir(&self, name: &str) -> Option<PathBuf> {
        match self.paths.get(&format!("docs:{name}")) {
            Some(p) => Some(p.clone()),
            None => rightmodel_docs::catalog::collection_dir(&rightmodel_docs::catalog::collections_root(), name).ok(),
        }
    }

    /// The collection `name`, reopened when another process (`docs add`, `docs remove`) has changed it
    /// since it was opened, so the server never answers from a replaced index. Blocking: reads the
    /// collection's generation marker (and the index when it changed), so call it off the runtime.
    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>, ApiError> {
        let not_found = || ApiError::model_not_found(&format!("docs:{name}"));
        // The staleness check reads a file: not under the lock every collection's requests take.
        let cached = self.collections.lock().get(name).cloned();
        if let Some(c) = cached {
            if !c.is_stale() {
                return Ok(c);
            }
        }
        let dir = self.collection_dir(name).ok_or_else(not_found)?;
        if !rightmodel_docs::store::exists(&dir) {
            self.collections.lock().remove(name);
            return Err(not_found());
        }
        // Keyed by collections that exist, so client-chosen names cannot grow the map.
        let gate = self.opening.lock().entry(name.to_string()).or_default().clone();
        let _one_open = gate.lock();
        let cached = self.collections.lock().get(name).cloned();
        if let Some(c) = cached {
            // Reopened by the request this one waited for.
            if !c.is_stale() {
                return Ok(c);
            }
        }
        let c = match Collection::open(&dir) {
            Ok(c) => Arc::new(c),
            // Removed between the check above and the open (`docs remove`).
            Err(rightmodel_docs::DocsError::NotACollection { .. }) => {
                self.collections.lock().remove(name);
                return Err(not_found());
            }
            Err(e) => return Err(docs_error(e)),
        };
        self.collections.lock().insert(name.to_string(), c.clone());
        // Re-ranking decodes whole passages: those of a small collection are decoded ahead of its
        // questions whenever it is (re)opened, at start and after `docs add` changed it.
        if let Some(r) = self.readers.get(name).filter(|r| r.depth > 0) {
            let n = r.reader.warm(&c);
            if n > 0 {
                tracing::info!(collection = %name, passages = n, "warming the passage cache");
            }
        }
        Ok(c)
    }
}

/// Input of `POST /v1/classify`.
#[derive(Debug, Deserialize)]
pub struct ClassifyRequest {
    /// Classifier name.
    pub model: String,
    /// One text or several.
    pub input: Value,
    /// Add token attributions and nearest training examples (also asked for by the `rightmodel`
    /// option `explain` or the `x-rightmodel-explain` header, as on chat).
    #[serde(default)]
    pub explain: bool,
    /// The gateway's options, checked as on chat; `explain` is the one that matters here.
    #[serde(default)]
    pub rightmodel: Option<Value>,
    /// Any other field: refused, so that a misspelt one (`explian`) does not pass unnoticed.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `POST /v1/classify`: `{"model", "input": [...], "explain": bool}` → one prediction per text.
pub async fn classify(
    State(st): State<SharedState>,
    parked: Option<Extension<ParkedAccounting>>,
    headers: HeaderMap,
    body: Result<Json<ClassifyRequest>, JsonRejection>,
) -> Response {
    let mut acct = take_accounting(parked, &st, "/v1/classify");
    let id = acct.id().to_string();
    let result = async {
        let caller = st.auth.identify(&headers)?;
        acct.set_caller(caller.clone());
        caller.admit()?;
        let Json(req) = body.map_err(json_rejection)?;
        acct.set_requested(&req.model);
        caller.check_model(&req.model)?;
        // A model that exists but is not a classifier: say so, rather than that it does not exist.
        let other_kind = st.model_kind(&req.model).filter(|(_, serves)| *serves != "/v1/classify");
        if let Some((kind, _)) = other_kind {
            return Err(ApiError::invalid(
                "model",
                format!("`{}` is {kind}; /v1/classify serves classifiers (`rightmodel train classify`).", req.model),
            )
            .with_code("model_not_classifier"));
        }
        let texts: Vec<String> = match &req.input {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| ApiError::invalid("input", "`input` must be strings."))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ApiError::invalid("input", "`input` must be a string or a list of strings.")),
        };
        if texts.is_empty() {
            return Err(ApiError::invalid("input", "`input` must hold at least one text."));
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(ApiError::invalid(
                &format!("input[{i}]"),
                format!("`input[{i}]` is empty; every text must hold words."),
            ));
        }
        if let Some(field) = req.extra.keys().next() {
            return Err(ApiError::invalid(
                field,
                format!("Unknown field `{field}`; /v1/classify takes model, input, explain and rightmodel."),
            ));
        }
        let options = st.router.request_overrides(req.rightmodel.as_ref(), &headers)?;
        let explain = req.explain || options.explain == Some(true);
        if texts.len() > 2048 {
            return Err(ApiError::invalid("input", "At most 2048 texts per request."));
        }
        let emb = embedder(&st)?;
        // Classification runs on the shared encoder: it counts against the same capacity as
        // /v1/embeddings, and an explanation scores each text once more per word (its first words).
        let cost: usize = texts.iter().map(|t| rightmodel_tasks::explain::cost_in_words(t)).sum();
        if explain && cost > MAX_EXPLAIN_WORDS {
            return Err(ApiError::invalid(
                "explain",
                format!(
                    "`explain` scores each text once more per word (up to {} words of its first {}); this request \
                     would pass {cost} words through the encoder, over the {MAX_EXPLAIN_WORDS} allowed: send fewer \
                     or shorter texts.",
                    rightmodel_tasks::explain::MAX_WORDS,
                    rightmodel_tasks::explain::MAX_READ_WORDS
                ),
            ));
        }
        // The permit moves into the blocking task, so a client that leaves does not free the encoder's slot
        // while its work still runs.
        let permit = st.embed_permit()?;
        let (state, name) = (st.clone(), req.model.clone());
        let preds = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let clf = state.tasks.classifier(&name)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            clf.predict(emb.as_ref(), &refs, explain).map_err(task_error)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        acct.set_served(&req.model, Default::default());
        Ok(json!({"object": "list", "model": req.model, "data": preds}))
    }
    .await;
    match result {
        Ok(v) => {
            let served = v["model"].as_str().unwrap_or_default().to_string();
            let mut resp = Json(v).into_response();
            decorate(&mut resp, &served, None, &id);
            acct.finish(200, None);
            resp
        }
        Err(e) => {
            acct.finish(e.kind.status(), Some(e.message.clone()));
            error_response(e, &id)
        }
    }
}

/// The upstream to escalate the unsure answers of collection `coll` to: its `escalate_to`, else the
/// strongest of the upstreams among `[route] candidates` (all upstreams when that list is empty), of
/// those `acct`'s caller may use and that the spending limits and the request's cost and latency caps
/// allow for the escalation (whose prompt `acct` estimates). Strongest: the highest `tier`; among equal
/// tiers the one with the dearest output (price follows capability among one provider's models), then
/// the first by name. `Err` says why there is none, for the decision.
fn escalation_upstream(st: &AppState, coll: &str, acct: &Accounting) -> Result<String, &'static str> {
    let caller = acct.caller();
    let configured = st.config.docs.iter().find(|d| d.name == coll).and_then(|d| d.escalate_to.as_deref());
    let candidates = &st.config.route.candidates;
    let upstreams: Vec<(&String, &crate::upstream::Upstream)> = st
        .chat
        .iter()
        .filter_map(|(n, m)| match m {
            ChatModel::Upstream(u) => Some((n, u.as_ref())),
            ChatModel::Local(_) => None,
        })
        .filter(|(n, _)| match configured {
            Some(m) => *n == m,
            None => candidates.is_empty() || candidates.contains(n),
        })
        .collect();
    if upstreams.is_empty() {
        return Err(if configured.is_some() {
            "the collection's escalate_to model is not served"
        } else if candidates.is_empty() {
            "no upstream is configured"
        } else {
            "no upstream is among the route candidates"
        });
    }
    let allowed: Vec<_> = upstreams.into_iter().filter(|(n, _)| caller.may_use(n)).collect();
    if allowed.is_empty() {
        return Err(if configured.is_some() {
            "the key may not use the collection's escalate_to model"
        } else {
            "the key may use no upstream"
        });
    }
    let within_caps: Vec<_> =
        allowed.into_iter().filter(|(n, u)| acct.check_caps(n, u.config.price()).is_ok()).collect();
    if within_caps.is_empty() {
        return Err("the request's options (max_cost_usd, max_latency_ms, explain) leave no upstream");
    }
    within_caps
        .into_iter()
        .filter(|(n, u)| st.check_limits(caller, n, u.config.price(), acct.likely_cost(u.config.price())).is_ok())
        .min_by(|a, b| {
            b.1.config
                .tier
                .total_cmp(&a.1.config.tier)
                .then(b.1.config.price().output_per_mtok.total_cmp(&a.1.config.price().output_per_mtok))
                .then(a.0.cmp(b.0))
        })
        .map(|(n, _)| n.clone())
        .ok_or("the spending limits leave no upstream")
}

/// Answers a `docs:NAME` chat request: the last user message is the question.
pub async fn docs_chat(
    st: &SharedState,
    name: &str,
    req: &ChatCompletionRequest,
    routed: Option<&Value>,
    acct: &mut Accounting,
) -> Result<(String, Value, ChatCompletionResponse), ApiError> {
    // A follow-up ("How long is it?") is completed from the user's previous question.
    let turns: Vec<String> = req.messages.iter().filter(|m| m.role == "user").map(ChatMessage::text).collect();
    let asked = rightmodel_docs::contextual_question(&turns.iter().map(String::as_str).collect::<Vec<_>>());
    if asked.text.is_empty() {
        return Err(ApiError::invalid("messages", "A `docs:` model needs a user message with the question."));
    }
    let question = asked.text;
    // What the large model is asked when the documents answer unsure: the question completed from the
    // conversation, whichever reading the documents answered best (a bare follow-up such as "And a
    // European one?" would leave it guessing).
    let completed = question.clone();
    // A follow-up is asked both ways, completed and as written; the reading the documents answer with
    // more confidence wins (completing it can also pull in words that point away from the answer).
    let readings = if asked.follow_up { vec![question.clone(), asked.turn.clone()] } else { vec![question.clone()] };
    let emb = embedder(st)?;
    let permit = st.embed_permit()?;
    let (state, coll_name) = (st.clone(), name.to_string());
    // Opening the collection, retrieval and counting the question's tokens all block: one pool task, which
    // holds the encoder's slot until it is done, even if the client leaves.
    let (question, answer, question_tokens, reranked_by) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let coll = state.tasks.collection(&coll_name)?;
        let mut best: Option<(String, rightmodel_docs::Answer, Option<String>)> = None;
        match state.tasks.readers.get(&coll_name) {
            Some(r) => {
                // The encoder's permit covers the questions' vectors; the language model has its own queue.
                let vectors: Vec<rightmodel_docs::ask::QuestionVector> =
                    readings.iter().map(|q| coll.question_vector(emb.as_ref(), q)).collect::<Result<_, _>>().map_err(docs_error)?;
                drop(_permit);
                let params = rightmodel_docs::AskParams { lm_depth: r.depth, lm_read: r.read, ..Default::default() };
                for (q, q_vec) in readings.into_iter().zip(&vectors) {
                    let slot = r.reader.waiting.try_acquire().ok();
                    let scorer = slot.as_ref().map(|_| &r.reader.lm as &dyn rightmodel_core::PassageReader);
                    let (a, by) = match coll.ask_scored(&q, q_vec.query(), 5, &params, scorer) {
                        Ok(a) => {
                            // Named only when the model did re-order (it is skipped when busy or with < 2 passages).
                            let used = a.passages.iter().any(|p| p.question_log_likelihood.is_some());
                            (a, used.then(|| rightmodel_core::PassageReader::model_id(&r.reader.lm).to_string()))
                        }
                        // The re-ranking is an improvement, not a dependency: answer without it.
                        Err(rightmodel_docs::DocsError::Score(e)) => {
                            tracing::warn!(collection = %coll_name, "the passage reader failed, answering without it: {e}");
                            (coll.ask_scored(&q, q_vec.query(), 5, &params, None).map_err(docs_error)?, None)
                        }
                        Err(e) => return Err(docs_error(e)),
                    };
                    if best.as_ref().is_none_or(|b| a.confidence > b.1.confidence) {
                        best = Some((q, a, by));
                    }
                }
            }
            None => {
                for q in readings {
                    let a = coll.ask(emb.as_ref(), &q, 5).map_err(docs_error)?;
                    if best.as_ref().is_none_or(|b| a.confidence > b.1.confidence) {
                        best = Some((q, a, None));
                    }
                }
            }
        };
        let (q, mut answer, reranked_by) = best.ok_or_else(|| ApiError::internal("no question was asked"))?;
        // Clients see sources relative to the collection, not where this host keeps them.
        answer.map_files(|f| coll.relative_file(f));
        let tokens = emb_tokens(&state, &q);
        Ok::<_, ApiError>((q, answer, tokens, reranked_by))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let model_name = format!("docs:{name}");
    acct.set_served(&model_name, Default::default());
    let citations = serde_json::to_value(&answer.citations).unwrap_or(Value::Null);
    let min_conf = st.config.route.min_confidence;
    let unsure = answer.confidence < min_conf;
    // The gateway's own question to the large model: the client's tools and output format were for the
    // documents' model, not for this prompt. The client's instructions stay; the conversation is
    // replaced by the numbered passages and the question.
    let mut up = req.clone();
    up.rightmodel = None;
    up.tools = None;
    up.tool_choice = None;
    up.response_format = None;
    up.messages = req.messages.iter().filter(|m| m.role == "system" || m.role == "developer").cloned().collect();
    up.messages.push(ChatMessage::new("user", answer.context_prompt(&completed)));
    let target = if unsure {
        // What is held against the limits (and estimated, should the upstream report no usage) is the
        // gateway's prompt, passages included, not the client's question.
        acct.set_prompt_estimate(crate::accounting::estimate_prompt_tokens(&up));
        Some(escalation_upstream(st, name, acct))
    } else {
        None
    };
    let (escalate, skipped) = match target {
        Some(Ok(m)) => (Some(m), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    let mut decision = json!({"served": model_name, "reason": "docs_confident", "confidence": answer.confidence, "min_confidence": min_conf});
    // What was asked of the documents, when it is not the last turn as written.
    if question != asked.turn {
        decision["question"] = json!(question);
    }
    if let Some(lm) = reranked_by {
        decision["reranked_by"] = json!(lm);
    }
    if let Some(lm) = &answer.read_by {
        decision["read_by"] = json!(lm);
    }
    if let Some(large) = escalate {
        decision["served"] = json!(large);
        decision["reason"] = json!("docs_low_confidence_escalated");
        acct.set_decision("docs_low_confidence_escalated", &decision);
        up.model = large.clone();
        // `passages` lists the prompt's passages in its order, so the answer's [n] resolve.
        let passages = prompt_passages(&answer);
        merge_routed(&mut decision, routed);
        match crate::chat::call_full_pub(st, &large, &up, acct).await {
            Ok((served, mut body)) => {
                // A fallback of `large` may have answered.
                acct.correct_decision(&mut decision, &served);
                body.rightmodel = Some(json!({"decision": decision, "citations": citations, "passages": passages}));
                return Ok((served, decision, body));
            }
            // The documents' own answer, however unsure, beats an error (the prompt was the
            // gateway's, so even an upstream 4xx is not the client's to fix).
            Err(e) => {
                tracing::warn!("docs: escalation to `{large}` failed ({}); answering from the documents", e.message);
                decision["served"] = json!(model_name);
                decision["reason"] = json!("docs_low_confidence_escalation_failed");
                decision["escalation_error"] = json!(crate::chat::short_message(&e.message));
                // Every model of the escalation's chain that was tried, not only the last one's error.
                if !acct.failures().is_empty() {
                    decision["failed"] = json!(acct.failures());
                }
                acct.set_served(&model_name, Default::default());
            }
        }
    } else if unsure {
        decision["reason"] = json!("docs_low_confidence");
        if let Some(why) = skipped {
            decision["escalation_skipped"] = json!(why);
        }
    }
    merge_routed(&mut decision, routed);
    let reason = decision["reason"].as_str().unwrap_or("docs_confident").to_string();
    acct.set_decision(&reason, &decision);
    // Below the confidence bar the reply says so, and offers the closest passage as such.
    let mut text = if unsure {
        format!(
            "The documents do not seem to answer this (confidence {:.2}). The closest passage says:\n{}",
            answer.confidence,
            answer.sentence.trim()
        )
    } else {
        answer.answer.clone()
    };
    for (i, c) in answer.citations.iter().take(3).enumerate() {
        let file =
            std::path::Path::new(&c.file).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        text.push_str(&format!("\n[{}] {file}:{}-{}", i + 1, c.start, c.end));
    }
    let extra = json!({"decision": decision, "citations": citations, "confidence": answer.confidence, "sentence": answer.sentence, "span": answer.span});
    let (text, finish, answer_tokens) = fit_answer(st, req, text);
    let usage = Usage::new(question_tokens, answer_tokens);
    acct.add_usage(usage);
    let body = text_answer(&model_name, text, finish, usage, extra);
    Ok((model_name, decision, body))
}

/// When `auto` chose the collection, the router's decision stays part of the record (its scores, what
/// the largest candidate would have cost, a re-routing); the collection's own fields win.
fn merge_routed(decision: &mut Value, routed: Option<&Value>) {
    if let (Some(Value::Object(router)), Value::Object(own)) = (routed, decision) {
        for (k, v) in router {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// The passages of the context prompt, numbered as the prompt numbers them ([1] first).
fn prompt_passages(answer: &rightmodel_docs::Answer) -> Value {
    let list: Vec<Value> = answer
        .passages
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"n": i + 1, "file": p.file, "passage_id": p.passage_id, "start": p.start, "end": p.end}))
        .collect();
    Value::Array(list)
}

/// Answers a chat request with a routed classifier (`[[classifier]] route = true`): the last user turn
/// is classified, the label is the reply, and `rightmodel.prediction` carries the probabilities, the
/// domain fit and, when the request asked for `explain`, the words that decided it and the nearest
/// training examples.
pub async fn classifier_chat(
    st: &SharedState,
    name: &str,
    req: &ChatCompletionRequest,
    explain: bool,
    acct: &mut Accounting,
) -> Result<ChatCompletionResponse, ApiError> {
    // The text the router judged: the last user turn, else the last message (as the router reads it).
    let last = req.messages.iter().rev().find(|m| m.role == "user").or(req.messages.last());
    let text = last.map(|m| crate::routing::classifier_input(&m.text()).to_string()).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::invalid("messages", format!("The classifier `{name}` needs a message to classify.")));
    }
    let emb = embedder(st)?;
    // The router's own prediction for this text, unless the answer needs an explanation it did not compute.
    let remembered = if explain { None } else { st.tasks.recall(name, &text) };
    let permit = match remembered {
        Some(_) => None,
        None => Some(st.embed_permit_within(crate::routing::CLASSIFIER_PERMIT_WAIT).await?),
    };
    let (state, clf_name, t) = (st.clone(), name.to_string(), text.clone());
    let (pred, tokens) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let pred = match remembered {
            Some(p) => p,
            None => {
                let clf = state.tasks.classifier(&clf_name)?;
                let mut preds = clf.predict(emb.as_ref(), &[t.as_str()], explain).map_err(task_error)?;
                preds.pop().ok_or_else(|| ApiError::internal("the classifier returned no prediction"))?
            }
        };
        Ok::<_, ApiError>((pred, emb_tokens(&state, &t)))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    acct.set_served(name, Default::default());
    let (label, finish, answer_tokens) = fit_answer(st, req, pred.label.clone());
    let usage = Usage::new(tokens, answer_tokens);
    acct.add_usage(usage);
    Ok(text_answer(name, label, finish, usage, json!({"prediction": pred})))
}

/// A written answer cut as the request's `stop` and `max_tokens` say, as a model's would be: at the
/// first stop sequence (`"stop"`), or after `max_tokens` tokens of the encoder's tokenizer, at a word
/// boundary (`"length"`). Returns the text, the finish reason and its token count. The structured
/// fields (`rightmodel.prediction`, `rightmodel.citations`) stay whole.
fn fit_answer(st: &AppState, req: &ChatCompletionRequest, mut text: String) -> (String, &'static str, u64) {
    let mut finish = "stop";
    if let Some(stops) = &req.sampling.stop {
        if let Some(at) = stops.to_vec().iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(at);
        }
    }
    let mut tokens = answer_tokens(st, &text);
    if let Some(max) = req.sampling.max_completion_tokens.or(req.sampling.max_tokens).map(u64::from) {
        if tokens > max {
            // The longest run of whole words that fits (word ends found from the text, not re-joined).
            let ends: Vec<usize> = text.char_indices().filter(|(_, c)| c.is_whitespace()).map(|(i, _)| i).collect();
            let fits = ends.partition_point(|&end| answer_tokens(st, &text[..end]) <= max);
            let end = if fits > 0 {
                ends[fits - 1]
            } else {
                // Not even one word fits (a text without spaces): cut between characters.
                let ends: Vec<usize> = text.char_indices().skip(1).map(|(i, _)| i).collect();
                let fits = ends.partition_point(|&end| answer_tokens(st, &text[..end]) <= max);
                if fits > 0 {
                    ends[fits - 1]
                } else {
                    0
                }
            };
            text.truncate(end);
            text.truncate(text.trim_end().len());
            tokens = answer_tokens(st, &text);
            finish = "length";
        }
    }
    (text, finish, tokens)
}

/// A complete chat answer the gateway wrote itself (a document or classifier answer): one assistant
/// message, finished, with its `rightmodel` object.
fn text_answer(model: &str, text: String, finish: &str, usage: Usage, rightmodel: Value) -> ChatCompletionResponse {
    ChatCompletionResponse {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        object: "chat.completion".into(),
        created: now_secs(),
        model: model.to_string(),
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessage::new("assistant", text),
            finish_reason: Some(finish.into()),
            logprobs: None,
            extra: Default::default(),
        }],
        usage: Some(usage),
        system_fingerprint: None,
        rightmodel: Some(rightmodel),
        extra: Default::default(),
    }
}

/// Tokens of an answer the gateway wrote, by the encoder's tokenizer without the two markers it adds
/// around every text it reads. The tokenizer stops at the encoder's 256 tokens; past them the count
/// is at least a token per four bytes.
fn answer_tokens(st: &AppState, text: &str) -> u64 {
    let n = emb_tokens(st, text);
    if n >= ENCODER_TOKENS {
        (n - 2).max(text.len() as u64 / 4)
    } else {
        n.saturating_sub(2)
    }
}

/// Tokens the encoder's tokenizer returns at most (its truncation), markers included.
const ENCODER_TOKENS: u64 = 256;

fn emb_tokens(st: &AppState, text: &str) -> u64 {
    st.embed.as_ref().map(|e| e.model.count_tokens(text) as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(label: &str) -> Prediction {
        Prediction {
            label: label.into(),
            confidence: 0.9,
            probs: Default::default(),
            in_domain: 0.5,
            explanation: None,
        }
    }

    #[test]
    fn a_remembered_prediction_is_used_once_for_its_classifier_and_text() {
        let t = TaskModels::default();
        t.remember("sentiment", "great film", prediction("positive"));
        assert_eq!(t.recall("topics", "great film"), None);
        assert_eq!(t.recall("sentiment", "other text"), None);
        assert_eq!(t.recall("sentiment", "great film").map(|p| p.label), Some("positive".into()));
        assert_eq!(t.recall("sentiment", "great film"), None);
        // Bounded: the oldest go first.
        for i in 0..RECENT_PREDICTIONS + 5 {
            t.remember("sentiment", &format!("text {i}"), prediction("x"));
        }
        assert_eq!(t.recall("sentiment", "text 0"), None);
        assert!(t.recall("sentiment", &format!("text {}", RECENT_PREDICTIONS + 4)).is_some());
    }
}
