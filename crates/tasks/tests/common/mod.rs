//! Test helpers: a deterministic bag-of-words embedder and paths to the fixtures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rightmodel_core::{EmbedError, Embedder};
use rightmodel_tasks::manifest::Mode;
use rightmodel_tasks::train::{self, TrainSpec};

/// Hashes lower-cased words into a signed 256-d bag of words, L2-normalised: similar wording gives
/// similar vectors, and each word moves the vector in its own direction (like a tiny sentence encoder).
pub struct HashEmbedder {
    pub fail_after_calls: Option<usize>,
    calls: AtomicUsize,
}

pub const DIM: usize = 256;

impl HashEmbedder {
    pub fn new() -> Self {
        HashEmbedder { fail_after_calls: None, calls: AtomicUsize::new(0) }
    }

    pub fn failing_after(n: usize) -> Self {
        HashEmbedder { fail_after_calls: Some(n), calls: AtomicUsize::new(0) }
    }
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Embedder for HashEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(limit) = self.fail_after_calls {
            if n >= limit {
                return Err(EmbedError("simulated encoder failure".into()));
            }
        }
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; DIM];
                v[0] = 0.05; // keeps the empty text non-zero
                for w in t.split_whitespace() {
                    let h = hash(&w.to_lowercase());
                    let sign = if (h >> 32) & 1 == 0 { 1.0 } else { -1.0 };
                    v[(h % DIM as u64) as usize] += sign;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect())
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn model_id(&self) -> &str {
        "hash-bow-256"
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

/// A fast-mode training spec writing to `dest`.
pub fn spec(data: PathBuf, text_col: &str, dest: PathBuf) -> TrainSpec {
    TrainSpec {
        name: dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        dest,
        overwrite: false,
        train_path: data,
        valid_path: None,
        text_col: text_col.into(),
        label_col: "label".into(),
        settings: train::default_settings(Mode::Fast),
        base_encoder: None,
        time_budget_s: None,
        threads: 2,
    }
}
