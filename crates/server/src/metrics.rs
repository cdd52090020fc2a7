//! Prometheus metrics: requests, latency, time to first token, tokens and cost, by model and outcome.

use prometheus::core::{AtomicF64, GenericCounterVec};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
    /// Request-log rows given up on since the start.
    pub log_dropped: IntGauge,
    /// Language models reading document passages, one thread each (collections on one model share it).
    pub passage_readers: IntGauge,
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
        let log_dropped = IntGauge::new("rightmodel_log_rows_dropped", "Request-log rows given up on since the start")
            .expect("static metric definition");
        let passage_readers =
            IntGauge::new("rightmodel_passage_readers", "Language models reading document passages, one thread each")
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
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
