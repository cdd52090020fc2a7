//! Training a classifier end to end: read and check the data, split, embed, fit, score on validation,
//! calibrate domain fit, and write the model directory atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rightmodel_core::Embedder;

use crate::blend;
use crate::data::{self, Dataset};
use crate::domain::{DomainFit, NeighbourStore};
use crate::embed::embed_all;
use crate::fast::{self, argmax, FastInputs, FastModel, FastRows};
use crate::finetune::{self, FineTuned, FinetuneConfig, FinetuneData, FinetuneOutcome};
use crate::manifest::{DataInfo, EncoderInfo, Manifest, Mode, TrainSettings, FORMAT_VERSION, MANIFEST_FILE};
use crate::metrics::{self, Metrics};
use crate::progress::Progress;
use crate::purge::{self, Decision};
use crate::registry;
use crate::TaskError;

/// Neighbours averaged for the domain-fit statistic.
pub const DOMAIN_K: usize = 10;
/// Fewest training examples kept as neighbours (`--max-neighbours`): domain fit averages the similarity to
/// the [`DOMAIN_K`] nearest ones, so with fewer it degenerates into the similarity to (almost) the whole
/// store, the same for every text and every model, and `in_domain` means nothing.
pub const MIN_NEIGHBOURS: usize = DOMAIN_K;
/// Human-readable training report inside the model directory.
pub const REPORT_FILE: &str = "metrics.md";

/// What to train and where to put it.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// The classifier's name (recorded in the manifest).
    pub name: String,
    /// Final model directory.
    pub dest: PathBuf,
    /// Replace an existing directory.
    pub overwrite: bool,
    /// Training data file.
    pub train_path: PathBuf,
    /// Validation data file; when absent, `settings.valid_split` of the training file is held out.
    pub valid_path: Option<PathBuf>,
    /// Text column / field.
    pub text_col: String,
    /// Label column / field.
    pub label_col: String,
    /// Recorded settings (mode, seed, split, caps, grids, fine-tuning hyper-parameters).
    pub settings: TrainSettings,
    /// Fine-tuning only: the base encoder directory (config.json, tokenizer.json, model.safetensors).
    pub base_encoder: Option<PathBuf>,
    /// Fine-tuning only: stop after this many seconds of training (best weights kept).
    pub time_budget_s: Option<u64>,
    /// Worker threads for the logistic-regression fit.
    pub threads: usize,
}

/// The result of a training run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Where the classifier was written.
    pub dir: PathBuf,
    /// Its manifest (validation metrics included).
    pub manifest: Manifest,
    /// Fine-tuning details, in `finetune` mode.
    pub finetune: Option<FinetuneOutcome>,
    /// Training rows available before `max_train` capping.
    pub rows_available: usize,
}

/// Default settings for `mode` (the values the CLI shows as defaults).
pub fn default_settings(mode: Mode) -> TrainSettings {
    let ft = FinetuneConfig::default();
    TrainSettings {
        mode,
        seed: 42,
        valid_split: 0.1,
        max_train: None,
        ngrams: true,
        c_grid: fast::DEFAULT_C_GRID.to_vec(),
        chosen_c: None,
        purged_rows: None,
        refit_rows: None,
        epochs: ft.epochs,
        batch_size: ft.batch_size,
        learning_rate: ft.learning_rate,
        warmup: ft.warmup,
        weight_decay: ft.weight_decay,
        max_len: ft.max_len,
        dropout: ft.dropout,
        ema: ft.ema,
        train_embeddings: ft.train_embeddings,
        layer_decay: ft.layer_decay,
        patience: ft.patience,
        max_neighbours: 20_000,
        blend_weight: None,
    }
}

/// A stratified sample of exactly `n` indices (`n` below the number of labels), sorted: every class
/// keeps at least one row and the rest is shared in proportion to class sizes (largest remainders
/// first). Fails when `n` is smaller than the number of classes, since each class needs a row.
fn stratified_sample(labels: &[String], n: usize, seed: u64) -> Result<Vec<usize>, TaskError> {
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_class.entry(l.as_str()).or_default().push(i);
    }
    if n < by_class.len() {
        return Err(TaskError::Invalid(format!(
            "--max-train {n} is less than the number of classes ({}): every class needs at least one training \
             row; use --max-train {} or more",
            by_class.len(),
            by_class.len()
        )));
    }
    let sizes: Vec<usize> = by_class.values().map(Vec::len).collect();
    let quotas = class_quotas(&sizes, n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for ((_, mut idx), k) in by_class.into_iter().zip(quotas) {
        idx.shuffle(&mut rng);
        out.extend_from_slice(&idx[..k]);
    }
    out.sort_unstable();
    Ok(out)
}

/// Rows to take from classes of `sizes` so that they add up to `n` (at least one per class, at most
/// the class size; needs `sizes.len() <= n <= sizes.iter().sum()`): proportional shares rounded down,
/// then the rows left over (or taken back, when the one-row minimum overshoots) by largest remainder.
fn class_quotas(sizes: &[usize], n: usize) -> Vec<usize> {
    let total = sizes.iter().sum::<usize>().max(1) as f64;
    let ideal: Vec<f64> = sizes.iter().map(|&s| s as f64 * n as f64 / total).collect();
    let mut k: Vec<usize> = sizes.iter().zip(&ideal).map(|(&s, &q)| (q.floor() as usize).clamp(1, s.max(1))).collect();
    // Each step moves one row, towards the class furthest from its share; at most `sizes.len()` steps.
    while k.iter().sum::<usize>() < n {
        let Some(c) = (0..k.len())
            .filter(|&c| k[c] < sizes[c])
            .max_by(|&a, &b| (ideal[a] - k[a] as f64).total_cmp(&(ideal[b] - k[b] as f64)).then(b.cmp(&a)))
        else {
            break;
        };
        k[c] += 1;
    }
    while k.iter().sum::<usize>() > n {
        let Some(c) = (0..k.len())
            .filter(|&c| k[c] > 1)
            .max_by(|&a, &b| (k[a] as f64 - ideal[a]).total_cmp(&(k[b] as f64 - ideal[b])).then(b.cmp(&a)))
        else {
            break;
        };
        k[c] -= 1;
    }
    k
}

fn data_info(ds: &Dataset, path: String, spec: &TrainSpec) -> DataInfo {
    DataInfo {
        path,
        sha256: ds.sha256.clone(),
        rows: ds.len(),
        text_col: spec.text_col.clone(),
        label_col: spec.label_col.clone(),
    }
}

/// The training and validation data of a run, read, checked and split.
struct Prepared {
    train: Dataset,
    valid: Dataset,
    /// Training rows before `max_train` capping.
    rows_available: usize,
    /// Where validation came from, for the manifest.
    valid_desc: String,
    /// Rows of the training file in neither part (inside validation texts; see `purge::whole_text_split`).
    left_out: Option<usize>,
}

/// Reads, checks and splits the data.
fn prepare_data(spec: &TrainSpec) -> Result<Prepared, TaskError> {
    let s = &spec.settings;
    let mut left_out = None;
    let full = data::load_labelled(&spec.train_path, &spec.text_col, &spec.label_col)?;
    full.check_trainable()?;
    let (train, valid, valid_desc) = match &spec.valid_path {
        Some(vp) => {
            let valid = data::load_labelled(vp, &spec.text_col, &spec.label_col)?;
            data::check_valid_labels(&full, &valid)?;
            (full, valid, vp.display().to_string())
        }
        None => {
            if !(s.valid_split > 0.0 && s.valid_split <= 0.5) {
                return Err(TaskError::Invalid(format!("--valid-split must be in (0, 0.5], got {}", s.valid_split)));
            }
            // Fine-tuning cannot refit on everything afterwards (as `fast` does), so its split must be
            // honest from the start: whole texts, without their sub-phrases in training (see `purge`).
            let whole = match s.mode {
                Mode::Finetune => {
                    let texts: Vec<&str> = full.texts.iter().map(String::as_str).collect();
                    purge::whole_text_split(&texts, &full.labels, s.valid_split, s.seed)
                }
                Mode::Fast => None,
            };
            match whole {
                Some(split) => {
                    let desc = format!(
                        "{} (held-out {:.0}% of the texts no other row contains, seed {}; the {} rows inside \
                         them left out of training)",
                        spec.train_path.display(),
                        s.valid_split * 100.0,
                        s.seed,
                        thousands(split.left_out)
                    );
                    left_out = Some(split.left_out);
                    (full.subset(&split.train), full.subset(&split.valid), desc)
                }
                None => {
                    let (tr, va) = data::stratified_split(&full.labels, s.valid_split, s.seed);
                    let desc = format!(
                        "{} (held-out {:.0}% split, seed {})",
                        spec.train_path.display(),
                        s.valid_split * 100.0,
                        s.seed
                    );
                    (full.subset(&tr), full.subset(&va), desc)
                }
            }
        }
    };
    let available = train.len();
    let train = match s.max_train {
        Some(n) if n < train.len() => train.subset(&stratified_sample(&train.labels, n, s.seed)?),
        _ => train,
    };
    Ok(Prepared { train, valid, rows_available: available, valid_desc, left_out })
}

/// A warning when the validation file given is the training file (or a byte-for-byte copy of it):
/// validation scores would then be measured on rows the classifier was trained on.
fn same_data_warning(spec: &TrainSpec, train: &Dataset, valid: &Dataset) -> Option<String> {
    let vp = spec.valid_path.as_ref()?;
    let same_path = match (std::fs::canonicalize(&spec.train_path), std::fs::canonicalize(vp)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_path && (train.sha256.is_empty() || train.sha256 != valid.sha256) {
        return None;
    }
    Some(format!(
        "warning: --valid {} {} --data {}: the validation scores (and the settings chosen on them) will be \
         measured on the training rows and overstate how well the classifier does on new text",
        vp.display(),
        if same_path { "is the same file as" } else { "has the same contents as" },
        spec.train_path.display()
    ))
}

/// Fails on settings no data can make sensible, before anything is read or created. (Most flags are
/// checked where they are parsed; these are checked here so that every caller gets the error.)
pub fn check_settings(s: &TrainSettings) -> Result<(), TaskError> {
    if s.max_neighbours < MIN_NEIGHBOURS {
        return Err(TaskError::Invalid(format!(
            "--max-neighbours {} is too few: domain fit (`in_domain`) compares a text with its {DOMAIN_K} nearest \
             training examples, so at least {MIN_NEIGHBOURS} must be kept (the default is {})",
            s.max_neighbours,
            default_settings(s.mode).max_neighbours
        )));
    }
    Ok(())
}

/// Trains the classifier described by `spec` and writes it to `spec.dest`.
pub fn train_classifier(
    spec: &TrainSpec,
    embedder: &dyn Embedder,
    progress: &dyn Progress,
) -> Result<TrainOutcome, TaskError> {
    check_settings(&spec.settings)?;
    registry::check_writable(&spec.dest, spec.overwrite)?;
    let start = Instant::now();
    let s = &spec.settings;
    if s.mode == Mode::Finetune && spec.base_encoder.is_none() {
        return Err(TaskError::Invalid("fine-tuning needs the base encoder directory".into()));
    }
    let Prepared { train, valid, rows_available, valid_desc, left_out } = prepare_data(spec)?;
    if let Some(w) = same_data_warning(spec, &train, &valid) {
        progress.note(&w);
    }
    let labels = train.label_set();
    let index: BTreeMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
    let to_y =
        |ds: &Dataset| -> Vec<u32> { ds.labels.iter().map(|l| index.get(l.as_str()).copied().unwrap_or(0)).collect() };
    let (train_y, valid_y) = (to_y(&train), to_y(&valid));
    let train_texts: Vec<&str> = train.texts.iter().map(|t| t.as_str()).collect();
    let valid_texts: Vec<&str> = valid.texts.iter().map(|t| t.as_str()).collect();

    // Which training rows are kept as neighbours (and so need frozen embeddings in every mode).
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed ^ 0x5eed);
    let mut keep: Vec<usize> = (0..train.len()).collect();
    keep.shuffle(&mut rng);
    keep.truncate(s.max_neighbours);
    keep.sort_unstable();

    // `fast` mode on a split of the training file: choose C without the training rows that overlap the
    // split, then refit on everything. A validation file is the user's own, and in `finetune` mode the head
    // is mixed in at a weight chosen on validation, so it must not see the validation rows.
    let split_fast = s.mode == Mode::Fast && spec.valid_path.is_none();

    let mut settings = s.clone();
    settings.purged_rows = left_out;
    if let Some(n) = left_out {
        progress.note(&format!(
            "validation: {} whole texts (no other row contains them); the {} training rows inside them \
             (sub-phrases, duplicates) are left out of training",
            thousands(valid.len()),
            thousands(n)
        ));
    }
    let mut ft_outcome = None;
    let mut manifest_out = None;
    registry::write_dir_atomically(&spec.dest, spec.overwrite, |tmp| {
        // Frozen embeddings of every text and the `fast` head on them: the whole model in `fast` mode, the
        // mixed-in head in `finetune` mode; the neighbours are a sample of the same embeddings.
        progress.start("embedding", (train_texts.len() + valid_texts.len()) as u64);
        // One vector, training rows first, so that the refit on all rows needs no copy.
        let mut all_emb = embed_all(embedder, &train_texts, progress)?;
        all_emb.extend(embed_all(embedder, &valid_texts, progress)?);
        progress.finish();
        let (train_emb, valid_emb) = all_emb.split_at(train_texts.len());
        let inputs = FastInputs {
            train_texts: &train_texts,
            train_emb,
            train_y: &train_y,
            valid_texts: &valid_texts,
            valid_emb,
            valid_y: &valid_y,
            classes: labels.len(),
        };
        let (head, c) = if split_fast {
            let (head, c, purged) = choose_without_overlaps(&inputs, s, spec.threads, progress)?;
            settings.purged_rows = purged;
            (head, c)
        } else {
            fast::train(&inputs, s.ngrams, &s.c_grid, spec.threads, progress)?
        };
        let head_logits = head.logits(valid_emb, &valid_texts);
        let valid_logits = match s.mode {
            Mode::Fast if split_fast => {
                settings.chosen_c = Some(c);
                let all_texts: Vec<&str> = train_texts.iter().chain(&valid_texts).copied().collect();
                let all_y: Vec<u32> = train_y.iter().chain(&valid_y).copied().collect();
                let rows = FastRows { texts: &all_texts, emb: &all_emb, y: &all_y };
                let final_head = fast::refit(&head, &rows, labels.len(), s.ngrams, c, spec.threads, progress)?;
                progress.note(&format!(
                    "final head: refit on all {} rows (training part + validation split) with C={c}; the \
                     validation scores are those of the head chosen on the split",
                    thousands(all_texts.len())
                ));
                settings.refit_rows = Some(all_texts.len());
                final_head.save(tmp)?;
                head_logits
            }
            Mode::Fast => {
                settings.chosen_c = Some(c);
                head.save(tmp)?;
                head_logits
            }
            Mode::Finetune => {
                let base = spec.base_encoder.as_deref().unwrap_or(Path::new("."));
                let cfg = FinetuneConfig {
                    epochs: s.epochs,
                    batch_size: s.batch_size,
                    learning_rate: s.learning_rate,
                    warmup: s.warmup,
                    weight_decay: s.weight_decay,
                    max_len: s.max_len,
                    dropout: s.dropout,
                    ema: s.ema,
                    train_embeddings: s.train_embeddings,
                    layer_decay: s.layer_decay,
                    patience: s.patience,
                    time_budget: spec.time_budget_s.map(std::time::Duration::from_secs),
                    seed: s.seed,
                    ..FinetuneConfig::default()
                };
                let fdata = FinetuneData {
                    train_texts: &train_texts,
                    train_y: &train_y,
                    valid_texts: &valid_texts,
                    valid_y: &valid_y,
                    classes: labels.len(),
                };
                let outcome = finetune::train(base, &fdata, &cfg, tmp, progress)?;
                ft_outcome = Some(outcome);
                let model = FineTuned::load(tmp, labels.len())?;
                progress.start("scoring validation", 0);
                let ft_logits = model.logits(&valid_texts)?;
                progress.finish();
                let (w, table) = blend::choose_weight(&ft_logits, &head_logits, &valid_y);
                for (tw, acc, loss) in &table {
                    progress
                        .note(&format!("fast-head weight {tw:.1}: validation accuracy {acc:.4}, log-loss {loss:.4}"));
                }
                progress.note(&format!("mix with the fast head: weight {w:.1} (lowest validation log-loss)"));
                settings.blend_weight = Some(w);
                if w > 0.0 {
                    settings.chosen_c = Some(c);
                    let dir = tmp.join(blend::BLEND_DIR);
                    std::fs::create_dir_all(&dir).map_err(|e| TaskError::io(&dir, e))?;
                    head.save(&dir)?;
                    blend::mix(&ft_logits, &head_logits, w)
                } else {
                    ft_logits
                }
            }
        };
        let train_emb_kept: Vec<Vec<f32>> = keep.iter().map(|&i| train_emb[i].clone()).collect();
        let predicted: Vec<String> = valid_logits.iter().map(|l| labels[argmax(l)].clone()).collect();
        let validation = metrics::score(&labels, &valid.labels, &predicted);
        let store = NeighbourStore::new(
            &train_emb_kept,
            keep.iter().map(|&i| train_y[i]).collect(),
            keep.iter().map(|&i| train.texts[i].clone()).collect(),
        )?;
        // The store holds training-part rows only, so no validation text is its own neighbour here.
        let domain = DomainFit::calibrate(DOMAIN_K, store.knn_stat(valid_emb, DOMAIN_K)?);
        store.save(tmp)?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            name: spec.name.clone(),
            mode: s.mode,
            labels: labels.clone(),
            encoder: EncoderInfo {
                model_id: embedder.model_id().to_string(),
                dim: embedder.dim(),
                probe: embedder.embed(&[crate::manifest::PROBE_TEXT])?.pop(),
            },
            settings: settings.clone(),
            train_data: data_info(&train, spec.train_path.display().to_string(), spec),
            valid_data: data_info(&valid, valid_desc.clone(), spec),
            validation,
            domain,
            train_seconds: start.elapsed().as_secs_f64(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| TaskError::Invalid(e.to_string()))?;
        std::fs::write(tmp.join(MANIFEST_FILE), json).map_err(|e| TaskError::io(tmp.join(MANIFEST_FILE), e))?;
        let report = training_report(&manifest, rows_available, ft_outcome.as_ref());
        std::fs::write(tmp.join(REPORT_FILE), report).map_err(|e| TaskError::io(tmp.join(REPORT_FILE), e))?;
        manifest_out = Some(manifest);
        Ok(())
    })?;
    let manifest = manifest_out.ok_or_else(|| TaskError::Invalid("training produced no manifest".into()))?;
    Ok(TrainOutcome { dir: spec.dest.clone(), manifest, finetune: ft_outcome, rows_available })
}

/// Chooses C for a `fast` head on a validation split of the training file, leaving out the training rows
/// that overlap validation texts (see [`purge`]) unless too few would remain. Returns the chosen head, its
/// C and the number of rows left out (`None` when the purge was skipped).
fn choose_without_overlaps(
    inputs: &FastInputs,
    s: &TrainSettings,
    threads: usize,
    progress: &dyn Progress,
) -> Result<(FastModel, f64, Option<usize>), TaskError> {
    let overlaps = purge::find_overlaps(inputs.train_texts, inputs.valid_texts);
    let n = inputs.train_texts.len();
    match purge::decide(&overlaps, inputs.train_y, inputs.classes) {
        Decision::Purge { kept, left_out } => {
            progress.note(&format!(
                "validation: {} of {} training rows overlap validation texts (sub-phrases, containing texts or \
                 duplicates) and are left out while choosing C{}",
                thousands(left_out),
                thousands(n),
                if overlaps.max_len < purge::MAX_RUN_LEN {
                    format!(" (texts compared up to {} words)", overlaps.max_len)
                } else {
                    String::new()
                }
            ));
            let texts: Vec<&str> = kept.iter().map(|&i| inputs.train_texts[i]).collect();
            let emb: Vec<Vec<f32>> = kept.iter().map(|&i| inputs.train_emb[i].clone()).collect();
            let y: Vec<u32> = kept.iter().map(|&i| inputs.train_y[i]).collect();
            let kept_inputs = FastInputs { train_texts: &texts, train_emb: &emb, train_y: &y, ..*inputs };
            let (head, c) = fast::train(&kept_inputs, s.ngrams, &s.c_grid, threads, progress)?;
            Ok((head, c, Some(left_out)))
        }
        Decision::Nothing => {
            progress.note("validation: no training row overlaps a validation text");
            let (head, c) = fast::train(inputs, s.ngrams, &s.c_grid, threads, progress)?;
            Ok((head, c, Some(0)))
        }
        Decision::Skip(why) => {
            progress.note(&format!("validation: {why}"));
            let (head, c) = fast::train(inputs, s.ngrams, &s.c_grid, threads, progress)?;
            Ok((head, c, None))
        }
    }
}

/// `n` with thousands separators (37,541).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The Markdown written to `metrics.md`.
pub fn training_report(m: &Manifest, rows_available: usize, ft: Option<&FinetuneOutcome>) -> String {
    let mut s = format!("# Classifier `{}` ({} mode)\n\n", m.name, m.mode);
    s.push_str(&format!(
        "- training data: `{}` ({} rows used of {}; sha256 {})\n- validation: `{}` ({} rows)\n- labels: {}\n- encoder: {} ({}-d)\n- training time: {:.1} s\n",
        m.train_data.path,
        m.train_data.rows,
        rows_available,
        &m.train_data.sha256[..m.train_data.sha256.len().min(12)],
        m.valid_data.path,
        m.valid_data.rows,
        m.labels.len(),
        m.encoder.model_id,
        m.encoder.dim,
        m.train_seconds
    ));
    if let Some(c) = m.settings.chosen_c {
        let left_out = match m.settings.purged_rows {
            Some(p) if p > 0 => {
                format!(", with the {} training rows that overlap validation texts left out", thousands(p))
            }
            _ => String::new(),
        };
        s.push_str(&format!(
            "- head: logistic regression, C = {c} (chosen on validation{left_out}), n-grams: {}\n",
            m.settings.ngrams
        ));
    }
    if let Some(n) = m.settings.refit_rows {
        s.push_str(&format!(
            "- final head: refit with that C on all {} rows (training + validation); the validation scores \
             below are those of the head chosen on the split, before the refit\n",
            thousands(n)
        ));
    }
    if let Some(w) = m.settings.blend_weight {
        s.push_str(&format!(
            "- mixed with a fast head (frozen embeddings + n-grams) at weight {w:.1}, chosen on validation\n"
        ));
    }
    if let Some(f) = ft {
        s.push_str(&format!(
            "- fine-tuning: {} steps, {} examples, {:.1} s per 1k examples, encoder dropout {}, word embeddings {}{}, {}{}\n",
            f.steps,
            f.examples_seen,
            f.seconds_per_1k,
            f.dropout,
            if m.settings.train_embeddings { "trained" } else { "frozen" },
            match m.settings.layer_decay {
                Some(d) => format!(", layer-wise learning-rate decay {d}"),
                None => String::new(),
            },
            f.stopped,
            match m.settings.ema {
                Some(d) if f.best_is_average => format!("; saved the moving average of the weights (decay {d})"),
                Some(d) => format!("; a step's own weights beat their moving average (decay {d})"),
                None => String::new(),
            }
        ));
    }
    s.push_str("\n## Validation\n\n");
    s.push_str(&m.validation.to_markdown());
    s
}

/// The headline of a metrics block, for printing.
pub fn headline(m: &Metrics) -> String {
    format!("accuracy {:.4}, macro-F1 {:.4} on {} texts", m.accuracy, m.macro_f1, m.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(counts: &[(&str, usize)]) -> Vec<String> {
        counts.iter().flat_map(|&(l, n)| std::iter::repeat_n(l.to_string(), n)).collect()
    }

    fn per_class(all: &[String], idx: &[usize]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for &i in idx {
            *m.entry(all[i].clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn max_train_never_takes_more_rows_than_asked() {
        // The QA case: 18 rows of 2 classes, --max-train 3 used to give 4.
        let l = labels(&[("neg", 9), ("pos", 9)]);
        for n in 2..l.len() {
            let idx = stratified_sample(&l, n, 7).unwrap();
            assert_eq!(idx.len(), n, "--max-train {n}");
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
            assert_eq!(per_class(&l, &idx).len(), 2, "every class keeps a row");
        }
        // Many small classes next to a big one: the one-row minimum must not overshoot.
        let l = labels(&[("a", 100), ("b", 2), ("c", 2), ("d", 2), ("e", 2), ("f", 2)]);
        for n in [6, 7, 10, 50, 107] {
            let idx = stratified_sample(&l, n, 1).unwrap();
            assert_eq!(idx.len(), n);
            let m = per_class(&l, &idx);
            assert_eq!(m.len(), 6);
            assert!(m["a"] >= m["b"]);
        }
        // Proportions are kept when they can be.
        let l = labels(&[("x", 30), ("y", 10)]);
        let m = per_class(&l, &stratified_sample(&l, 8, 3).unwrap());
        assert_eq!((m["x"], m["y"]), (6, 2));
    }

    #[test]
    fn counts_get_thousands_separators() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (37_541, "37,541"), (1_234_567, "1,234,567")];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
    }

    #[test]
    fn too_few_neighbours_are_refused_before_anything_is_created() {
        let mut s = default_settings(Mode::Fast);
        assert!(check_settings(&s).is_ok());
        s.max_neighbours = MIN_NEIGHBOURS;
        assert!(check_settings(&s).is_ok());
        for n in [0, 1, MIN_NEIGHBOURS - 1] {
            s.max_neighbours = n;
            let e = check_settings(&s).unwrap_err().to_string();
            assert!(e.contains(&format!("--max-neighbours {n} is too few")) && e.contains("at least 10"), "{e}");
        }
        // Through the training entry point: refused before the destination is created.
        let tmp = tempfile::tempdir().unwrap();
        let spec = TrainSpec {
            name: "m".into(),
            dest: tmp.path().join("m"),
            overwrite: false,
            train_path: tmp.path().join("missing.csv"),
            valid_path: None,
            text_col: "text".into(),
            label_col: "label".into(),
            settings: s,
            base_encoder: None,
            time_budget_s: None,
            threads: 1,
        };
        struct NoEmbedder;
        impl Embedder for NoEmbedder {
            fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, rightmodel_core::EmbedError> {
                unreachable!("nothing is embedded")
            }
            fn dim(&self) -> usize {
                4
            }
            fn model_id(&self) -> &str {
                "none"
            }
        }
        let err = train_classifier(&spec, &NoEmbedder, &crate::progress::NoProgress).unwrap_err().to_string();
        assert!(err.contains("--max-neighbours"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn every_file_of_a_trained_classifier_gets_the_normal_mode() {
        use std::os::unix::fs::PermissionsExt;
        /// A vector from the text's bytes: enough to train a head on.
        struct BytesEmbedder;
        impl Embedder for BytesEmbedder {
            fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, rightmodel_core::EmbedError> {
                Ok(texts
                    .iter()
                    .map(|t| {
                        let mut v = [0.1f32; 8];
                        for (i, b) in t.bytes().enumerate() {
                            v[i % 8] += f32::from(b) / 255.0;
                        }
                        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        v.iter().map(|x| x / n).collect()
                    })
                    .collect())
            }
            fn dim(&self) -> usize {
                8
            }
            fn model_id(&self) -> &str {
                "bytes"
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d.csv");
        let rows: String =
            (0..40)
                .map(|i| {
                    if i % 2 == 0 {
                        format!("good film number {i},pos\n")
                    } else {
                        format!("awful plot {i} zzz,neg\n")
                    }
                })
                .collect();
        std::fs::write(&data, format!("text,label\n{rows}")).unwrap();
        let plain = tmp.path().join("plain.txt");
        std::fs::write(&plain, "x").unwrap();
        let spec = TrainSpec {
            name: "m".into(),
            dest: tmp.path().join("m"),
            overwrite: false,
            train_path: data,
            valid_path: None,
            text_col: "text".into(),
            label_col: "label".into(),
            settings: default_settings(Mode::Fast),
            base_encoder: None,
            time_budget_s: None,
            threads: 1,
        };
        let out = train_classifier(&spec, &BytesEmbedder, &crate::progress::NoProgress).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let files: Vec<PathBuf> = std::fs::read_dir(&out.dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.iter().any(|f| f.ends_with(crate::fast::HEAD_FILE)), "{files:?}");
        for f in &files {
            assert_eq!(mode(f), mode(&plain), "{}: {:o}", f.display(), mode(f));
        }
        // The folder too (it starts as an owner-only temporary folder).
        assert_eq!(mode(&out.dir), 0o755);
    }

    #[test]
    fn max_train_below_the_number_of_classes_is_refused() {
        let l = labels(&[("a", 5), ("b", 5), ("c", 5)]);
        let err = stratified_sample(&l, 2, 0).unwrap_err().to_string();
        assert!(err.contains("--max-train 2") && err.contains("3") && err.contains("every class"), "{err}");
        assert!(stratified_sample(&l, 3, 0).is_ok());
    }
}
