//! Building the gateway from a config and running it until SIGTERM / Ctrl-C.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use rightmodel_infer::llm::LmReader;
use rightmodel_infer::threads::available_cores;
use rightmodel_infer::{Engine, EngineConfig, MiniLm};
use rightmodel_models::home::rightmodel_home;
use rightmodel_models::Store;
use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::budget::{start_of_day_ms, SpendCounter};
use crate::config::Config;
use crate::local::LocalChat;
use crate::metrics::Metrics;
use crate::reqlog::RequestLog;
use crate::routing::AutoRouter;
use crate::state::{AppState, ChatModel, EmbedModel, SharedState};
use crate::tasks_api::{DocsReader, SharedReader};
use crate::upstream::Upstream;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A model could not be found, pulled or loaded.
    #[error("model `{name}`: {reason}")]
    Model {
        /// Configured name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The request log could not be opened.
    #[error(transparent)]
    Log(#[from] crate::reqlog::LogError),
    /// The router could not be built.
    #[error("router: {0}")]
    Router(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Path of the request log for `config`.
pub fn log_path(config: &Config) -> PathBuf {
    config.server.log_path.clone().unwrap_or_else(|| rightmodel_home().join("rightmodel.db"))
}

/// Loads every configured model (pulling defaults on first use) and opens the log. Blocking: call it
/// before starting the runtime's work or on a blocking thread.
pub fn build_state(config: Config) -> Result<AppState, ServeError> {
    let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
    let mut chat = BTreeMap::new();
    for l in &config.locals {
        let merr = |reason: String| ServeError::Model { name: l.name.clone(), reason };
        let path = store.resolve_gguf(&l.model).map_err(|e| merr(e.to_string()))?;
        let mut ec = EngineConfig::new(path);
        ec.slots = l.slots;
        ec.ctx_per_slot = l.ctx_per_slot;
        ec.queue = l.queue;
        let engine = Engine::start(ec).map_err(|e| merr(e.to_string()))?;
        let price = l.price();
        chat.insert(
            l.name.clone(),
            ChatModel::Local(LocalChat { name: l.name.clone(), engine, price, answer_cap: None }),
        );
    }
    for u in &config.upstreams {
        let up = Upstream::new(u.clone()).map_err(|reason| ServeError::Model { name: u.name.clone(), reason })?;
        chat.insert(u.name.clone(), ChatModel::Upstream(Arc::new(up)));
    }
    let embed = match &config.embedding {
        Some(e) => {
            let merr = |reason: String| ServeError::Model { name: e.name.clone(), reason };
            let dir = store.resolve_encoder(&e.model).map_err(|err| merr(err.to_string()))?;
            let model = Arc::new(MiniLm::load(&dir).map_err(|err| merr(err.to_string()))?);
            let batcher =
                Arc::new(crate::embed_batch::EmbedBatcher::start(model.clone()).map_err(|err| merr(err.to_string()))?);
            Some(EmbedModel { name: e.name.clone(), model, dir, batcher })
        }
        None => None,
    };
    let path = log_path(&config);
    let log = RequestLog::open_with_retention(&path, config.server.log_retention_days)?;
    let (spent_total, spent_by_key) = RequestLog::spend_since(&path, start_of_day_ms())?;
    let spend = SpendCounter::default();
    spend.add(spent_total);
    let auth = Auth::new(&config.keys, &spent_by_key);
    let mut tasks = crate::tasks_api::TaskModels::default();
    for c in &config.classifiers {
        if let Some(p) = &c.path {
            tasks.paths.insert(format!("classifier:{}", c.name), p.clone());
        }
    }
    // One reader per local model, however many collections use it, able to score the most passages any
    // of them re-orders.
    let mut readers: HashMap<&str, Arc<SharedReader>> = HashMap::new();
    for d in &config.docs {
        if let Some(p) = &d.path {
            tasks.paths.insert(format!("docs:{}", d.name), p.clone());
        }
        let Some(lm) = d.lm() else { continue };
        let reader = match readers.get(lm) {
            Some(r) => r.clone(),
            None => {
                let merr = |reason: String| ServeError::Model { name: lm.to_string(), reason };
                let local =
                    config.locals.iter().find(|l| l.name == lm).ok_or_else(|| merr("not a [[local]] model".into()))?;
                let path = store.resolve_gguf(&local.model).map_err(|e| merr(e.to_string()))?;
                let depth = config.docs.iter().filter(|o| o.lm() == Some(lm)).map(|o| o.rerank_lm_depth).max();
                // Its own context on its own thread. On the CPU the weights are memory-mapped, so the pages
                // of the chat engine's copy of the same file are shared.
                let started = LmReader::start(&path, lm, depth.unwrap_or(d.rerank_lm_depth), available_cores())
                    .map_err(|e| merr(e.to_string()))?;
                let r = SharedReader::new(started);
                readers.insert(lm, r.clone());
                r
            }
        };
        let depth = if d.rerank_lm.is_some() { d.rerank_lm_depth } else { 0 };
        tasks.readers.insert(d.name.clone(), DocsReader::new(reader, depth, d.read_lm.is_some()));
        // Opening a re-ranked collection now warms its reader's cache (see `TaskModels::collection`);
        // others (and one that does not exist yet) are opened by their first question, as before.
        if depth > 0 {
            let _ = tasks.collection(&d.name);
        }
    }
    let metrics = Metrics::new();
    metrics.passage_readers.set(readers.len() as i64);
    let tasks = Arc::new(tasks);
    let embed_permits = Arc::new(Semaphore::new(config.server.max_embed_concurrency.max(1)));
    let router = AutoRouter::new(&config, &chat, embed.as_ref(), &tasks, &embed_permits).map_err(ServeError::Router)?;
    Ok(AppState {
        tasks,
        embed_permits,
        config,
        chat,
        embed,
        router,
        auth,
        log,
        metrics,
        spend,
        shutting_down: AtomicBool::new(false),
        aborting: tokio::sync::watch::channel(false).0,
    })
}

/// The axum application over `state`.
pub fn app(state: SharedState) -> Router {
    let limit = state.config.server.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(crate::chat::chat_completions))
        .route("/v1/completions", post(crate::endpoints::completions))
        .route("/v1/embeddings", post(crate::endpoints::embeddings))
        .route("/v1/classify", post(crate::tasks_api::classify))
        .route("/v1/models", get(crate::endpoints::models))
        .route("/v1/models/{*model}", get(crate::endpoints::model))
        .route("/healthz", get(crate::endpoints::healthz))
        .route("/readyz", get(crate::readiness::readyz))
        .route("/metrics", get(crate::endpoints::metrics))
        .fallback(crate::endpoints::not_found)
        .method_not_allowed_fallback(crate::endpoints::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::intake::refuse_unreadable_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), answer_when_cut))
        // Outermost, so that every answer is counted, those of the layers above included.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::count_responses))
        .with_state(state)
}

/// A request still without its response when the shutdown grace period ends gets a 503 in OpenAI's shape
/// before its connection closes, rather than a closed connection (its log row says 503 too). Streams
/// have their response already and end with an error event instead (see `chat::aborted_event`).
async fn answer_when_cut(
    axum::extract::State(st): axum::extract::State<SharedState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut aborting = st.aborting.subscribe();
    tokio::select! {
        biased;
        r = next.run(req) => r,
        _ = aborting.wait_for(|a| *a) => crate::http_error::HttpError(
            rightmodel_core::ApiError::new(
                rightmodel_core::ErrorKind::Unavailable,
                "The server shut down before the answer was ready; retry the request.",
            )
            .with_retry_after(5),
        )
        .into_response(),
    }
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests (streams included)
/// finish for up to `shutdown_grace_secs`, and flushes the request log.
pub async fn serve(state: SharedState) -> Result<(), ServeError> {
    let addr = format!("{}:{}", state.config.server.host, state.config.server.port);
    let listener =
        tokio::net::TcpListener::bind(&addr).await.map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
    let local: SocketAddr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when `--port 0` is used.
    eprintln!("rightmodel listening on http://{local}");
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    let st = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        st.shutting_down.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: draining in-flight requests");
    };
    // Installed before serving, so a SIGHUP never stops the server (its default action).
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => {
            tokio::spawn(reload_keys_on_hangup(state.clone(), hangups));
        }
        Err(e) => tracing::warn!("cannot watch for SIGHUP ({e}): keys are read at start only"),
    }
    let fut = crate::intake::serve_http(listener, app(state.clone()), state.clone(), shutdown);
    tokio::pin!(fut);
    tokio::select! {
        () = &mut fut => {}
        _ = async {
            // Bound the drain: once shutdown has begun, wait at most `grace`.
            while !state.shutting_down.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(grace).await;
            // Let the requests still running say so (streams send an error event) before closing.
            tracing::warn!("shutdown grace period over; cutting the requests still running");
            state.aborting.send_replace(true);
            tokio::time::sleep(Duration::from_millis(300)).await;
        } => tracing::warn!("closed the remaining connections"),
    }
    Ok(())
}

/// On each SIGHUP, reads the config file again and replaces the API keys ([`Auth::reload`]): keys are
/// added, rotated, limited or revoked without dropping connections or the day's spend. Everything else
/// is read at start only. A file that no longer parses, or has no keys left, changes nothing (logged);
/// without a config file there is nothing to read.
#[cfg(unix)]
async fn reload_keys_on_hangup(state: SharedState, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        let Some(path) = state.config.source.clone() else {
            tracing::warn!("SIGHUP: the server was started without --config; there are no keys to reload");
            continue;
        };
        let (st, file) = (state.clone(), path.clone());
        // Reading the file and the log's spend by key block: the pool, not the runtime.
        let done = tokio::task::spawn_blocking(move || -> Result<crate::auth::KeysReloaded, String> {
            let config = Config::load(&file).map_err(|e| e.to_string())?;
            let (_, spent_by_key) =
                RequestLog::spend_since(&log_path(&st.config), start_of_day_ms()).map_err(|e| e.to_string())?;
            st.auth.reload(&config.keys, &spent_by_key)
        })
        .await;
        match done {
            Ok(Ok(r)) => tracing::info!(
                added = ?r.added,
                removed = ?r.removed,
                changed = ?r.changed,
                "SIGHUP: API keys reloaded from {} (other settings take effect at restart)",
                path.display()
            ),
            Ok(Err(e)) => tracing::error!("SIGHUP: keys not reloaded, the current ones stay: {e}"),
            Err(e) => tracing::error!("SIGHUP: keys not reloaded: {e}"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
