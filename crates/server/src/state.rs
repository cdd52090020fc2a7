//! Everything a request handler needs, built once at start-up.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rightmodel_core::{ApiError, ModelKind, Price};
use rightmodel_infer::MiniLm;
use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::budget::SpendCounter;
use crate::config::Config;
use crate::local::LocalChat;
use crate::metrics::Metrics;
use crate::reqlog::RequestLog;
use crate::routing::AutoRouter;
use crate::upstream::Upstream;

/// A chat-capable model the gateway can call.
#[derive(Clone)]
pub enum ChatModel {
    /// In-process GGUF model.
    Local(LocalChat),
    /// OpenAI-compatible upstream.
    Upstream(Arc<Upstream>),
}

impl ChatModel {
    /// Price per million tokens.
    pub fn price(&self) -> Price {
        match self {
            ChatModel::Local(l) => l.price,
            ChatModel::Upstream(u) => u.config.price(),
        }
    }
    /// Where it runs.
    pub fn kind(&self) -> ModelKind {
        match self {
            ChatModel::Local(_) => ModelKind::LocalChat,
            ChatModel::Upstream(_) => ModelKind::Upstream,
        }
    }
    /// Models to try next when this one fails.
    pub fn fallbacks(&self) -> &[String] {
        match self {
            ChatModel::Local(_) => &[],
            ChatModel::Upstream(u) => &u.config.fallback,
        }
    }
}

/// The sentence encoder, shared with the blocking pool.
pub struct EmbedModel {
    /// Name clients use.
    pub name: String,
    /// The encoder.
    pub model: Arc<MiniLm>,
    /// Its directory (the router's static features are read from the same weights).
    pub dir: std::path::PathBuf,
    /// The worker that batches `/v1/embeddings` requests into shared encoder calls.
    pub batcher: Arc<crate::embed_batch::EmbedBatcher>,
}

/// Shared state of the gateway.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Chat models by name.
    pub chat: BTreeMap<String, ChatModel>,
    /// The embedding model, if configured.
    pub embed: Option<EmbedModel>,
    /// Classifiers and document collections, opened on first use.
    pub tasks: Arc<crate::tasks_api::TaskModels>,
    /// The router for `auto`.
    pub router: AutoRouter,
    /// API keys.
    pub auth: Auth,
    /// The request log.
    pub log: RequestLog,
    /// Metrics.
    pub metrics: Metrics,
    /// Gateway-wide spend today.
    pub spend: SpendCounter,
    /// Limits concurrent embedding work on the blocking pool.
    pub embed_permits: Arc<Semaphore>,
    /// Set when shutdown begins; new requests get 503.
    pub shutting_down: AtomicBool,
    /// Turns true when the shutdown grace period is over and requests still running are cut: streams
    /// end with an error event, and their log rows say 503 (not a client that left).
    pub aborting: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// 503 with Retry-After while the server shuts down: new requests go elsewhere while those
    /// running finish.
    pub fn refuse_if_shutting_down(&self) -> Result<(), ApiError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ApiError::new(rightmodel_core::ErrorKind::Unavailable, "The server is shutting down.")
                .with_retry_after(5));
        }
        Ok(())
    }

    /// A slot on the shared encoder (embeddings, classification, document retrieval), or 429 when all
    /// `max_embed_concurrency` are taken: requests beyond it would only queue behind one thread.
    pub fn embed_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.embed_permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(rightmodel_core::ErrorKind::RateLimited, "The embedding model is at capacity; retry shortly.")
                .with_retry_after(1)
        })
    }

    /// A slot of the encoder's capacity, waiting up to `wait` for one (then 429). For work already
    /// admitted by the router (a routed classifier's answer), which waited for the encoder there too.
    pub async fn embed_permit_within(
        &self,
        wait: std::time::Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        match permit_within(&self.embed_permits, wait).await {
            Some(p) => Ok(p),
            None => self.embed_permit(),
        }
    }

    /// The gateway's budget ([`AppState::check_budget`]) and then the caller's key limit
    /// ([`crate::auth::Caller::check_spend`]) for calling the model `name` at `price`, a call likely to
    /// cost `cost` dollars.
    pub fn check_limits(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
        price: rightmodel_core::Price,
        cost: f64,
    ) -> Result<(), ApiError> {
        self.check_budget(name, price, cost)?;
        caller.check_spend(name, price, cost)
    }

    /// Replaces the `old` dollars a request holds against the gateway's budget and the caller's key limit
    /// with `new`, for a call to `name` at `price` likely to cost `cost` (part of `new`): refused as
    /// [`AppState::check_limits`] refuses, with nothing held then. Each limit is checked and held in one
    /// step; when the key refuses, the budget's hold is put back.
    pub fn swap_hold(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
        price: rightmodel_core::Price,
        cost: f64,
        old: f64,
        new: f64,
    ) -> Result<(), ApiError> {
        let daily = self.config.budget.daily_usd;
        let limit = (!price.is_free() && daily > 0.0).then_some(daily);
        self.spend.swap_hold(old, new, limit).map_err(|others| {
            // What this request's earlier calls cost (part of `new`) is spent, not held by others.
            let at = crate::budget::Committed { spent: others.spent + (new - cost).max(0.0), ..others };
            budget_refusal(daily, at, cost, name)
        })?;
        if let Err(e) = caller.swap_hold(name, price, cost, old, new) {
            // Putting the old hold back cannot be refused (no limit).
            let _ = self.spend.swap_hold(new, old, None);
            return Err(e);
        }
        Ok(())
    }

    /// 429 until midnight UTC when what is left of the gateway's daily budget (after today's spend and
    /// what running requests hold) does not cover this call's likely `cost` and `price` is not free: the
    /// call itself must fit, or concurrent calls could all pass a nearly spent budget. Free (local)
    /// models always serve, whether `auto` chose them or the client named one.
    pub fn check_budget(&self, name: &str, price: rightmodel_core::Price, cost: f64) -> Result<(), ApiError> {
        let daily = self.config.budget.daily_usd;
        let at = self.spend.committed_parts();
        if price.is_free() || daily <= 0.0 || at.total() + cost <= daily {
            return Ok(());
        }
        Err(budget_refusal(daily, at, cost, name))
    }

    /// The chat model called `name`, or 404.
    pub fn chat_model(&self, name: &str) -> Result<&ChatModel, ApiError> {
        self.chat.get(name).ok_or_else(|| ApiError::model_not_found(name))
    }

    /// The refusal of model `name` by `endpoint`, which does not serve it: a 400 saying what `name` is
    /// and which endpoint does serve it when it is one of the gateway's models (rather than a 404 that
    /// says it does not exist), else the 404.
    pub fn not_served_here(&self, name: &str, endpoint: &str) -> ApiError {
        let Some((kind, serves)) = self.model_kind(name) else { return ApiError::model_not_found(name) };
        ApiError::invalid("model", format!("`{name}` is {kind}, which {endpoint} does not serve; use {serves}."))
            .with_code("model_not_supported")
    }

    /// What model `name` is, and the endpoint that serves it; `None` when the gateway has no model of
    /// that name (for the errors of an endpoint asked for a model of another kind).
    pub fn model_kind(&self, name: &str) -> Option<(&'static str, &'static str)> {
        if name == "auto" {
            Some(("the gateway's routing", "/v1/chat/completions"))
        } else if self.chat.contains_key(name) {
            Some(("a chat model", "/v1/chat/completions"))
        } else if name.strip_prefix("docs:").is_some_and(|c| !c.is_empty()) && self.embed.is_some() {
            Some(("a document collection", "/v1/chat/completions"))
        } else if self.embed.as_ref().is_some_and(|e| e.name == name) {
            Some(("an embedding model", "/v1/embeddings"))
        } else if self.config.classifiers.iter().any(|c| c.name == name) {
            Some(("a classifier", "/v1/classify"))
        } else {
            None
        }
    }
}

/// The refusal of a call to `name` likely to cost `cost` by the gateway's `daily` budget, with
/// `at` spent and held today.
fn budget_refusal(daily: f64, at: crate::budget::Committed, cost: f64, name: &str) -> ApiError {
    let e = crate::budget::limit_refusal("the gateway's daily budget", daily, at, cost, name, "daily_budget_exhausted");
    // A 429 names the model (a local one still serves); a 422 names max_tokens.
    if e.kind == rightmodel_core::ErrorKind::RateLimited {
        e.with_param("model")
    } else {
        e
    }
}

/// Handle given to axum.
pub type SharedState = Arc<AppState>;

/// A permit of `permits`, waiting up to `wait` for one; `None` when none came free in time.
pub async fn permit_within(
    permits: &Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout(wait, permits.clone().acquire_owned()).await.ok()?.ok()
}
