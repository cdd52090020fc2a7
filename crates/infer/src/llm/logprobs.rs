//! Log-probabilities from raw logits (llama.cpp returns logits; the softmax is ours).

/// Log-softmax value of `token` and the `k` most likely tokens, from one row of logits.
/// One pass for the max, one for the normaliser, and a partial selection for the top k.
pub fn logprob_and_top(logits: &[f32], token: usize, k: usize) -> (f32, Vec<(usize, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lse = max + sum.ln();
    let lp = logits.get(token).map(|&l| l - lse).unwrap_or(f32::NEG_INFINITY);
    if k == 0 {
        return (lp, Vec::new());
    }
    let mut top: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if top.len() < k || l > top[top.len() - 1].1 {
            let pos = top.partition_point(|&(_, v)| v >= l);
            top.insert(pos, (i, l));
            top.truncate(k);
        }
    }
    (lp, top.into_iter().map(|(i, l)| (i, l - lse)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_softmax() {
        let logits = [1.0f32, 3.0, 2.0, -1.0];
        let (lp, top) = logprob_and_top(&logits, 2, 2);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((lp - (2.0f32.exp() / z).ln()).abs() < 1e-5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    }
}
