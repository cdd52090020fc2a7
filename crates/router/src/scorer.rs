//! Scorers: conversation in, difficulty in `[0, 1]` out (higher = needs the stronger model).
//!
//! [`DifficultyScorer`] is the learned one: it embeds the conversation with the local sentence
//! encoder, adds the cheap text features and applies the trained model of a [`RouterWeights`] file.
//! The weights trained on MMLU outcomes ship inside the binary ([`RouterWeights::shipped`]);
//! `rightmodel router train` writes new ones to a directory ([`RouterWeights::load`]).

use std::path::Path;
use std::sync::Arc;

use rightmodel_core::Embedder;
use serde::{Deserialize, Serialize};

use crate::calibrate::Calibration;
use crate::conversation::Conversation;
use crate::error::RouterError;
use crate::features::static_embed::StaticEmbedder;
use crate::features::{embed_conversations, feature_row, text, EmbedSpec};
use crate::model::DifficultyModel;
use crate::train::TrainConfig;

/// Anything that rates how much a conversation needs the stronger model.
pub trait Scorer: Send + Sync {
    /// Difficulty of `conv` in `[0, 1]`; higher means the strong model is more likely to be needed.
    fn score(&self, conv: &Conversation) -> Result<f32, RouterError>;

    /// Difficulties of several conversations (same order); implementations batch when they can.
    fn score_batch(&self, convs: &[Conversation]) -> Result<Vec<f32>, RouterError> {
        convs.iter().map(|c| self.score(c)).collect()
    }

    /// A short name for logs and reports.
    fn name(&self) -> &str;
}

/// Name of the weights file inside a router directory.
pub const WEIGHTS_FILE: &str = "router.json";
/// Suffix of the encoder id of static (input-embedding) encoders.
pub const STATIC_SUFFIX: &str = "-static";
/// Format tag of [`RouterWeights`] files.
pub const FORMAT: &str = "rightmodel-router/1";

/// Where a set of weights came from, so a reader can reproduce or judge it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// File name of the training data (never an absolute path).
    pub data: String,
    /// Rows trained on.
    pub rows: usize,
    /// Groups left out of training (e.g. a subject with broken labels).
    #[serde(default)]
    pub excluded_groups: Vec<String>,
    /// The command that produced the weights.
    pub command: String,
    /// Cross-validated APGR / CPT(50%) / CPT(80%) by group, when measured at training time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<CvSummary>,
}

/// Headline numbers of a grouped cross-validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    /// Folds.
    pub folds: usize,
    /// APGR of the pooled out-of-fold scores; `None` (`null`) where it is undefined because the strong
    /// model does not beat the weak one on the data (NaN would be written as `null` anyway, and then
    /// not read back as a number).
    #[serde(default)]
    pub apgr: Option<f64>,
    /// CPT(50%) of the pooled out-of-fold scores.
    pub cpt50: Option<f64>,
    /// CPT(80%) of the pooled out-of-fold scores.
    pub cpt80: Option<f64>,
}

/// A trained difficulty scorer on disk: model, feature recipe, calibration and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterWeights {
    /// Always [`FORMAT`].
    pub format: String,
    /// Encoder the embeddings came from (the store name, e.g. `minilm-l6`).
    pub encoder: String,
    /// Embedding size the model expects.
    pub embedding_dim: usize,
    /// How conversations are embedded.
    pub embed: EmbedSpec,
    /// Names of the text features, in order (checked against this build's features).
    pub text_features: Vec<String>,
    /// Training settings.
    pub train: TrainConfig,
    /// The model.
    pub model: DifficultyModel,
    /// Threshold and score distribution.
    pub calibration: Calibration,
    /// Where it came from.
    pub provenance: Provenance,
}

static SHIPPED: &str = include_str!("../weights/router.json");

impl RouterWeights {
    /// Parses and checks weights; `origin` names the source in errors.
    pub fn from_json(json: &str, origin: &str) -> Result<Self, RouterError> {
        let bad = |reason: String| RouterError::Weights { path: origin.to_string(), reason };
        let w: RouterWeights = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if w.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", w.format)));
        }
        if w.text_features.iter().map(String::as_str).ne(text::NAMES.iter().copied()) {
            return Err(bad(
                "the text features differ from this version's; retrain with `rightmodel router train`".into()
            ));
        }
        let d = w.embedding_dim + text::COUNT;
        let m = &w.model;
        if m.head.weights.len() != d || m.standardizer.mean.len() != d || m.standardizer.std.len() != d {
            return Err(bad(format!(
                "model size does not match {} embedding + {} text features",
                w.embedding_dim,
                text::COUNT
            )));
        }
        if m.standardizer.std.iter().any(|s| *s == 0.0 || !s.is_finite())
            || m.head.weights.iter().chain(&m.standardizer.mean).any(|v| !v.is_finite())
        {
            return Err(bad("non-finite or zero values in the model".into()));
        }
        Ok(w)
    }

    /// The weights shipped with rightmodel (trained on MMLU routing outcomes; see the crate README).
    pub fn shipped() -> Result<Self, RouterError> {
        Self::from_json(SHIPPED, "shipped weights")
    }

    /// Loads `dir/router.json`.
    pub fn load(dir: &Path) -> Result<Self, RouterError> {
        let path = dir.join(WEIGHTS_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RouterError::Weights { path: path.display().to_string(), reason: e.to_string() })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// True when the weights were trained on [`StaticEmbedder`] vectors (encoder id ending in
    /// `-static`), as the shipped ones are.
    pub fn uses_static_embeddings(&self) -> bool {
        self.encoder.ends_with(STATIC_SUFFIX)
    }

    /// Writes `dir/router.json` atomically (temporary file, then rename), creating `dir`; a
    /// `router.json` already there is replaced only when `existing` says so (see
    /// [`crate::report::Existing`]).
    pub fn save(&self, dir: &Path, existing: crate::report::Existing) -> Result<(), RouterError> {
        std::fs::create_dir_all(dir).map_err(|e| RouterError::write(dir.display(), e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| RouterError::write(dir.display(), e))?;
        crate::report::write_result(&dir.join(WEIGHTS_FILE), json.as_bytes(), existing)
    }
}

/// The learned difficulty scorer: sentence embedding + text features -> trained logistic model.
pub struct DifficultyScorer {
    embedder: Arc<dyn Embedder>,
    weights: RouterWeights,
}

impl std::fmt::Debug for DifficultyScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DifficultyScorer").field("encoder", &self.weights.encoder).finish_non_exhaustive()
    }
}

impl DifficultyScorer {
    /// A scorer from `weights` using `embedder`; fails when the embedding sizes differ or when a
    /// static encoder is given for contextual weights (or the reverse). A different encoder name of
    /// the same kind and size only logs a warning (a model directory may be named freely).
    pub fn new(weights: RouterWeights, embedder: Arc<dyn Embedder>) -> Result<Self, RouterError> {
        let static_encoder = embedder.model_id().ends_with(STATIC_SUFFIX);
        if embedder.dim() != weights.embedding_dim || static_encoder != weights.uses_static_embeddings() {
            return Err(RouterError::EncoderMismatch {
                encoder: weights.encoder.clone(),
                expected: weights.embedding_dim,
                found: embedder.dim(),
                found_encoder: embedder.model_id().to_string(),
            });
        }
        if embedder.model_id() != weights.encoder {
            tracing::warn!(
                weights = %weights.encoder,
                encoder = %embedder.model_id(),
                "router weights were trained with another encoder name; scores may be off"
            );
        }
        Ok(DifficultyScorer { embedder, weights })
    }

    /// The shipped scorer (MMLU-trained weights) with `embedder`, which must be a
    /// [`StaticEmbedder`] of the MiniLM directory (see [`DifficultyScorer::with_encoder_dir`]).
    pub fn shipped(embedder: Arc<dyn Embedder>) -> Result<Self, RouterError> {
        Self::new(RouterWeights::shipped()?, embedder)
    }

    /// A scorer for `weights` with the encoder they need: a [`StaticEmbedder`] built from
    /// `encoder_dir` (the `minilm-l6` store entry) for static weights such as the shipped ones, or
    /// `contextual` (the loaded MiniLM) for weights trained with `--embedding contextual`.
    pub fn with_encoder_dir(
        weights: RouterWeights,
        encoder_dir: &Path,
        contextual: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, RouterError> {
        let embedder: Arc<dyn Embedder> = if weights.uses_static_embeddings() {
            Arc::new(StaticEmbedder::load(encoder_dir)?)
        } else {
            contextual.ok_or_else(|| RouterError::Weights {
                path: weights.encoder.clone(),
                reason: "these weights need the contextual sentence encoder; pass the loaded MiniLM".into(),
            })?
        };
        Self::new(weights, embedder)
    }

    /// A scorer from the weights in `dir`.
    pub fn load(dir: &Path, embedder: Arc<dyn Embedder>) -> Result<Self, RouterError> {
        Self::new(RouterWeights::load(dir)?, embedder)
    }

    /// The weights in use.
    pub fn weights(&self) -> &RouterWeights {
        &self.weights
    }

    /// The calibration (threshold and score quantiles) of the weights.
    pub fn calibration(&self) -> &Calibration {
        &self.weights.calibration
    }
}

impl Scorer for DifficultyScorer {
    fn score(&self, conv: &Conversation) -> Result<f32, RouterError> {
        let emb = embed_conversations(self.embedder.as_ref(), std::slice::from_ref(conv), &self.weights.embed)?;
        let e = emb.first().ok_or_else(|| rightmodel_core::EmbedError("no embedding returned".into()))?;
        Ok(self.weights.model.score_row(&feature_row(e, conv)))
    }

    fn score_batch(&self, convs: &[Conversation]) -> Result<Vec<f32>, RouterError> {
        let embs = embed_conversations(self.embedder.as_ref(), convs, &self.weights.embed)?;
        Ok(embs.iter().zip(convs).map(|(e, c)| self.weights.model.score_row(&feature_row(e, c))).collect())
    }

    fn name(&self) -> &str {
        "difficulty"
    }
}

/// Baseline: longer conversations are harder. The score is `1 - 1/(1 + chars/1000)`, monotone in
/// length and inside `[0, 1)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LengthScorer;

impl Scorer for LengthScorer {
    fn score(&self, conv: &Conversation) -> Result<f32, RouterError> {
        let chars: usize = conv.messages.iter().map(|m| m.content.chars().count()).sum();
        Ok(1.0 - 1.0 / (1.0 + chars as f32 / 1000.0))
    }

    fn name(&self) -> &str {
        "length"
    }
}

/// A scorer that returns the same value for everything (tests, and a "never/always escalate" switch).
#[derive(Debug, Clone, Copy)]
pub struct FixedScorer(pub f32);

impl Scorer for FixedScorer {
    fn score(&self, _conv: &Conversation) -> Result<f32, RouterError> {
        Ok(self.0.clamp(0.0, 1.0))
    }

    fn name(&self) -> &str {
        "fixed"
    }
}
