//! Daily spend counters that reset at midnight UTC.

use parking_lot::Mutex;
use rightmodel_core::{ApiError, ErrorKind};

/// Days since the Unix epoch, UTC.
pub fn utc_day() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(86_400)
}

/// Unix milliseconds of the start of today, UTC.
pub fn start_of_day_ms() -> i64 {
    utc_day() * 86_400_000
}

/// Seconds until the next UTC midnight (Retry-After for exhausted daily limits).
pub fn seconds_to_midnight_utc() -> u64 {
    let now = chrono::Utc::now().timestamp();
    (86_400 - now.rem_euclid(86_400)) as u64
}

/// Dollars as people read them (the router's formatting, so that its budget messages and the
/// gateway's read alike).
pub use rightmodel_router::policy::budget::usd;

/// Seconds a refusal asks the client to wait when the limit is taken only by what running requests
/// hold: their holds are released (or turned into what they really cost) within seconds of their ends,
/// so the next call may well fit long before midnight.
pub const HELD_RETRY_AFTER_SECS: u64 = 2;

/// What today's counters stand at when a call is checked against a limit: dollars spent (including
/// what this request's earlier calls cost, e.g. a cascade's small answer) and dollars held by running
/// requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Committed {
    /// Spent today (cannot come back before midnight UTC).
    pub spent: f64,
    /// Held by other running requests (comes back as they finish under their estimates).
    pub held: f64,
}

impl Committed {
    /// Spent plus held: what the limit is checked against.
    pub fn total(&self) -> f64 {
        self.spent + self.held
    }

    /// Whether a call likely to cost `cost` would fit `limit` once the holds are gone: then the refusal
    /// is brief (running requests hold the rest), not until midnight.
    pub fn fits_without_holds(&self, limit: f64, cost: f64) -> bool {
        self.held > 0.0 && self.spent + cost <= limit
    }
}

/// Why a call likely to cost `cost` does not fit `limit` (`what`, e.g. "Key `ci`'s daily limit") with
/// `at` spent and held today. Money held by running requests is not called spent: when only the holds
/// stand in the way, the message says so (they come back as those requests finish).
pub fn over_limit(what: &str, limit: f64, at: Committed, cost: f64) -> String {
    let mut chars = what.chars();
    let what: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    let left = (limit - at.total()).max(0.0);
    if at.spent >= limit {
        format!("{what} of {} is spent", usd(limit))
    } else if at.fits_without_holds(limit, cost) {
        format!(
            "{what} of {} has {} left while running requests hold {} of it (spent today: {}); this call's \
             likely cost of {} (the prompt and max_tokens) fits once they finish",
            usd(limit),
            usd(left),
            usd(at.held),
            usd(at.spent),
            usd(cost)
        )
    } else {
        format!(
            "{what} of {} has {} left, less than this call's likely cost of {} (the prompt and max_tokens)",
            usd(limit),
            usd(left),
            usd(cost)
        )
    }
}

/// The refusal of a paid call likely to cost `cost` against `limit` (named by `what`, e.g. "Key
/// `ci`'s daily limit") with `at` spent and held today: a 422 when the call alone costs more than the
/// whole limit (waiting cannot help; a smaller `max_tokens` can), a 429 with a Retry-After of a few
/// seconds when only running requests' holds stand in the way (they end soon), otherwise a 429 until
/// midnight UTC, when the limit resets.
pub fn limit_refusal(what: &str, limit: f64, at: Committed, cost: f64, model: &str, code: &str) -> ApiError {
    if cost > limit {
        return ApiError::new(
            ErrorKind::Unprocessable,
            format!(
                "This call's likely cost of {} (the prompt and max_tokens, times n) on `{model}` is more than {what} \
                 of {}: lower max_tokens (or n) or shorten the prompt (local models still serve).",
                usd(cost),
                usd(limit)
            ),
        )
        .with_param("max_tokens")
        .with_code(code);
    }
    let retry_after =
        if at.fits_without_holds(limit, cost) { HELD_RETRY_AFTER_SECS } else { seconds_to_midnight_utc() };
    ApiError::new(
        ErrorKind::RateLimited,
        format!("{}; `{model}` is a paid model (local models still serve).", over_limit(what, limit, at, cost)),
    )
    .with_code(code)
    .with_retry_after(retry_after)
}

/// Dollars spent today, and dollars held for requests still running.
///
/// Spend is known only when a request ends; checking limits against it alone let every request that
/// arrived while others were running pass a nearly spent limit (20 concurrent calls spent 8x a key's
/// limit). Running paid requests therefore hold an estimate of their cost ([`SpendCounter::reserve`]),
/// limits are checked against spend plus holds ([`SpendCounter::committed`]), and a hold is released
/// when its request's real cost is added.
#[derive(Debug, Default)]
pub struct SpendCounter {
    /// (UTC day, spent that day, held now).
    inner: Mutex<(i64, f64, f64)>,
}

impl SpendCounter {
    /// Adds `usd` to today's total.
    pub fn add(&self, usd: f64) {
        let day = utc_day();
        let mut g = self.inner.lock();
        if g.0 != day {
            g.0 = day;
            g.1 = 0.0;
        }
        g.1 += usd;
    }

    /// Today's total.
    pub fn today(&self) -> f64 {
        let g = self.inner.lock();
        if g.0 == utc_day() {
            g.1
        } else {
            0.0
        }
    }

    /// Holds `usd` for a running request.
    pub fn reserve(&self, usd: f64) {
        self.inner.lock().2 += usd;
    }

    /// Replaces a hold of `old` dollars with one of `new`, in one step with the check: refused with
    /// what is committed without `old` (today's spend and every other hold) when that plus `new` would
    /// pass `limit` (spent and held apart, see [`Committed`]). Checking and then holding in two steps let
    /// concurrent requests all pass a nearly spent limit before any of them held its cost.
    pub fn swap_hold(&self, old: f64, new: f64, limit: Option<f64>) -> Result<(), Committed> {
        let day = utc_day();
        let mut g = self.inner.lock();
        if g.0 != day {
            g.0 = day;
            g.1 = 0.0;
        }
        let others = Committed { spent: g.1, held: (g.2 - old).max(0.0) };
        if limit.is_some_and(|l| new > old && others.total() + new > l) {
            return Err(others);
        }
        g.2 = (g.2 - old).max(0.0) + new;
        Ok(())
    }

    /// Releases a hold made with [`SpendCounter::reserve`].
    pub fn release(&self, usd: f64) {
        let mut g = self.inner.lock();
        g.2 = (g.2 - usd).max(0.0);
    }

    /// Today's total plus what running requests hold: what limits are checked against.
    pub fn committed(&self) -> f64 {
        self.committed_parts().total()
    }

    /// Today's total and what running requests hold, apart (see [`Committed`]).
    pub fn committed_parts(&self) -> Committed {
        let g = self.inner.lock();
        let spent = if g.0 == utc_day() { g.1 } else { 0.0 };
        Committed { spent, held: g.2 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_holds_never_pass_the_limit() {
        let counter = std::sync::Arc::new(SpendCounter::default());
        counter.add(0.25);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|_| {
                    let c = counter.clone();
                    s.spawn(move || usize::from(c.swap_hold(0.0, 0.1, Some(1.0)).is_ok()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        // $0.75 left holds seven calls of $0.10, however the threads interleave.
        assert_eq!(admitted, 7);
        assert!((counter.committed() - 0.95).abs() < 1e-9);
        // A smaller hold replacing a larger one always passes, even over the limit.
        counter.swap_hold(0.1, 0.05, Some(0.5)).unwrap();
        let refused = counter.swap_hold(0.0, 0.1, Some(0.95)).unwrap_err();
        assert!((refused.spent - 0.25).abs() < 1e-9 && (refused.held - 0.65).abs() < 1e-9, "{refused:?}");
    }

    #[test]
    fn a_limit_taken_by_holds_says_so_and_asks_for_a_short_wait() {
        // $0.002 limit, $0.00072 spent, two running calls hold $0.000525 each: $0.00023 left.
        let at = Committed { spent: 0.00072, held: 0.00105 };
        let e = limit_refusal("Key `b`'s daily limit", 0.002, at, 0.000525, "paid", "insufficient_quota");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(HELD_RETRY_AFTER_SECS));
        assert!(
            e.message.contains("running requests hold $0.00105") && !e.message.contains("is spent,"),
            "{}",
            e.message
        );
        assert!(e.message.contains("has $0.00023 left"), "{}", e.message);
        // Spent money alone leaves too little: until midnight, and no word of holds.
        let spent = Committed { spent: 0.0019, held: 0.00005 };
        let e = limit_refusal("Key `b`'s daily limit", 0.002, spent, 0.000525, "paid", "insufficient_quota");
        assert!(
            e.retry_after.unwrap_or(0) > HELD_RETRY_AFTER_SECS || seconds_to_midnight_utc() <= HELD_RETRY_AFTER_SECS
        );
        assert!(!e.message.contains("hold"), "{}", e.message);
        // Holds over the limit are not reported as spent.
        let held = Committed { spent: 0.0005, held: 0.002 };
        let e = limit_refusal("the gateway's daily budget", 0.002, held, 0.0005, "paid", "daily_budget_exhausted");
        assert!(!e.message.contains("is spent"), "{}", e.message);
        assert_eq!(e.retry_after, Some(HELD_RETRY_AFTER_SECS));
        // A call that alone costs more than the whole limit: 422 on max_tokens.
        let e =
            limit_refusal("Key `b`'s daily limit", 0.002, Committed::default(), 0.003, "paid", "insufficient_quota");
        assert_eq!((e.kind, e.param.as_deref(), e.retry_after), (ErrorKind::Unprocessable, Some("max_tokens"), None));
    }

    #[test]
    fn dollars_show_small_limits() {
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(0.00001), "$0.00001");
        assert_eq!(usd(0.0013), "$0.0013");
        assert_eq!(usd(0.0), "$0.00");
    }
}
