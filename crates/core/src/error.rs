//! The error taxonomy shared by every crate, shaped like OpenAI's error object so the server can return
//! it as-is: `{"error": {"message", "type", "param", "code"}}` with a matching HTTP status.

use serde::Serialize;

/// Class of failure; decides the HTTP status and the OpenAI `type` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid request (400).
    InvalidRequest,
    /// Missing or wrong API key (401).
    Authentication,
    /// Key valid but not allowed (403).
    PermissionDenied,
    /// Unknown model or route (404).
    NotFound,
    /// Body over the size limit (413).
    PayloadTooLarge,
    /// The client paused sending its request body for too long (408).
    RequestTimeout,
    /// No candidate can serve within the request's limits (422).
    Unprocessable,
    /// The endpoint exists but not for this HTTP method (405).
    MethodNotAllowed,
    /// Rate limit, spend limit or full queue (429).
    RateLimited,
    /// The client closed the connection before the request was read (499, as nginx logs it). Never
    /// seen by that client; it tells the request log why the request ended.
    ClientClosed,
    /// Unexpected internal failure (500).
    Internal,
    /// Upstream answered with an error or broke (502).
    BadGateway,
    /// Server is shutting down or a backend is unavailable (503).
    Unavailable,
    /// Upstream did not answer in time (504).
    Timeout,
}

impl ErrorKind {
    /// HTTP status code for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Unprocessable => 422,
            ErrorKind::RateLimited => 429,
            ErrorKind::ClientClosed => 499,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// OpenAI's `type` string for this kind.
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Unprocessable
            | ErrorKind::RequestTimeout
            | ErrorKind::ClientClosed => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimited => "rate_limit_error",
            // 503 is the gateway's own state (shutting down, a local model stopped), as OpenAI types it.
            ErrorKind::Internal | ErrorKind::Unavailable => "server_error",
            ErrorKind::BadGateway | ErrorKind::Timeout => "upstream_error",
        }
    }
}

/// An error that can be shown to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable explanation; never contains secrets.
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Machine-readable code (e.g. `model_not_found`, `max_cost_exceeded`).
    pub code: Option<String>,
    /// Seconds the client should wait before retrying (429/503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into(), param: None, code: None, retry_after: None }
    }
    /// 400 invalid request naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_param(param)
    }
    /// 404 for a model the gateway does not know.
    pub fn model_not_found(model: &str) -> Self {
        // The name is the client's input: quote a bounded part of it.
        let shown: String = model.chars().take(200).collect();
        let cut = if shown.len() < model.len() { "…" } else { "" };
        Self::new(
            ErrorKind::NotFound,
            format!("The model `{shown}{cut}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }
    /// 500 for an unexpected internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Sets the offending parameter.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }
    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }
    /// Sets the Retry-After hint in seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorObject {
                message: &self.message,
                r#type: self.kind.type_str(),
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        }
    }
}

/// `{"error": {...}}` wrapper, as OpenAI returns it.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error object.
    pub error: ErrorObject<'a>,
}

/// OpenAI's error object.
#[derive(Debug, Serialize)]
pub struct ErrorObject<'a> {
    /// Human-readable message.
    pub message: &'a str,
    /// Error class.
    pub r#type: &'static str,
    /// Offending parameter.
    pub param: Option<&'a str>,
    /// Machine-readable code.
    pub code: Option<&'a str>,
}
