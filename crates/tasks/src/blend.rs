//! Mixing a fine-tuned model with a `fast` head: probabilities averaged at a weight chosen on the
//! validation split.
//!
//! The fine-tuned encoder and the frozen-embedding + n-gram head make different mistakes (one reads the
//! sentence as a whole, the other leans on words), so their average beats either on held-out data, while
//! the frozen embeddings are computed for domain fit anyway. The mix is expressed as log-probabilities,
//! which are valid logits, so everything downstream of logits (softmax, argmax, explanations) is unchanged.

use crate::fast::argmax;

/// Sub-directory of a fine-tuned classifier holding the `fast` head of the mix.
pub const BLEND_DIR: &str = "blend";

/// Weights tried for the `fast` head, from the fine-tuned model alone (0) to the `fast` head alone (1).
const WEIGHT_GRID: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

fn softmax(logits: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let z: f32 = logits.iter().map(|&l| (l - m).exp()).sum();
    logits.iter().map(move |&l| (l - m).exp() / z)
}

/// Log of `(1 - w) * softmax(a) + w * softmax(b)` for each row: logits of the mixed model.
pub fn mix(a: &[Vec<f32>], b: &[Vec<f32>], w: f64) -> Vec<Vec<f32>> {
    let w = w.clamp(0.0, 1.0) as f32;
    a.iter()
        .zip(b)
        .map(|(ra, rb)| {
            softmax(ra).zip(softmax(rb)).map(|(pa, pb)| ((1.0 - w) * pa + w * pb).max(1e-30).ln()).collect()
        })
        .collect()
}

/// Accuracy and mean log-loss on `y` of the mix at weight `w`.
pub fn score(a: &[Vec<f32>], b: &[Vec<f32>], y: &[u32], w: f64) -> (f64, f64) {
    let mixed = mix(a, b, w);
    let n = y.len().max(1) as f64;
    let correct = mixed.iter().zip(y).filter(|(l, &t)| argmax(l) == t as usize).count() as f64;
    let loss = mixed.iter().zip(y).map(|(l, &t)| -f64::from(l.get(t as usize).copied().unwrap_or(-69.0))).sum::<f64>();
    (correct / n, loss / n)
}

/// The weight of `b` that fits `y` best, with the accuracy and log-loss of every weight tried.
///
/// Log-loss decides, not accuracy: the fine-tuned model's early stopping already picked its checkpoint for
/// accuracy on this same validation split, so its validation accuracy is optimistic and would keep the mix
/// from ever getting weight; log-loss is less bent by that choice and rewards the calibration a mix brings.
pub fn choose_weight(a: &[Vec<f32>], b: &[Vec<f32>], y: &[u32]) -> (f64, Vec<(f64, f64, f64)>) {
    let table: Vec<(f64, f64, f64)> = WEIGHT_GRID
        .iter()
        .map(|&w| {
            let (acc, loss) = score(a, b, y, w);
            (w, acc, loss)
        })
        .collect();
    let best = table.iter().min_by(|x, y| x.2.total_cmp(&y.2)).map(|t| t.0).unwrap_or(0.0);
    (best, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_a_distribution_between_its_parts() {
        let a = vec![vec![2.0, 0.0]];
        let b = vec![vec![0.0, 2.0]];
        for w in [0.0, 0.3, 1.0] {
            let p: Vec<f32> = mix(&a, &b, w)[0].iter().map(|l| l.exp()).collect();
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let only_a: Vec<f32> = mix(&a, &b, 0.0)[0].iter().map(|l| l.exp()).collect();
        assert!((only_a[0] - 0.880_797).abs() < 1e-4);
        let half: Vec<f32> = mix(&a, &b, 0.5)[0].iter().map(|l| l.exp()).collect();
        assert!((half[0] - 0.5).abs() < 1e-5);
    }

    #[test]
    fn weight_goes_to_the_model_that_is_right() {
        // `a` is right on rows 0-1 and wrong, but unsure, on row 2; `b` is right everywhere, less sure.
        let a = vec![vec![3.0, 0.0], vec![0.0, 3.0], vec![0.2, 0.0]];
        let b = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]];
        let y = [0, 1, 1];
        let (w, table) = choose_weight(&a, &b, &y);
        assert_eq!(table.len(), 11);
        assert!(w > 0.0 && w < 1.0, "{w}");
        let decided: Vec<usize> = mix(&a, &b, w).iter().map(|l| argmax(l)).collect();
        assert_eq!(decided, [0, 1, 1]);
        // When `a` alone is right everywhere and `b` only adds noise, the mix stays at `a`.
        assert_eq!(choose_weight(&a[..2], &[vec![0.0, 1.0], vec![1.0, 0.0]], &y[..2]).0, 0.0);
    }
}
