//! Routing quality as RouteLLM (Ong et al. 2024, `routellm/evals`) measures it.
//!
//! A router gives each prompt a score; a threshold sends prompts scoring at or above it to the
//! strong model. Sweeping the threshold over the score quantiles (RouteLLM: `pd.qcut` into 10
//! equal-count bins, 11 edges; the last edge uses `>` so that it gives 0% strong calls) traces
//! quality against the share of strong calls:
//!
//! - PGR (performance gap recovered) of a point: `(quality - weak) / (strong - weak)`, where `weak`
//!   and `strong` are the qualities of always calling one model.
//! - APGR: the area under the PGR curve over the strong-share axis (trapezoids), i.e. RouteLLM's
//!   `(AUC - weak_auc) / (strong_auc - weak_auc)`. A random router scores 0.5 in expectation.
//! - CPT(x%): the strong-call share at which the curve first reaches PGR `x`, linearly interpolated
//!   between sweep points. RouteLLM interpolates with `np.interp` over the points ordered by share,
//!   which is the same on a rising curve; on a curve that dips we take the first crossing, which is
//!   what "calls needed to reach x" means, and report `None` when it is never reached.
//!
//! All three are defined only when the strong model alone beats the weak one ([`gap_defined`]): with
//! no gap there is nothing to recover, and with a negative one the PGR scale is upside down (a router
//! is "recovering" a loss), so PGR is NaN, APGR NaN and every CPT `None` there, and
//! [`RoutingMetrics::defined`] tells callers not to show them as numbers.

use serde::Serialize;

use crate::data::Outcome;

/// One point of the quality-vs-strong-share curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Score threshold of this point.
    pub threshold: f64,
    /// Share of prompts sent to the strong model, 0..1.
    pub strong_share: f64,
    /// Mean quality of the routed answers.
    pub quality: f64,
    /// Performance gap recovered at this point.
    pub pgr: f64,
}

/// A router's routing metrics on one data set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingMetrics {
    /// Mean quality of the weak model alone.
    pub weak_quality: f64,
    /// Mean quality of the strong model alone.
    pub strong_quality: f64,
    /// Area under the PGR-vs-strong-share curve.
    pub apgr: f64,
    /// Strong share needed for PGR 0.2 (`None` if never reached).
    pub cpt20: Option<f64>,
    /// Strong share needed for PGR 0.5.
    pub cpt50: Option<f64>,
    /// Strong share needed for PGR 0.8.
    pub cpt80: Option<f64>,
    /// The sweep, ordered by strong share.
    pub curve: Vec<CurvePoint>,
}

impl RoutingMetrics {
    /// Whether PGR, APGR and CPT mean anything on this data: the strong model alone beats the weak one
    /// ([`gap_defined`]).
    pub fn defined(&self) -> bool {
        gap_defined(self.weak_quality, self.strong_quality)
    }
}

/// Smallest strong-minus-weak quality gap that counts as the strong model being better (below it the
/// difference is rounding).
pub const MIN_GAP: f64 = 1e-12;

/// Whether the performance gap `strong - weak` can be recovered at all, i.e. PGR is defined: the
/// strong model alone must be better than the weak one by more than [`MIN_GAP`].
pub fn gap_defined(weak: f64, strong: f64) -> bool {
    strong - weak > MIN_GAP
}

/// The `q` percentile (0..=1) of ascending `sorted` values by nearest rank, the convention of latency
/// reports (every value reported was observed); 0 when empty.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Quantile of sorted data with linear interpolation (numpy's default, which `pd.qcut` uses).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean quality of each model alone.
pub fn model_qualities(outcomes: &[Outcome]) -> (f64, f64) {
    let n = outcomes.len().max(1) as f64;
    (outcomes.iter().map(|o| o.weak).sum::<f64>() / n, outcomes.iter().map(|o| o.strong).sum::<f64>() / n)
}

/// The threshold sweep of `scores` over `bins` equal-count bins (RouteLLM uses 10).
pub fn curve(scores: &[f32], outcomes: &[Outcome], bins: usize) -> Vec<CurvePoint> {
    let n = scores.len().min(outcomes.len());
    if n == 0 {
        return Vec::new();
    }
    let (weak, strong) = model_qualities(&outcomes[..n]);
    let gap = strong - weak;
    let mut sorted: Vec<f64> = scores[..n].iter().map(|s| f64::from(*s)).collect();
    sorted.sort_by(f64::total_cmp);
    let bins = bins.max(1);
    let mut points: Vec<CurvePoint> = (0..=bins)
        .map(|i| {
            let t = quantile_sorted(&sorted, i as f64 / bins as f64);
            let last = i == bins;
            let (mut strong_calls, mut total) = (0usize, 0f64);
            for (s, o) in scores[..n].iter().zip(outcomes) {
                let s = f64::from(*s);
                let to_strong = if last { s > t } else { s >= t };
                if to_strong {
                    strong_calls += 1;
                    total += o.strong;
                } else {
                    total += o.weak;
                }
            }
            let quality = total / n as f64;
            CurvePoint {
                threshold: t,
                strong_share: strong_calls as f64 / n as f64,
                quality,
                pgr: if gap_defined(weak, strong) { (quality - weak) / gap } else { f64::NAN },
            }
        })
        .collect();
    points.sort_by(|a, b| a.strong_share.total_cmp(&b.strong_share).then(a.quality.total_cmp(&b.quality)));
    points
}

/// Area under the PGR curve over the strong-share axis, normalised by the axis span (RouteLLM's APGR).
pub fn apgr(points: &[CurvePoint]) -> f64 {
    if points.len() < 2 {
        return f64::NAN;
    }
    let span = points[points.len() - 1].strong_share - points[0].strong_share;
    if span <= 0.0 {
        return f64::NAN;
    }
    let area: f64 =
        points.windows(2).map(|w| (w[1].strong_share - w[0].strong_share) * (w[0].pgr + w[1].pgr) / 2.0).sum();
    area / span
}

/// The smallest strong share at which the curve reaches PGR `target` (first crossing, linear
/// interpolation between points); `None` when it never does.
pub fn cpt(points: &[CurvePoint], target: f64) -> Option<f64> {
    let first = points.first()?;
    if first.pgr >= target {
        return Some(first.strong_share);
    }
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.pgr < target && b.pgr >= target {
            let f = (target - a.pgr) / (b.pgr - a.pgr);
            return Some(a.strong_share + f * (b.strong_share - a.strong_share));
        }
    }
    None
}

/// All metrics of `scores` on `outcomes` with a sweep of `bins` bins.
pub fn evaluate(scores: &[f32], outcomes: &[Outcome], bins: usize) -> RoutingMetrics {
    let (weak_quality, strong_quality) = model_qualities(outcomes);
    let curve = curve(scores, outcomes, bins);
    RoutingMetrics {
        weak_quality,
        strong_quality,
        apgr: apgr(&curve),
        cpt20: cpt(&curve, 0.2),
        cpt50: cpt(&curve, 0.5),
        cpt80: cpt(&curve, 0.8),
        curve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(weak: f64, strong: f64) -> Outcome {
        Outcome { weak, strong }
    }

    /// 10 prompts; only the last two benefit from the strong model.
    fn ten() -> Vec<Outcome> {
        let mut v = vec![o(1.0, 1.0); 8];
        v.push(o(0.0, 1.0));
        v.push(o(0.0, 1.0));
        v
    }

    #[test]
    fn quantiles_match_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert!((quantile_sorted(&s, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile_sorted(&s, 0.1) - 1.3).abs() < 1e-12);
    }

    #[test]
    fn perfect_router() {
        // Scores rank the two beneficial prompts first: PGR 1 from 20% strong calls on.
        let scores: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let m = evaluate(&scores, &ten(), 10);
        assert_eq!(m.weak_quality, 0.8);
        assert_eq!(m.strong_quality, 1.0);
        assert_eq!(m.curve.len(), 11);
        assert_eq!(m.curve[0].strong_share, 0.0);
        assert_eq!(m.curve[10].strong_share, 1.0);
        // Points at shares 0, .1, .2, ..., 1 with PGR 0, .5, 1, 1, ...: area = .25 + .25*... = 0.05*...
        // trapezoids: [0,.1]: .025, [.1,.2]: .075, then 8 x .1 = .8  -> 0.9
        assert!((m.apgr - 0.9).abs() < 1e-12, "{}", m.apgr);
        assert!((m.cpt50.unwrap() - 0.1).abs() < 1e-12);
        assert!((m.cpt80.unwrap() - 0.16).abs() < 1e-12);
    }

    #[test]
    fn worst_router() {
        // The beneficial prompts come last: PGR stays 0 until 90%.
        let scores: Vec<f32> = (0..10).rev().map(|i| i as f32).collect();
        let m = evaluate(&scores, &ten(), 10);
        // [.8,.9]: .025, [.9,1]: .075 -> 0.1
        assert!((m.apgr - 0.1).abs() < 1e-12, "{}", m.apgr);
        assert!((m.cpt50.unwrap() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn constant_scores_are_all_or_nothing() {
        // Every prompt ties: >= sends all to strong, the last edge (>) none. Two points: APGR 0.5.
        let m = evaluate(&[0.3; 10], &ten(), 10);
        assert!((m.apgr - 0.5).abs() < 1e-12);
        assert!((m.cpt50.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn no_gap_or_a_negative_one_leaves_the_metrics_undefined() {
        let scores: Vec<f32> = (0..10).map(|i| i as f32).collect();
        // Both models equally good overall (they differ row by row), then the strong one worse.
        let tie: Vec<Outcome> = (0..10).map(|i| if i % 2 == 0 { o(1.0, 0.0) } else { o(0.0, 1.0) }).collect();
        let worse: Vec<Outcome> = (0..10).map(|i| if i < 3 { o(1.0, 0.0) } else { o(1.0, 1.0) }).collect();
        for outcomes in [tie, worse] {
            let m = evaluate(&scores, &outcomes, 10);
            assert!(!m.defined(), "{m:?}");
            assert!(m.apgr.is_nan() && m.curve.iter().all(|p| p.pgr.is_nan()), "{m:?}");
            assert_eq!((m.cpt20, m.cpt50, m.cpt80), (None, None, None));
            // The qualities themselves are still measured.
            assert!(m.curve.iter().all(|p| p.quality.is_finite()));
        }
        // A tiny edge for the strong model is a gap: defined, however noisy.
        let mut edge = vec![o(1.0, 1.0); 9];
        edge.push(o(0.0, 1.0));
        assert!(evaluate(&scores, &edge, 10).defined());
        assert!(!gap_defined(0.5, 0.5) && !gap_defined(0.5, 0.4) && gap_defined(0.4, 0.5));
    }

    #[test]
    fn harmful_strong_calls_and_unreached_targets() {
        // The strong model is worse on the top-scored prompt: the curve dips; CPT takes the first crossing.
        let outcomes = vec![o(1.0, 0.0), o(0.0, 1.0), o(0.0, 1.0), o(1.0, 1.0)];
        let scores = [4.0, 3.0, 2.0, 1.0];
        let c = curve(&scores, &outcomes, 4);
        let pgrs: Vec<f64> = c.iter().map(|p| p.pgr).collect();
        assert_eq!(pgrs, vec![0.0, -1.0, 0.0, 1.0, 1.0]);
        assert!((cpt(&c, 0.5).unwrap() - 0.625).abs() < 1e-12);
        assert_eq!(cpt(&c, 1.5), None);
    }
}
