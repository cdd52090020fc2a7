//! Client for OpenAI-compatible upstreams: timeouts, retries with jittered backoff (honouring
//! Retry-After) and streaming passthrough.
//!
//! Only calls the upstream cannot have started are retried: failed connections, sends that fail at
//! once, 429 and 5xx answers, and streams that end or open with an error event before their first
//! chunk. A timeout or a connection lost later may have left the upstream generating (and billing),
//! so it moves on to the fallbacks instead of asking the same upstream for the same answer again.
//!
//! Retries happen only before the first byte of an answer reaches the client. If an upstream dies in
//! the middle of a stream, the client has already received part of the answer, so the stream ends with
//! an SSE `error` event (OpenAI's error object) and no `[DONE]`; the request log records status 502.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::Rng;
use rightmodel_core::wire::{ChatCompletionChunk, ChatCompletionResponse};
use rightmodel_core::{ApiError, ErrorKind};
use serde_json::Value;

use crate::config::UpstreamModel;
use crate::upstream_health::UpstreamHealth;

/// One configured upstream model.
pub struct Upstream {
    /// Its configuration.
    pub config: UpstreamModel,
    client: reqwest::Client,
    /// Every call's headers: the key (`Authorization` or the configured header) and the extra ones.
    headers: reqwest::header::HeaderMap,
    /// What its calls have shown of its health (for `/readyz`); shared with the streams it opened,
    /// which note how they end.
    pub health: Arc<UpstreamHealth>,
}

/// Whether `e` says the upstream failed (unreachable, 5xx, timed out, rate limited past the retries, a
/// broken answer), as opposed to an answer refusing the request, which shows it up.
fn is_upstream_failure(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ErrorKind::BadGateway
            | ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::Internal
            | ErrorKind::RateLimited
    )
}

/// Notes a call's outcome in `health`: no error, or a request error the upstream judged (it is up), is
/// a success; an outage, a timeout or a broken answer a failure.
fn note_outcome(health: &UpstreamHealth, error: Option<&ApiError>) {
    match error {
        Some(e) if is_upstream_failure(e) => health.record_failure(&e.message),
        _ => health.record_success(),
    }
}

/// What a failed attempt tells the retry loop.
enum Attempt<T> {
    Done(T),
    Retry(ApiError, Option<Duration>),
    Fail(ApiError),
}

impl Upstream {
    /// A client for `config`; the API key is read from its environment variable now. A variable that is
    /// named but unset or empty is an error: every call would fail with the upstream's 401 otherwise.
    pub fn new(config: UpstreamModel) -> Result<Self, String> {
        let api_key = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => {
                    return Err(format!(
                        "the environment variable {var} (api_key_env) is not set or empty; set it to the API key, \
                         or remove api_key_env for an upstream that needs none"
                    ))
                }
            },
            None => None,
        };
        let headers =
            call_headers(&config, api_key.as_deref()).map_err(|e| format!("upstream `{}`: {e}", config.name))?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        if let Some(path) = &config.ca_file {
            for cert in ca_certificates(path).map_err(|e| format!("upstream `{}`: {e}", config.name))? {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client.build().map_err(|e| format!("upstream `{}`: {e}", config.name))?;
        Ok(Upstream { config, client, headers, health: Arc::default() })
    }

    /// The URL of `path` under the base URL, the base's query string (if any) kept at the end.
    fn url(&self, path: &str) -> String {
        let (base, query) = match self.config.base_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.config.base_url.as_str(), None),
        };
        let mut url = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// The body sent upstream: the client's request with the upstream's model id and without
    /// rightmodel's own fields.
    pub fn upstream_body(&self, mut body: Value, stream: bool) -> Value {
        if let Some(obj) = body.as_object_mut() {
            obj.insert(
                "model".into(),
                Value::String(self.config.model.clone().unwrap_or_else(|| self.config.name.clone())),
            );
            obj.remove("rightmodel");
            if stream {
                obj.insert("stream".into(), Value::Bool(true));
                // Ask for usage so cost can be logged; the chunk is dropped for clients that did not ask
                // for it. Upstreams that reject the field are configured with `stream_usage = false`.
                if self.config.stream_usage {
                    obj.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
                } else {
                    obj.remove("stream_options");
                }
            } else {
                obj.remove("stream");
                obj.remove("stream_options");
            }
        }
        body
    }

    /// One attempt. `header_wait` bounds the wait for the response headers (streams: the upstream
    /// should answer promptly); `None` leaves it to the caller's deadline: a non-streaming answer's
    /// headers come only once the whole answer is written, so a slow but working upstream must not be
    /// taken for a dead one (and asked again, paying for the work twice).
    async fn send_once(&self, path: &str, body: &Value, header_wait: Option<Duration>) -> Attempt<reqwest::Response> {
        let req = self.client.post(self.url(path)).headers(self.headers.clone()).json(body);
        let sent_at = Instant::now();
        let sent = match header_wait {
            // The request went out: the upstream may be working on it, so it is not sent again.
            Some(wait) => match tokio::time::timeout(wait, req.send()).await {
                Ok(r) => r,
                Err(_) => {
                    return Attempt::Fail(ApiError::new(
                        ErrorKind::Timeout,
                        format!("upstream `{}` did not answer within {} ms", self.config.name, wait.as_millis()),
                    ))
                }
            },
            None => req.send().await,
        };
        let resp = match sent {
            Err(e) => {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::BadGateway };
                // A connection that never opened cannot have started a generation, nor, in practice, one
                // that failed at once (a pooled connection the server was closing as it was reused).
                let retry = e.is_connect() || sent_at.elapsed() < QUICK_FAILURE;
                // Without the URL: clients must not learn where the upstream lives.
                let e = e.without_url();
                let err =
                    ApiError::new(kind, format!("upstream `{}` unreachable: {}", self.config.name, root_cause(&e)));
                return if retry { Attempt::Retry(err, None) } else { Attempt::Fail(err) };
            }
            Ok(r) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done(resp);
        }
        let retry_after = retry_after(resp.headers());
        let text = read_capped(resp, ERROR_BODY_MAX).await;
        self.error_attempt(status.as_u16(), &text, retry_after)
    }

    /// What an upstream error response means for the client and for the retry loop.
    ///
    /// The client sees the upstream's status and, for request errors it can fix (400, 413, 422), the
    /// upstream's message, `code` and `param`; other upstream messages (5xx, 401/403, 404) describe the
    /// gateway's own setup or the upstream's internals (URLs, hints about the gateway's key), so they go to
    /// the log only. 401/403/404 are the gateway's configuration, not the client's request: they count as
    /// upstream failures (502), so a fallback chain moves on.
    fn error_attempt(&self, status: u16, text: &str, retry_after: Option<Duration>) -> Attempt<reqwest::Response> {
        let parsed = serde_json::from_str::<Value>(text).ok();
        let field = |k: &str| parsed.as_ref().and_then(|v| v.pointer(&format!("/error/{k}"))).and_then(Value::as_str);
        let upstream_msg = field("message").map(str::to_string).unwrap_or_else(|| text.chars().take(300).collect());
        let name = &self.config.name;
        match status {
            400 | 413 | 422 => {
                let kind = match status {
                    413 => ErrorKind::PayloadTooLarge,
                    422 => ErrorKind::Unprocessable,
                    _ => ErrorKind::InvalidRequest,
                };
                let mut e = ApiError::new(kind, format!("upstream `{name}` returned {status}: {upstream_msg}"));
                e.code = field("code").map(str::to_string);
                e.param = field("param").map(str::to_string);
                Attempt::Fail(e)
            }
            _ => {
                tracing::warn!("upstream `{name}` returned {status}: {upstream_msg}");
                let msg = format!("upstream `{name}` returned {status}");
                match status {
                    // The gateway's account is out of credit: asking again cannot help.
                    429 if field("code") == Some("insufficient_quota")
                        || field("type") == Some("insufficient_quota") =>
                    {
                        Attempt::Fail(ApiError::new(ErrorKind::BadGateway, format!("{msg} (insufficient_quota)")))
                    }
                    429 => Attempt::Retry(ApiError::new(ErrorKind::RateLimited, msg), retry_after),
                    500..=599 => Attempt::Retry(ApiError::new(ErrorKind::BadGateway, msg), retry_after),
                    _ => Attempt::Fail(ApiError::new(ErrorKind::BadGateway, msg)),
                }
            }
        }
    }

    /// Sends with retries until `deadline`, counting attempts in `attempt` (shared with a stream's
    /// retries before its first event); returns the successful response (headers received, body not
    /// yet read).
    async fn send(
        &self,
        path: &str,
        body: &Value,
        header_wait: Option<Duration>,
        deadline: Instant,
        attempt: &mut u32,
    ) -> Result<reqwest::Response, ApiError> {
        loop {
            let outcome = match tokio::time::timeout_at(deadline.into(), self.send_once(path, body, header_wait)).await
            {
                Ok(o) => o,
                Err(_) => return Err(self.timed_out()),
            };
            match outcome {
                Attempt::Done(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, after) => self.back_off(e, after, deadline, attempt).await?,
            }
        }
    }

    fn timed_out(&self) -> ApiError {
        ApiError::new(ErrorKind::Timeout, format!("upstream `{}` timed out", self.config.name))
    }

    /// Waits before retry `attempt + 1`, or gives `e` back when retries or time are used up. A rate
    /// limit that outlasts the retries is an upstream failure from the client's view (502, so fallback
    /// chains move on), carrying the upstream's Retry-After.
    async fn back_off(
        &self,
        e: ApiError,
        after: Option<Duration>,
        deadline: Instant,
        attempt: &mut u32,
    ) -> Result<(), ApiError> {
        // The upstream's Retry-After travels with the 502 so that the client's SDK can wait it out.
        let give_up = |e: ApiError| {
            let kind = if e.kind == ErrorKind::RateLimited { ErrorKind::BadGateway } else { e.kind };
            ApiError { kind, retry_after: after.map(|d| d.as_secs().max(1)).or(e.retry_after), ..e }
        };
        // A long Retry-After is the client's to wait out (its SDK honours the header the 502 carries),
        // or the fallbacks' chance: holding the request here would only delay both.
        if *attempt >= self.config.max_retries || after.is_some_and(|a| a > MAX_RETRY_WAIT) {
            return Err(give_up(e));
        }
        *attempt += 1;
        let backoff = after.unwrap_or_else(|| {
            let base = 100.0 * 2f64.powi(*attempt as i32 - 1);
            Duration::from_millis(rand::thread_rng().gen_range(base * 0.5..=base * 1.5) as u64)
        });
        if Instant::now() + backoff >= deadline {
            return Err(give_up(e));
        }
        tracing::info!("{}; retry {attempt} in {} ms", e.message, backoff.as_millis());
        tokio::time::sleep(backoff).await;
        Ok(())
    }

    /// Notes a call's outcome in [`Upstream::health`] ([`note_outcome`]) and passes it on.
    fn noted<T>(&self, r: Result<T, ApiError>) -> Result<T, ApiError> {
        note_outcome(&self.health, r.as_ref().err());
        r
    }

    /// A non-streaming chat completion.
    pub async fn chat(&self, body: Value) -> Result<ChatCompletionResponse, ApiError> {
        let r = match self.call_bytes("chat/completions", body).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(
                    ErrorKind::BadGateway,
                    format!("upstream `{}` sent an invalid chat completion: {e}", self.config.name),
                )
            }),
            Err(e) => Err(e),
        };
        self.noted(r)
    }

    /// A non-streaming call of any endpoint, returned as JSON (completions, embeddings).
    pub async fn call_json(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        let r = match self.call_bytes(path, body).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(ErrorKind::BadGateway, format!("upstream `{}` sent invalid JSON: {e}", self.config.name))
            }),
            Err(e) => Err(e),
        };
        self.noted(r)
    }

    /// A non-streaming call's body (at most [`BODY_MAX`]), the whole exchange within `total_timeout_ms`.
    async fn call_bytes(&self, path: &str, body: Value) -> Result<Bytes, ApiError> {
        let body = self.upstream_body(body, false);
        let deadline = Instant::now() + Duration::from_millis(self.config.total_timeout_ms);
        let resp = self.send(path, &body, None, deadline, &mut 0).await?;
        let name = &self.config.name;
        let mut stream = resp.bytes_stream();
        let mut out = Vec::new();
        let read = async {
            while let Some(b) = stream.next().await {
                let b = b.map_err(|e| {
                    ApiError::new(
                        ErrorKind::BadGateway,
                        format!("upstream `{name}` broke off: {}", root_cause(&e.without_url())),
                    )
                })?;
                if out.len() + b.len() > BODY_MAX {
                    return Err(ApiError::new(
                        ErrorKind::BadGateway,
                        format!("upstream `{name}` sent an answer over {} MiB", BODY_MAX >> 20),
                    ));
                }
                out.extend_from_slice(&b);
            }
            Ok(())
        };
        match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(Ok(())) => Ok(Bytes::from(out)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// A streaming chat completion: the upstream's SSE events parsed into chunks as they arrive.
    /// Errors before the first chunk are returned here (so the caller can fall back); errors later
    /// arrive as the stream's last item.
    pub async fn chat_stream(
        &self,
        body: Value,
    ) -> Result<impl Stream<Item = Result<ChatCompletionChunk, ApiError>> + Send + 'static, ApiError> {
        self.sse_stream("chat/completions", body).await
    }

    /// A streaming call to `path` (`chat/completions`, `completions`) whose SSE `data:` events parse as
    /// `T`; the stream ends at `[DONE]`. Errors as for [`Upstream::chat_stream`].
    ///
    /// Until its first event arrives nothing has reached the client, so a stream that ends, or opens
    /// with an error event, before then is retried (and then falls back) like a failed request; one
    /// that stalls or breaks falls back without a retry (the upstream may still be generating), and so
    /// does a JSON body that is not an answer. A whole JSON answer (from a server that ignores
    /// `stream`) is passed on as the events of a stream: it was generated and billed already.
    /// Something (an event, or a comment such as a keep-alive) must come within
    /// `first_token_timeout_ms` of the last, and the whole stream within `total_timeout_ms`. A stream
    /// that ends without `[DONE]` after a choice finished ends normally; events of unknown shape (e.g.
    /// content-filter notes) are skipped.
    pub async fn sse_stream<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<impl Stream<Item = Result<T, ApiError>> + Send + 'static, ApiError> {
        // A stream that fails to open is noted at once; one that opened is noted when it ends: a
        // success once the answer has come whole, a failure when it breaks (noting the opening as a
        // success would reset the failures in a row, and an upstream whose every stream breaks
        // mid-way would never read `down`).
        let stream = match self.open_sse_stream::<T>(path, body).await {
            Ok(s) => s,
            Err(e) => return self.noted(Err(e)),
        };
        let health = Arc::clone(&self.health);
        Ok(async_stream::stream! {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = &item {
                    // Every error of an opened stream ends it (see `open_sse_stream`).
                    note_outcome(&health, Some(e));
                    yield item;
                    return;
                }
                yield item;
            }
            // Not reached when the client leaves first: the stream is dropped, and nothing is known.
            note_outcome(&health, None);
        })
    }

    /// [`Upstream::sse_stream`], without noting the outcome.
    async fn open_sse_stream<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<impl Stream<Item = Result<T, ApiError>> + Send + 'static, ApiError> {
        let body = self.upstream_body(body, true);
        // What a whole answer holds: every choice finished, and the usage asked for (see `complete`).
        let choices = expected_choices(&body);
        let usage_asked = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let name = self.config.name.clone();
        let idle = Duration::from_millis(self.config.first_token_timeout_ms);
        let deadline = Instant::now() + Duration::from_millis(self.config.total_timeout_ms);
        let mut attempt = 0u32;
        let source = loop {
            let resp = self.send(path, &body, Some(idle), deadline, &mut attempt).await?;
            if is_json(resp.headers()) {
                let text = match tokio::time::timeout_at(deadline.into(), read_capped(resp, BODY_MAX)).await {
                    Ok(t) => t,
                    Err(_) => return Err(self.timed_out()),
                };
                let v = serde_json::from_str::<Value>(&text).ok();
                // A whole answer (a server that ignores `stream`) was generated and billed already:
                // it is passed on as events rather than dropped and asked of a fallback.
                if let Some(events) = v.as_ref().and_then(whole_answer_as_events) {
                    tracing::warn!(
                        "upstream `{name}` answered a stream request with one JSON answer; passed on as events"
                    );
                    break StreamSource::Whole(events);
                }
                let detail = v
                    .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
                    // Not the body itself: the log must not keep what may be someone's text.
                    .unwrap_or_else(|| format!("{} bytes that are neither an answer nor an error object", text.len()));
                tracing::warn!("upstream `{name}` answered a stream request with JSON, not events: {detail}");
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    format!("upstream `{name}` answered a streaming request with JSON instead of an event stream"),
                ));
            }
            let mut reader = SseReader::new(resp, name.clone());
            let err = match reader.next_within(idle, deadline).await {
                Ok(SseItem::Eof | SseItem::Done) => ApiError::new(
                    ErrorKind::BadGateway,
                    format!("upstream `{name}` closed the stream before any event"),
                ),
                // An error as the first event: nothing has reached the client yet, so retry / fall back.
                Ok(SseItem::Data(d)) => match stream_error(&d) {
                    Some(detail) => {
                        tracing::warn!("upstream `{name}` failed at the start of a stream: {detail}");
                        ApiError::new(
                            ErrorKind::BadGateway,
                            format!("upstream `{name}` failed at the start of the stream"),
                        )
                    }
                    None => break StreamSource::Events(reader, SseItem::Data(d)),
                },
                // A stalled or broken stream may have left the upstream working: fall back rather than
                // ask it again (an error event, or a stream closed before any event, is retried above).
                Err(e) => return Err(e),
            };
            self.back_off(err, None, deadline, &mut attempt).await?;
        };
        let s = async_stream::stream! {
            let (mut reader, first) = match source {
                StreamSource::Events(reader, first) => (reader, first),
                StreamSource::Whole(events) => {
                    for v in events {
                        match T::deserialize(&v) {
                            Ok(c) => yield Ok(c),
                            Err(e) => {
                                tracing::warn!("upstream `{name}` sent an answer of an unknown shape: {e}");
                                yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` sent an answer of an unknown shape")));
                                return;
                            }
                        }
                    }
                    return;
                }
            };
            let mut finished = false;
            let mut answer = AnswerProgress::default();
            let mut next = Some(first);
            loop {
                let complete = answer.complete(choices, usage_asked);
                // A whole answer is waited on only briefly for `[DONE]` or the close: an upstream that
                // sends neither has delivered (and billed) it all, and the stream ends normally.
                let wait = if complete { idle.min(COMPLETE_GRACE) } else { idle };
                let item = match next.take() {
                    Some(i) => i,
                    None => match reader.next_within(wait, deadline).await {
                        Ok(i) => i,
                        Err(e) if complete => {
                            tracing::debug!("upstream `{name}` sent the whole answer, then neither [DONE] nor the end: {}", e.message);
                            return;
                        }
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    },
                };
                let data = match item {
                    SseItem::Done => return,
                    SseItem::Eof if finished => return,
                    SseItem::Eof => {
                        yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` closed the stream before [DONE]")));
                        return;
                    }
                    SseItem::Data(d) => d,
                };
                let Ok(v) = serde_json::from_str::<Value>(&data) else {
                    yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` sent an invalid stream event")));
                    return;
                };
                if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                    tracing::warn!("upstream `{name}` failed mid-stream: {err}");
                    yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` failed mid-stream")));
                    return;
                }
                finished |= v.get("choices").and_then(Value::as_array).is_some_and(|cs| {
                    cs.iter().any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()))
                });
                answer.read(&v);
                match T::deserialize(&v) {
                    Ok(c) => yield Ok(c),
                    // Notes without content (e.g. a content filter's offsets) may be skipped; an event that
                    // carries text or usage must not vanish silently.
                    Err(e) if carries_content(&v) => {
                        tracing::warn!("upstream `{name}` sent a stream event of an unknown shape: {e}");
                        yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` sent a stream event of an unknown shape")));
                        return;
                    }
                    Err(e) => tracing::debug!("upstream `{name}`: skipped a stream event of another shape ({e})"),
                }
            }
        };
        Ok(s)
    }
}

/// The certificates of the PEM file `path` (`ca_file`), checked at start: a missing or unreadable file,
/// or one without a certificate, would otherwise surface as every call's TLS failure.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {shown}: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("ca_file {shown} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"));
    }
    Ok(certs)
}

/// Where a stream's events come from.
enum StreamSource {
    /// An event stream, with its first event already read.
    Events(SseReader, SseItem),
    /// Events made from one JSON answer (see [`whole_answer_as_events`]).
    Whole(Vec<Value>),
}

/// The stream events that carry the same answer as `v`, a whole chat or text completion (`None` when
/// `v` is not one, e.g. an error object): one event with every choice (a chat `message` becomes a
/// `delta`, its tool calls numbered as stream deltas are), then one with the usage, as OpenAI streams
/// it.
fn whole_answer_as_events(v: &Value) -> Option<Vec<Value>> {
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return None;
    }
    let mut head = v.as_object()?.clone();
    let choices = head.get_mut("choices")?.as_array_mut()?;
    if choices.is_empty() {
        return None;
    }
    for c in choices.iter_mut() {
        let c = c.as_object_mut()?;
        if let Some(mut message) = c.remove("message") {
            if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for (i, call) in calls.iter_mut().enumerate() {
                    if let Some(call) = call.as_object_mut() {
                        call.insert("index".into(), Value::from(i));
                    }
                }
            }
            c.insert("delta".into(), message);
        } else if !c.contains_key("text") {
            return None;
        }
    }
    if head.get("object").and_then(Value::as_str) == Some("chat.completion") {
        head.insert("object".into(), Value::from("chat.completion.chunk"));
    }
    let usage = head.remove("usage").filter(|u| !u.is_null());
    let mut events = vec![Value::Object(head.clone())];
    if let Some(usage) = usage {
        head.insert("choices".into(), Value::Array(Vec::new()));
        head.insert("usage".into(), usage);
        events.push(Value::Object(head));
    }
    Some(events)
}

/// The `error` object of a stream event, if it is one.
fn stream_error(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    v.get("error").filter(|e| !e.is_null()).map(Value::to_string)
}

/// Whether a response's body is JSON (not an event stream).
fn is_json(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// The headers of every call to `config`'s upstream: the key and the configured extra headers,
/// checked once here (a key with a stray newline would fail every call as a "builder error").
fn call_headers(config: &UpstreamModel, api_key: Option<&str>) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("`{k}` is not a valid header name"))?;
        if ["host", "content-length", "content-type", "transfer-encoding", "connection"].contains(&name.as_str()) {
            return Err(format!("header `{k}` is set by the gateway itself and cannot be configured"));
        }
        let key_header = config.api_key_header.as_deref().unwrap_or("authorization");
        if name.as_str() == "authorization" || name.as_str().eq_ignore_ascii_case(key_header) {
            return Err(format!("header `{k}` carries a secret: put it in the variable named by api_key_env"));
        }
        let value = HeaderValue::from_str(v).map_err(|_| format!("the value of header `{k}` is not valid in HTTP"))?;
        headers.insert(name, value);
    }
    if api_key.is_none() && config.api_key_header.is_some() {
        return Err("api_key_header is set but api_key_env is not: name the variable that holds the key".into());
    }
    if let Some(key) = api_key {
        let (name, value) = match &config.api_key_header {
            Some(h) => (
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("`{h}` (api_key_header) is not a valid header name"))?,
                key.to_string(),
            ),
            None => (AUTHORIZATION, format!("Bearer {key}")),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            "the API key holds characters an HTTP header cannot carry (check the variable's value)".to_string()
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// How long a stream whose answer is whole (see [`AnswerProgress::complete`]) is waited on for its
/// `[DONE]` or its end, instead of the upstream's whole idle timeout: long enough for a usage chunk
/// that follows the finish.
const COMPLETE_GRACE: Duration = Duration::from_secs(2);

/// The choices a streamed request's answer holds: `n` for each prompt (a text completion may send
/// several prompts, as an array of strings or of token arrays; one token array is one prompt).
fn expected_choices(body: &Value) -> u64 {
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let prompts = match body.get("prompt").and_then(Value::as_array) {
        Some(a) if a.iter().all(Value::is_number) => 1,
        Some(a) => a.len().max(1) as u64,
        None => 1,
    };
    n.saturating_mul(prompts)
}

/// What of an answer a stream has delivered so far: the choices that finished, and whether usage came
/// after the last of them.
#[derive(Default)]
struct AnswerProgress {
    /// Indexes of the choices with a `finish_reason` (sorted, each once).
    finished: Vec<u64>,
    /// Whether an event carried usage since the last choice finished (usage sent on every chunk says
    /// nothing about the choices still running).
    usage: bool,
}

impl AnswerProgress {
    /// Takes note of one event (a chunk as JSON).
    fn read(&mut self, v: &Value) {
        if let Some(cs) = v.get("choices").and_then(Value::as_array) {
            let done = |c: &&Value| c.get("finish_reason").and_then(Value::as_str).is_some_and(|f| !f.is_empty());
            for c in cs.iter().filter(done) {
                let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Err(at) = self.finished.binary_search(&i) {
                    self.finished.insert(at, i);
                    self.usage = false;
                }
            }
        }
        self.usage |= v.get("usage").is_some_and(Value::is_object);
    }

    /// Whether the answer is whole: all `choices` finished, and usage came if it was asked for.
    fn complete(&self, choices: u64, usage_asked: bool) -> bool {
        self.finished.len() as u64 >= choices && (self.usage || !usage_asked)
    }
}

/// Whether a stream event holds answer text, a tool call or usage.
fn carries_content(v: &Value) -> bool {
    let has = |x: Option<&Value>| x.is_some_and(|x| !x.is_null() && x != &Value::String(String::new()));
    has(v.get("usage"))
        || v.get("choices").and_then(Value::as_array).is_some_and(|cs| {
            cs.iter()
                .any(|c| has(c.get("text")) || has(c.pointer("/delta/content")) || has(c.pointer("/delta/tool_calls")))
        })
}

/// A send that fails within this time is retried even after the request went out: no generation
/// worth paying for has started, and a reused connection the server was just closing fails so.
const QUICK_FAILURE: Duration = Duration::from_secs(1);

/// Longest Retry-After the gateway waits out itself before retrying.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Largest non-streaming answer read from an upstream (a broken one must not fill the memory).
const BODY_MAX: usize = 64 * 1024 * 1024;

/// Largest upstream error body read (its message is all that is kept).
const ERROR_BODY_MAX: usize = 64 * 1024;

/// Largest SSE event (or line) accepted from an upstream: a stream that never ends an event must not
/// grow the gateway's memory without bound.
const SSE_EVENT_MAX: usize = 8 * 1024 * 1024;

/// Up to `max` bytes of a response body, as text (the rest is not read).
async fn read_capped(resp: reqwest::Response, max: usize) -> String {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(Ok(b)) = body.next().await {
        out.extend_from_slice(&b);
        if out.len() >= max {
            out.truncate(max);
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, capped at a minute.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let ms = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).map(|ms| ms / 1000.0);
    let secs = get("retry-after").and_then(|v| {
        v.parse::<f64>().ok().or_else(|| {
            let at = httpdate::parse_http_date(v).ok()?;
            Some(at.duration_since(std::time::SystemTime::now()).map_or(0.0, |d| d.as_secs_f64()))
        })
    });
    ms.or(secs).filter(|s| s.is_finite()).map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)))
}

/// One item of an SSE stream.
pub(crate) enum SseItem {
    /// An event's data (its `data:` lines joined by newlines).
    Data(String),
    /// The `[DONE]` sentinel.
    Done,
    /// The connection ended (after any last, unterminated event).
    Eof,
}

/// Splits an upstream's byte stream into SSE events (lines ending in LF, CRLF or CR, as the SSE
/// specification allows; comments and other fields ignored).
pub(crate) struct SseReader {
    bytes: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
    data: String,
    eof: bool,
    name: String,
}

impl SseReader {
    pub(crate) fn new(resp: reqwest::Response, name: String) -> Self {
        Self::from_stream(Box::pin(resp.bytes_stream()), name)
    }

    fn from_stream(bytes: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>, name: String) -> Self {
        SseReader { bytes, buf: Vec::new(), data: String::new(), eof: false, name }
    }

    /// The next item. The upstream must send something (data or a comment such as a keep-alive: a
    /// live upstream that is still thinking) at least every `idle`, and the stream must end by `deadline`.
    pub(crate) async fn next_within(&mut self, idle: Duration, deadline: Instant) -> Result<SseItem, ApiError> {
        loop {
            while let Some(line) = self.take_line() {
                if let Some(item) = self.on_line(&line) {
                    return Ok(item);
                }
            }
            if self.eof {
                // A last event without its blank line still counts.
                if !self.buf.is_empty() {
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                    if let Some(item) = self.on_line(&line) {
                        return Ok(item);
                    }
                }
                return Ok(self.on_line("").unwrap_or(SseItem::Eof));
            }
            let until = (Instant::now() + idle).min(deadline);
            let next = match tokio::time::timeout_at(until.into(), self.bytes.next()).await {
                Ok(n) => n,
                Err(_) if until >= deadline => {
                    return Err(ApiError::new(ErrorKind::Timeout, format!("upstream `{}` timed out", self.name)))
                }
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorKind::Timeout,
                        format!("upstream `{}` sent nothing for {} ms", self.name, idle.as_millis()),
                    ))
                }
            };
            match next {
                None => self.eof = true,
                Some(Ok(b)) => {
                    self.buf.extend_from_slice(&b);
                    if self.buf.len() > SSE_EVENT_MAX {
                        return Err(self.too_large());
                    }
                }
                Some(Err(e)) => {
                    return Err(ApiError::new(
                        ErrorKind::BadGateway,
                        format!("upstream `{}` died mid-stream: {}", self.name, root_cause(&e.without_url())),
                    ))
                }
            }
        }
    }

    fn too_large(&self) -> ApiError {
        ApiError::new(ErrorKind::BadGateway, format!("upstream `{}` sent a stream event over 8 MiB", self.name))
    }

    /// The next whole line of the buffer, without its ending. A CR at the very end waits for more
    /// bytes (it may be the first half of CRLF) unless the stream has ended.
    fn take_line(&mut self) -> Option<String> {
        let pos = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let end = if self.buf[pos] == b'\r' {
            match self.buf.get(pos + 1) {
                Some(b'\n') => pos + 2,
                Some(_) => pos + 1,
                None if self.eof => pos + 1,
                None => return None,
            }
        } else {
            pos + 1
        };
        let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
        self.buf.drain(..end);
        Some(line)
    }

    /// Feeds one line; a blank line ends the event and yields its data, if it had any.
    fn on_line(&mut self, line: &str) -> Option<SseItem> {
        if line.is_empty() {
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data);
            return Some(if data.trim() == "[DONE]" { SseItem::Done } else { SseItem::Data(data) });
        }
        if let Some(d) = line.strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            if self.data.len() > SSE_EVENT_MAX {
                self.data.clear();
            }
        }
        None
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg = format!("{msg}: {s}");
        cur = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_config(extra: &str) -> UpstreamModel {
        let text = format!("[[upstream]]\nname = \"u\"\nbase_url = \"http://127.0.0.1:1/v1\"\n{extra}");
        crate::config::Config::parse(&text, "test").unwrap().upstreams.remove(0)
    }

    #[test]
    fn call_headers_carry_the_key_and_refuse_what_would_break_calls() {
        let h = call_headers(&upstream_config("headers = { \"X-Team\" = \"a\" }"), Some("k")).unwrap();
        assert_eq!(h["authorization"], "Bearer k");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-team"], "a");
        let h = call_headers(&upstream_config("api_key_header = \"api-key\""), Some("k")).unwrap();
        assert_eq!(h["api-key"], "k");
        assert!(h.get("authorization").is_none());
        for (extra, key, words) in [
            ("headers = { \"Host\" = \"x\" }", None, "set by the gateway"),
            ("headers = { \"Authorization\" = \"Bearer x\" }", None, "secret"),
            ("api_key_header = \"api-key\"", None, "api_key_env"),
            ("", Some("a\nb"), "characters"),
        ] {
            let e = call_headers(&upstream_config(extra), key).unwrap_err();
            assert!(e.contains(words), "{extra}: {e}");
        }
    }

    #[test]
    fn a_query_in_the_base_url_stays_at_the_end() {
        let client = reqwest::Client::new();
        let mk = |base: &str| Upstream {
            config: UpstreamModel { base_url: base.into(), ..upstream_config("") },
            client: client.clone(),
            headers: Default::default(),
            health: Default::default(),
        };
        assert_eq!(mk("http://h/v1/").url("chat/completions"), "http://h/v1/chat/completions");
        assert_eq!(
            mk("http://h/d?api-version=1").url("/chat/completions"),
            "http://h/d/chat/completions?api-version=1"
        );
        assert_eq!(mk("http://h/v1/?").url("embeddings"), "http://h/v1/embeddings");
    }

    /// Every item of `chunks` read as one SSE stream.
    fn read_all(chunks: &[&str]) -> Vec<String> {
        let items: Vec<reqwest::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from(c.to_string()))).collect();
        let mut r = SseReader::from_stream(Box::pin(futures::stream::iter(items)), "t".into());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut out = Vec::new();
        loop {
            match rt.block_on(r.next_within(Duration::from_secs(5), Instant::now() + Duration::from_secs(5))).unwrap() {
                SseItem::Data(d) => out.push(d),
                SseItem::Done => out.push("[DONE]".into()),
                SseItem::Eof => return out,
            }
        }
    }

    #[test]
    fn sse_events_split_on_any_line_ending_and_across_chunks() {
        let want = vec!["{\"a\":1}".to_string(), "{\"b\":2}".into(), "[DONE]".into()];
        assert_eq!(read_all(&["data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"]), want);
        assert_eq!(read_all(&["data: {\"a\":1}\r\n\r\n", "data:{\"b\":2}\r\n\r\ndata: [DONE]\r\n\r\n"]), want);
        assert_eq!(read_all(&["data: {\"a\":1}\r\rdata: {\"b\":2}\r", "\rdata: [DONE]\r\r"]), want);
        assert_eq!(
            read_all(&["da", "ta: {\"a\"", ":1}\n", "\n: keep-alive\n\ndata: {\"b\":2}\n\ndata: [DONE]\n"]),
            want
        );
        // A last event without its blank line, and a stream that simply ends.
        assert_eq!(read_all(&["data: {\"a\":1}\n\ndata: {\"b\":2}"]), want[..2].to_vec());
    }

    #[test]
    fn a_whole_answer_becomes_the_events_of_a_stream() {
        let chat = serde_json::json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "hi", "refusal": null,
                "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                               {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        });
        let events = whole_answer_as_events(&chat).expect("a chat answer");
        let chunks: Vec<ChatCompletionChunk> =
            events.iter().map(|e| serde_json::from_value(e.clone()).expect("a chunk")).collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(events[0]["object"], "chat.completion.chunk");
        let d = &chunks[0].choices[0].delta;
        assert_eq!((d.role.as_deref(), d.content.as_deref()), (Some("assistant"), Some("hi")));
        let calls = d.tool_calls.as_ref().expect("tool calls");
        assert_eq!(calls.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(chunks[0].choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert!(chunks[0].usage.is_none() && chunks[1].choices.is_empty());
        assert_eq!(chunks[1].usage.as_ref().map(|u| u.total_tokens), Some(5));

        let text = serde_json::json!({"id": "t", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": null}]});
        let events = whole_answer_as_events(&text).expect("a text answer");
        assert_eq!((events.len(), &events[0]), (1, &text), "no usage, no usage event");

        for not_an_answer in [
            serde_json::json!({"error": {"message": "streaming is not supported"}}),
            serde_json::json!({"choices": []}),
            serde_json::json!({"choices": [{"index": 0}]}),
            serde_json::json!([1, 2]),
        ] {
            assert!(whole_answer_as_events(&not_an_answer).is_none(), "{not_an_answer}");
        }
    }

    #[test]
    fn an_answer_is_whole_once_every_choice_finished_and_the_usage_asked_for_came() {
        let mut a = AnswerProgress::default();
        let finish = |i: u64| serde_json::json!({"choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]});
        a.read(&serde_json::json!({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}));
        assert!(!a.complete(1, false));
        a.read(&finish(0));
        a.read(&finish(0));
        assert!(a.complete(1, false) && !a.complete(2, false) && !a.complete(1, true));
        a.read(&finish(1));
        a.read(&serde_json::json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}));
        assert!(a.complete(2, true));
        // Usage on every chunk counts only once the last choice has finished; an empty finish reason
        // is no finish.
        let mut b = AnswerProgress::default();
        let usage = serde_json::json!({"prompt_tokens": 1, "completion_tokens": 1});
        b.read(&serde_json::json!({"choices": [{"index": 0, "text": "a", "finish_reason": "stop"}], "usage": usage}));
        b.read(&serde_json::json!({"choices": [{"index": 1, "text": "b", "finish_reason": ""}], "usage": usage}));
        assert!(b.complete(1, true) && !b.complete(2, true));
        b.read(&serde_json::json!({"choices": [{"index": 1, "text": "", "finish_reason": "stop"}], "usage": usage}));
        assert!(b.complete(2, true));
    }

    #[test]
    fn a_completion_expects_n_choices_per_prompt() {
        use serde_json::json;
        assert_eq!(expected_choices(&json!({"messages": []})), 1);
        assert_eq!(expected_choices(&json!({"n": 3, "messages": []})), 3);
        assert_eq!(expected_choices(&json!({"prompt": "x", "n": 2})), 2);
        assert_eq!(expected_choices(&json!({"prompt": ["x", "y"], "n": 2})), 4);
        assert_eq!(expected_choices(&json!({"prompt": [1, 2, 3]})), 1);
        assert_eq!(expected_choices(&json!({"prompt": [[1, 2], [3]]})), 2);
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "Thu, 31 Dec 2099 23:59:59 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }
}
