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

/// Maps axum's JSON extractor failures onto 400 / 413 / 415 in OpenAI's shape.
pub fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::new(ErrorKind::InvalidRequest, format!("Invalid request body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            ErrorKind::InvalidRequest,
            format!("We could not parse the JSON body of your request: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorKind::InvalidRequest, "Content-Type must be application/json")
        }
        JsonRejection::BytesRejection(e) => {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorKind::PayloadTooLarge, "The request body is larger than this server accepts")
            } else {
                ApiError::new(ErrorKind::InvalidRequest, format!("Cannot read the request body: {}", e.body_text()))
            }
        }
        other => ApiError::new(ErrorKind::InvalidRequest, other.body_text()),
    }
}
