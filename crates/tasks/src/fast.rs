//! The `fast` classifier: frozen sentence embeddings, optionally joined by word n-gram TF-IDF, and a
//! multinomial logistic-regression head whose L2 strength is chosen on the validation split.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::lbfgs::LbfgsOptions;
use crate::logreg::{self, Csr, Features, LinearHead};
use crate::ngrams::NgramVocab;
use crate::progress::Progress;
use crate::TaskError;

/// Weights of the head.
pub const HEAD_FILE: &str = "head.safetensors";
/// The n-gram vocabulary (absent when the model uses embeddings only).
pub const NGRAMS_FILE: &str = "ngrams.json";

/// Default inverse regularisation strengths tried, weakest regularisation last.
pub const DEFAULT_C_GRID: [f64; 7] = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0];

/// N-gram settings: uni+bigrams seen in at least two texts, at most this many columns.
const NGRAM_MAX_N: usize = 2;
const NGRAM_MIN_DF: u32 = 2;
const NGRAM_MAX_FEATURES: usize = 100_000;

/// A trained `fast` head.
#[derive(Debug, Clone)]
pub struct FastModel {
    /// The n-gram vocabulary, when lexical features are used.
    pub vocab: Option<NgramVocab>,
    /// The linear head over [embedding | n-grams].
    pub head: LinearHead,
}

/// Builds the feature matrix of `texts` with their `embeddings`.
pub fn featurize(vocab: Option<&NgramVocab>, embeddings: &[Vec<f32>], texts: &[&str]) -> Features {
    let dim = embeddings.first().map(|e| e.len()).unwrap_or(0);
    let mut f = Features {
        n: embeddings.len(),
        dense_dim: dim,
        dense: Vec::with_capacity(embeddings.len() * dim),
        sparse_dim: vocab.map(|v| v.len()).unwrap_or(0),
        sparse: Csr::new(),
    };
    for (e, t) in embeddings.iter().zip(texts) {
        f.dense.extend_from_slice(e);
        if let Some(v) = vocab {
            f.sparse.push_row(&v.transform(t));
        }
    }
    f
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

impl FastModel {
    /// Logits of each text (rows of `classes` values).
    pub fn logits(&self, embeddings: &[Vec<f32>], texts: &[&str]) -> Vec<Vec<f32>> {
        let f = featurize(self.vocab.as_ref(), embeddings, texts);
        let flat = self.head.logits(&f);
        flat.chunks(self.head.classes.max(1)).map(|c| c.to_vec()).collect()
    }

    /// Writes `head.safetensors` (and `ngrams.json`) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TaskError> {
        let h = &self.head;
        let mut map = HashMap::new();
        map.insert("w_dense".to_string(), Tensor::from_vec(h.w_dense.clone(), (h.classes, h.dense_dim), &Device::Cpu)?);
        map.insert("bias".to_string(), Tensor::from_vec(h.bias.clone(), h.classes, &Device::Cpu)?);
        if h.sparse_dim > 0 {
            map.insert(
                "w_sparse".to_string(),
                Tensor::from_vec(h.w_sparse.clone(), (h.sparse_dim, h.classes), &Device::Cpu)?,
            );
        }
        crate::tensor_file::save_tensors(&map, &dir.join(HEAD_FILE))?;
        if let Some(v) = &self.vocab {
            let bytes = serde_json::to_vec(v).map_err(|e| TaskError::Invalid(e.to_string()))?;
            std::fs::write(dir.join(NGRAMS_FILE), bytes).map_err(|e| TaskError::io(dir.join(NGRAMS_FILE), e))?;
        }
        Ok(())
    }

    /// Reads a head written by [`FastModel::save`], checking its shape against the manifest.
    pub fn load(dir: &Path, classes: usize, dim: usize) -> Result<Self, TaskError> {
        let bad = |r: String| TaskError::model(dir, r);
        let mut map = candle_core::safetensors::load(dir.join(HEAD_FILE), &Device::Cpu)
            .map_err(|e| bad(format!("{HEAD_FILE}: {e}")))?;
        let w_dense = map.remove("w_dense").ok_or_else(|| bad(format!("{HEAD_FILE}: no w_dense")))?;
        let bias = map.remove("bias").ok_or_else(|| bad(format!("{HEAD_FILE}: no bias")))?;
        if w_dense.dims() != [classes, dim] || bias.dims() != [classes] {
            return Err(bad(format!("{HEAD_FILE}: shapes do not match {classes} labels and {dim}-d embeddings")));
        }
        let vocab = match std::fs::read(dir.join(NGRAMS_FILE)) {
            Ok(bytes) => {
                let mut v: NgramVocab =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("{NGRAMS_FILE}: {e}")))?;
                v.build_index();
                v.check().map_err(|r| bad(format!("{NGRAMS_FILE}: {r}")))?;
                Some(v)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(bad(format!("{NGRAMS_FILE}: {e}"))),
        };
        let sparse_dim = vocab.as_ref().map(|v| v.len()).unwrap_or(0);
        let w_sparse = match map.remove("w_sparse") {
            Some(t) if t.dims() == [sparse_dim, classes] => t.flatten_all()?.to_vec1::<f32>()?,
            None if sparse_dim == 0 => Vec::new(),
            // The head has n-gram weights but their vocabulary is gone.
            Some(_) if vocab.is_none() => {
                return Err(bad(format!(
                    "{NGRAMS_FILE}: no such file ({HEAD_FILE} has n-gram weights, which need it); \
                     copy the whole classifier directory or train it again"
                )))
            }
            _ => return Err(bad(format!("{HEAD_FILE}: w_sparse does not match {NGRAMS_FILE}"))),
        };
        let head = LinearHead {
            classes,
            dense_dim: dim,
            sparse_dim,
            w_dense: w_dense.flatten_all()?.to_vec1::<f32>()?,
            w_sparse,
            bias: bias.to_vec1::<f32>()?,
        };
        // Non-finite weights would turn every probability into NaN (`null` on the wire).
        if head.w_dense.iter().chain(&head.w_sparse).chain(&head.bias).any(|w| !w.is_finite()) {
            return Err(bad(format!("{HEAD_FILE}: a weight is not a finite number")));
        }
        Ok(FastModel { vocab, head })
    }
}

/// Inputs of one `fast` training run (embeddings already computed).
pub struct FastInputs<'a> {
    /// Training texts.
    pub train_texts: &'a [&'a str],
    /// Their embeddings.
    pub train_emb: &'a [Vec<f32>],
    /// Their label indices.
    pub train_y: &'a [u32],
    /// Validation texts.
    pub valid_texts: &'a [&'a str],
    /// Their embeddings.
    pub valid_emb: &'a [Vec<f32>],
    /// Their label indices.
    pub valid_y: &'a [u32],
    /// Number of classes.
    pub classes: usize,
}

/// Fits heads along `c_grid` (warm-started, strongest regularisation first), keeps the one with the best
/// validation accuracy, and returns it with its C.
pub fn train(
    inp: &FastInputs,
    ngrams: bool,
    c_grid: &[f64],
    threads: usize,
    progress: &dyn Progress,
) -> Result<(FastModel, f64), TaskError> {
    if c_grid.is_empty() || c_grid.iter().any(|c| !c.is_finite() || *c <= 0.0) {
        return Err(TaskError::Invalid("the C grid must hold positive numbers".into()));
    }
    let vocab = if ngrams {
        Some(NgramVocab::fit(inp.train_texts, NGRAM_MAX_N, NGRAM_MIN_DF, NGRAM_MAX_FEATURES))
    } else {
        None
    };
    let vocab = vocab.filter(|v| !v.is_empty());
    let xt = featurize(vocab.as_ref(), inp.train_emb, inp.train_texts);
    let xv = featurize(vocab.as_ref(), inp.valid_emb, inp.valid_texts);
    let mut grid: Vec<f64> = c_grid.to_vec();
    grid.sort_by(f64::total_cmp);
    progress.start("fitting head", grid.len() as u64);
    let opts = fit_options();
    let mut best: Option<(f64, f64, f64, LinearHead)> = None;
    let mut warm: Option<LinearHead> = None;
    let mut worse_in_a_row = 0;
    for &c in &grid {
        let l2 = (1.0 / (c * xt.n.max(1) as f64)) as f32;
        let cfg = logreg::FitConfig { l2, lbfgs: opts, threads };
        let head = logreg::fit(&xt, inp.train_y, inp.classes, &cfg, warm.as_ref(), |_, _| {});
        let (acc, loss) = accuracy_and_log_loss(&head, &xv, inp.valid_y);
        progress.note(&format!("C={c}: validation accuracy {acc:.4}"));
        progress.inc(1);
        // Equal accuracy (common on small or easy validation splits) is decided by log-loss, so a tie
        // does not keep the strongest regularisation and its near-uniform probabilities.
        let improved = best.as_ref().map(|b| acc > b.1 || (acc == b.1 && loss < b.2)).unwrap_or(true);
        let fell = best.as_ref().is_some_and(|b| acc < b.1);
        if improved {
            best = Some((c, acc, loss, head.clone()));
        }
        worse_in_a_row = if fell { worse_in_a_row + 1 } else { 0 };
        warm = Some(head);
        // Validation accuracy is unimodal in C in practice; stop once it has fallen twice.
        if worse_in_a_row >= 2 {
            break;
        }
    }
    progress.finish();
    let (c, _, _, head) = best.ok_or_else(|| TaskError::Invalid("no head was fitted".into()))?;
    Ok((FastModel { vocab, head }, c))
}

/// Solver settings of every head fit.
fn fit_options() -> LbfgsOptions {
    LbfgsOptions { max_iter: 400, ..Default::default() }
}

/// Labelled rows with their embeddings: the input of [`refit`].
pub struct FastRows<'a> {
    /// The texts.
    pub texts: &'a [&'a str],
    /// Their embeddings.
    pub emb: &'a [Vec<f32>],
    /// Their label indices.
    pub y: &'a [u32],
}

/// Refits the whole `fast` pipeline (n-gram vocabulary, when `ngrams`, and head) on `rows` at the inverse
/// L2 strength `c` chosen by [`train`], starting from `chosen`, the head [`train`] returned.
///
/// Once the validation rows have done their job (choosing C), they are more useful as training data: on
/// a validation split held out from the training file, the head refit on training part + validation
/// rows is the one worth keeping. The vocabulary is fitted again so that n-grams of the added rows get
/// columns; `chosen`'s weights are carried over column by column (by n-gram) as the starting point,
/// which only shortens the fit, since the objective is convex.
pub fn refit(
    chosen: &FastModel,
    rows: &FastRows,
    classes: usize,
    ngrams: bool,
    c: f64,
    threads: usize,
    progress: &dyn Progress,
) -> Result<FastModel, TaskError> {
    if !(c.is_finite() && c > 0.0) {
        return Err(TaskError::Invalid(format!("C must be a positive number, got {c}")));
    }
    if rows.texts.len() != rows.emb.len() || rows.texts.len() != rows.y.len() {
        return Err(TaskError::Invalid("refit: texts, embeddings and labels differ in number".into()));
    }
    let vocab =
        if ngrams { Some(NgramVocab::fit(rows.texts, NGRAM_MAX_N, NGRAM_MIN_DF, NGRAM_MAX_FEATURES)) } else { None };
    let vocab = vocab.filter(|v| !v.is_empty());
    let x = featurize(vocab.as_ref(), rows.emb, rows.texts);
    let warm = carry_over(chosen, vocab.as_ref(), classes, x.dense_dim);
    progress.start("refitting head on all rows", 1);
    let cfg = logreg::FitConfig { l2: (1.0 / (c * x.n.max(1) as f64)) as f32, lbfgs: fit_options(), threads };
    let head = logreg::fit(&x, rows.y, classes, &cfg, Some(&warm), |_, _| {});
    progress.inc(1);
    progress.finish();
    Ok(FastModel { vocab, head })
}

/// `model`'s head laid out for `vocab` (`classes` x (`dense_dim` + the vocabulary's columns)): dense
/// weights and biases as they are, n-gram weights moved to their n-gram's new column, zeros elsewhere.
fn carry_over(model: &FastModel, vocab: Option<&NgramVocab>, classes: usize, dense_dim: usize) -> LinearHead {
    let sparse_dim = vocab.map(NgramVocab::len).unwrap_or(0);
    let mut out = LinearHead::zeros(classes, dense_dim, sparse_dim);
    let h = &model.head;
    if h.classes != classes || h.dense_dim != dense_dim {
        return out;
    }
    out.w_dense.clone_from(&h.w_dense);
    out.bias.clone_from(&h.bias);
    if let (Some(old), Some(new)) = (model.vocab.as_ref(), vocab) {
        let old_col: HashMap<&str, usize> = old.terms.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        for (j, t) in new.terms.iter().enumerate() {
            if let Some(&k) = old_col.get(t.as_str()) {
                if let (Some(src), Some(dst)) = (
                    h.w_sparse.get(k * classes..(k + 1) * classes),
                    out.w_sparse.get_mut(j * classes..(j + 1) * classes),
                ) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
    out
}

/// Accuracy and mean log-loss of `head` on labelled features.
fn accuracy_and_log_loss(head: &LinearHead, x: &Features, y: &[u32]) -> (f64, f64) {
    if x.n == 0 {
        return (0.0, 0.0);
    }
    let logits = head.logits(x);
    let (mut correct, mut loss) = (0usize, 0f64);
    for (l, &y) in logits.chunks(head.classes.max(1)).zip(y) {
        if argmax(l) == y as usize {
            correct += 1;
        }
        let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m as f64 + l.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln();
        loss += lse - l.get(y as usize).copied().unwrap_or(m) as f64;
    }
    (correct as f64 / x.n as f64, loss / x.n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// Two-class rows: a 2-d embedding pointing at the class, and a word that says it.
    fn rows(texts: &[(&'static str, u32)]) -> (Vec<&'static str>, Vec<Vec<f32>>, Vec<u32>) {
        let emb = texts.iter().map(|&(_, y)| if y == 0 { vec![1.0, 0.2] } else { vec![0.2, 1.0] }).collect();
        (texts.iter().map(|t| t.0).collect(), emb, texts.iter().map(|t| t.1).collect())
    }

    #[test]
    fn refit_learns_the_added_rows_and_starts_from_the_chosen_head() {
        let (tt, te, ty) = rows(&[
            ("good film", 0),
            ("good plot", 0),
            ("good cast", 0),
            ("bad film", 1),
            ("bad plot", 1),
            ("bad cast", 1),
        ]);
        // The validation rows bring a word ("superb") the training part lacks.
        let (vt, ve, vy) = rows(&[("superb film", 0), ("superb plot", 0), ("bad story", 1)]);
        let inputs = FastInputs {
            train_texts: &tt,
            train_emb: &te,
            train_y: &ty,
            valid_texts: &vt,
            valid_emb: &ve,
            valid_y: &vy,
            classes: 2,
        };
        let (chosen, c) = train(&inputs, true, &[1.0, 10.0], 1, &NoProgress).unwrap();
        let old = chosen.vocab.as_ref().unwrap();
        assert!(!old.terms.iter().any(|t| t == "superb"));

        let texts: Vec<&str> = tt.iter().chain(&vt).copied().collect();
        let emb: Vec<Vec<f32>> = te.iter().chain(&ve).cloned().collect();
        let y: Vec<u32> = ty.iter().chain(&vy).copied().collect();
        let all = FastRows { texts: &texts, emb: &emb, y: &y };

        // The starting point: the chosen weights, moved to each n-gram's new column.
        let new_vocab = NgramVocab::fit(&texts, NGRAM_MAX_N, NGRAM_MIN_DF, NGRAM_MAX_FEATURES);
        let warm = carry_over(&chosen, Some(&new_vocab), 2, 2);
        assert_eq!(warm.w_dense, chosen.head.w_dense);
        assert_eq!(warm.bias, chosen.head.bias);
        let col = |v: &NgramVocab, t: &str| v.terms.iter().position(|x| x == t).unwrap();
        let (j_old, j_new) = (col(old, "good"), col(&new_vocab, "good"));
        assert_eq!(warm.w_sparse[j_new * 2..j_new * 2 + 2], chosen.head.w_sparse[j_old * 2..j_old * 2 + 2]);
        let s = col(&new_vocab, "superb");
        assert_eq!(warm.w_sparse[s * 2..s * 2 + 2], [0.0, 0.0]);

        // The refit has columns for every row's n-grams and uses them.
        let refitted = refit(&chosen, &all, 2, true, c, 1, &NoProgress).unwrap();
        let vocab = refitted.vocab.as_ref().unwrap();
        assert_eq!(vocab.terms, new_vocab.terms);
        let w = &refitted.head.w_sparse[s * 2..s * 2 + 2];
        assert!(w[0] > w[1], "'superb' should point at class 0: {w:?}");

        // Without n-grams there is nothing to carry but the dense block.
        let plain = FastModel { vocab: None, head: LinearHead::zeros(2, 2, 0) };
        let dense_only = refit(&plain, &all, 2, false, c, 1, &NoProgress).unwrap();
        assert!(dense_only.vocab.is_none() && dense_only.head.sparse_dim == 0);
    }

    #[test]
    fn refit_refuses_bad_inputs() {
        let (texts, emb, y) = rows(&[("good film", 0), ("bad film", 1)]);
        let chosen = FastModel { vocab: None, head: LinearHead::zeros(2, 2, 0) };
        let short = FastRows { texts: &texts, emb: &emb, y: &y[..1] };
        assert!(refit(&chosen, &short, 2, true, 1.0, 1, &NoProgress).is_err());
        let ok = FastRows { texts: &texts, emb: &emb, y: &y };
        for c in [0.0, -1.0, f64::NAN] {
            assert!(refit(&chosen, &ok, 2, true, c, 1, &NoProgress).is_err(), "C={c}");
        }
        assert!(refit(&chosen, &ok, 2, true, 1.0, 1, &NoProgress).is_ok());
    }
}
