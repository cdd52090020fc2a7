//! What the gateway knows of an upstream's health from the calls it has made: consecutive failures,
//! the last success and failure. Readiness reads it (`GET /readyz`) without calling the upstream: a
//! probe that made network calls would put load on every upstream at every probe, and would fail the
//! gateway for an upstream's passing hiccup.
//!
//! The state works like a circuit breaker's, for reporting only (requests are not refused for it):
//! [`FAILURES_TO_DOWN`] failures in a row with no success between make an upstream `down`; once
//! [`DOWN_FOR`] has passed since its last failure it reads `failing` again (half-open), so that a
//! gateway taken out of rotation for it gets traffic again and learns whether it came back, instead
//! of staying unready forever for want of calls.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// Failures in a row (no success between) after which an upstream reads `down`.
pub const FAILURES_TO_DOWN: u32 = 3;

/// How long after its last failure a `down` upstream stays so without another call.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// An upstream's state as readiness reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    /// Not called since the start: nothing is known.
    Unknown,
    /// Its last call succeeded.
    Up,
    /// Its last call failed, but not [`FAILURES_TO_DOWN`] in a row lately.
    Failing,
    /// [`FAILURES_TO_DOWN`] or more failures in a row, the last within [`DOWN_FOR`].
    Down,
}

/// Outcomes of an upstream's calls, updated by every call (cheap atomics, one lock for the last error).
#[derive(Debug, Default)]
pub struct UpstreamHealth {
    consecutive_failures: AtomicU32,
    /// Unix ms of the last success, 0 for none.
    last_success_ms: AtomicI64,
    /// Unix ms of the last failure, 0 for none.
    last_failure_ms: AtomicI64,
    /// The last failure's message, as the gateway's own log words it.
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`UpstreamHealth`], as `/readyz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The state it reads now.
    pub state: UpstreamState,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
    /// Seconds since the last success, when there was one.
    pub last_success_s_ago: Option<u64>,
    /// Seconds since the last failure, when there was one.
    pub last_failure_s_ago: Option<u64>,
    /// What the last failure was.
    pub last_error: Option<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl UpstreamHealth {
    /// A call answered (an answer, or a request error the upstream judged: it is up).
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A call failed for the upstream's sake (unreachable, 5xx, timed out, rate limited past the
    /// retries, a broken answer), with the gateway's message for it.
    pub fn record_failure(&self, message: &str) {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.last_failure_ms.store(now_ms(), Ordering::Relaxed);
        *self.last_error.lock() = Some(message.to_string());
    }

    /// The state and counts as of `now_ms` (Unix ms).
    pub fn report_at(&self, now_ms: i64) -> HealthReport {
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        let ago = |at: i64| (at > 0).then(|| (now_ms.saturating_sub(at).max(0) / 1000) as u64);
        let (success, failure) =
            (self.last_success_ms.load(Ordering::Relaxed), self.last_failure_ms.load(Ordering::Relaxed));
        let recent = failure > 0 && now_ms.saturating_sub(failure) < DOWN_FOR.as_millis() as i64;
        let state = if failures >= FAILURES_TO_DOWN && recent {
            UpstreamState::Down
        } else if failures > 0 {
            UpstreamState::Failing
        } else if success > 0 {
            UpstreamState::Up
        } else {
            UpstreamState::Unknown
        };
        HealthReport {
            state,
            consecutive_failures: failures,
            last_success_s_ago: ago(success),
            last_failure_s_ago: ago(failure),
            last_error: self.last_error.lock().clone(),
        }
    }

    /// The state and counts now.
    pub fn report(&self) -> HealthReport {
        self.report_at(now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_make_an_upstream_down_for_a_while_and_a_success_brings_it_up() {
        let h = UpstreamHealth::default();
        assert_eq!(h.report().state, UpstreamState::Unknown);
        h.record_success();
        assert_eq!(h.report().state, UpstreamState::Up);
        for _ in 0..FAILURES_TO_DOWN - 1 {
            h.record_failure("upstream `u` returned 503");
        }
        assert_eq!(h.report().state, UpstreamState::Failing);
        h.record_failure("upstream `u` timed out");
        let r = h.report();
        assert_eq!((r.state, r.consecutive_failures), (UpstreamState::Down, FAILURES_TO_DOWN));
        assert_eq!(r.last_error.as_deref(), Some("upstream `u` timed out"));
        // Without another call it is given a chance again once DOWN_FOR has passed (half-open).
        let later = now_ms() + DOWN_FOR.as_millis() as i64 + 1000;
        assert_eq!(h.report_at(later).state, UpstreamState::Failing);
        h.record_success();
        assert_eq!(h.report().state, UpstreamState::Up);
    }
}
