//! Grouped k-fold cross-validation: whole groups (e.g. MMLU subjects) are held out together, so the
//! numbers describe prompts from topics the router has never seen, as real traffic will be.

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Fold index (0..k) of each row. Groups are shuffled with `seed`, then assigned largest first to the
/// fold with the fewest rows so folds are balanced in size. Rows without a group are treated as
/// their own singleton groups (a plain random row split).
pub fn group_folds(groups: &[Option<String>], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(2);
    let mut sizes: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let key = |i: usize, g: &Option<String>| g.clone().unwrap_or_else(|| format!("\u{0}row{i}"));
    for (i, g) in groups.iter().enumerate() {
        *sizes.entry(key(i, g)).or_default() += 1;
    }
    let mut names: Vec<(String, usize)> = sizes.into_iter().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    names.shuffle(&mut rng);
    // Stable sort keeps the shuffled order among equal sizes.
    names.sort_by_key(|n| std::cmp::Reverse(n.1));
    let mut load = vec![0usize; k];
    let mut fold_of = std::collections::HashMap::new();
    for (name, size) in names {
        let f = (0..k).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[f] += size;
        fold_of.insert(name, f);
    }
    groups.iter().enumerate().map(|(i, g)| fold_of.get(&key(i, g)).copied().unwrap_or(0)).collect()
}

/// Row indices of the training and the test part of fold `f`.
pub fn split(folds: &[usize], f: usize) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &fi) in folds.iter().enumerate() {
        if fi == f {
            test.push(i);
        } else {
            train.push(i);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_never_straddle_folds_and_folds_are_balanced() {
        let groups: Vec<Option<String>> =
            (0..300).map(|i| Some(format!("g{}", i % 12))).chain((0..60).map(|_| Some("big".into()))).collect();
        let folds = group_folds(&groups, 4, 1);
        let mut seen = std::collections::HashMap::new();
        for (g, f) in groups.iter().zip(&folds) {
            assert_eq!(*seen.entry(g.clone()).or_insert(*f), *f, "group split across folds");
        }
        let mut counts = [0usize; 4];
        folds.iter().for_each(|f| counts[*f] += 1);
        assert!(counts.iter().all(|c| (75..=105).contains(c)), "{counts:?}");
        assert_eq!(folds, group_folds(&groups, 4, 1), "deterministic");
        let (train, test) = split(&folds, 0);
        assert_eq!(train.len() + test.len(), 360);
    }

    #[test]
    fn rows_without_groups_are_spread() {
        let folds = group_folds(&vec![None; 10], 5, 0);
        let mut counts = [0usize; 5];
        folds.iter().for_each(|f| counts[*f] += 1);
        assert_eq!(counts, [2; 5]);
    }
}
