//! `classifier.json`: what a saved classifier is, how it was trained and on what, and how well it did.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::DomainFit;
use crate::metrics::Metrics;
use crate::TaskError;

/// Version of the directory layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the manifest file inside a classifier directory.
pub const MANIFEST_FILE: &str = "classifier.json";

/// How the classifier computes its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Frozen sentence embeddings (+ n-gram TF-IDF) and a multinomial logistic-regression head.
    Fast,
    /// The whole encoder fine-tuned with a linear head on mean-pooled token states.
    Finetune,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Fast => "fast",
            Mode::Finetune => "finetune",
        })
    }
}

/// The sentence encoder whose embeddings the classifier was built on (checked at prediction time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncoderInfo {
    /// [`rightmodel_core::Embedder::model_id`] at training time.
    pub model_id: String,
    /// Embedding dimension.
    pub dim: usize,
    /// The encoder's embedding of [`PROBE_TEXT`] at training time: another encoder of the same
    /// dimension (a different checkpoint, a damaged copy) gives a different one, and its embeddings
    /// would be silently meaningless to the head. Absent in classifiers from older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Vec<f32>>,
}

/// The text whose embedding fingerprints a classifier's encoder.
pub const PROBE_TEXT: &str = "The quick brown fox jumps over the lazy dog, and the bank closes at five.";

/// Where the training or validation data came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataInfo {
    /// The file as given on the command line.
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Rows used.
    pub rows: usize,
    /// Text column / field.
    pub text_col: String,
    /// Label column / field.
    pub label_col: String,
}

/// Settings that produced the classifier, recorded so a run can be repeated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainSettings {
    /// Training mode.
    pub mode: Mode,
    /// Seed for splits, sampling and initialisation.
    pub seed: u64,
    /// Share of the training file held out for validation when no validation file is given.
    pub valid_split: f64,
    /// Cap on training rows (stratified sample), if any.
    pub max_train: Option<usize>,
    /// Fast mode: whether the n-gram TF-IDF block is used.
    pub ngrams: bool,
    /// Fast mode: candidate inverse L2 strengths (C = 1/(lambda * n)) tried on the validation split.
    pub c_grid: Vec<f64>,
    /// Fast mode: the C chosen on the validation split.
    pub chosen_c: Option<f64>,
    /// With a validation split of the training file, training rows left out because they contain a
    /// validation text, are contained in one or duplicate one (see [`crate::purge`]); with them in,
    /// validation scores a model on text it has mostly seen. Fast mode leaves them out only while choosing
    /// C; fine-tuning holds out whole texts and never trains on the rows inside them
    /// ([`crate::purge::whole_text_split`]). Absent: nothing was left out (a validation file, no rows inside
    /// others, a purge skipped, or an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_rows: Option<usize>,
    /// Fast mode with a validation split of the training file: the saved head was refit with the chosen C
    /// on this many rows (training part + validation split); the validation scores recorded are those of
    /// the head chosen on the split, before the refit. Absent: the saved head is the one scored on validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
    /// Fine-tuning: epochs (upper bound; early stopping may end sooner).
    pub epochs: usize,
    /// Fine-tuning: batch size.
    pub batch_size: usize,
    /// Fine-tuning: peak learning rate.
    pub learning_rate: f64,
    /// Fine-tuning: share of the steps spent warming the learning rate up.
    pub warmup: f64,
    /// Fine-tuning: AdamW weight decay.
    pub weight_decay: f64,
    /// Fine-tuning: longest input in tokens.
    pub max_len: usize,
    /// Fine-tuning: dropout rate inside the encoder while training; absent: the checkpoint's own
    /// (`hidden_dropout_prob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f32>,
    /// Fine-tuning: decay of the moving average of the weights that competes with each step's own at
    /// every validation; absent: no average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// Fine-tuning: whether the word-embedding matrix was trained too (absent: frozen).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub train_embeddings: bool,
    /// Fine-tuning: layer-wise learning-rate decay (see
    /// [`crate::finetune::FinetuneConfig::layer_decay`]); absent: one rate for every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// Fine-tuning: validations without improvement before stopping; 0: automatic (3, or one epoch's
    /// worth of validations when an epoch holds more; see [`crate::finetune::auto_patience`]).
    pub patience: usize,
    /// Training examples whose embeddings are kept for neighbours and domain fit; at least
    /// [`crate::train::MIN_NEIGHBOURS`] (checked by [`crate::train::check_settings`]), since domain fit
    /// averages over the [`crate::train::DOMAIN_K`] nearest.
    pub max_neighbours: usize,
    /// Fine-tuning: weight of a `fast` head (frozen embeddings + n-grams, in `blend/`) mixed into the
    /// fine-tuned model's probabilities, chosen on the validation split. Two different views of the text
    /// make fewer errors together than either alone, and the frozen embeddings are computed anyway for
    /// domain fit, so the mix costs almost nothing at prediction time. Absent or 0: the fine-tuned model alone.
    #[serde(default)]
    pub blend_weight: Option<f64>,
}

/// Contents of `classifier.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// The classifier's name.
    pub name: String,
    /// How it computes logits.
    pub mode: Mode,
    /// Class names; logit `i` belongs to `labels[i]`.
    pub labels: Vec<String>,
    /// The frozen encoder used for embeddings, neighbours and domain fit.
    pub encoder: EncoderInfo,
    /// Training settings.
    pub settings: TrainSettings,
    /// Training data.
    pub train_data: DataInfo,
    /// Validation data (a file, or a split of the training file).
    pub valid_data: DataInfo,
    /// Scores on the validation data.
    pub validation: Metrics,
    /// Calibration of `in_domain`.
    pub domain: DomainFit,
    /// Wall-clock training time in seconds (embedding included).
    pub train_seconds: f64,
    /// Unix time of creation.
    pub created_unix: u64,
    /// rightmodel version that wrote it.
    pub version: String,
}

impl Manifest {
    /// Reads and checks `dir/classifier.json`.
    pub fn read(dir: &Path) -> Result<Self, TaskError> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| TaskError::model(dir, format!("{MANIFEST_FILE}: {e}")))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| TaskError::model(dir, format!("{MANIFEST_FILE}: {e}")))?;
        if m.format != FORMAT_VERSION {
            return Err(TaskError::model(
                dir,
                format!("layout version {} is not supported (this build reads {FORMAT_VERSION})", m.format),
            ));
        }
        if m.labels.len() < 2 {
            return Err(TaskError::model(dir, "fewer than two labels"));
        }
        Ok(m)
    }
}
