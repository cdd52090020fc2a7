//! Cross-validated evaluation of the learned scorer beside two baselines (random, prompt length), as
//! `rightmodel router eval` reports it.

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cv::{group_folds, split};
use crate::data::{LabelledPrompt, Outcome};
use crate::error::RouterError;
use crate::matrix::Matrix;
use crate::metrics::{evaluate, RoutingMetrics};
use crate::train::{fit, TrainConfig};

/// Settings of a cross-validation run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CvConfig {
    /// Number of folds.
    pub folds: usize,
    /// Seed of the group shuffle and of the random baseline.
    pub seed: u64,
    /// Threshold-sweep bins (RouteLLM: 10).
    pub bins: usize,
    /// Training settings of each fold.
    pub train: TrainConfig,
}

impl Default for CvConfig {
    fn default() -> Self {
        CvConfig { folds: 5, seed: 0, bins: 10, train: TrainConfig::default() }
    }
}

/// Metrics of the three routers on one set of prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The learned difficulty scorer.
    pub learned: RoutingMetrics,
    /// Longer prompts go to the strong model.
    pub length: RoutingMetrics,
    /// Uniform random scores (metrics averaged over [`RANDOM_DRAWS`] draws; curve of the first).
    pub random: RoutingMetrics,
}

/// Number of random-router draws averaged for its metrics.
pub const RANDOM_DRAWS: usize = 20;

/// One held-out fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldResult {
    /// Fold number, from 1.
    pub fold: usize,
    /// Groups held out in this fold (sorted).
    pub groups: Vec<String>,
    /// Held-out rows.
    pub rows: usize,
    /// The routers on the held-out rows.
    pub metrics: Comparison,
}

/// A whole cross-validation run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvReport {
    /// Settings used.
    pub config: CvConfig,
    /// Whether rows had groups (otherwise folds are random row splits, which flatter the scores).
    pub grouped: bool,
    /// Per-fold results.
    pub folds: Vec<FoldResult>,
    /// All out-of-fold scores pooled into one evaluation.
    pub pooled: Comparison,
    /// Out-of-fold score of every row (same order as the input), as its share of the fold's training scores.
    #[serde(skip)]
    pub oof_scores: Vec<f32>,
}

impl CvReport {
    /// Numbers of the folds whose held-out rows give the strong model no edge over the weak one
    /// ([`RoutingMetrics::defined`]): their PGR metrics are undefined, and [`CvReport::fold_mean`]
    /// leaves them out.
    pub fn undefined_folds(&self) -> Vec<usize> {
        self.folds.iter().filter(|r| !r.metrics.learned.defined()).map(|r| r.fold).collect()
    }

    /// Mean of a metric picked by `f` over the folds where the metrics are defined (see
    /// [`CvReport::undefined_folds`]), skipping values `f` gives as `None` or NaN (a CPT never
    /// reached); `None` when nothing is left to average.
    pub fn fold_mean(&self, f: impl Fn(&Comparison) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .folds
            .iter()
            .filter(|r| r.metrics.learned.defined())
            .filter_map(|r| f(&r.metrics))
            .filter(|x| x.is_finite())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// What a reader must know before trusting the numbers: that the strong model does not beat the
    /// weak one on the pooled data (every PGR metric undefined), or on some folds' held-out rows (those
    /// folds left out of the means, counted). Empty when every metric is defined.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let p = &self.pooled.learned;
        if !p.defined() {
            out.push(format!(
                "the strong model does not beat the weak one on this data (strong alone {:.1}%, weak alone {:.1}%), \
                 so there is no quality gap for a router to recover: PGR, APGR and CPT are undefined (shown as n/a). \
                 Check that --strong-col and --weak-col name the right columns, or use data where the strong model \
                 is better",
                100.0 * p.strong_quality,
                100.0 * p.weak_quality
            ));
        }
        let undefined = self.undefined_folds();
        if !undefined.is_empty() {
            let list: Vec<String> = undefined.iter().map(usize::to_string).collect();
            let left = self.folds.len() - undefined.len();
            let means = if left == 0 {
                "so there are no fold means".to_string()
            } else {
                format!("so the fold means are over the other {left} fold(s) and leave out {}", undefined.len())
            };
            out.push(format!(
                "in fold(s) {} of {}, the strong model does not beat the weak one on the held-out rows: their APGR \
                 and CPT are undefined (shown as n/a), {means}",
                list.join(", "),
                self.folds.len()
            ));
        }
        out
    }
}

/// The prompt-length baseline's score: characters of the whole conversation.
pub fn length_score(row: &LabelledPrompt) -> f32 {
    row.conversation.messages.iter().map(|m| m.content.chars().count()).sum::<usize>() as f32
}

fn random_metrics(outcomes: &[Outcome], bins: usize, seed: u64) -> RoutingMetrics {
    let mut first: Option<RoutingMetrics> = None;
    let (mut apgr, mut c20, mut c50, mut c80) = (0.0, Vec::new(), Vec::new(), Vec::new());
    for d in 0..RANDOM_DRAWS {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(d as u64));
        let scores: Vec<f32> = outcomes.iter().map(|_| rng.gen::<f32>()).collect();
        let m = evaluate(&scores, outcomes, bins);
        apgr += m.apgr;
        c20.extend(m.cpt20);
        c50.extend(m.cpt50);
        c80.extend(m.cpt80);
        first.get_or_insert(m);
    }
    let mean = |v: &[f64]| (v.len() == RANDOM_DRAWS).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut m = first.unwrap_or_else(|| evaluate(&[], outcomes, bins));
    m.apgr = apgr / RANDOM_DRAWS as f64;
    m.cpt20 = mean(&c20);
    m.cpt50 = mean(&c50);
    m.cpt80 = mean(&c80);
    m
}

/// Compares learned `scores` with the baselines on `rows`.
pub fn compare(scores: &[f32], rows: &[&LabelledPrompt], bins: usize, seed: u64) -> Comparison {
    let outcomes: Vec<Outcome> = rows.iter().map(|r| r.outcome).collect();
    let lengths: Vec<f32> = rows.iter().map(|r| length_score(r)).collect();
    Comparison {
        learned: evaluate(scores, &outcomes, bins),
        length: evaluate(&lengths, &outcomes, bins),
        random: random_metrics(&outcomes, bins, seed),
    }
}

/// Share of `sorted` strictly below `v`, with ties counted half: a score's place among the reference scores.
pub fn share_below(sorted: &[f32], v: f32) -> f32 {
    if sorted.is_empty() {
        return 0.5;
    }
    let below = sorted.partition_point(|x| *x < v);
    let not_above = sorted.partition_point(|x| *x <= v);
    (below + not_above) as f32 / (2 * sorted.len()) as f32
}

/// Fewest held-out rows a fold of random rows may have: on one or two rows the routing metrics are
/// mostly undefined (both models equally good, so no gap to recover) and come out as NaN.
pub const MIN_FOLD_ROWS: usize = 5;

/// Fails when `rows` ungrouped rows cannot fill `folds` folds with [`MIN_FOLD_ROWS`] held-out rows
/// each, saying which `--folds` would work, instead of running near-empty folds that print NaN.
pub fn check_row_folds(rows: usize, folds: usize) -> Result<(), RouterError> {
    if rows >= folds.saturating_mul(MIN_FOLD_ROWS) {
        return Ok(());
    }
    let most = rows / MIN_FOLD_ROWS;
    let fix = if most >= 2 {
        format!("use --folds {most} or fewer")
    } else {
        format!("cross-validation needs at least {} rows", 2 * MIN_FOLD_ROWS)
    };
    Err(RouterError::Eval(format!(
        "{rows} rows for {folds} folds: a fold would hold out fewer than {MIN_FOLD_ROWS} rows, too few for routing metrics; {fix}"
    )))
}

/// Fails when `rows` cannot be split into `folds` useful folds: fewer than 2 groups (whole groups are
/// held out, so one group leaves nothing to train on), fewer groups than folds when the rows have
/// groups, else too few rows ([`check_row_folds`]). Cheap, so callers run it before embedding.
pub fn check_folds(rows: &[LabelledPrompt], folds: usize) -> Result<(), RouterError> {
    let distinct: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r.group.as_deref()).collect();
    match distinct.len() {
        0 => check_row_folds(rows.len(), folds),
        1 => Err(RouterError::Eval(format!(
            "cross-validation holds whole groups out, so it needs at least 2 groups, but the data has only 1 (`{}`); \
             add rows from other groups, or remove the group column from the data to fold random rows instead",
            distinct.iter().next().copied().unwrap_or_default()
        ))),
        n if n < folds => Err(RouterError::Eval(format!("{n} groups for {folds} folds; use --folds {n} or fewer"))),
        _ => Ok(()),
    }
}

/// Grouped k-fold cross-validation: for each fold, trains on the other folds' rows of `x` and scores
/// the held-out rows. `on_fold` is called after each fold (progress reporting).
pub fn cross_validate(
    x: &Matrix,
    rows: &[LabelledPrompt],
    cfg: &CvConfig,
    mut on_fold: impl FnMut(usize),
) -> Result<CvReport, RouterError> {
    if x.rows() != rows.len() {
        return Err(RouterError::Eval(format!("{} feature rows for {} prompts", x.rows(), rows.len())));
    }
    check_folds(rows, cfg.folds)?;
    let groups: Vec<Option<String>> = rows.iter().map(|r| r.group.clone()).collect();
    let grouped = groups.iter().any(Option::is_some);
    let folds = group_folds(&groups, cfg.folds, cfg.seed);
    let mut oof = vec![0f32; rows.len()];
    let mut results = Vec::with_capacity(cfg.folds);
    for f in 0..cfg.folds.max(2) {
        let (train, test) = split(&folds, f);
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let xt = x.select(&train);
        let outcomes: Vec<Outcome> = train.iter().map(|&i| rows[i].outcome).collect();
        let train_groups: Vec<Option<&str>> = train.iter().map(|&i| rows[i].group.as_deref()).collect();
        let model = fit(&xt, &outcomes, &train_groups, &cfg.train)?;
        let scores = model.score_matrix(&x.select(&test));
        // Pooled, each fold's score is its share of the fold's training prompts scoring lower: in service a
        // threshold is a share of calibration prompts (`router calibrate`), never a raw score, and raw scores
        // of models fitted on different folds are not on one scale, which would blur the pooled ranking.
        let mut reference = model.score_matrix(&xt);
        reference.sort_by(f32::total_cmp);
        for (&i, s) in test.iter().zip(&scores) {
            oof[i] = share_below(&reference, *s);
        }
        let test_rows: Vec<&LabelledPrompt> = test.iter().map(|&i| &rows[i]).collect();
        let mut names: Vec<String> = test_rows.iter().filter_map(|r| r.group.clone()).collect();
        names.sort();
        names.dedup();
        results.push(FoldResult {
            fold: f + 1,
            groups: names,
            rows: test.len(),
            metrics: compare(&scores, &test_rows, cfg.bins, cfg.seed + f as u64),
        });
        on_fold(f + 1);
    }
    if results.is_empty() {
        return Err(RouterError::Eval(format!(
            "{} rows: no fold has both training and held-out rows; cross-validation needs more data",
            rows.len()
        )));
    }
    let all: Vec<&LabelledPrompt> = rows.iter().collect();
    let pooled = compare(&oof, &all, cfg.bins, cfg.seed);
    Ok(CvReport { config: *cfg, grouped, folds: results, pooled, oof_scores: oof })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{check_folds, check_row_folds, share_below, Comparison, CvConfig, CvReport, FoldResult};
    use crate::conversation::Conversation;
    use crate::data::{LabelledPrompt, Outcome};
    use crate::metrics::evaluate;

    /// The three routers' metrics (all one ranking) on `outcomes`, with prompts ranked by their order.
    fn comparison(outcomes: &[Outcome]) -> Comparison {
        let scores: Vec<f32> = (0..outcomes.len()).map(|i| i as f32).collect();
        let m = evaluate(&scores, outcomes, 4);
        Comparison { learned: m.clone(), length: m.clone(), random: m }
    }

    /// Eight prompts where the strong model helps on the last two (weak 75%, strong 100%).
    fn helped() -> Vec<Outcome> {
        let mut v = vec![Outcome { weak: 1.0, strong: 1.0 }; 6];
        v.extend([Outcome { weak: 0.0, strong: 1.0 }; 2]);
        v
    }

    /// Eight prompts where the strong model is no better (`worse`: it loses two the weak one gets).
    fn not_helped(worse: bool) -> Vec<Outcome> {
        let mut v = vec![Outcome { weak: 1.0, strong: 1.0 }; 6];
        let (a, b) = if worse { (1.0, 0.0) } else { (0.0, 0.0) };
        v.extend([Outcome { weak: a, strong: b }; 2]);
        v
    }

    /// A hand-made cross-validation report: one fold per outcome set, pooled over all of them.
    pub(crate) fn report_of(folds: &[Vec<Outcome>]) -> CvReport {
        let results = folds
            .iter()
            .enumerate()
            .map(|(i, o)| FoldResult { fold: i + 1, groups: Vec::new(), rows: o.len(), metrics: comparison(o) })
            .collect();
        let all: Vec<Outcome> = folds.concat();
        CvReport {
            config: CvConfig { folds: folds.len(), ..CvConfig::default() },
            grouped: false,
            folds: results,
            pooled: comparison(&all),
            oof_scores: Vec::new(),
        }
    }

    #[test]
    fn folds_without_a_gap_are_named_and_left_out_of_the_means() {
        let r = report_of(&[helped(), not_helped(false), helped(), not_helped(true)]);
        assert_eq!(r.undefined_folds(), vec![2, 4]);
        assert!(r.folds[1].metrics.learned.apgr.is_nan());
        let defined = r.folds[0].metrics.learned.apgr;
        assert!(defined.is_finite());
        assert_eq!(r.fold_mean(|c| Some(c.learned.apgr)), Some(defined));
        // Fold 4's upside-down scale is left out even where it would give a finite number.
        assert_eq!(r.fold_mean(|c| Some(c.learned.weak_quality)), Some(0.75));
        let w = r.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("in fold(s) 2, 4 of 4, the strong model does not beat the weak one"), "{w:?}");
        assert!(w[0].contains("fold means are over the other 2 fold(s) and leave out 2"), "{w:?}");
    }

    #[test]
    fn no_gap_in_the_pooled_data_is_a_warning_not_a_number() {
        let r = report_of(&[not_helped(true), not_helped(false)]);
        assert!(!r.pooled.learned.defined() && r.pooled.learned.apgr.is_nan());
        assert_eq!(r.fold_mean(|c| Some(c.learned.apgr)), None);
        let w = r.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("does not beat the weak one on this data (strong alone 75.0%, weak alone 87.5%)"),
            "{w:?}"
        );
        assert!(w[0].contains("APGR and CPT are undefined"), "{w:?}");
        assert!(w[1].ends_with("so there are no fold means"), "{w:?}");
        assert!(report_of(&[helped(), helped()]).warnings().is_empty());
    }

    fn rows_in_groups(groups: &[&str]) -> Vec<LabelledPrompt> {
        groups
            .iter()
            .map(|g| LabelledPrompt {
                group: Some(g.to_string()),
                conversation: Conversation::from_prompt("What is 2 + 2?"),
                outcome: Outcome { weak: 0.0, strong: 1.0 },
            })
            .collect()
    }

    #[test]
    fn one_group_cannot_be_cross_validated_and_the_message_says_so() {
        let e = check_folds(&rows_in_groups(&["math"; 12]), 2).unwrap_err().to_string();
        assert!(e.contains("at least 2 groups") && e.contains("only 1 (`math`)"), "{e}");
        assert!(!e.contains("--folds 2 or fewer"), "{e}");
        let e = check_folds(&rows_in_groups(&["a", "b", "c"]), 5).unwrap_err().to_string();
        assert!(e.contains("3 groups for 5 folds; use --folds 3 or fewer"), "{e}");
        assert!(check_folds(&rows_in_groups(&["a", "b"]), 2).is_ok());
    }

    #[test]
    fn folds_of_random_rows_need_enough_rows() {
        assert!(check_row_folds(40, 8).is_ok());
        let e = check_row_folds(40, 100).unwrap_err().to_string();
        assert!(e.contains("40 rows for 100 folds") && e.contains("--folds 8 or fewer"), "{e}");
        let e = check_row_folds(6, 2).unwrap_err().to_string();
        assert!(e.contains("at least 10 rows"), "{e}");
    }

    #[test]
    fn share_below_places_a_score_among_reference_scores() {
        let r = [0.1, 0.2, 0.2, 0.4];
        assert_eq!(share_below(&r, 0.0), 0.0);
        assert_eq!(share_below(&r, 0.15), 0.25);
        assert_eq!(share_below(&r, 0.2), 0.5); // ties count half
        assert_eq!(share_below(&r, 0.9), 1.0);
        assert_eq!(share_below(&[], 0.3), 0.5);
    }
}
