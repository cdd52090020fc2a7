//! Gateway overhead under load: the same open-loop request rate sent straight to a fast local
//! upstream and through the gateway in front of it, in the same run, so the difference is what the
//! gateway adds (parsing, auth, routing, the upstream hop, logging, metrics).
//!
//! Latency is measured from each request's scheduled send time, not from when it was actually sent,
//! so a client that falls behind does not hide queueing (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::config::{Config, UpstreamModel};

/// Results of one rate against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    /// Requests per second offered.
    pub rate: u32,
    /// Requests sent.
    pub sent: usize,
    /// Requests that failed (non-200 or transport error).
    pub errors: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Completed requests per second.
    pub achieved_rps: f64,
}

/// Direct and gateway results at one rate, and the overhead.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Offered rate.
    pub rate: u32,
    /// Straight to the upstream.
    pub direct: RateResult,
    /// Through the gateway.
    pub gateway: RateResult,
    /// Added median latency.
    pub overhead_p50_ms: f64,
    /// Added 99th percentile latency.
    pub overhead_p99_ms: f64,
}

const ANSWER: &str = r#"{"id":"chatcmpl-mock","object":"chat.completion","created":0,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;
const REQUEST: &str = r#"{"model":"MODEL","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France?"}],"max_tokens":16,"temperature":0}"#;

async fn start_mock() -> std::io::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], ANSWER) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn start_gateway(upstream: SocketAddr, log_dir: &std::path::Path) -> Result<SocketAddr, String> {
    let mut config = Config::default_local();
    config.locals.clear();
    config.embedding = None;
    config.server.log_path = Some(log_dir.join("bench.db"));
    config.upstreams.push(UpstreamModel {
        name: "mock".into(),
        base_url: format!("http://{upstream}/v1"),
        api_key_env: None,
        api_key_header: None,
        headers: Default::default(),
        model: None,
        input_per_mtok: 1.0,
        output_per_mtok: 2.0,
        cached_input_per_mtok: None,
        connect_timeout_ms: 1000,
        first_token_timeout_ms: 10_000,
        total_timeout_ms: 10_000,
        max_retries: 0,
        fallback: vec![],
        explainable: false,
        tier: 1.0,
        tools: true,
        stream_usage: true,
        ca_file: None,
    });
    let state = tokio::task::spawn_blocking(move || crate::build_state(config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let app = crate::app(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Offers `rate` requests per second to `url` for `duration` and measures them.
async fn drive(client: &reqwest::Client, url: &str, body: &'static str, rate: u32, duration: Duration) -> RateResult {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    // The count comes from the rate and duration, not from comparing sums of float intervals against the
    // duration (300 req/s for 2 s sent 601 requests that way).
    let count = (f64::from(rate.max(1)) * duration.as_secs_f64()).round().max(1.0) as usize;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut n = 0usize;
    while n < count {
        let scheduled = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let c = client.clone();
        let url = url.to_string();
        tasks.spawn(async move {
            let r = c.post(&url).header("content-type", "application/json").body(body).send().await;
            let ok = match r {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            (scheduled.elapsed().as_secs_f64() * 1e3, ok)
        });
        n += 1;
    }
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((ms, true)) => lat.push(ms),
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    RateResult {
        rate,
        sent: n,
        errors,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        achieved_rps: lat.len() as f64 / elapsed,
    }
}

/// A running mock upstream and a gateway in front of it, started once and measured at any number of
/// rates (starting a gateway per rate repeated its start-up warnings at every step).
pub struct LoadBench {
    /// Holds the gateway's request log until the bench ends.
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    direct_url: String,
    gw_url: String,
    body: &'static str,
}

impl LoadBench {
    /// Starts the mock upstream and the gateway, and warms both paths (connections, allocator, SQLite).
    pub async fn start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mock = start_mock().await.map_err(|e| e.to_string())?;
        let gw = start_gateway(mock, dir.path()).await?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        let bench = LoadBench {
            _dir: dir,
            client,
            direct_url: format!("http://{mock}/v1/chat/completions"),
            gw_url: format!("http://{gw}/v1/chat/completions"),
            body: Box::leak(REQUEST.replace("MODEL", "mock").into_boxed_str()),
        };
        drive(&bench.client, &bench.direct_url, bench.body, 200, Duration::from_millis(500)).await;
        drive(&bench.client, &bench.gw_url, bench.body, 200, Duration::from_millis(500)).await;
        Ok(bench)
    }

    /// Offers `rate` requests per second for `duration` straight to the mock, then through the gateway;
    /// `progress` is called after each of the two.
    pub async fn compare(&self, rate: u32, duration: Duration, mut progress: impl FnMut(&str)) -> Comparison {
        let direct = drive(&self.client, &self.direct_url, self.body, rate, duration).await;
        progress(&format!("{rate} req/s direct"));
        let gateway = drive(&self.client, &self.gw_url, self.body, rate, duration).await;
        progress(&format!("{rate} req/s gateway"));
        Comparison {
            rate,
            overhead_p50_ms: gateway.p50_ms - direct.p50_ms,
            overhead_p99_ms: gateway.p99_ms - direct.p99_ms,
            direct,
            gateway,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_for_a_duration_sends_rate_times_duration_requests() {
        let bench = LoadBench::start().await.expect("bench starts");
        // 1/300 s summed 600 times reads just under 2 s in floating point: it sent 601.
        let c = bench.compare(300, Duration::from_secs(2), |_| {}).await;
        assert_eq!((c.direct.sent, c.gateway.sent), (600, 600), "{c:?}");
        assert_eq!(c.gateway.errors, 0, "{c:?}");
    }
}
