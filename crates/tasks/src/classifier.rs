//! A saved classifier loaded for prediction: labels, probabilities, domain fit and explanations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rightmodel_core::Embedder;
use serde::Serialize;

use crate::blend;
use crate::domain::{mean_sim, NeighbourStore};
use crate::explain::{self, Explanation, Neighbour};
use crate::fast::{argmax, FastModel};
use crate::finetune::FineTuned;
use crate::manifest::{Manifest, Mode};
use crate::TaskError;

/// Training examples shown as neighbours in an explanation.
pub const EXPLAIN_NEIGHBOURS: usize = 3;

/// The decision for one text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
    /// Probability of every label.
    pub probs: BTreeMap<String, f32>,
    /// How much the text resembles the training data, in [0, 1] (share of validation texts that are
    /// no closer to the training data); near 0 means the classifier is outside what it knows.
    pub in_domain: f32,
    /// Word attributions and nearest training examples, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// How the logits are computed.
enum Scorer {
    Fast(FastModel),
    /// The fine-tuned model, and the `fast` head mixed in with its weight (see [`crate::blend`]).
    Finetune(Box<FineTuned>, Option<(FastModel, f64)>),
}

/// A trained classifier (see the crate docs for the directory layout). Cheap to share behind an `Arc`;
/// prediction takes `&self`.
pub struct Classifier {
    dir: PathBuf,
    manifest: Manifest,
    scorer: Scorer,
    store: NeighbourStore,
    /// Model ids of encoders whose probe embedding matched (checked once per encoder).
    verified: std::sync::Mutex<Vec<String>>,
}

/// Least cosine between the training-time and the current embedding of the probe text: the same
/// encoder gives ~1 (batching and threads move the last digits), another one far less.
const PROBE_MIN_COSINE: f32 = 0.995;

fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

impl Classifier {
    /// Loads the classifier saved in `dir`.
    pub fn load(dir: &Path) -> Result<Self, TaskError> {
        let manifest = Manifest::read(dir)?;
        let classes = manifest.labels.len();
        // Labels are looked up by name (probabilities, explanations): each must be there once.
        let distinct: std::collections::HashSet<&String> = manifest.labels.iter().collect();
        if distinct.len() != classes {
            return Err(TaskError::model(dir, "the manifest lists a label twice".to_string()));
        }
        let scorer = match manifest.mode {
            Mode::Fast => Scorer::Fast(FastModel::load(dir, classes, manifest.encoder.dim)?),
            Mode::Finetune => {
                let blend = match manifest.settings.blend_weight {
                    Some(w) if w > 0.0 => {
                        Some((FastModel::load(&dir.join(blend::BLEND_DIR), classes, manifest.encoder.dim)?, w))
                    }
                    _ => None,
                };
                Scorer::Finetune(Box::new(FineTuned::load(dir, classes)?), blend)
            }
        };
        let store = NeighbourStore::load(dir)?;
        Ok(Classifier { dir: dir.to_path_buf(), manifest, scorer, store, verified: Default::default() })
    }

    /// The classifier's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Its labels, in logit order.
    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// How it computes logits.
    pub fn mode(&self) -> Mode {
        self.manifest.mode
    }

    /// Everything recorded at training time (settings, data hashes, validation scores).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fails when `embedder` is not the encoder the classifier was trained with.
    pub fn check_encoder(&self, embedder: &dyn Embedder) -> Result<(), TaskError> {
        let want = &self.manifest.encoder;
        if embedder.dim() != want.dim {
            return Err(TaskError::Invalid(format!(
                "classifier `{}` was trained on {}-d embeddings from `{}`; this encoder (`{}`) gives {}-d",
                self.name(),
                want.dim,
                want.model_id,
                embedder.model_id(),
                embedder.dim()
            )));
        }
        let Some(probe) = &want.probe else {
            if embedder.model_id() != want.model_id {
                tracing::debug!(trained = %want.model_id, given = %embedder.model_id(), "encoder name differs");
            }
            return Ok(());
        };
        let id = embedder.model_id().to_string();
        if self.verified.lock().map(|v| v.contains(&id)).unwrap_or(false) {
            return Ok(());
        }
        let now = embedder.embed(&[crate::manifest::PROBE_TEXT])?.pop().unwrap_or_default();
        let cos = rightmodel_core::embed::cosine(probe, &now);
        if cos.is_nan() || cos < PROBE_MIN_COSINE {
            return Err(TaskError::Invalid(format!(
                "classifier `{}` was trained with the encoder `{}`; `{id}` embeds differently (probe cosine {cos:.3}), \
                 so its predictions would be meaningless: use the encoder it was trained with",
                self.name(),
                want.model_id,
            )));
        }
        if let Ok(mut v) = self.verified.lock() {
            v.push(id);
        }
        Ok(())
    }

    /// Domain fit in [0, 1] of texts whose embeddings (from the classifier's encoder) are already known;
    /// the router uses this to keep a task model on the requests it knows.
    pub fn domain_fit(&self, embeddings: &[Vec<f32>]) -> Result<Vec<f32>, TaskError> {
        let k = self.manifest.domain.k;
        Ok(self.store.knn_stat(embeddings, k)?.into_iter().map(|s| self.manifest.domain.score(s)).collect())
    }

    /// Logits of `texts` given their frozen embeddings.
    fn logits(&self, texts: &[&str], embeddings: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, TaskError> {
        match &self.scorer {
            Scorer::Fast(m) => Ok(m.logits(embeddings, texts)),
            Scorer::Finetune(m, None) => m.logits(texts),
            Scorer::Finetune(m, Some((head, w))) => {
                Ok(blend::mix(&m.logits(texts)?, &head.logits(embeddings, texts), *w))
            }
        }
    }

    /// Classifies `texts` (in order). `embedder` must be the frozen encoder the classifier was trained
    /// with: it gives the features in `fast` mode and, in both modes, the embeddings behind `in_domain`
    /// and the neighbours (so `finetune` mode runs two encoders per text). With `explain`, each prediction
    /// also carries word attributions (occlusion: one extra encoder pass per word, so several times
    /// slower) and nearby training examples. Blank texts are refused.
    pub fn predict(
        &self,
        embedder: &dyn Embedder,
        texts: &[&str],
        explain: bool,
    ) -> Result<Vec<Prediction>, TaskError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(TaskError::Invalid(format!("text {} is empty", i + 1)));
        }
        self.check_encoder(embedder)?;
        let embeddings = embedder.embed(texts)?;
        let logits = self.logits(texts, &embeddings)?;
        let k = self.manifest.domain.k.max(EXPLAIN_NEIGHBOURS);
        let hits = self.store.nearest(&embeddings, k)?;
        let mut out = Vec::with_capacity(texts.len());
        for (l, h) in logits.iter().zip(&hits) {
            let p = softmax(l);
            let best = argmax(&p);
            let stat = mean_sim(&h[..self.manifest.domain.k.min(h.len())]);
            out.push(Prediction {
                label: self.labels()[best].clone(),
                confidence: p[best],
                probs: self.labels().iter().cloned().zip(p.iter().copied()).collect(),
                in_domain: self.manifest.domain.score(stat),
                explanation: None,
            });
        }
        if explain {
            self.explain(embedder, texts, &logits, &hits, &mut out)?;
        }
        Ok(out)
    }

    /// Fills in explanations: all occluded variants of all texts are scored in one batch.
    fn explain(
        &self,
        embedder: &dyn Embedder,
        texts: &[&str],
        logits: &[Vec<f32>],
        hits: &[Vec<crate::domain::Hit>],
        out: &mut [Prediction],
    ) -> Result<(), TaskError> {
        let mut words = Vec::with_capacity(texts.len());
        let mut variants: Vec<String> = Vec::new();
        let mut spans = Vec::with_capacity(texts.len());
        for t in texts {
            let (w, v) = explain::occlusions(t);
            spans.push(variants.len()..variants.len() + v.len());
            words.push(w);
            variants.extend(v);
        }
        // A one-word text occludes to the empty string, which the encoder still accepts.
        let refs: Vec<&str> = variants.iter().map(|s| s.as_str()).collect();
        let var_logits = if refs.is_empty() {
            Vec::new()
        } else {
            let emb = match &self.scorer {
                Scorer::Fast(_) | Scorer::Finetune(_, Some(_)) => embedder.embed(&refs)?,
                Scorer::Finetune(_, None) => Vec::new(),
            };
            self.logits(&refs, &emb)?
        };
        for (i, (pred, w)) in out.iter_mut().zip(words).enumerate() {
            let class = self.labels().iter().position(|l| *l == pred.label).unwrap_or(0);
            let mine = &var_logits[spans[i].clone()];
            // A cut text's baseline is its last variant (see `explain::occlusions`).
            let (base, without) = if mine.len() > w.len() {
                (&mine[mine.len() - 1], &mine[..mine.len() - 1])
            } else {
                (&logits[i], mine)
            };
            let tokens = explain::rank_tokens(w, base, without, class);
            let neighbours = hits[i]
                .iter()
                .take(EXPLAIN_NEIGHBOURS)
                .map(|&(j, sim)| Neighbour {
                    text: self.store.text(j).to_string(),
                    label: self.labels().get(self.store.label(j) as usize).cloned().unwrap_or_default(),
                    similarity: sim,
                })
                .collect();
            pred.explanation = Some(Explanation { tokens, neighbours });
        }
        Ok(())
    }
}
