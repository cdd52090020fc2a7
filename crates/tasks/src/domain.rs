//! Stored training embeddings: nearest training examples (for explanations) and domain fit.
//!
//! Domain fit of a text is the mean cosine similarity to its `k` nearest stored training embeddings,
//! mapped to [0, 1] through the empirical distribution of the same statistic on the validation split:
//! a score of 0.3 means 30% of validation texts sit at most that close to the training data. In-domain
//! texts are therefore spread evenly over [0, 1] and out-of-domain texts pile up near 0.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::TaskError;

/// File with the stored embeddings (f16) and label indices.
pub const NEIGHBOURS_FILE: &str = "neighbours.safetensors";
/// File with the stored texts (a JSON array, same order).
pub const NEIGHBOUR_TEXTS_FILE: &str = "neighbours.json";
/// Quantiles kept for the calibration curve.
const QUANTILES: usize = 201;

/// Calibration of the domain-fit statistic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainFit {
    /// Neighbours averaged.
    pub k: usize,
    /// The statistic on the validation texts at evenly spaced probabilities 0, 1/200, ..., 1.
    pub quantiles: Vec<f32>,
}

impl DomainFit {
    /// Calibrates on the statistics of the validation texts.
    pub fn calibrate(k: usize, mut stats: Vec<f32>) -> Self {
        stats.retain(|s| s.is_finite());
        stats.sort_by(f32::total_cmp);
        if stats.is_empty() {
            return DomainFit { k, quantiles: vec![0.0, 1.0] };
        }
        let last = stats.len() - 1;
        let quantiles = (0..QUANTILES)
            .map(|i| {
                let pos = i as f64 / (QUANTILES - 1) as f64 * last as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                let t = (pos - lo as f64) as f32;
                stats[lo] * (1.0 - t) + stats[hi] * t
            })
            .collect();
        DomainFit { k, quantiles }
    }

    /// The calibrated score in [0, 1] of a raw statistic.
    pub fn score(&self, stat: f32) -> f32 {
        let q = &self.quantiles;
        if q.is_empty() || !stat.is_finite() {
            return 0.0;
        }
        if stat <= q[0] {
            return 0.0;
        }
        if stat >= q[q.len() - 1] {
            return 1.0;
        }
        // First quantile above the statistic; interpolate inside its interval.
        let i = q.partition_point(|&v| v <= stat).clamp(1, q.len() - 1);
        let (a, b) = (q[i - 1], q[i]);
        let t = if b > a { (stat - a) / (b - a) } else { 1.0 };
        ((i - 1) as f32 + t) / (q.len() - 1) as f32
    }
}

/// A stored sample of training examples: unit embeddings, label indices and texts.
#[derive(Debug, Clone)]
pub struct NeighbourStore {
    embeddings: Tensor,
    labels: Vec<u32>,
    texts: Vec<String>,
    dim: usize,
}

/// One nearest stored example: its index in the store and cosine similarity.
pub type Hit = (usize, f32);

impl NeighbourStore {
    /// Builds the store from unit embeddings (one per text).
    pub fn new(embeddings: &[Vec<f32>], labels: Vec<u32>, texts: Vec<String>) -> Result<Self, TaskError> {
        let dim = embeddings.first().map(|e| e.len()).unwrap_or(0);
        if embeddings.is_empty() || embeddings.len() != labels.len() || labels.len() != texts.len() {
            return Err(TaskError::Invalid("neighbour store needs as many embeddings, labels and texts".into()));
        }
        let flat: Vec<f32> = embeddings.iter().flat_map(|e| e.iter().copied()).collect();
        let embeddings = Tensor::from_vec(flat, (labels.len(), dim), &Device::Cpu)?;
        Ok(NeighbourStore { embeddings, labels, texts, dim })
    }

    /// Number of stored examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Label index of stored example `i`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// Text of stored example `i`.
    pub fn text(&self, i: usize) -> &str {
        &self.texts[i]
    }

    /// The `k` most similar stored examples of each query, most similar first.
    pub fn nearest(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Hit>>, TaskError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(q) = queries.iter().find(|q| q.len() != self.dim) {
            return Err(TaskError::Invalid(format!(
                "embedding has {} dimensions, the classifier was trained on {}",
                q.len(),
                self.dim
            )));
        }
        let flat: Vec<f32> = queries.iter().flat_map(|e| e.iter().copied()).collect();
        let q = Tensor::from_vec(flat, (queries.len(), self.dim), &Device::Cpu)?;
        let sims = q.matmul(&self.embeddings.t()?)?.to_vec2::<f32>()?;
        let k = k.min(self.len()).max(1);
        Ok(sims
            .into_iter()
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                if k < idx.len() {
                    idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                    idx.truncate(k);
                }
                let mut hits: Vec<Hit> = idx.into_iter().map(|i| (i, row[i])).collect();
                hits.sort_by(|a, b| b.1.total_cmp(&a.1));
                hits
            })
            .collect())
    }

    /// Mean similarity of each query to its `k` nearest stored examples (the raw domain statistic).
    pub fn knn_stat(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<f32>, TaskError> {
        Ok(self.nearest(queries, k)?.iter().map(|h| mean_sim(h)).collect())
    }

    /// Writes the store to `dir` (embeddings as f16 to keep model directories small).
    pub fn save(&self, dir: &Path) -> Result<(), TaskError> {
        let labels = Tensor::from_vec(self.labels.clone(), self.labels.len(), &Device::Cpu)?;
        let mut map = HashMap::new();
        map.insert("embeddings".to_string(), self.embeddings.to_dtype(DType::F16)?);
        map.insert("labels".to_string(), labels);
        crate::tensor_file::save_tensors(&map, &dir.join(NEIGHBOURS_FILE))?;
        let texts = serde_json::to_vec(&self.texts).map_err(|e| TaskError::Invalid(e.to_string()))?;
        std::fs::write(dir.join(NEIGHBOUR_TEXTS_FILE), texts)
            .map_err(|e| TaskError::io(dir.join(NEIGHBOUR_TEXTS_FILE), e))
    }

    /// Reads a store written by [`NeighbourStore::save`].
    pub fn load(dir: &Path) -> Result<Self, TaskError> {
        let path = dir.join(NEIGHBOURS_FILE);
        let mut map = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| TaskError::model(dir, format!("{NEIGHBOURS_FILE}: {e}")))?;
        let (Some(emb), Some(labels)) = (map.remove("embeddings"), map.remove("labels")) else {
            return Err(TaskError::model(dir, format!("{NEIGHBOURS_FILE}: missing tensors")));
        };
        let embeddings = emb.to_dtype(DType::F32)?;
        let (n, dim) = embeddings.dims2()?;
        let labels = labels.to_vec1::<u32>()?;
        let tpath = dir.join(NEIGHBOUR_TEXTS_FILE);
        let bytes = std::fs::read(&tpath).map_err(|e| TaskError::model(dir, format!("{NEIGHBOUR_TEXTS_FILE}: {e}")))?;
        let texts: Vec<String> = serde_json::from_slice(&bytes)
            .map_err(|e| TaskError::model(dir, format!("{NEIGHBOUR_TEXTS_FILE}: {e}")))?;
        if labels.len() != n || texts.len() != n || n == 0 {
            return Err(TaskError::model(dir, "neighbour files disagree on the number of examples"));
        }
        Ok(NeighbourStore { embeddings, labels, texts, dim })
    }
}

/// Mean similarity of a hit list (0 when empty).
pub fn mean_sim(hits: &[Hit]) -> f32 {
    if hits.is_empty() {
        0.0
    } else {
        hits.iter().map(|h| h.1).sum::<f32>() / hits.len() as f32
    }
}

/// Area under the ROC curve of separating `pos` (should score high) from `neg`; ties count half.
pub fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann-Whitney U with average ranks for ties.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|x| x.1).count() as f64 * avg;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_score_is_the_validation_cdf() {
        let stats: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let d = DomainFit::calibrate(5, stats);
        assert!((d.score(0.25) - 0.25).abs() < 0.01);
        assert_eq!(d.score(-1.0), 0.0);
        assert_eq!(d.score(2.0), 1.0);
    }

    #[test]
    fn auc_of_separated_and_tied_sets() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), 1.0);
        assert_eq!(auc(&[0.5], &[0.5]), 0.5);
    }

    #[test]
    fn nearest_finds_the_closest_vectors() {
        let e = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        let s = NeighbourStore::new(&e, vec![0, 1, 1], vec!["a".into(), "b".into(), "c".into()]).unwrap();
        let hits = s.nearest(&[vec![1.0, 0.0]], 2).unwrap();
        assert_eq!(hits[0][0].0, 0);
        assert_eq!(hits[0][1].0, 2);
    }
}
