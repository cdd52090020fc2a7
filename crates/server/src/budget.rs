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

/// Dollars spent today.
#[derive(Debug, Default)]
pub struct SpendCounter {
    inner: Mutex<(i64, f64)>,
}

impl SpendCounter {
    /// Adds `usd` to today's total.
    pub fn add(&self, usd: f64) {
        let day = utc_day();
        let mut g = self.inner.lock();
        if g.0 != day {
            *g = (day, 0.0);
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
}
