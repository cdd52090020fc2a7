//! Asks a running gateway (or any OpenAI-compatible server) for every model's answer to every test
//! case of `rightmodel eval route`, timing each request as a client sees it and reading what the
//! gateway billed from `x-rightmodel-cost-usd`.
//!
//! Requests go out case by case with the models interleaved (case 1 to every model, then case 2, ...),
//! so a machine that slows down over the run slows every model alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rightmodel_core::wire::{ChatCompletionResponse, ModelList};
use rightmodel_router::compare::{Case, Outcome, Scoring};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// What to ask and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The server's API root, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Bearer token, when the server wants one.
    pub api_key: Option<String>,
    /// Models to compare, as the server names them (`auto` included).
    pub models: Vec<String>,
    /// Answer length cap.
    pub max_tokens: u32,
    /// Requests in flight at once (1 measures latency without queueing).
    pub concurrency: usize,
    /// Per-request time limit.
    pub timeout: Duration,
    /// How answers are scored.
    pub scoring: Scoring,
    /// A system message put before each case's conversation (e.g. "Answer with the letter only.").
    pub system: Option<String>,
    /// Stream the answers, to measure the time to the first token as a chat client sees it.
    pub stream: bool,
}

/// Why the comparison could not start.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The server could not be reached (no answer at all).
    #[error("cannot list the models at {url}: {reason} (is the gateway running? start it with `rightmodel serve`)")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Something answered `GET /models`, but not with a model list (an error status, another kind of
    /// server, a body cut short): not a reachability problem, so no "is it running?" hint.
    #[error("cannot list the models at {url}: {reason} (is --base-url the server's OpenAI API root, e.g. http://127.0.0.1:8080/v1?)")]
    BadReply {
        /// The URL asked.
        url: String,
        /// What it answered.
        reason: String,
    },
    /// The server refused the key (or the lack of one).
    #[error("{url} refused the request: {reason} (set the key in the variable named by --api-key-env)")]
    Refused {
        /// The URL asked.
        url: String,
        /// Its answer.
        reason: String,
    },
    /// A requested model is not served there.
    #[error("the server at {url} does not serve `{model}` (it serves: {served})")]
    UnknownModel {
        /// The API root.
        url: String,
        /// The missing model.
        model: String,
        /// What it serves.
        served: String,
    },
    /// Bad settings.
    #[error("{0}")]
    Invalid(String),
}

fn client(timeout: Duration) -> Result<reqwest::Client, CompareError> {
    reqwest::Client::builder().timeout(timeout).build().map_err(|e| CompareError::Invalid(e.to_string()))
}

fn authorised(rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

/// Checks that the server answers and serves every model of `cfg` (before any prompt is spent).
pub async fn check_models(cfg: &CompareConfig) -> Result<(), CompareError> {
    if cfg.models.is_empty() || cfg.concurrency == 0 || cfg.max_tokens == 0 {
        return Err(CompareError::Invalid("give at least one model, and a positive concurrency and max tokens".into()));
    }
    let url = format!("{}/models", cfg.base_url.trim_end_matches('/'));
    let unreachable = |reason: String| CompareError::Unreachable { url: url.clone(), reason };
    let resp = authorised(client(Duration::from_secs(30))?.get(&url), cfg.api_key.as_deref())
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let bad_reply = |reason: String| CompareError::BadReply { url: url.clone(), reason };
    let body =
        resp.text().await.map_err(|e| bad_reply(format!("HTTP {status}, but its body could not be read: {e}")))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(CompareError::Refused { url, reason: format!("HTTP {status}: {}", error_message(&body)) });
    }
    if !status.is_success() {
        return Err(bad_reply(format!("HTTP {status}: {}", error_message(&body))));
    }
    let list: ModelList = serde_json::from_str(&body).map_err(|e| bad_reply(format!("not a model list: {e}")))?;
    let served: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    for m in &cfg.models {
        if !served.contains(&m.as_str()) {
            return Err(CompareError::UnknownModel {
                url: cfg.base_url.clone(),
                model: m.clone(),
                served: served.join(", "),
            });
        }
    }
    Ok(())
}

/// The `error.message` of an OpenAI-style error body, else the body's start.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// What a request that failed to complete reports: a timeout as one, naming the limit (reqwest says
/// only "error sending request for url (...)"), anything else as reqwest words it.
fn request_error(e: &reqwest::Error, limit: Duration) -> String {
    if e.is_timeout() {
        timed_out(limit)
    } else {
        e.to_string()
    }
}

/// The error of a request that ran past its time limit.
fn timed_out(limit: Duration) -> String {
    format!("timed out: no complete answer within the {} s limit per request (--timeout-s)", limit.as_secs_f64())
}

/// One request: the answer, or the error a client would see.
async fn ask(http: &reqwest::Client, cfg: &CompareConfig, case_index: usize, case: &Case, model: &str) -> Outcome {
    let mut messages = Vec::with_capacity(case.messages.len() + 1);
    if let Some(s) = &cfg.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    messages.extend(case.messages.iter().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)));
    let mut body = json!({"model": model, "messages": messages, "max_tokens": cfg.max_tokens, "temperature": 0});
    if cfg.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
    let start = Instant::now();
    let mut out = Outcome {
        case: case_index,
        model: model.to_string(),
        served: None,
        answer: String::new(),
        quality: 0.0,
        latency_ms: 0.0,
        ttft_ms: None,
        cost_usd: None,
        error: None,
    };
    let sent = authorised(http.post(&url), cfg.api_key.as_deref()).json(&body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            out.latency_ms = start.elapsed().as_secs_f64() * 1e3;
            out.error = Some(request_error(&e, cfg.timeout));
            return out;
        }
    };
    let status = resp.status();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let served = header("x-rightmodel-model");
    let cost = header("x-rightmodel-cost-usd").and_then(|c| c.parse::<f64>().ok()).filter(|c| c.is_finite());
    if cfg.stream && status.is_success() {
        read_stream(resp, cfg, start, &mut out).await;
        out.latency_ms = start.elapsed().as_secs_f64() * 1e3;
        if out.error.is_none() {
            out.served = served.or(out.served.take());
            out.quality = cfg.scoring.score_case(&out.answer, case);
        }
        return out;
    }
    let text = resp.text().await;
    out.latency_ms = start.elapsed().as_secs_f64() * 1e3;
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            out.error = Some(request_error(&e, cfg.timeout));
            return out;
        }
    };
    if !status.is_success() {
        out.error = Some(format!("HTTP {}: {}", status.as_u16(), error_message(&text)));
        return out;
    }
    match serde_json::from_str::<ChatCompletionResponse>(&text) {
        Ok(r) => {
            out.answer =
                r.choices.first().and_then(|c| c.message.content.as_ref()).map(|c| c.text()).unwrap_or_default();
            out.served = served.or(Some(r.model));
            out.cost_usd = cost;
            out.quality = cfg.scoring.score_case(&out.answer, case);
        }
        Err(e) => out.error = Some(format!("not a chat completion: {e}")),
    }
    out
}

/// Reads a streamed answer into `out`: its text, the time to its first text, the model that answered
/// (the chunks' `model`) and what it cost (the usage chunk's `rightmodel.cost_usd`), or the error
/// that ended it.
async fn read_stream(resp: reqwest::Response, cfg: &CompareConfig, start: Instant, out: &mut Outcome) {
    let mut reader = crate::upstream::SseReader::new(resp, out.model.clone());
    let deadline = start + cfg.timeout;
    loop {
        let data = match reader.next_within(cfg.timeout, deadline).await {
            Ok(crate::upstream::SseItem::Data(d)) => d,
            Ok(crate::upstream::SseItem::Done) => return,
            Ok(crate::upstream::SseItem::Eof) => {
                out.error = Some("the stream ended without [DONE]".into());
                return;
            }
            Err(e) if e.kind == rightmodel_core::ErrorKind::Timeout && Instant::now() >= deadline => {
                out.error = Some(timed_out(cfg.timeout));
                return;
            }
            Err(e) => {
                out.error = Some(e.message);
                return;
            }
        };
        let v: Value = match serde_json::from_str(&data) {
            Ok(v) => v,
            Err(e) => {
                out.error = Some(format!("not a chat completion chunk: {e}"));
                return;
            }
        };
        if let Some(msg) = v.get("error") {
            let text = msg.get("message").and_then(Value::as_str).unwrap_or("error event");
            out.error = Some(format!("stream error: {text}"));
            return;
        }
        if let Some(t) = v.pointer("/choices/0/delta/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            out.ttft_ms.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            out.answer.push_str(t);
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            out.served.get_or_insert_with(|| m.to_string());
        }
        if let Some(c) = v.pointer("/rightmodel/cost_usd").and_then(Value::as_f64).filter(|c| c.is_finite()) {
            out.cost_usd = Some(c);
        }
    }
}

/// What [`run`] got back.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// The outcome of every request that finished, in (case, model) order.
    pub outcomes: Vec<Outcome>,
    /// Whether `stop` ended the run early: the requests not yet sent were never sent, and those in
    /// flight were dropped (they have no outcome).
    pub interrupted: bool,
}

/// Asks every model of `cfg` every case, at most `cfg.concurrency` requests at a time, calling
/// `progress` after each; the outcomes come back in (case, model) order. A request that fails is an
/// outcome with an error (it scores 0), not a failure of the run. When `stop` completes (Ctrl-C), no
/// further request is sent, the ones in flight are abandoned, and what finished comes back marked
/// [`Answers::interrupted`].
pub async fn run(
    cases: &[Case],
    cfg: &CompareConfig,
    progress: impl Fn() + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Answers, CompareError> {
    let mut stop = std::pin::pin!(stop);
    let mut interrupted = false;
    let http = client(cfg.timeout)?;
    let cases: Arc<Vec<Case>> = Arc::new(cases.to_vec());
    let cfg = Arc::new(cfg.clone());
    let progress = Arc::new(progress);
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    // Which job each task runs, so a task that dies still leaves its outcome (an error).
    let mut running = std::collections::HashMap::new();
    let jobs: Vec<(usize, usize)> = (0..cases.len()).flat_map(|c| (0..cfg.models.len()).map(move |m| (c, m))).collect();
    for (slot, (c, m)) in jobs.into_iter().enumerate() {
        // Taken here, in order, so requests start in the interleaved order even with concurrency.
        let permit = tokio::select! {
            biased;
            () = &mut stop => {
                interrupted = true;
                break;
            }
            p = permits.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let (http, cases, cfg, progress) = (http.clone(), cases.clone(), cfg.clone(), progress.clone());
        let handle = tasks.spawn(async move {
            let out = ask(&http, &cfg, c, &cases[c], &cfg.models[m]).await;
            drop(permit);
            progress();
            (slot, out)
        });
        running.insert(handle.id(), (slot, c, m));
    }
    if interrupted {
        tasks.abort_all();
    }
    let mut done: Vec<(usize, Outcome)> = Vec::with_capacity(tasks.len());
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop, if !interrupted => {
                interrupted = true;
                tasks.abort_all();
                continue;
            }
            r = tasks.join_next_with_id() => r,
        };
        let Some(r) = next else { break };
        match r {
            Ok((_, pair)) => done.push(pair),
            // Abandoned on interrupt: no answer, and no failure of the model either.
            Err(e) if e.is_cancelled() && interrupted => {}
            Err(e) => {
                let Some(&(slot, c, m)) = running.get(&e.id()) else { continue };
                done.push((
                    slot,
                    Outcome {
                        case: c,
                        model: cfg.models[m].clone(),
                        served: None,
                        answer: String::new(),
                        quality: 0.0,
                        latency_ms: 0.0,
                        ttft_ms: None,
                        cost_usd: None,
                        error: Some(format!("the request task failed: {e}")),
                    },
                ));
            }
        }
    }
    done.sort_by_key(|(slot, _)| *slot);
    Ok(Answers { outcomes: done.into_iter().map(|(_, o)| o).collect(), interrupted })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `app` on a free local port; returns its API root (`http://127.0.0.1:PORT/v1`).
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }

    fn config(base_url: String) -> CompareConfig {
        CompareConfig {
            base_url,
            api_key: None,
            models: vec!["m".into()],
            max_tokens: 8,
            concurrency: 1,
            timeout: Duration::from_secs(5),
            scoring: Scoring::Contains,
            system: None,
            stream: false,
        }
    }

    #[tokio::test]
    async fn a_model_list_without_created_or_owned_by_is_accepted() {
        let app = axum::Router::new().route(
            "/v1/models",
            axum::routing::get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "m"}]})) }),
        );
        check_models(&config(serve(app).await)).await.unwrap();
    }

    #[tokio::test]
    async fn a_request_past_the_time_limit_is_reported_as_a_timeout() {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(slow));
        let mut cfg = config(serve(app).await);
        cfg.timeout = Duration::from_millis(300);
        let case = Case { messages: Vec::new(), expected: vec!["x".into()], line: 1 };
        for stream in [false, true] {
            cfg.stream = stream;
            let out = run(std::slice::from_ref(&case), &cfg, || {}, std::future::pending()).await.unwrap();
            assert!(!out.interrupted);
            let e = out.outcomes[0].error.as_deref().unwrap_or_default();
            assert!(e.contains("timed out") && e.contains("0.3 s limit") && !e.contains("error sending"), "{e}");
        }
    }

    #[tokio::test]
    async fn stopping_sends_nothing_more_and_keeps_what_was_answered() {
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let answer = move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                // The first two answer at once, the third hangs until it is abandoned.
                if n >= 2 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                axum::Json(json!({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}]}))
            }
        };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer));
        let cfg = config(serve(app).await);
        let case = Case { messages: Vec::new(), expected: vec!["yes".into()], line: 1 };
        let cases = vec![case; 10];
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tx = std::sync::Mutex::new(Some(tx));
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = answered.clone();
        let progress = move || {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 2 {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        };
        let stop = async move {
            let _ = rx.await;
            // Let the third request reach the server, so one is in flight when the run stops.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let out =
            tokio::time::timeout(Duration::from_secs(10), run(&cases, &cfg, progress, stop)).await.unwrap().unwrap();
        assert!(out.interrupted);
        assert_eq!(out.outcomes.len(), 2, "{:?}", out.outcomes);
        assert!(out.outcomes.iter().all(|o| o.error.is_none() && o.quality == 1.0));
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3, "nothing sent after the stop");
    }

    #[tokio::test]
    async fn a_server_that_answers_badly_is_not_called_unreachable() {
        let app = axum::Router::new()
            .route("/v1/models", axum::routing::get(|| async { "<html>a web page</html>" }))
            .route("/v2/models", axum::routing::get(|| async { (axum::http::StatusCode::NOT_FOUND, "no such page") }));
        let base = serve(app).await;
        for root in [base.clone(), base.replace("/v1", "/v2")] {
            let e = check_models(&config(root)).await.unwrap_err();
            assert!(matches!(e, CompareError::BadReply { .. }), "{e}");
            assert!(!e.to_string().contains("is the gateway running"), "{e}");
        }
        // Nothing listening: that one is.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let e = check_models(&config(format!("http://{closed}/v1"))).await.unwrap_err();
        assert!(e.to_string().contains("is the gateway running"), "{e}");
    }
}
