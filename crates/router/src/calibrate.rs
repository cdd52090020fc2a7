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

/// Largest gap, as a share of prompts, between the target strong share and the one a calibration
/// achieves on its own sample before [`calibrate`] warns: a few points is the granularity of any
/// real sample; more means the target cannot be reached on this data.
pub const SHARE_TOLERANCE: f32 = 0.05;

/// A calibration with what it achieves on the sample it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationOutcome {
    /// The calibration to store.
    pub calibration: Calibration,
    /// Sample prompts scoring at or above the threshold (sent to the strong model).
    pub strong: usize,
    /// `strong` as a share of the sample.
    pub achieved_share: f32,
    /// Set when the achieved share misses the target by more than [`SHARE_TOLERANCE`], saying why
    /// (tied scores, too few prompts) and what to do; the CLI prints it as a warning.
    pub warning: Option<String>,
}

/// Calibrates on `scores` for `strong_share` ([`Calibration::from_scores`]) and checks what the
/// threshold achieves on the same scores: tied scores cannot be split by any threshold, so a sample
/// of identical (or few) prompts may send far more or fewer to the strong model than asked.
pub fn calibrate(scores: &[f32], strong_share: f32) -> Result<CalibrationOutcome, RouterError> {
    let calibration = Calibration::from_scores(scores, strong_share)?;
    let strong = scores.iter().filter(|s| **s >= calibration.threshold).count();
    let achieved_share = strong as f32 / scores.len() as f32;
    let warning = share_warning(scores, calibration.threshold, strong_share, achieved_share);
    Ok(CalibrationOutcome { calibration, strong, achieved_share, warning })
}

/// Why `achieved` misses `target` by more than [`SHARE_TOLERANCE`], or `None` when it does not.
fn share_warning(scores: &[f32], threshold: f32, target: f32, achieved: f32) -> Option<String> {
    if (achieved - target).abs() <= SHARE_TOLERANCE {
        return None;
    }
    let n = scores.len();
    let missed = format!(
        "the target strong share is {:.1}% but {:.1}% of the {n} calibration prompt(s) go to the strong model",
        100.0 * target,
        100.0 * achieved
    );
    // The prompts at the boundary: those with the lowest score that still reaches the threshold, or
    // the highest below it when none does.
    let boundary = scores
        .iter()
        .copied()
        .filter(|s| *s >= threshold)
        .min_by(f32::total_cmp)
        .or_else(|| scores.iter().copied().filter(|s| s.is_finite()).max_by(f32::total_cmp));
    let tied = boundary.map_or(0, |b| scores.iter().filter(|s| **s == b).count());
    let why = match boundary {
        Some(b) if tied >= 2 => {
            format!("{tied} of them score exactly {b:.4}, and no threshold can split prompts with the same score")
        }
        _ => format!("with {n} prompt(s) the share can only move in steps of {:.1}%", 100.0 / n as f32),
    };
    Some(format!("{missed}: {why}; calibrate on a larger, more varied sample of real prompts"))
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
    fn an_unreachable_share_is_a_warning_that_says_why() {
        // 20 identical prompts: every one ties, so all go to the strong model.
        let out = calibrate(&[0.42; 20], 0.5).unwrap();
        assert_eq!(out.strong, 20);
        assert_eq!(out.achieved_share, 1.0);
        let w = out.warning.unwrap();
        assert!(w.contains("50.0%") && w.contains("100.0%") && w.contains("20 of them score exactly 0.4200"), "{w}");
        // One prompt: too few to split.
        let w = calibrate(&[0.3], 0.5).unwrap().warning.unwrap();
        assert!(w.contains("steps of 100.0%"), "{w}");
        // A spread sample reaches the target: no warning.
        let scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let out = calibrate(&scores, 0.3).unwrap();
        assert!(out.warning.is_none(), "{:?}", out.warning);
        assert_eq!(out.strong, 30);
        // Shares of 0 and 1 are always reached.
        assert!(calibrate(&[0.42; 20], 1.0).unwrap().warning.is_none());
        assert!(calibrate(&[0.42; 20], 0.0).unwrap().warning.is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Calibration::from_scores(&[], 0.3).is_err());
        assert!(Calibration::from_scores(&[0.1], 1.5).is_err());
    }
}
