//! End-to-end training and evaluation on an outcome file, as the CLI runs them: filter rows, build
//! feature rows from precomputed conversation vectors, cross-validate, fit on everything, calibrate.

use crate::calibrate;
use crate::data::{LabelledPrompt, Outcome};
use crate::error::RouterError;
use crate::eval::{cross_validate, CvConfig, CvReport};
use crate::features::{feature_matrix, text, EmbedSpec};
use crate::scorer::{CvSummary, Provenance, RouterWeights, FORMAT};
use crate::train::{fit, TrainConfig};

/// Drops the rows whose group is in `exclude`; returns the kept rows and how many were dropped.
/// Fails when a named group does not occur (a typo would otherwise silently keep it).
pub fn exclude_groups(
    rows: Vec<LabelledPrompt>,
    exclude: &[String],
) -> Result<(Vec<LabelledPrompt>, usize), RouterError> {
    for g in exclude {
        if !rows.iter().any(|r| r.group.as_deref() == Some(g.as_str())) {
            return Err(RouterError::Eval(format!("group `{g}` does not occur in the data")));
        }
    }
    let before = rows.len();
    let kept: Vec<LabelledPrompt> =
        rows.into_iter().filter(|r| !r.group.as_ref().is_some_and(|g| exclude.contains(g))).collect();
    let dropped = before - kept.len();
    Ok((kept, dropped))
}

/// What a training run needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Model settings.
    pub train: TrainConfig,
    /// Embedding recipe (must be the one the vectors were made with).
    pub embed: EmbedSpec,
    /// Encoder name recorded in the weights.
    pub encoder: String,
    /// Target strong share for the stored threshold.
    pub strong_share: f32,
    /// Cross-validate first (recorded in the provenance) when set and the data has groups.
    pub cv: Option<CvConfig>,
    /// Provenance to record (data file name, excluded groups, command).
    pub provenance: Provenance,
}

/// What [`train_weights`] produces.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The weights, calibrated on the training prompts.
    pub weights: RouterWeights,
    /// The cross-validation report, when one was asked for.
    pub cv: Option<CvReport>,
    /// Set when the stored threshold misses the target strong share on the training prompts (see
    /// [`calibrate::calibrate`]): the same warning `router calibrate` gives, for the caller to print.
    pub calibration_warning: Option<String>,
}

/// Trains weights on `rows` with their conversation vectors `embeddings` (same order): the weights,
/// the cross-validation report when requested, and the calibration's warning when the target strong
/// share cannot be reached on these prompts; `on_fold` reports CV progress.
pub fn train_weights(
    rows: &[LabelledPrompt],
    embeddings: &[Vec<f32>],
    opts: &TrainOptions,
    on_fold: impl FnMut(usize),
) -> Result<Trained, RouterError> {
    if rows.len() != embeddings.len() {
        return Err(RouterError::Training(format!("{} rows, {} embeddings", rows.len(), embeddings.len())));
    }
    let dim = embeddings.first().map_or(0, Vec::len);
    let convs: Vec<_> = rows.iter().map(|r| r.conversation.clone()).collect();
    let x = feature_matrix(embeddings, &convs);
    let cv = match opts.cv {
        Some(cfg) => Some(cross_validate(&x, rows, &CvConfig { train: opts.train, ..cfg }, on_fold)?),
        None => None,
    };
    let outcomes: Vec<Outcome> = rows.iter().map(|r| r.outcome).collect();
    let groups: Vec<Option<&str>> = rows.iter().map(|r| r.group.as_deref()).collect();
    let model = fit(&x, &outcomes, &groups, &opts.train)?;
    let scores = model.score_matrix(&x);
    let calibrated = calibrate::calibrate(&scores, opts.strong_share)?;
    let mut provenance = opts.provenance.clone();
    provenance.rows = rows.len();
    provenance.cv = cv.as_ref().map(|r| CvSummary {
        folds: r.config.folds,
        apgr: Some(r.pooled.learned.apgr).filter(|a| r.pooled.learned.defined() && a.is_finite()),
        cpt50: r.pooled.learned.cpt50,
        cpt80: r.pooled.learned.cpt80,
    });
    let weights = RouterWeights {
        format: FORMAT.to_string(),
        encoder: opts.encoder.clone(),
        embedding_dim: dim,
        embed: opts.embed,
        text_features: text::NAMES.iter().map(|s| s.to_string()).collect(),
        train: opts.train,
        model,
        calibration: calibrated.calibration,
        provenance,
    };
    Ok(Trained { weights, cv, calibration_warning: calibrated.warning })
}

/// Cross-validates on `rows` with their conversation vectors.
pub fn evaluate(
    rows: &[LabelledPrompt],
    embeddings: &[Vec<f32>],
    cfg: &CvConfig,
    on_fold: impl FnMut(usize),
) -> Result<CvReport, RouterError> {
    let convs: Vec<_> = rows.iter().map(|r| r.conversation.clone()).collect();
    cross_validate(&feature_matrix(embeddings, &convs), rows, cfg, on_fold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Outcome;
    use crate::Conversation;

    fn options(strong_share: f32) -> TrainOptions {
        TrainOptions {
            train: TrainConfig::default(),
            embed: EmbedSpec::default(),
            encoder: "fake".into(),
            strong_share,
            cv: None,
            provenance: Provenance::default(),
        }
    }

    #[test]
    fn an_unreachable_strong_share_is_a_warning_as_in_calibrate() {
        // Twenty copies of one prompt: every score ties, so no threshold sends 30% to the strong model.
        let rows: Vec<LabelledPrompt> = (0..20)
            .map(|i| LabelledPrompt {
                group: None,
                conversation: Conversation::from_prompt("the same question"),
                outcome: Outcome { weak: f64::from(i % 2), strong: 1.0 },
            })
            .collect();
        let vecs = vec![vec![0.6f32, 0.8]; rows.len()];
        let t = train_weights(&rows, &vecs, &options(0.3), |_| {}).unwrap();
        let w = t.calibration_warning.expect("a warning");
        assert!(w.contains("30.0%") && w.contains("no threshold can split"), "{w}");
        // The very warning `router calibrate` gives for these scores.
        let scores = t.weights.model.score_matrix(&feature_matrix(&vecs, &vec![rows[0].conversation.clone(); 20]));
        assert_eq!(calibrate::calibrate(&scores, 0.3).unwrap().warning.as_deref(), Some(w.as_str()));
        // Shares of 0 and 1 are always reached.
        assert!(train_weights(&rows, &vecs, &options(1.0), |_| {}).unwrap().calibration_warning.is_none());
    }
}
