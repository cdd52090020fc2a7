//! Training the difficulty model: labels from routing outcomes, and L2-regularised logistic
//! regression fitted with L-BFGS.
//!
//! The optimiser is written here rather than taken from a crate: the problem is small (10k x 410),
//! convex and full-batch, L-BFGS is ~60 lines, and the linear-algebra crates that ship one would add
//! a BLAS build for no gain.

use serde::{Deserialize, Serialize};

use crate::data::Outcome;
use crate::error::RouterError;
use crate::matrix::Matrix;
use crate::model::{sigmoid, DifficultyModel, Logistic, Standardizer};

/// What the model is trained to predict from a row's outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// The benefit of the strong model, `strong - weak` scaled to a soft label in `[0, 1]`
    /// (`0.5` where both models agree). The expected benefit is what a router should rank by.
    #[default]
    Benefit,
    /// `1` when only the strong model is right (`strong > weak`), else `0`.
    StrongOnly,
    /// `1` when the weak model is wrong: plain difficulty for the weak model.
    WeakWrong,
}

impl LabelKind {
    /// The label of one outcome, with scores normalised by `scale` (identity for 0/1 correctness).
    pub fn label(self, o: &Outcome, scale: ScoreScale) -> f32 {
        let (w, s) = (scale.normalise(o.weak), scale.normalise(o.strong));
        let v = match self {
            LabelKind::Benefit => 0.5 + (s - w) / 2.0,
            LabelKind::StrongOnly => f64::from(u8::from(s - w > 1e-9)),
            LabelKind::WeakWrong => 1.0 - w,
        };
        v.clamp(0.0, 1.0) as f32
    }
}

/// The span of outcome scores, so that per-model scores on any scale (0/1 correctness, 1-10 judge
/// ratings) become labels in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreScale {
    /// Lowest score seen.
    pub lo: f64,
    /// Highest minus lowest (1 when all scores are equal).
    pub range: f64,
}

impl ScoreScale {
    /// The scale of `outcomes` (both models).
    pub fn of(outcomes: &[Outcome]) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for o in outcomes {
            lo = lo.min(o.weak.min(o.strong));
            hi = hi.max(o.weak.max(o.strong));
        }
        if hi > lo {
            ScoreScale { lo, range: hi - lo }
        } else {
            ScoreScale { lo: 0.0, range: 1.0 }
        }
    }

    /// `v` mapped to `[0, 1]`.
    pub fn normalise(self, v: f64) -> f64 {
        (v - self.lo) / self.range
    }
}

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// What to predict.
    pub label: LabelKind,
    /// L2 penalty on the weights (on standardised features; the intercept is not penalised).
    pub l2: f64,
    /// L-BFGS iteration cap.
    pub max_iter: usize,
    /// Weight rows so that every group (e.g. subject) counts the same in the loss, instead of every
    /// row: a few large groups then cannot dominate what the model learns.
    #[serde(default)]
    pub balance_groups: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { label: LabelKind::Benefit, l2: 1.0, max_iter: 300, balance_groups: false }
    }
}

/// Row weights that give each group the same total weight (mean weight 1); rows without a group
/// form one group together.
pub fn group_weights(groups: &[Option<&str>]) -> Vec<f32> {
    let mut sizes: std::collections::HashMap<Option<&str>, usize> = std::collections::HashMap::new();
    for g in groups {
        *sizes.entry(*g).or_default() += 1;
    }
    let per_group = groups.len() as f32 / sizes.len().max(1) as f32;
    groups.iter().map(|g| per_group / sizes[g] as f32).collect()
}

/// Why every row of `outcomes` gets the same `label` (the caller has checked that it does), in terms of
/// the data: the two models scoring alike is only one of the ways, and "they never differ" would be
/// wrong when, say, the weak model scores -1 and the strong one 1 on every row.
pub fn same_label_reason(outcomes: &[Outcome], label: LabelKind) -> String {
    let Some(first) = outcomes.first() else { return "no rows; nothing to learn".into() };
    let why = if outcomes.iter().all(|o| o.weak == o.strong) {
        "the two models score the same on every row".to_string()
    } else {
        match label {
            LabelKind::Benefit => {
                format!("the strong model's gain (strong - weak) is {} on every row", first.strong - first.weak)
            }
            LabelKind::WeakWrong => format!("the weak model scores {} on every row", first.weak),
            LabelKind::StrongOnly if first.strong > first.weak => {
                "the strong model beats the weak one on every row".to_string()
            }
            LabelKind::StrongOnly => "the strong model never beats the weak one".to_string(),
        }
    };
    let name = match label {
        LabelKind::Benefit => "benefit",
        LabelKind::WeakWrong => "weak-wrong",
        LabelKind::StrongOnly => "strong-only",
    };
    format!(
        "every row gets the same `{name}` label because {why}, so there is nothing to learn about which prompts need the strong model"
    )
}

/// Fits standardisation and a logistic head on feature rows `x` with outcomes `outcomes`; `groups`
/// (same length, or empty) are used when `cfg.balance_groups` is set.
pub fn fit(
    x: &Matrix,
    outcomes: &[Outcome],
    groups: &[Option<&str>],
    cfg: &TrainConfig,
) -> Result<DifficultyModel, RouterError> {
    if x.rows() != outcomes.len() {
        return Err(RouterError::Training(format!("{} feature rows for {} outcomes", x.rows(), outcomes.len())));
    }
    if x.rows() < 10 {
        return Err(RouterError::Training(format!("{} rows; at least 10 are needed", x.rows())));
    }
    let scale = ScoreScale::of(outcomes);
    let y: Vec<f32> = outcomes.iter().map(|o| cfg.label.label(o, scale)).collect();
    let (lo, hi) = y.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1e-6 {
        return Err(RouterError::Training(same_label_reason(outcomes, cfg.label)));
    }
    let standardizer = Standardizer::fit(x);
    let z = standardizer.apply(x);
    let weights = if cfg.balance_groups && groups.len() == outcomes.len() { group_weights(groups) } else { Vec::new() };
    let head = fit_logistic_weighted(&z, &y, &weights, cfg.l2, cfg.max_iter);
    Ok(DifficultyModel { standardizer, head })
}

/// Weighted mean cross-entropy of soft labels `y` plus `l2/2 |w|^2`, and its gradient (weights then
/// bias). `sw` are per-row weights (all 1 when empty).
fn loss_grad(x: &Matrix, y: &[f32], sw: &[f32], l2: f64, theta: &[f64], grad: &mut [f64]) -> f64 {
    let d = x.cols();
    let n = if sw.is_empty() { x.rows() as f64 } else { sw.iter().map(|w| f64::from(*w)).sum::<f64>().max(1e-12) };
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (k, (row, &yi)) in x.iter_rows().zip(y).enumerate() {
        let wi = sw.get(k).map_or(1.0, |w| f64::from(*w));
        let z: f64 = row.iter().zip(&theta[..d]).map(|(v, w)| f64::from(*v) * w).sum::<f64>() + theta[d];
        // softplus(z) - y z, computed stably.
        let sp = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
        loss += wi * (sp - f64::from(yi) * z);
        let r = wi * (f64::from(sigmoid(z as f32)) - f64::from(yi));
        for (g, v) in grad[..d].iter_mut().zip(row) {
            *g += r * f64::from(*v);
        }
        grad[d] += r;
    }
    loss /= n;
    grad.iter_mut().for_each(|g| *g /= n);
    let mut reg = 0.0;
    for (g, w) in grad[..d].iter_mut().zip(&theta[..d]) {
        *g += l2 * w;
        reg += w * w;
    }
    loss + 0.5 * l2 * reg
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// L2-regularised logistic regression with soft labels, by L-BFGS (memory 10, backtracking Armijo
/// line search). Deterministic: starts from zero weights and the label mean as intercept.
pub fn fit_logistic(x: &Matrix, y: &[f32], l2: f64, max_iter: usize) -> Logistic {
    fit_logistic_weighted(x, y, &[], l2, max_iter)
}

/// [`fit_logistic`] with per-row weights `sw` (empty = all 1).
pub fn fit_logistic_weighted(x: &Matrix, y: &[f32], sw: &[f32], l2: f64, max_iter: usize) -> Logistic {
    const MEMORY: usize = 10;
    let d = x.cols();
    let mean_y = (y.iter().map(|v| f64::from(*v)).sum::<f64>() / y.len().max(1) as f64).clamp(1e-4, 1.0 - 1e-4);
    let mut theta = vec![0f64; d + 1];
    theta[d] = (mean_y / (1.0 - mean_y)).ln();
    let mut grad = vec![0f64; d + 1];
    let mut loss = loss_grad(x, y, sw, l2, &theta, &mut grad);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = std::collections::VecDeque::new();
    let mut new_theta = vec![0f64; d + 1];
    let mut new_grad = vec![0f64; d + 1];
    for _ in 0..max_iter {
        if dot(&grad, &grad).sqrt() < 1e-7 {
            break;
        }
        // Two-loop recursion: direction = -H grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, yv, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, yv, _)) = hist.back() {
            let gamma = dot(s, yv) / dot(yv, yv).max(1e-12);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, yv, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(yv, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &dir);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            hist.clear();
            dir = grad.iter().map(|g| -g).collect();
            slope = dot(&grad, &dir);
        }
        let mut step = if hist.is_empty() { 1.0 / dot(&grad, &grad).sqrt().max(1.0) } else { 1.0 };
        let mut accepted = false;
        for _ in 0..40 {
            new_theta.iter_mut().zip(&theta).zip(&dir).for_each(|((n, t), dv)| *n = t + step * dv);
            let new_loss = loss_grad(x, y, sw, l2, &new_theta, &mut new_grad);
            if new_loss <= loss + 1e-4 * step * slope {
                let s: Vec<f64> = new_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
                let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &yv);
                if sy > 1e-12 {
                    if hist.len() == MEMORY {
                        hist.pop_front();
                    }
                    hist.push_back((s, yv, 1.0 / sy));
                }
                let improvement = loss - new_loss;
                std::mem::swap(&mut theta, &mut new_theta);
                std::mem::swap(&mut grad, &mut new_grad);
                loss = new_loss;
                accepted = true;
                if improvement < 1e-10 * loss.abs().max(1.0) {
                    return to_logistic(&theta, d);
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    to_logistic(&theta, d)
}

fn to_logistic(theta: &[f64], d: usize) -> Logistic {
    Logistic { weights: theta[..d].iter().map(|w| *w as f32).collect(), bias: theta[d] as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn recovers_a_separating_direction() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut x = Matrix::with_capacity(400, 3);
        let mut y = Vec::new();
        for _ in 0..400 {
            let r: [f32; 3] = [rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)];
            let p = sigmoid(3.0 * r[0] - 2.0 * r[1]);
            y.push(f32::from(u8::from(rng.gen::<f32>() < p)));
            x.push_row(&r);
        }
        let m = fit_logistic(&x, &y, 1e-4, 200);
        assert!(m.weights[0] > 1.5 && m.weights[1] < -1.0, "{:?}", m.weights);
        assert!(m.weights[2].abs() < 0.8, "{:?}", m.weights);
    }

    #[test]
    fn benefit_labels() {
        let o = |w, s| Outcome { weak: w, strong: s };
        let u = ScoreScale { lo: 0.0, range: 1.0 };
        assert_eq!(LabelKind::Benefit.label(&o(0.0, 1.0), u), 1.0);
        assert_eq!(LabelKind::Benefit.label(&o(1.0, 0.0), u), 0.0);
        assert_eq!(LabelKind::Benefit.label(&o(1.0, 1.0), u), 0.5);
        assert_eq!(LabelKind::StrongOnly.label(&o(0.0, 1.0), u), 1.0);
        assert_eq!(LabelKind::StrongOnly.label(&o(0.0, 0.0), u), 0.0);
        assert_eq!(LabelKind::WeakWrong.label(&o(0.0, 0.0), u), 1.0);
        assert_eq!(LabelKind::WeakWrong.label(&o(1.0, 0.0), u), 0.0);
        let ten = ScoreScale::of(&[o(1.0, 10.0), o(4.0, 7.0)]);
        assert_eq!(LabelKind::Benefit.label(&o(1.0, 10.0), ten), 1.0);
    }

    #[test]
    fn single_label_is_an_error() {
        let x = Matrix::from_vec(10, 1, (0..10).map(|i| i as f32).collect()).unwrap();
        let outcomes = vec![Outcome { weak: 1.0, strong: 1.0 }; 10];
        assert!(fit(&x, &outcomes, &[], &TrainConfig::default()).is_err());
    }

    #[test]
    fn a_constant_label_is_explained_by_the_data() {
        let x = Matrix::from_vec(10, 1, (0..10).map(|i| i as f32).collect()).unwrap();
        let err = |o: Outcome, label| {
            let cfg = TrainConfig { label, ..TrainConfig::default() };
            fit(&x, &[o; 10], &[], &cfg).unwrap_err().to_string()
        };
        let e = err(Outcome { weak: -1.0, strong: 1.0 }, LabelKind::Benefit);
        assert!(e.contains("(strong - weak) is 2 on every row") && !e.contains("never differ"), "{e}");
        let e = err(Outcome { weak: 1.0, strong: 1.0 }, LabelKind::Benefit);
        assert!(e.contains("score the same on every row"), "{e}");
        let e = err(Outcome { weak: 0.0, strong: 1.0 }, LabelKind::StrongOnly);
        assert!(e.contains("`strong-only`") && e.contains("beats the weak one on every row"), "{e}");
        let e = err(Outcome { weak: 0.0, strong: 1.0 }, LabelKind::WeakWrong);
        assert!(e.contains("the weak model scores 0 on every row"), "{e}");
    }

    #[test]
    fn group_weights_equalise_groups() {
        let w = group_weights(&[Some("a"), Some("a"), Some("a"), Some("b")]);
        assert_eq!(w, vec![2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0]);
    }
}
