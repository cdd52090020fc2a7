//! The HTTP server loop, and accounting that starts the moment a request arrives, so that a client
//! that leaves before its handler runs still leaves a log row.
//!
//! hyper hands a parsed request to its service synchronously, but axum's own server adapts the tower
//! application with a `Oneshot` that only calls it when first polled. A client that sends a request
//! and closes at once (a timeout of a few milliseconds, a killed script) makes hyper close the
//! connection in the same poll that read the request, and drop its future unpolled: no handler ran,
//! no [`Accounting`] existed, and the request vanished from the log and the metrics. Measured: 7 of 13
//! such requests left no row. So the server runs its own accept loop (axum's `serve` has no hook
//! per request), with [`Intake`] as the hyper service: it creates the [`Accounting`] inside hyper's
//! `call` and parks it in the request's extensions, where the handler takes it ([`take_accounting`]).
//! Left there, it is dropped with the future and writes its 499 (or 503 at shutdown) row like any
//! abandoned request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use rightmodel_core::ApiError;

use crate::accounting::Accounting;
use crate::state::SharedState;

/// The endpoints whose requests are logged: one row each, whichever way they end.
pub const LOGGED_ENDPOINTS: [&str; 4] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/classify"];

/// How long a request body may pause between two pieces before the request is answered 408 (a client
/// that stalls half way through its body would otherwise hold its request, counted in flight, forever).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A request's accounting, parked in its extensions until the handler takes it.
#[derive(Clone)]
pub struct ParkedAccounting(Arc<Mutex<Option<Accounting>>>);

/// The request's accounting: the one [`Intake`] started when the request arrived (its clock, id and
/// in-flight count start there), or a new one when the handler runs without it (the application
/// called directly, as unit tests do).
pub fn take_accounting(parked: Option<Extension<ParkedAccounting>>, st: &SharedState, endpoint: &str) -> Accounting {
    let taken = parked.and_then(|Extension(p)| p.0.lock().ok().and_then(|mut slot| slot.take()));
    match taken {
        Some(mut acct) => {
            // The body has been read by now: what follows is the gateway's time, not the upload's.
            acct.restart_clock();
            acct
        }
        None => Accounting::new(st.clone(), endpoint),
    }
}

/// The hyper service of one connection: parks an [`Accounting`] in every request to a
/// [`LOGGED_ENDPOINTS`] endpoint, then runs the application.
#[derive(Clone)]
pub struct Intake {
    app: Router,
    state: SharedState,
}

impl Intake {
    /// The service running `app` for the server with `state`.
    pub fn new(app: Router, state: SharedState) -> Self {
        Intake { app, state }
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for Intake {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let mut req: Request = req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(BODY_READ_TIMEOUT, b)));
        let endpoint =
            (req.method() == Method::POST).then(|| LOGGED_ENDPOINTS.iter().find(|e| **e == req.uri().path())).flatten();
        let parked =
            endpoint.map(|e| ParkedAccounting(Arc::new(Mutex::new(Some(Accounting::new(self.state.clone(), e))))));
        if let Some(p) = &parked {
            req.extensions_mut().insert(p.clone());
        }
        let fut = tower::ServiceExt::oneshot(self.app.clone(), req);
        // `parked` lives in the future: dropped unpolled or half way, it drops an accounting the
        // handler never took, which writes the row.
        Box::pin(async move {
            let response = fut.await;
            drop(parked);
            response
        })
    }
}

/// Whether an accept error is about one connection (as axum's server treats them) rather than the
/// listener or the process.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset)
}

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown` resolves, then stops accepting, asks
/// every connection to close once its request in flight is answered, and returns when all have.
pub async fn serve_http(listener: TcpListener, app: Router, state: SharedState, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a receiver: `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    let connections = Arc::new(tokio::sync::Semaphore::new(state.config.server.max_connections.max(1)));
    let header_read_timeout = Duration::from_secs(state.config.server.header_read_timeout_secs.max(1));
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting the next one (it waits in the
        // kernel's backlog meanwhile), as a web server's worker connections do.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A connection reset or aborted before it was accepted concerns that client only.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin; the listener stays.
                    tracing::error!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streamed tokens are small writes: without this, Nagle's algorithm holds each one back until
        // the previous is acknowledged (up to a delayed ACK, ~40 ms), as nginx's `tcp_nodelay` avoids.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let service = Intake::new(app.clone(), state.clone());
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                // A client gets `header_read_timeout_secs` to send a request's headers, counted from when the
                // connection waits for them: a socket that sends nothing (or a header a byte at a
                // time) is closed instead of holding a connection forever, and so is a keep-alive
                // connection left idle that long (clients reconnect, as they do for any server).
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let stopping = async {
                // A sender gone counts as a stop too; the value guard is dropped here, not held.
                let _ = stop.wait_for(|s| *s).await;
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::trace!("connection ended: {e}");
            }
            drop(open);
            drop(permit);
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(open_rx);
    open_tx.closed().await;
}

/// Most of an oversized body read and dropped before its 413, beyond what was read to find it too large
/// (see [`refuse_unreadable_body`]).
pub const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest time spent reading and dropping an oversized body before its 413 (nginx's `lingering_time`).
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(30);

/// Refuses request bodies the handler could not read, saying why: a `Content-Length` over
/// `max_body_bytes` gets a 413, and a `Content-Encoding` other than `identity` a 400 naming it (parsed
/// as JSON, compressed bytes failed with a confusing syntax error), and one whose `Content-Type` is not
/// JSON on an API endpoint a 400 too ([`is_json_content_type`]). A client that sent
/// `Expect: 100-continue` gets its 413 before it uploads anything. Other clients send the body without
/// waiting for an answer: closing the connection with their upload still arriving makes the kernel
/// reset it, which can destroy the 413 before they read it (a 40 MB upload met a broken pipe), so the
/// gateway first reads and drops what they send ("lingering close", as nginx does), up to
/// [`DRAIN_MAX_BYTES`] (only `max_body_bytes` for a key that does not authenticate) and
/// [`DRAIN_MAX_TIME`]; the same for a compressed body. A body declared larger than that is not read:
/// its sender would be reset all the same. As in the handlers, a key that does not authenticate is told
/// that first, and a client that leaves while its body is read is logged 499. Its log row is the
/// request's parked one. A chunked POST body (no `Content-Length`) is read here up to the limit, and one
/// over it is drained after that and refused (its client has been sent `100 Continue` by then, if it
/// asked).
pub async fn refuse_unreadable_body(
    axum::extract::State(st): axum::extract::State<SharedState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
    use rightmodel_core::ErrorKind;
    let limit = st.config.server.max_body_bytes;
    let headers = req.headers();
    let length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    // Only the API's POSTs carry bodies worth reading here; other methods are left to their handlers.
    let chunked = length.is_none() && req.method() == Method::POST && headers.contains_key(TRANSFER_ENCODING);
    // hyper answers `100 Continue` on HTTP/1.1 only; an HTTP/1.0 client sends its body straight away.
    let waits = req.version() == axum::http::Version::HTTP_11
        && headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let encoding = headers.get(CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    // The API's endpoints read JSON: a body of another type is refused here, where it can be drained.
    let not_json = req.method() == Method::POST
        && LOGGED_ENDPOINTS.contains(&req.uri().path())
        && !is_json_content_type(headers.get(axum::http::header::CONTENT_TYPE));
    let too_large = || ApiError::new(ErrorKind::PayloadTooLarge, "The request body is larger than this server accepts");
    let problem = if length.is_some_and(|l| l > limit as u64) {
        too_large()
    } else if let Some(enc) = encoding.filter(|e| !e.is_empty() && e != "identity") {
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!("Content-Encoding `{enc}` is not supported: send the request body uncompressed"),
        )
    } else if not_json {
        ApiError::new(ErrorKind::InvalidRequest, "Content-Type must be application/json")
    } else if chunked {
        // No length to judge by: read the body here, up to the limit. Within it, the handler gets what
        // was read (and a read error as it happened, for its 408 / 499); over it, the rest is drained
        // like a declared oversized body's (the client has been sent `100 Continue` by now).
        let (parts, body) = req.into_parts();
        return match read_up_to(body, limit).await {
            Ok(body) => next.run(Request::from_parts(parts, body)).await,
            Err(rest) => refuse(&st, parts, too_large(), Some(rest), None).await,
        };
    } else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    refuse(&st, parts, problem, (!waits).then_some(body), length).await
}

/// Whether a `Content-Type` says JSON as axum's `Json` extractor reads it: `application/json` or
/// `application/*+json`, in any case, with well-formed parameters. A body of another type is refused
/// by [`refuse_unreadable_body`] once drained: the extractor would refuse it without reading it, and
/// hyper then closes the connection, so the client's next request on it would fail.
fn is_json_content_type(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    // An empty parameter (a trailing `;`) is allowed, as the extractor's MIME parser allows it.
    let params_ok =
        parts.all(|p| p.trim().is_empty() || p.split_once('=').is_some_and(|(name, _)| !name.trim().is_empty()));
    kind == "application" && (subtype == "json" || subtype.ends_with("+json")) && params_ok
}

/// Answers `problem` for a request whose body the handler will not read, after draining `body` unless
/// its `declared` length is over what may be drained (see [`refuse_unreadable_body`]); a key that does
/// not authenticate is told that first, and a client that leaves mid-drain is logged 499. Writes the
/// request's parked log row.
async fn refuse(
    st: &SharedState,
    parts: axum::http::request::Parts,
    problem: ApiError,
    body: Option<Body>,
    declared: Option<u64>,
) -> Response {
    use rightmodel_core::ErrorKind;
    let caller = st.auth.identify(&parts.headers);
    let cap = if caller.is_ok() { DRAIN_MAX_BYTES } else { st.config.server.max_body_bytes as u64 };
    let left = match body {
        Some(body) if declared.is_none_or(|l| l <= cap) => drain(body, cap, DRAIN_MAX_TIME).await,
        _ => false,
    };
    let problem = if left {
        ApiError::new(ErrorKind::ClientClosed, "client closed the connection while sending the request body")
    } else {
        problem
    };
    let Some(parked) = parts.extensions.get::<ParkedAccounting>().cloned() else {
        return crate::http_error::HttpError(problem).into_response();
    };
    let mut acct = take_accounting(Some(Extension(parked)), st, parts.uri.path());
    let problem = match caller {
        Ok(caller) => {
            acct.set_caller(caller);
            problem
        }
        Err(e) if !left => e,
        Err(_) => problem,
    };
    let id = acct.id().to_string();
    acct.finish(problem.kind.status(), Some(problem.message.clone()));
    crate::http_error::error_response(problem, &id)
}

/// Reads `body` up to `limit` bytes: the whole body again (from memory) when it ends within the limit,
/// or ends in an error (the error kept at the point it happened), else `Err` with the unread rest.
async fn read_up_to(body: Body, limit: usize) -> Result<Body, Body> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read = bytes::BytesMut::new();
    loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                read.extend_from_slice(&chunk);
                if read.len() > limit {
                    return Err(Body::from_stream(stream));
                }
            }
            Some(Err(e)) => {
                let items: [Result<bytes::Bytes, axum::Error>; 2] = [Ok(read.freeze()), Err(e)];
                return Ok(Body::from_stream(futures::stream::iter(items)));
            }
            None => return Ok(Body::from(read.freeze())),
        }
    }
}

/// Reads and drops `body` until it ends, `max_bytes` have been read, `max_time` has passed or reading
/// fails; returns whether it failed because the client's connection ended (it left mid-upload).
async fn drain(body: Body, max_bytes: u64, max_time: Duration) -> bool {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let read = async {
        let mut seen = 0u64;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => seen += chunk.len() as u64,
                Err(e) => return crate::http_error::connection_lost(&e),
            }
            if seen >= max_bytes {
                break;
            }
        }
        false
    };
    tokio::time::timeout(max_time, read).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_told_apart_as_the_json_extractor_tells_them() {
        let ct = |v: &str| is_json_content_type(Some(&axum::http::HeaderValue::from_str(v).expect("a header value")));
        assert!(ct("application/json"));
        assert!(ct("Application/JSON; charset=utf-8"));
        assert!(ct("application/vnd.api+json"));
        assert!(!ct("text/plain"));
        assert!(!ct("application/x-www-form-urlencoded"));
        assert!(!ct("application/json; charset"));
        assert!(ct("application/json;") && ct("application/json; charset=utf-8;"));
        assert!(!is_json_content_type(None));
    }
}
