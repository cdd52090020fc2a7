//! Client for OpenAI-compatible upstreams: timeouts, retries with jittered backoff (honouring
//! Retry-After) and streaming passthrough.
//!
//! Retries happen only before the first byte of an answer reaches the client. If an upstream dies in
//! the middle of a stream, the client has already received part of the answer, so the stream ends with
//! an SSE `error` event (OpenAI's error object) and no `[DONE]`; the request log records status 502.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::Rng;
use rightmodel_core::wire::{ChatCompletionChunk, ChatCompletionResponse};
use rightmodel_core::{ApiError, ErrorKind};
use serde_json::Value;

use crate::config::UpstreamModel;

/// One configured upstream model.
pub struct Upstream {
    /// Its configuration.
    pub config: UpstreamModel,
    client: reqwest::Client,
    api_key: Option<String>,
}

/// What a failed attempt tells the retry loop.
enum Attempt<T> {
    Done(T),
    Retry(ApiError, Option<Duration>),
    Fail(ApiError),
}

impl Upstream {
    /// A client for `config`; the API key is read from its environment variable now.
    pub fn new(config: UpstreamModel) -> Result<Self, String> {
        let api_key = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    tracing::warn!(
                        "upstream `{}`: environment variable {var} is not set; calling without a key",
                        config.name
                    );
                    None
                }
            },
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("upstream `{}`: {e}", config.name))?;
        Ok(Upstream { config, client, api_key })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path.trim_start_matches('/'))
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
                // Always ask for usage so cost can be logged; the chunk is dropped for clients that
                // did not ask for it.
                obj.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            } else {
                obj.remove("stream");
                obj.remove("stream_options");
            }
        }
        body
    }

    async fn send_once(&self, path: &str, body: &Value) -> Attempt<reqwest::Response> {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let first = Duration::from_millis(self.config.first_token_timeout_ms);
        let resp = match tokio::time::timeout(first, req.send()).await {
            Err(_) => {
                return Attempt::Retry(
                    ApiError::new(
                        ErrorKind::Timeout,
                        format!("upstream `{}` did not answer within {} ms", self.config.name, first.as_millis()),
                    ),
                    None,
                )
            }
            Ok(Err(e)) => {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::BadGateway };
                return Attempt::Retry(
                    ApiError::new(kind, format!("upstream `{}` unreachable: {}", self.config.name, root_cause(&e))),
                    None,
                );
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)));
        let text = resp.text().await.unwrap_or_default();
        let upstream_msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        let msg = format!("upstream `{}` returned {}: {}", self.config.name, status.as_u16(), upstream_msg);
        match status.as_u16() {
            429 => Attempt::Retry(ApiError::new(ErrorKind::RateLimited, msg), retry_after),
            500..=599 => Attempt::Retry(ApiError::new(ErrorKind::BadGateway, msg), retry_after),
            400 | 404 | 413 | 422 => {
                let kind = match status.as_u16() {
                    404 => ErrorKind::NotFound,
                    413 => ErrorKind::PayloadTooLarge,
                    422 => ErrorKind::Unprocessable,
                    _ => ErrorKind::InvalidRequest,
                };
                Attempt::Fail(ApiError::new(kind, msg))
            }
            _ => Attempt::Fail(ApiError::new(ErrorKind::BadGateway, msg)),
        }
    }

    /// Sends with retries; returns the successful response (headers received, body not yet read).
    async fn send(&self, path: &str, body: &Value) -> Result<reqwest::Response, ApiError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.total_timeout_ms);
        let mut attempt = 0u32;
        loop {
            let outcome = match tokio::time::timeout_at(deadline.into(), self.send_once(path, body)).await {
                Ok(o) => o,
                Err(_) => {
                    return Err(ApiError::new(ErrorKind::Timeout, format!("upstream `{}` timed out", self.config.name)))
                }
            };
            match outcome {
                Attempt::Done(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, after) => {
                    if attempt >= self.config.max_retries {
                        // A rate-limited upstream is an upstream failure from our client's view.
                        return Err(if e.kind == ErrorKind::RateLimited {
                            ApiError { kind: ErrorKind::BadGateway, ..e }
                        } else {
                            e
                        });
                    }
                    attempt += 1;
                    let backoff = after.unwrap_or_else(|| {
                        let base = 100.0 * 2f64.powi(attempt as i32 - 1);
                        Duration::from_millis(rand::thread_rng().gen_range(base * 0.5..=base * 1.5) as u64)
                    });
                    if Instant::now() + backoff >= deadline {
                        return Err(e);
                    }
                    tracing::info!("{}; retry {attempt} in {} ms", e.message, backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// A non-streaming chat completion.
    pub async fn chat(&self, body: Value) -> Result<ChatCompletionResponse, ApiError> {
        let body = self.upstream_body(body, false);
        let resp = self.send("chat/completions", &body).await?;
        let bytes = self.read_body(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ErrorKind::BadGateway,
                format!("upstream `{}` sent an invalid chat completion: {e}", self.config.name),
            )
        })
    }

    /// A non-streaming call of any endpoint, returned as JSON (completions, embeddings).
    pub async fn call_json(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        let body = self.upstream_body(body, false);
        let resp = self.send(path, &body).await?;
        let bytes = self.read_body(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(ErrorKind::BadGateway, format!("upstream `{}` sent invalid JSON: {e}", self.config.name))
        })
    }

    async fn read_body(&self, resp: reqwest::Response) -> Result<Bytes, ApiError> {
        let total = Duration::from_millis(self.config.total_timeout_ms);
        match tokio::time::timeout(total, resp.bytes()).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(ApiError::new(
                ErrorKind::BadGateway,
                format!("upstream `{}` broke off: {}", self.config.name, root_cause(&e)),
            )),
            Err(_) => Err(ApiError::new(ErrorKind::Timeout, format!("upstream `{}` timed out", self.config.name))),
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
    pub async fn sse_stream<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<impl Stream<Item = Result<T, ApiError>> + Send + 'static, ApiError> {
        let body = self.upstream_body(body, true);
        let resp = self.send(path, &body).await?;
        let name = self.config.name.clone();
        let idle = Duration::from_millis(self.config.first_token_timeout_ms);
        let mut bytes = resp.bytes_stream();
        let s = async_stream::stream! {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            loop {
                let next = match tokio::time::timeout(idle, bytes.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        yield Err(ApiError::new(ErrorKind::Timeout, format!("upstream `{name}` stalled mid-stream")));
                        return;
                    }
                };
                match next {
                    None => {
                        yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` closed the stream before [DONE]")));
                        return;
                    }
                    Some(Err(e)) => {
                        yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}` died mid-stream: {}", root_cause(&e))));
                        return;
                    }
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                }
                while let Some(end) = find_event_end(&buf) {
                    let event: Vec<u8> = buf.drain(..end.0 + end.1).collect();
                    let text = String::from_utf8_lossy(&event[..end.0]);
                    for line in text.lines() {
                        let Some(data) = line.strip_prefix("data:") else { continue };
                        let data = data.trim();
                        if data == "[DONE]" {
                            return;
                        }
                        match serde_json::from_str::<T>(data) {
                            Ok(c) => yield Ok(c),
                            Err(_) => {
                                let msg = serde_json::from_str::<Value>(data).ok()
                                    .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
                                    .unwrap_or_else(|| "invalid stream event".to_string());
                                yield Err(ApiError::new(ErrorKind::BadGateway, format!("upstream `{name}`: {msg}")));
                                return;
                            }
                        }
                    }
                }
            }
        };
        Ok(s)
    }
}

/// Position and length of the first SSE event terminator (`\n\n` or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
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

    #[test]
    fn finds_sse_boundaries() {
        assert_eq!(find_event_end(b"data: x\n\ndata: y"), Some((7, 2)));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some((7, 4)));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}
