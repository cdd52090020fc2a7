//! The sentence ranker: a linear score over [`Evidence`] that orders candidate sentences, and a
//! calibration that turns the best score into the probability that the sentence holds the answer.
//! Passages are re-ranked by their best sentence, the answer sentence is the best one, and its
//! probability is the answer's confidence (an unrelated question, with low cosines and few shared terms,
//! gets a low one).
//!
//! The weights were fitted with `rightmodel eval docs --fit-ranker` on the questions of the first six
//! articles of the SQuAD dev half: a listwise (softmax) objective over all sentences of a question's top
//! 20 passages, positives being the sentences of the question's paragraph that contain a gold answer;
//! then a one-variable logistic calibration of the best score against "the chosen sentence contains a
//! gold answer". Both fits are a few lines of gradient descent, written out here rather than pulling in
//! a machine-learning crate for eleven features.

use crate::features::{Evidence, N_FEATURES};

/// One weight per feature in [`Evidence::to_array`] order.
pub const WEIGHTS: [f32; N_FEATURES] = [4.875014, 1.8197173, 1.8672566, 3.7780232, 1.7801914, 0.08177415, 3.0562725, -2.1038845, 0.6795579, 6.9962096, 3.0190785, -0.07204653, 3.1294792, -0.10805197, 1.8744552, 0.26281717, 0.3911927, -0.056226593];
/// Calibration `(a, b)`: probability = sigmoid(a * score + b).
pub const CALIBRATION: (f32, f32) = (0.23690079, -3.8212764);

/// The ranking score of `e` (higher is better).
pub fn score(e: &Evidence) -> f32 {
    score_with(&WEIGHTS, &e.to_array())
}

/// The score under explicit weights.
pub fn score_with(w: &[f32; N_FEATURES], x: &[f32; N_FEATURES]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

fn dot_n<const N: usize>(w: &[f32; N], x: &[f32; N]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Calibrated probability in [0, 1] that the sentence with score `s` holds the answer.
pub fn probability(s: f32) -> f32 {
    sigmoid(CALIBRATION.0 * s + CALIBRATION.1)
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Candidates of one question: features, whether the candidate is a positive, and (for sentences)
/// whether it contains an answer at all (the calibration label).
pub type Group<const N: usize> = Vec<([f32; N], bool, bool)>;

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
    let z: Vec<Vec<([f32; N], bool)>> =
        groups.iter().map(|g| g.iter().map(|(x, p, _)| (std::array::from_fn(|k| (x[k] - mean[k]) / sd[k]), *p)).collect()).collect();
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

/// Fits the calibration `(a, b)` of [`probability`] on `(best score, chosen sentence contains an
/// answer)` pairs by logistic regression.
pub fn fit_calibration(rows: &[(f32, bool)], iterations: usize) -> (f32, f32) {
    let n = rows.len().max(1) as f32;
    let mean = rows.iter().map(|r| r.0).sum::<f32>() / n;
    let sd = (rows.iter().map(|r| (r.0 - mean).powi(2)).sum::<f32>() / n).sqrt().max(1e-6);
    let (mut a, mut b) = (0.0f32, 0.0f32);
    for _ in 0..iterations {
        let (mut ga, mut gb) = (0.0, 0.0);
        for (s, y) in rows {
            let x = (s - mean) / sd;
            let err = sigmoid(a * x + b) - if *y { 1.0 } else { 0.0 };
            ga += err * x / n;
            gb += err / n;
        }
        a -= 1.0 * ga;
        b -= 1.0 * gb;
    }
    (a / sd, b - a * mean / sd)
}

/// The calibration pairs for `weights`: per question, the best-scoring sentence's score and whether it
/// contains an answer.
pub fn calibration_rows(groups: &[Group<N_FEATURES>], weights: &[f32; N_FEATURES]) -> Vec<(f32, bool)> {
    groups
        .iter()
        .filter_map(|g| {
            g.iter().map(|(x, _, c)| (score_with(weights, x), *c)).max_by(|a, b| a.0.total_cmp(&b.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_is_low_and_related_is_high() {
        let low = Evidence { sentence_cosine: 0.05, overlap: 0.0, novelty: 1.0, ..Evidence::default() };
        let high = Evidence {
            sentence_cosine: 0.7,
            overlap: 0.8,
            bigrams: 0.5,
            window_overlap: 0.9,
            type_match: 1.0,
            novelty: 0.6,
            passage_score: 1.0,
            lexical: 1.0,
            dense: 0.6,
            passage_sentence_cosine: 0.7,
            coverage: 0.9,
            ..Evidence::default()
        };
        let (pl, ph) = (probability(score(&low)), probability(score(&high)));
        assert!(pl < 0.1, "{pl}");
        assert!(ph > 0.6, "{ph}");
    }

    #[test]
    fn listwise_fit_ranks_positives_first() {
        // Feature 0 marks the positive, feature 1 is noise.
        let groups: Vec<Group<N_FEATURES>> = (0..50)
            .map(|g| {
                (0..10)
                    .map(|i| {
                        let mut f = [0.0; N_FEATURES];
                        f[0] = if i == g % 10 { 1.0 } else { 0.2 };
                        f[1] = ((g * 7 + i * 3) % 5) as f32 / 5.0;
                        (f, i == g % 10, i == g % 10)
                    })
                    .collect()
            })
            .collect();
        let w = fit_listwise(&groups, 300);
        assert!(w[0] > 0.0 && w[0] > w[1].abs() * 3.0, "{w:?}");
        let (a, b) = fit_calibration(&calibration_rows(&groups, &w), 500);
        assert!(a.is_finite() && b.is_finite());
    }
}
