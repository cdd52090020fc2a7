//! Calibration: the score threshold that sends a target share of traffic to the strong model.
//!
//! The scorer's output is a difficulty in `[0, 1]`, not a share; which threshold gives "30% strong
//! calls" depends on the traffic. Calibration scores a sample of the user's prompts and keeps the 101
//! quantiles of their scores, so the threshold for any share (the configured one, or a request's
//! `strong_share` override) is a lookup, without keeping the prompts.

use serde::{Deserialize, Serialize};

use crate::error::RouterError;
use crate::metrics::quantile_sorted;

/// Number of stored quantiles (every percentile, 0..=100).
pub const QUANTILES: usize = 101;

/// Threshold and score distribution of a calibration sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Prompts scoring at or above this go to the strong model.
    pub threshold: f32,
    /// The strong-call share the threshold was chosen for.
    pub strong_share: f32,
    /// Score quantiles of the sample at 0%, 1%, ..., 100%.
    pub quantiles: Vec<f32>,
    /// Number of prompts in the sample.
    pub prompts: usize,
}

impl Calibration {
    /// Calibrates on `scores` for a target `strong_share` in `[0, 1]`.
    pub fn from_scores(scores: &[f32], strong_share: f32) -> Result<Self, RouterError> {
        if scores.is_empty() {
            return Err(RouterError::Eval("no prompts to calibrate on".into()));
        }
        if !(0.0..=1.0).contains(&strong_share) {
            return Err(RouterError::Eval(format!("strong share {strong_share} is not in [0, 1]")));
        }
        let mut sorted: Vec<f64> = scores.iter().filter(|s| s.is_finite()).map(|s| f64::from(*s)).collect();
        sorted.sort_by(f64::total_cmp);
        let quantiles =
            (0..QUANTILES).map(|i| quantile_sorted(&sorted, i as f64 / (QUANTILES - 1) as f64) as f32).collect();
        let mut c = Calibration { threshold: 0.5, strong_share, quantiles, prompts: scores.len() };
        c.threshold = c.threshold_for_share(strong_share);
        Ok(c)
    }

    /// The score at quantile `q` in `[0, 1]`, interpolating between stored percentiles.
    fn quantile(&self, q: f32) -> f32 {
        let n = self.quantiles.len();
        if n == 0 {
            return 0.5;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f32;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        self.quantiles[lo] + (self.quantiles[hi] - self.quantiles[lo]) * (pos - lo as f32)
    }

    /// The threshold that sends about `share` of the calibration traffic to the strong model. A share
    /// of 0 gives a threshold above every score seen (and above 1, so no score reaches it); a share of
    /// 1 gives the lowest score seen.
    pub fn threshold_for_share(&self, share: f32) -> f32 {
        if share <= 0.0 {
            return self.quantile(1.0).max(1.0) + 1e-6;
        }
        self.quantile(1.0 - share.min(1.0))
    }

    /// Share of the calibration traffic at or above `threshold` (the inverse of
    /// [`Calibration::threshold_for_share`], interpolating between stored percentiles).
    pub fn share_at(&self, threshold: f32) -> f32 {
        let q = &self.quantiles;
        let n = q.len();
        if n < 2 {
            return 0.0;
        }
        if threshold <= q[0] {
            return 1.0;
        }
        if threshold > q[n - 1] {
            return 0.0;
        }
        let i = q.iter().rposition(|v| *v < threshold).unwrap_or(0).min(n - 2);
        let span = q[i + 1] - q[i];
        let frac = if span > 0.0 { ((threshold - q[i]) / span).clamp(0.0, 1.0) } else { 1.0 };
        1.0 - (i as f32 + frac) / (n - 1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_splits_the_sample_at_the_share() {
        let scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let c = Calibration::from_scores(&scores, 0.3).unwrap();
        let strong = scores.iter().filter(|s| **s >= c.threshold).count();
        assert!((295..=305).contains(&strong), "{strong}");
        assert!((c.share_at(c.threshold) - 0.3).abs() < 1e-4);
        assert!((c.share_at(c.threshold_for_share(0.55)) - 0.55).abs() < 1e-4);
        assert_eq!(c.share_at(-1.0), 1.0);
        assert_eq!(c.share_at(2.0), 0.0);
        let t2 = c.threshold_for_share(0.2);
        assert!(t2 > c.threshold);
        assert!(c.threshold_for_share(0.0) > 1.0);
        assert_eq!(c.threshold_for_share(1.0), 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Calibration::from_scores(&[], 0.3).is_err());
        assert!(Calibration::from_scores(&[0.1], 1.5).is_err());
    }
}
