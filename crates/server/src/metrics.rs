//! Prometheus metrics: requests, latency, time to first token, tokens and cost, by model and outcome;
//! and every HTTP response by route and status ([`count_responses`]), the endpoints without a log row
//! included.

use prometheus::core::{AtomicF64, GenericCounterVec};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The gateway's metric families, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by endpoint, served model and outcome (`ok`, `cancelled`, `rate_limited` (429: key limits, budgets, a full queue), `client_error`, `server_error`).
    pub requests: IntCounterVec,
    /// Whole-request latency in seconds.
    pub latency: HistogramVec,
    /// Time to first token in seconds (streams and local generation).
    pub ttft: HistogramVec,
    /// Tokens by model and direction (`input`/`output`).
    pub tokens: IntCounterVec,
    /// Dollars spent by model.
    pub cost: GenericCounterVec<AtomicF64>,
    /// Routing decisions by served model and reason.
    pub decisions: IntCounterVec,
    /// Requests in flight.
    pub in_flight: IntGauge,
    /// Request-log rows waiting for the database (locked, disk full).
    pub log_pending: IntGauge,
    /// Request-log rows given up on since the start: a counter (it only grows), brought up to the log's
    /// own count at each scrape ([`Metrics::sync_log_dropped`]).
    pub log_dropped: IntCounter,
    /// Language models reading document passages, one thread each (collections on one model share it).
    pub passage_readers: IntGauge,
    /// Every HTTP response by route (the route's pattern, `unmatched` for an unknown path), method and
    /// status: also the requests that have no log row (model lists, probes, 404s, 405s).
    pub http_responses: IntCounterVec,
}

const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("rightmodel_requests_total", "Requests by endpoint, served model and outcome"),
            &["endpoint", "model", "outcome"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("rightmodel_request_duration_seconds", "Request latency").buckets(BUCKETS.to_vec()),
            &["endpoint", "model"],
        )
        .expect("static metric definition");
        let ttft = HistogramVec::new(
            HistogramOpts::new("rightmodel_time_to_first_token_seconds", "Time to first token")
                .buckets(BUCKETS.to_vec()),
            &["model"],
        )
        .expect("static metric definition");
        let tokens = IntCounterVec::new(
            Opts::new("rightmodel_tokens_total", "Tokens by model and direction"),
            &["model", "direction"],
        )
        .expect("static metric definition");
        let cost = GenericCounterVec::<AtomicF64>::new(
            Opts::new("rightmodel_cost_usd_total", "Dollars spent by model"),
            &["model"],
        )
        .expect("static metric definition");
        let decisions = IntCounterVec::new(
            Opts::new("rightmodel_route_decisions_total", "Routing decisions by served model and reason"),
            &["model", "reason"],
        )
        .expect("static metric definition");
        let in_flight =
            IntGauge::new("rightmodel_in_flight_requests", "Requests in flight").expect("static metric definition");
        let log_pending = IntGauge::new("rightmodel_log_rows_pending", "Request-log rows waiting for the database")
            .expect("static metric definition");
        let log_dropped =
            IntCounter::new("rightmodel_log_rows_dropped_total", "Request-log rows given up on since the start")
                .expect("static metric definition");
        let passage_readers =
            IntGauge::new("rightmodel_passage_readers", "Language models reading document passages, one thread each")
                .expect("static metric definition");
        let http_responses = IntCounterVec::new(
            Opts::new("rightmodel_http_responses_total", "HTTP responses by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(ttft.clone()),
            Box::new(tokens.clone()),
            Box::new(cost.clone()),
            Box::new(decisions.clone()),
            Box::new(in_flight.clone()),
            Box::new(log_pending.clone()),
            Box::new(log_dropped.clone()),
            Box::new(passage_readers.clone()),
            Box::new(http_responses.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            ttft,
            tokens,
            cost,
            decisions,
            in_flight,
            log_pending,
            log_dropped,
            passage_readers,
            http_responses,
        }
    }

    /// Brings the dropped-rows counter up to `dropped`, the request log's own count of rows given up on
    /// since the start. That count only grows, so the counter is only ever increased.
    pub fn sync_log_dropped(&self, dropped: u64) {
        let seen = self.log_dropped.get();
        if dropped > seen {
            self.log_dropped.inc_by(dropped - seen);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Route label of a request no route matched: the path itself is the client's to choose and would
/// make a label value per scanner probe.
const UNMATCHED_ROUTE: &str = "unmatched";

/// The method as a label: the standard ones by name, any other as `other` (hyper accepts any token as a
/// method, so a client could otherwise make a label value per request).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(k, _)| k == m).map_or("other", |(_, name)| name)
}

/// Middleware counting every response in [`Metrics::http_responses`] by route pattern, method and status,
/// whatever answered it (a handler, the 404 / 405 fallbacks, a refused body). The request log holds
/// model requests only (see [`crate::intake::LOGGED_ENDPOINTS`]); this is where the rest is counted.
/// A stream counts when its response starts (its status is 200 then).
pub async fn count_responses(
    axum::extract::State(st): axum::extract::State<crate::state::SharedState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    st.metrics.http_responses.with_label_values(&[route.as_str(), method, resp.status().as_str()]).inc();
    resp
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_log_rows_are_a_counter_that_follows_the_logs_count() {
        let m = Metrics::new();
        m.sync_log_dropped(3);
        m.sync_log_dropped(3);
        m.sync_log_dropped(5);
        let text = m.render();
        assert!(text.contains("# TYPE rightmodel_log_rows_dropped_total counter"), "{text}");
        assert!(text.contains("\nrightmodel_log_rows_dropped_total 5\n"), "{text}");
        assert!(!text.contains("rightmodel_log_rows_dropped "), "the old gauge's name is gone: {text}");
    }

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        let odd = axum::http::Method::from_bytes(b"BREW").expect("a method token");
        assert_eq!(method_label(&odd), "other");
    }
}
