//! Daily spend counters that reset at midnight UTC.

use parking_lot::Mutex;

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

    /// Releases a hold made with [`SpendCounter::reserve`].
    pub fn release(&self, usd: f64) {
        let mut g = self.inner.lock();
        g.2 = (g.2 - usd).max(0.0);
    }

    /// Today's total plus what running requests hold: what limits are checked against.
    pub fn committed(&self) -> f64 {
        let g = self.inner.lock();
        let spent = if g.0 == utc_day() { g.1 } else { 0.0 };
        spent + g.2
    }
}
