//! Fitting the linear models of this crate (sentence ranker, span extractor, confidence) by gradient
//! descent. Each has at most a few dozen features and a few hundred thousand rows, so full-batch
//! gradient descent on standardised features is quick; a dozen lines each, rather than a
//! machine-learning dependency.

/// The candidates of one question: features and whether the candidate is a positive.
pub type Group<const N: usize> = Vec<([f32; N], bool)>;

/// Fits ranking weights (raw feature scale) by gradient descent on the listwise softmax loss
/// `-log(sum over positives of exp(s) / sum over all of exp(s))`, on standardised features with a small
/// L2 penalty. Groups without a positive are skipped.
pub fn fit_listwise<const N: usize>(groups: &[Group<N>], iterations: usize) -> [f32; N] {
    let groups: Vec<&Group<N>> = groups.iter().filter(|g| g.iter().any(|r| r.1)).collect();
    let all = groups.iter().flat_map(|g| g.iter());
    let count = all.clone().count().max(1) as f32;
    let mut mean = [0.0f32; N];
    let mut sd = [0.0f32; N];
    all.clone().for_each(|(x, ..)| (0..N).for_each(|k| mean[k] += x[k] / count));
    all.for_each(|(x, ..)| (0..N).for_each(|k| sd[k] += (x[k] - mean[k]).powi(2) / count));
    let sd = sd.map(|v| v.sqrt().max(1e-6));
    let z: Vec<Vec<([f32; N], bool)>> = groups
        .iter()
        .map(|g| g.iter().map(|(x, p)| (std::array::from_fn(|k| (x[k] - mean[k]) / sd[k]), *p)).collect())
        .collect();
    let mut w = [0.0f32; N];
    let ng = z.len().max(1) as f32;
    for _ in 0..iterations {
        let mut grad = [0.0f32; N];
        for g in &z {
            let s: Vec<f32> = g.iter().map(|(x, _)| dot_n(&w, x)).collect();
            let lse_all = log_sum_exp(s.iter().copied());
            let lse_pos = log_sum_exp(s.iter().zip(g).filter(|(_, r)| r.1).map(|(v, _)| *v));
            for ((x, p), v) in g.iter().zip(&s) {
                let coef = (v - lse_all).exp() - if *p { (v - lse_pos).exp() } else { 0.0 };
                (0..N).for_each(|k| grad[k] += coef * x[k] / ng);
            }
        }
        (0..N).for_each(|k| w[k] -= 0.2 * (grad[k] + 1e-3 * w[k]));
    }
    std::array::from_fn(|k| w[k] / sd[k])
}

/// `ln(sum(exp(v)))`, computed without overflow.
fn log_sum_exp(values: impl Iterator<Item = f32> + Clone) -> f32 {
    let m = values.clone().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + values.map(|v| (v - m).exp()).sum::<f32>().ln()
}

/// Fits logistic-regression weights (intercept first, raw feature scale) on `(features, label)` rows, on
/// standardised features with a small L2 penalty.
pub fn fit_logistic<const N: usize>(rows: &[([f32; N], bool)], iterations: usize) -> Vec<f32> {
    let n = rows.len().max(1) as f32;
    let mut mean = [0.0f32; N];
    let mut sd = [0.0f32; N];
    rows.iter().for_each(|(x, _)| (0..N).for_each(|k| mean[k] += x[k] / n));
    rows.iter().for_each(|(x, _)| (0..N).for_each(|k| sd[k] += (x[k] - mean[k]).powi(2) / n));
    let sd = sd.map(|v| v.sqrt().max(1e-6));
    let z: Vec<([f32; N], f32)> = rows
        .iter()
        .map(|(x, y)| (std::array::from_fn(|k| (x[k] - mean[k]) / sd[k]), if *y { 1.0 } else { 0.0 }))
        .collect();
    let mut w = vec![0.0f32; N + 1];
    for _ in 0..iterations {
        let mut g = vec![0.0f32; N + 1];
        for (x, y) in &z {
            let err = sigmoid(w[0] + dot_n(&w[1..], x)) - y;
            g[0] += err / n;
            (0..N).for_each(|k| g[k + 1] += err * x[k] / n);
        }
        (1..=N).for_each(|k| g[k] += 1e-3 * w[k]);
        (0..=N).for_each(|k| w[k] -= 0.5 * g[k]);
    }
    let mut raw = vec![0.0f32; N + 1];
    raw[0] = w[0] - (0..N).map(|k| w[k + 1] * mean[k] / sd[k]).sum::<f32>();
    (0..N).for_each(|k| raw[k + 1] = w[k + 1] / sd[k]);
    raw
}

/// The logistic function.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn dot_n(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listwise_fit_ranks_positives_first() {
        // Feature 0 marks the positive, feature 1 is noise.
        let groups: Vec<Group<2>> = (0..50)
            .map(|g| {
                (0..10)
                    .map(|i| {
                        let f = [if i == g % 10 { 1.0 } else { 0.2 }, ((g * 7 + i * 3) % 5) as f32 / 5.0];
                        (f, i == g % 10)
                    })
                    .collect()
            })
            .collect();
        let w = fit_listwise(&groups, 300);
        assert!(w[0] > 0.0 && w[0] > w[1].abs() * 3.0, "{w:?}");
    }

    #[test]
    fn logistic_fit_separates() {
        let rows: Vec<([f32; 2], bool)> = (0..200)
            .map(|i| {
                let x = i as f32 / 200.0;
                ([x, 1.0 - x], x > 0.5)
            })
            .collect();
        let w = fit_logistic(&rows, 500);
        let p = |x: f32| sigmoid(w[0] + w[1] * x + w[2] * (1.0 - x));
        assert!(p(0.9) > 0.8 && p(0.1) < 0.2, "{} {}", p(0.9), p(0.1));
    }
}
