//! Decision-latency measurement (`rightmodel router bench`): times [`Router::decide`] end to end,
//! embedding included, without a benchmark harness.

use std::time::Instant;

use serde::Serialize;

use crate::policy::{BudgetState, RouteError, RouteRequest, Router};

/// Percentiles of a timing run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyStats {
    /// Timed runs.
    pub runs: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
}

impl LatencyStats {
    /// Statistics of `samples` (milliseconds); `None` when empty.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let p = |q: f64| crate::metrics::nearest_rank(samples, q);
        Some(LatencyStats {
            runs: n,
            p50_ms: p(0.50),
            p90_ms: p(0.90),
            p99_ms: p(0.99),
            mean_ms: samples.iter().sum::<f64>() / n as f64,
            max_ms: samples[n - 1],
        })
    }
}

/// Times `runs` decisions of `req` after `warmup` untimed ones; `on_run` is called after each timed
/// run (progress).
pub fn time_decisions(
    router: &Router,
    req: &RouteRequest,
    budget: &BudgetState,
    warmup: usize,
    runs: usize,
    mut on_run: impl FnMut(),
) -> Result<LatencyStats, RouteError> {
    for _ in 0..warmup {
        router.decide(req, budget)?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let d = router.decide(req, budget)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(d);
        on_run();
    }
    LatencyStats::of(&mut samples).ok_or_else(|| RouteError::Internal("no timed runs".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = LatencyStats::of(&mut v).unwrap();
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(s.mean_ms, 50.5);
        assert!(LatencyStats::of(&mut []).is_none());
    }
}
