//! `GET /readyz`: whether the gateway can serve requests now, for a load balancer or an orchestrator's
//! readiness probe. `GET /healthz` stays a liveness probe (the process answers), cheap and 200 while
//! it serves.
//!
//! Every check reads what the gateway already knows: the request log's writer and queue, the local
//! engines' worker threads, and each upstream's recent calls ([`crate::upstream_health`]). A probe makes
//! no network call and no model work, so it can run every second.
//!
//! A check is `ok`, `degraded` or `failed`. The answer is 503 only when a *fatal* check fails, when the
//! gateway cannot do its job:
//! - `accepting`: it is shutting down (new requests get 503 anyway; take it out of rotation);
//! - `serving`: no chat model can serve (every local engine stopped and every upstream down), or
//!   nothing is configured to serve at all;
//! - `request_log`: the log's writer thread has stopped, so every request would go unrecorded (and the
//!   spend that budgets restore from the log at start with it).
//!
//! Everything else degrades without failing readiness (200, `status: "degraded"`): one model down while
//! others serve (fallback chains and `auto` route around it), and a request log that is backed up or
//! refused by its database (rows wait in memory and are retried, see [`crate::reqlog`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::state::{AppState, ChatModel, SharedState};
use crate::upstream_health::UpstreamState;

/// Rows waiting for the database beyond which the request log reads as backed up.
pub const LOG_BACKLOG_ROWS: u64 = 1_000;

/// How long the database may refuse every write before the request log reads as degraded.
pub const LOG_FAILING_FOR: Duration = Duration::from_secs(10);

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Working, with a problem an operator should see.
    Degraded,
    /// Not working.
    Failed,
}

/// One check of the answer.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `accepting`, `request_log`, `serving`, `model:NAME`, `embedding:NAME`.
    pub name: String,
    /// How it came out.
    pub status: CheckStatus,
    /// Whether its failure makes the gateway unready (503).
    pub fatal: bool,
    /// What it saw (counts, states), flattened into the check's object.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Check {
    fn new(name: impl Into<String>, status: CheckStatus, fatal: bool, detail: Value) -> Self {
        let detail = match detail {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Check { name: name.into(), status, fatal, detail }
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` (every check ok), `degraded` (some check not ok, none fatal failed) or `not_ready`.
    pub status: &'static str,
    /// Every check, in a stable order.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Whether a fatal check failed.
    pub fn is_ready(&self) -> bool {
        !self.checks.iter().any(|c| c.fatal && c.status == CheckStatus::Failed)
    }
}

/// The request log's writer and queue.
fn request_log(st: &AppState, now_ms: i64) -> Check {
    let stats = st.log.stats();
    let pending = stats.pending.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let since = stats.failing_since_ms.load(Ordering::Relaxed);
    let failing_for = (since > 0).then(|| Duration::from_millis(now_ms.saturating_sub(since).max(0) as u64));
    let running = st.log.writer_running();
    let status = if !running {
        CheckStatus::Failed
    } else if pending >= LOG_BACKLOG_ROWS || failing_for.is_some_and(|d| d >= LOG_FAILING_FOR) {
        CheckStatus::Degraded
    } else {
        CheckStatus::Ok
    };
    let detail = json!({
        "writer": if running { "running" } else { "stopped" },
        "rows_pending": pending,
        "rows_dropped": dropped,
        "failing_for_s": failing_for.map(|d| d.as_secs()),
    });
    Check::new("request_log", status, true, detail)
}

/// One chat model: a local engine's worker, or an upstream's recent calls. Whether it can serve.
fn chat_model(name: &str, model: &ChatModel) -> (Check, bool) {
    match model {
        ChatModel::Local(l) => {
            let running = l.engine.is_running();
            let stats = l.engine.stats();
            let detail = json!({
                "kind": "local",
                "engine": if running { "running" } else { "stopped" },
                "in_flight": stats.in_flight.load(Ordering::Relaxed),
                "queued": stats.queued.load(Ordering::Relaxed),
            });
            let status = if running { CheckStatus::Ok } else { CheckStatus::Failed };
            (Check::new(format!("model:{name}"), status, false, detail), running)
        }
        ChatModel::Upstream(u) => {
            let report = u.health.report();
            let status = match report.state {
                UpstreamState::Unknown | UpstreamState::Up => CheckStatus::Ok,
                UpstreamState::Failing => CheckStatus::Degraded,
                UpstreamState::Down => CheckStatus::Failed,
            };
            let mut detail = serde_json::to_value(&report).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut detail {
                m.insert("kind".into(), json!("upstream"));
            }
            (Check::new(format!("model:{name}"), status, false, detail), report.state != UpstreamState::Down)
        }
    }
}

/// Every check, as of `now_ms` (Unix ms).
pub fn assess_at(st: &AppState, now_ms: i64) -> Readiness {
    let mut checks = Vec::new();
    let stopping = st.shutting_down.load(Ordering::Relaxed);
    checks.push(Check::new(
        "accepting",
        if stopping { CheckStatus::Failed } else { CheckStatus::Ok },
        true,
        json!({"shutting_down": stopping}),
    ));
    checks.push(request_log(st, now_ms));
    let mut available = Vec::new();
    for (name, model) in &st.chat {
        let (check, serves) = chat_model(name, model);
        if serves {
            available.push(name.clone());
        }
        checks.push(check);
    }
    if let Some(e) = &st.embed {
        checks.push(Check::new(format!("embedding:{}", e.name), CheckStatus::Ok, false, json!({"kind": "encoder"})));
    }
    // Without chat models a gateway may still serve embeddings (and classifiers on the encoder); with
    // them, it serves nothing of its main job once none can answer.
    let serving = if st.chat.is_empty() { st.embed.is_some() } else { !available.is_empty() };
    checks.push(Check::new(
        "serving",
        if serving { CheckStatus::Ok } else { CheckStatus::Failed },
        true,
        json!({"chat_models_available": available, "chat_models_configured": st.chat.len()}),
    ));
    let mut r = Readiness { status: "ready", checks };
    r.status = if !r.is_ready() {
        "not_ready"
    } else if r.checks.iter().any(|c| c.status != CheckStatus::Ok) {
        "degraded"
    } else {
        "ready"
    };
    r
}

/// `GET /readyz`: 200 with the checks when the gateway can serve (`status` `ready` or `degraded`), 503
/// with the same body when a fatal check failed (see the module's documentation).
pub async fn readyz(State(st): State<SharedState>) -> Response {
    let r = assess_at(&st, chrono::Utc::now().timestamp_millis());
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(r)).into_response()
}
