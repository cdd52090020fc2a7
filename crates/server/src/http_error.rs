//! Turning [`ApiError`] into OpenAI-shaped HTTP responses, and axum's own rejections into `ApiError`.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rightmodel_core::{ApiError, ErrorKind};

/// Newtype so `ApiError` (from core, which knows no HTTP) can be returned from handlers.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = self.0.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The error response of the request `request_id`, which it carries in `x-request-id` like every answer,
/// so a client can find the log row of a request that failed.
pub fn error_response(e: ApiError, request_id: &str) -> Response {
    let mut resp = HttpError(e).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Maps axum's JSON extractor failures onto 400 / 413 / 415 in OpenAI's shape.
pub fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let mut err = ApiError::new(
                ErrorKind::InvalidRequest,
                format!("Invalid request body: {}{}", text, surrogate_hint(&text)),
            );
            err.param = field_of(&text);
            err
        }
        JsonRejection::JsonSyntaxError(e) => {
            let text = e.body_text();
            ApiError::new(
                ErrorKind::InvalidRequest,
                format!("We could not parse the JSON body of your request: {}{}", text, surrogate_hint(&text)),
            )
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorKind::InvalidRequest, "Content-Type must be application/json")
        }
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorKind::PayloadTooLarge, "The request body is larger than this server accepts")
            } else if body_stalled(&e) {
                ApiError::new(
                    ErrorKind::RequestTimeout,
                    format!(
                        "The request body stopped arriving for {} s; send it without pauses",
                        crate::intake::BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            } else if connection_lost(&e) {
                ApiError::new(ErrorKind::ClientClosed, "client closed the connection while sending the request body")
            } else {
                ApiError::new(ErrorKind::InvalidRequest, format!("Cannot read the request body: {}", e.body_text()))
            }
        }
        other => ApiError::new(ErrorKind::InvalidRequest, other.body_text()),
    }
}

/// Whether reading the body failed because the client paused longer than
/// [`crate::intake::BODY_READ_TIMEOUT`] between two pieces of it.
fn body_stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether reading the body failed because the client's connection ended (closed or reset before the
/// body was complete) rather than because of what it sent.
pub(crate) fn connection_lost(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as Io;
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                Io::UnexpectedEof | Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe
            );
        }
        cause = c.source();
    }
    false
}

/// serde's words for a `\uD800`-style escape that is half a character (some JSON encoders write them
/// for broken emoji), said plainly.
fn surrogate_hint(text: &str) -> &'static str {
    if text.contains("hex escape") || text.contains("surrogate") {
        " (a \\u escape in a string is a lone UTF-16 surrogate, half of a character: send the whole character, or U+FFFD)"
    } else {
        ""
    }
}

/// The request field a body error is about, as OpenAI names it in `param`: the path serde reports
/// (`messages[0].content`), or the field a top-level object lacks.
fn field_of(text: &str) -> Option<String> {
    let rest = text.split_once("target type: ").map_or(text, |(_, r)| r);
    if let Some(field) = rest.strip_prefix("missing field `").and_then(|r| r.split_once('`')).map(|(f, _)| f) {
        return Some(field.to_string());
    }
    let (path, _) = rest.split_once(": ")?;
    let plain = !path.is_empty() && path.chars().all(|c| c.is_alphanumeric() || "_.[]".contains(c));
    plain.then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_name_their_field() {
        let t = "Failed to deserialize the JSON body into the target type: messages[0].content: invalid type: integer `3`, expected a string at line 1 column 40";
        assert_eq!(field_of(t).as_deref(), Some("messages[0].content"));
        let t = "Failed to deserialize the JSON body into the target type: missing field `input` at line 1 column 20";
        assert_eq!(field_of(t).as_deref(), Some("input"));
        let t = "Failed to deserialize the JSON body into the target type: invalid type: map, expected a string";
        assert_eq!(field_of(t), None);
        assert!(surrogate_hint("input: unexpected end of hex escape at line 1 column 31").contains("surrogate"));
    }

    /// The JSON extractor's rejection for a request whose body is `body`.
    async fn rejection_of(body: axum::body::Body) -> JsonRejection {
        use axum::extract::FromRequest;
        let req = axum::http::Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        axum::Json::<serde_json::Value>::from_request(req, &()).await.expect_err("the body cannot be read")
    }

    #[tokio::test]
    async fn a_stalled_body_is_a_408_and_a_broken_connection_a_499() {
        let never = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        let stalled = tower_http::timeout::TimeoutBody::new(
            std::time::Duration::from_millis(20),
            axum::body::Body::from_stream(never),
        );
        let e = json_rejection(rejection_of(axum::body::Body::new(stalled)).await);
        assert_eq!(e.kind.status(), 408, "{}", e.message);
        let cut = futures::stream::iter([
            Ok(bytes::Bytes::from_static(b"{\"a\"")),
            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        ]);
        let e = json_rejection(rejection_of(axum::body::Body::from_stream(cut)).await);
        assert_eq!(e.kind.status(), 499, "{}", e.message);
    }
}
