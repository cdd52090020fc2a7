//! The `finetune` classifier: the whole BERT encoder trained with a linear head on mean-pooled token
//! states (AdamW, linear warm-up then linear decay, early stopping on validation accuracy).
//!
//! Training builds a differentiable BERT ([`crate::bert_train`]) over a `VarMap` initialised from the base
//! encoder's safetensors; the result is saved in the same layout as the base encoder (`encoder/`) plus the head, so
//! prediction reuses [`rightmodel_infer::MiniLm`].

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
use candle_transformers::models::bert::Config;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rightmodel_infer::MiniLm;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert_train::TrainableBert;
use crate::fast::argmax;
use crate::progress::Progress;
use crate::TaskError;

/// Sub-directory holding the fine-tuned encoder (config.json, tokenizer.json, model.safetensors).
pub const ENCODER_DIR: &str = "encoder";
/// Head weights (`weight` `[classes, hidden]`, `bias` `[classes]`).
pub const HEAD_FILE: &str = "head.safetensors";
/// Texts per forward pass at prediction time.
const PREDICT_BATCH: usize = 32;
/// Dropout on the pooled vector while training (the encoder applies its checkpoint's own inside).
const POOLED_DROPOUT: f32 = 0.1;

/// A fine-tuned encoder with its head, ready to score texts.
pub struct FineTuned {
    encoder: MiniLm,
    weight: Tensor,
    bias: Tensor,
}

/// Mean of token states over the attention mask: `[b, seq, h]`, `[b, seq]` -> `[b, h]`.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}

impl FineTuned {
    /// Loads `dir/encoder` and `dir/head.safetensors`.
    pub fn load(dir: &Path, classes: usize) -> Result<Self, TaskError> {
        let encoder = MiniLm::load(&dir.join(ENCODER_DIR)).map_err(|e| TaskError::model(dir, e))?;
        let mut map = candle_core::safetensors::load(dir.join(HEAD_FILE), &Device::Cpu)
            .map_err(|e| TaskError::model(dir, format!("{HEAD_FILE}: {e}")))?;
        let (Some(weight), Some(bias)) = (map.remove("weight"), map.remove("bias")) else {
            return Err(TaskError::model(dir, format!("{HEAD_FILE}: missing weight or bias")));
        };
        if weight.dims().first() != Some(&classes) || bias.dims() != [classes] {
            return Err(TaskError::model(dir, format!("{HEAD_FILE}: does not match {classes} labels")));
        }
        Ok(FineTuned { encoder, weight, bias })
    }

    /// Logits of each text, in order.
    pub fn logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, TaskError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(PREDICT_BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let (hidden, mask) = self.encoder.hidden_states(&batch)?;
            let pooled = mean_pool(&hidden, &mask)?;
            let logits = pooled.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?.to_vec2::<f32>()?;
            for (&i, l) in chunk.iter().zip(logits) {
                out[i] = l;
            }
        }
        Ok(out)
    }
}

/// Hyper-parameters of one fine-tuning run.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// Passes over the training data (upper bound).
    pub epochs: usize,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Share of all steps spent warming up linearly from 0.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Longest input in tokens.
    pub max_len: usize,
    /// Validations without improvement before stopping; 0 chooses [`auto_patience`].
    pub patience: usize,
    /// Validate every this many steps (and at the end of each epoch).
    pub eval_every: usize,
    /// Validation examples used for early stopping (a fixed sample; all when smaller).
    pub max_eval: usize,
    /// Stop (keeping the best weights so far) once training has run this long.
    pub time_budget: Option<Duration>,
    /// Seed for shuffling, dropout and the head's initialisation.
    pub seed: u64,
    /// Dropout rate inside the encoder while training; `None` takes the checkpoint's
    /// `hidden_dropout_prob` (0.1 for MiniLM). Dropout helps on most data; on many classes with few
    /// examples each it may cost a little, so users can turn it down (`Some(0.0)` turns it off).
    pub dropout: Option<f32>,
    /// Decay of an exponential moving average of the weights kept from the end of warm-up; `None`
    /// keeps none. Each validation then also scores the averaged weights, and the better of the two
    /// competes for "best so far". The average sits in a flatter spot than the last step's weights and
    /// wanders less between validations, which matters when validation is small and noisy.
    pub ema: Option<f64>,
    /// Train the word-embedding matrix too (a third of MiniLM's parameters). Off by default: its dense
    /// gradient and AdamW update cost time and, on small data, the few rows touched drift away from
    /// the rest. On large data sets with many words, tuning them may pay.
    pub train_embeddings: bool,
    /// Layer-wise learning-rate decay: the head learns at the full rate, the top encoder layer at
    /// `decay` times it, the next at `decay²`, down to the embeddings at `decay^(layers + 1)`; `None`
    /// (or 1) trains every layer at one rate. Lower layers hold general features that a few epochs on
    /// one task should change least.
    pub layer_decay: Option<f64>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 3,
            batch_size: 32,
            learning_rate: 1e-4,
            warmup: 0.06,
            weight_decay: 0.01,
            max_len: 128,
            patience: 0,
            eval_every: 200,
            max_eval: 1000,
            time_budget: None,
            seed: 42,
            dropout: None,
            ema: None,
            train_embeddings: false,
            layer_decay: None,
        }
    }
}

/// Labelled texts for fine-tuning.
pub struct FinetuneData<'a> {
    /// Training texts.
    pub train_texts: &'a [&'a str],
    /// Their label indices.
    pub train_y: &'a [u32],
    /// Validation texts (early stopping).
    pub valid_texts: &'a [&'a str],
    /// Their label indices.
    pub valid_y: &'a [u32],
    /// Number of classes.
    pub classes: usize,
}

/// What a fine-tuning run did.
#[derive(Debug, Clone)]
pub struct FinetuneOutcome {
    /// Optimiser steps taken.
    pub steps: usize,
    /// Training examples processed (with repeats across epochs).
    pub examples_seen: usize,
    /// Best early-stopping accuracy (on the validation sample).
    pub best_valid_accuracy: f64,
    /// Wall-clock seconds spent in training steps and validation.
    pub seconds: f64,
    /// Seconds per 1,000 training examples (steps only).
    pub seconds_per_1k: f64,
    /// Why training stopped.
    pub stopped: String,
    /// Dropout rate applied inside the encoder while training.
    pub dropout: f32,
    /// Whether the saved weights are the moving average (`true`) or a step's own weights.
    pub best_is_average: bool,
}

fn load_config(base: &Path) -> Result<Config, TaskError> {
    let p = base.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| TaskError::io(&p, e))?;
    serde_json::from_str(&text).map_err(|e| TaskError::model(base, format!("config.json: {e}")))
}

fn load_tokenizer(base: &Path, max_len: usize) -> Result<Tokenizer, TaskError> {
    let p = base.join("tokenizer.json");
    let mut tok = Tokenizer::from_file(&p).map_err(|e| TaskError::model(base, format!("tokenizer.json: {e}")))?;
    tok.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
    tok.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
        .map_err(|e| TaskError::model(base, format!("tokenizer.json: {e}")))?;
    Ok(tok)
}

/// Token ids of every text (truncated, unpadded).
fn pre_tokenize(tok: &Tokenizer, texts: &[&str]) -> Result<Vec<Vec<u32>>, TaskError> {
    let enc = tok.encode_batch(texts.to_vec(), true).map_err(|e| TaskError::Invalid(format!("tokenizer: {e}")))?;
    // Batch encoding pads; keep only the real tokens.
    Ok(enc
        .iter()
        .map(|e| e.get_ids().iter().zip(e.get_attention_mask()).filter(|(_, &m)| m == 1).map(|(&i, _)| i).collect())
        .collect())
}

/// Pads a batch of token id lists into (ids, mask) tensors.
fn pad_batch(seqs: &[&Vec<u32>]) -> candle_core::Result<(Tensor, Tensor)> {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(seqs.len() * len);
    let mut mask = Vec::with_capacity(seqs.len() * len);
    for s in seqs {
        ids.extend_from_slice(s);
        mask.extend(std::iter::repeat_n(1u32, s.len()));
        ids.extend(std::iter::repeat_n(0u32, len - s.len()));
        mask.extend(std::iter::repeat_n(0u32, len - s.len()));
    }
    let ids = Tensor::from_vec(ids, (seqs.len(), len), &Device::Cpu)?;
    let mask = Tensor::from_vec(mask, (seqs.len(), len), &Device::Cpu)?;
    Ok((ids, mask))
}

/// The trainable network: encoder and head over one `VarMap`.
struct Net {
    bert: TrainableBert,
    head: candle_nn::Linear,
}

impl Net {
    fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let hidden = self.bert.forward(ids, mask, train)?;
        let pooled = mean_pool(&hidden, &mask.to_dtype(DType::F32)?)?;
        let pooled = if train { candle_nn::ops::dropout(&pooled, POOLED_DROPOUT)? } else { pooled };
        self.head.forward(&pooled)
    }
}

/// Validations without improvement before stopping when none is set: 3, or one epoch's worth when an
/// epoch holds more validations (one every `eval_every` steps and one at its end). On large data a
/// validation comes every few hundred steps and honest validation accuracy wanders by a point or two
/// between them: on SST-2 (validation every 200 of 1,860 steps an epoch, whole held-out sentences) three
/// validations without gain came at step 1,600, in the first epoch, and the best weights came in the
/// second.
pub fn auto_patience(steps_per_epoch: usize, eval_every: usize) -> usize {
    3.max(steps_per_epoch.div_ceil(eval_every.max(1)))
}

/// Depth of a variable for layer-wise learning-rate decay: 0 for the embeddings, `i + 1` for encoder
/// layer `i`, `layers + 1` for everything above the encoder (the head).
pub fn layer_depth(name: &str, layers: usize) -> usize {
    if name.starts_with("embeddings.") {
        return 0;
    }
    name.strip_prefix("encoder.layer.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map(|i| (i + 1).min(layers))
        .unwrap_or(layers + 1)
}

/// One AdamW per depth with the share of the peak learning rate it trains at (see
/// [`FinetuneConfig::layer_decay`]); a single group at the full rate without decay. The groups see the
/// same gradients, so splitting them changes nothing but the rate.
fn optimiser_groups(
    varmap: &VarMap,
    layers: usize,
    cfg: &FinetuneConfig,
) -> Result<Vec<(candle_nn::AdamW, f64)>, TaskError> {
    let params = candle_nn::ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..Default::default() };
    let decay = match cfg.layer_decay {
        Some(d) if d < 1.0 => d,
        _ => return Ok(vec![(candle_nn::AdamW::new(varmap.all_vars(), params)?, 1.0)]),
    };
    let vars = varmap.data().lock().map_err(|_| TaskError::Invalid("variable map poisoned".into()))?;
    let mut by_depth: std::collections::BTreeMap<usize, Vec<candle_core::Var>> = Default::default();
    for (name, var) in vars.iter() {
        by_depth.entry(layer_depth(name, layers)).or_default().push(var.clone());
    }
    by_depth
        .into_iter()
        .map(|(depth, vars)| {
            let scale = decay.powi((layers + 1 - depth) as i32);
            Ok((candle_nn::AdamW::new(vars, params.clone())?, scale))
        })
        .collect()
}

/// Learning rate at `step` of `total`: linear warm-up, then linear decay to zero.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup.max(1) as f64
    } else {
        let rest = total.saturating_sub(warmup).max(1);
        peak * (1.0 - (step - warmup) as f64 / rest as f64).max(0.0)
    }
}

/// Fine-tunes the encoder in `base` (config.json, tokenizer.json, model.safetensors) on `data` and writes
/// the best weights (by validation accuracy) to `out/encoder/` and `out/head.safetensors`.
pub fn train(
    base: &Path,
    data: &FinetuneData,
    cfg: &FinetuneConfig,
    out: &Path,
    progress: &dyn Progress,
) -> Result<FinetuneOutcome, TaskError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 || cfg.max_len < 8 {
        return Err(TaskError::Invalid("fine-tuning needs batch size >= 1, epochs >= 1 and max_len >= 8".into()));
    }
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        return Err(TaskError::Invalid(format!(
            "the learning rate must be a positive number, got {}",
            cfg.learning_rate
        )));
    }
    if let Some(p) = cfg.dropout {
        if !(p.is_finite() && (0.0..=0.9).contains(&p)) {
            return Err(TaskError::Invalid(format!("the dropout rate must be between 0 and 0.9, got {p}")));
        }
    }
    if let Some(d) = cfg.layer_decay {
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(TaskError::Invalid(format!("the layer-wise learning-rate decay must be in (0, 1], got {d}")));
        }
    }
    if let Some(d) = cfg.ema {
        if !(d.is_finite() && (0.0..1.0).contains(&d)) {
            return Err(TaskError::Invalid(format!("the moving-average decay must be in [0, 1), got {d}")));
        }
    }
    let config = load_config(base)?;
    if cfg.max_len > config.max_position_embeddings {
        return Err(TaskError::Invalid(format!(
            "max_len {} is longer than the encoder reads ({} tokens)",
            cfg.max_len, config.max_position_embeddings
        )));
    }
    let tok = load_tokenizer(base, cfg.max_len)?;
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    // Pretrained weights: the word embeddings stay constant tensors (unless they are trained too),
    // everything else becomes a variable.
    let weights_path = base.join("model.safetensors");
    let pretrained = candle_core::safetensors::load(&weights_path, &device)
        .map_err(|e| TaskError::model(base, format!("model.safetensors: {e}")))?;
    let word_key = "embeddings.word_embeddings.weight";
    let word = pretrained
        .get(word_key)
        .ok_or_else(|| TaskError::model(base, format!("model.safetensors has no tensor `{word_key}`")))?
        .to_dtype(DType::F32)?;
    let (frozen, frozen_word) = if cfg.train_embeddings {
        (vb.clone(), None)
    } else {
        let t = VarBuilder::from_tensors(HashMap::from([(word_key.to_string(), word.clone())]), DType::F32, &device);
        (t, Some(word))
    };
    let bert = TrainableBert::load(vb.clone(), frozen, &config)?;
    let bert = match cfg.dropout {
        Some(p) => bert.with_dropout(p),
        None => bert,
    };
    let dropout = bert.dropout();
    let head = candle_nn::linear(config.hidden_size, data.classes, vb.pp("classifier"))?;
    {
        let vars = varmap.data().lock().map_err(|_| TaskError::Invalid("variable map poisoned".into()))?;
        for (name, var) in vars.iter() {
            if name.starts_with("classifier.") {
                continue;
            }
            let t = pretrained
                .get(name)
                .ok_or_else(|| TaskError::model(base, format!("model.safetensors has no tensor `{name}`")))?;
            var.set(&t.to_dtype(DType::F32)?)?;
        }
    }
    drop(pretrained);
    let net = Net { bert, head };

    let train_ids = pre_tokenize(&tok, data.train_texts)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut eval_idx: Vec<usize> = (0..data.valid_texts.len()).collect();
    eval_idx.shuffle(&mut rng);
    eval_idx.truncate(cfg.max_eval.max(1));
    let eval_texts: Vec<&str> = eval_idx.iter().map(|&i| data.valid_texts[i]).collect();
    let eval_ids = pre_tokenize(&tok, &eval_texts)?;
    let eval_y: Vec<u32> = eval_idx.iter().map(|&i| data.valid_y[i]).collect();

    let steps_per_epoch = train_ids.len().div_ceil(cfg.batch_size);
    let patience = if cfg.patience == 0 { auto_patience(steps_per_epoch, cfg.eval_every) } else { cfg.patience };
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup_steps = (total_steps as f64 * cfg.warmup).round() as usize;
    let mut groups = optimiser_groups(&varmap, config.num_hidden_layers, cfg)?;

    let start = Instant::now();
    let mut step_seconds = 0f64;
    let (mut step, mut seen) = (0usize, 0usize);
    let mut best_acc = -1f64;
    let mut best: Option<HashMap<String, Tensor>> = None;
    let mut since_best = 0usize;
    let mut best_is_average = false;
    let mut average: Option<WeightAverage> = None;
    let mut stopped = format!("ran {} epoch(s)", cfg.epochs);
    progress.start("fine-tuning", total_steps as u64);
    'outer: for epoch in 0..cfg.epochs {
        let batches = bucketed_batches(&train_ids, cfg.batch_size, &mut rng);
        let last_batch = batches.len().saturating_sub(1);
        for (bi, batch) in batches.into_iter().enumerate() {
            let t0 = Instant::now();
            let seqs: Vec<&Vec<u32>> = batch.iter().map(|&i| &train_ids[i]).collect();
            let (ids, mask) = pad_batch(&seqs)?;
            let y: Vec<u32> = batch.iter().map(|&i| data.train_y[i]).collect();
            let y = Tensor::from_vec(y, batch.len(), &device)?;
            let lr = lr_at(step, total_steps, warmup_steps, cfg.learning_rate);
            let logits = net.forward(&ids, &mask, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            for (opt, scale) in groups.iter_mut() {
                opt.set_learning_rate(lr * *scale);
                opt.step(&grads)?;
            }
            if let Some(decay) = cfg.ema {
                match average.as_mut() {
                    Some(avg) => avg.update(step)?,
                    None if step + 1 >= warmup_steps => average = Some(WeightAverage::start(&varmap, decay, step)?),
                    None => {}
                }
            }
            step_seconds += t0.elapsed().as_secs_f64();
            step += 1;
            seen += batch.len();
            progress.inc(1);
            if step % 10 == 0 {
                let l = loss.to_scalar::<f32>().unwrap_or(f32::NAN);
                progress.message(&format!("epoch {} loss {l:.4} best acc {:.4}", epoch + 1, best_acc.max(0.0)));
            }
            let over_time = cfg.time_budget.map(|b| start.elapsed() >= b).unwrap_or(false);
            if step % cfg.eval_every.max(1) == 0 || bi == last_batch || over_time {
                let acc = accuracy(&net, &eval_ids, &eval_y)?;
                let avg_acc = match average.as_ref() {
                    Some(avg) => Some(avg.with_average(|| accuracy(&net, &eval_ids, &eval_y))?),
                    None => None,
                };
                let avg_note = avg_acc.map(|a| format!(", averaged weights {a:.4}")).unwrap_or_default();
                progress.note(&format!(
                    "step {step}: validation accuracy {acc:.4}{avg_note} ({:.0}s)",
                    start.elapsed().as_secs_f64()
                ));
                // On a tie the average wins: it is the flatter, steadier choice.
                let (step_acc, winning_average) = match (avg_acc, average.as_ref()) {
                    (Some(a), Some(avg)) if a >= acc => (a, Some(avg)),
                    _ => (acc, None),
                };
                if step_acc > best_acc {
                    best_acc = step_acc;
                    since_best = 0;
                    best_is_average = winning_average.is_some();
                    best = Some(match winning_average {
                        Some(avg) => avg.snapshot()?,
                        None => snapshot(&varmap)?,
                    });
                } else {
                    since_best += 1;
                    if since_best >= patience {
                        stopped = format!("early stop at step {step} (no gain in {patience} validations)");
                        break 'outer;
                    }
                }
            }
            if over_time {
                stopped = format!("time budget reached at step {step} (epoch {})", epoch + 1);
                break 'outer;
            }
        }
    }
    progress.finish();
    let mut best = match best {
        Some(b) => b,
        None => snapshot(&varmap)?,
    };
    if let Some(word) = frozen_word {
        best.insert(word_key.to_string(), word);
    }
    save(base, &best, out)?;
    Ok(FinetuneOutcome {
        steps: step,
        examples_seen: seen,
        best_valid_accuracy: best_acc.max(0.0),
        seconds: start.elapsed().as_secs_f64(),
        seconds_per_1k: if seen > 0 { step_seconds * 1000.0 / seen as f64 } else { 0.0 },
        stopped,
        dropout,
        best_is_average,
    })
}

/// An exponential moving average of the trainable weights (Polyak averaging), updated every
/// [`WeightAverage::EVERY`] steps with the decay raised to that power, so that its horizon in steps is
/// what the decay says while the update costs a quarter as much.
struct WeightAverage {
    /// Each variable with its averaged value.
    vars: Vec<(String, candle_core::Var, Tensor)>,
    /// Decay per update (the per-step decay to the power [`Self::EVERY`]).
    decay: f64,
    /// Step at which averaging started.
    started: usize,
}

impl WeightAverage {
    /// Steps between updates.
    const EVERY: usize = 4;

    /// Starts averaging from the weights in `varmap` at `step`.
    fn start(varmap: &VarMap, decay: f64, step: usize) -> Result<Self, TaskError> {
        let vars = varmap.data().lock().map_err(|_| TaskError::Invalid("variable map poisoned".into()))?;
        let mut list = vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<Vec<_>, TaskError>>()?;
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(WeightAverage { vars: list, decay: decay.powi(Self::EVERY as i32), started: step })
    }

    /// Folds the current weights in, every [`Self::EVERY`] steps after the start.
    fn update(&mut self, step: usize) -> Result<(), TaskError> {
        if !(step - self.started).is_multiple_of(Self::EVERY) {
            return Ok(());
        }
        // Early on the average would be dominated by the weights it started from: as in TensorFlow's
        // ExponentialMovingAverage, the decay ramps up with the number of updates.
        let updates = ((step - self.started) / Self::EVERY) as f64;
        let d = self.decay.min((1.0 + updates) / (10.0 + updates));
        // Everything here is detached from the autograd graph: an average built from the variables
        // themselves would record each update as an operation and keep every earlier average alive.
        for (_, var, avg) in &mut self.vars {
            *avg = (avg.affine(d, 0.0)? + var.as_tensor().detach().affine(1.0 - d, 0.0)?)?;
        }
        Ok(())
    }

    /// Runs `f` with the averaged weights loaded, then puts the step's weights back.
    fn with_average<T>(&self, f: impl FnOnce() -> Result<T, TaskError>) -> Result<T, TaskError> {
        let saved =
            self.vars.iter().map(|(_, v, _)| v.as_tensor().detach().copy()).collect::<candle_core::Result<Vec<_>>>()?;
        for (_, var, avg) in &self.vars {
            var.set(avg)?;
        }
        let out = f();
        for ((_, var, _), t) in self.vars.iter().zip(&saved) {
            var.set(t)?;
        }
        out
    }

    /// A copy of the averaged weights, by variable name.
    fn snapshot(&self) -> Result<HashMap<String, Tensor>, TaskError> {
        self.vars.iter().map(|(k, _, a)| Ok((k.clone(), a.copy()?))).collect()
    }
}

/// Shuffled batches in which texts of similar length travel together (less padding): shuffle, cut into
/// pools of 50 batches, sort each pool by length, batch it, then shuffle the batch order.
fn bucketed_batches(ids: &[Vec<u32>], batch: usize, rng: &mut rand::rngs::StdRng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..ids.len()).collect();
    idx.shuffle(rng);
    let mut batches = Vec::new();
    for pool in idx.chunks_mut(batch * 50) {
        pool.sort_by_key(|&i| ids[i].len());
        batches.extend(pool.chunks(batch).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

/// Accuracy on pre-tokenised texts, batched by length.
fn accuracy(net: &Net, ids: &[Vec<u32>], y: &[u32]) -> Result<f64, TaskError> {
    if ids.is_empty() {
        return Ok(0.0);
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let mut correct = 0usize;
    for chunk in order.chunks(64) {
        let seqs: Vec<&Vec<u32>> = chunk.iter().map(|&i| &ids[i]).collect();
        let (t, m) = pad_batch(&seqs)?;
        let logits = net.forward(&t, &m, false)?.detach().to_vec2::<f32>()?;
        correct += chunk.iter().zip(&logits).filter(|(&i, l)| argmax(l) == y[i] as usize).count();
    }
    Ok(correct as f64 / ids.len() as f64)
}

/// A copy of every variable (the best weights so far).
fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>, TaskError> {
    let vars = varmap.data().lock().map_err(|_| TaskError::Invalid("variable map poisoned".into()))?;
    vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?))).collect()
}

/// Writes the encoder (base layout) and the head from a weight snapshot into `out`.
fn save(base: &Path, weights: &HashMap<String, Tensor>, out: &Path) -> Result<(), TaskError> {
    let enc_dir = out.join(ENCODER_DIR);
    std::fs::create_dir_all(&enc_dir).map_err(|e| TaskError::io(&enc_dir, e))?;
    let (head, encoder): (HashMap<String, Tensor>, HashMap<String, Tensor>) =
        weights.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| k.starts_with("classifier."));
    crate::tensor_file::save_tensors(&encoder, &enc_dir.join("model.safetensors"))?;
    let head: HashMap<String, Tensor> =
        head.into_iter().map(|(k, v)| (k.trim_start_matches("classifier.").to_string(), v)).collect();
    crate::tensor_file::save_tensors(&head, &out.join(HEAD_FILE))?;
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(base.join(f), enc_dir.join(f)).map_err(|e| TaskError::io(base.join(f), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_depth_orders_embeddings_layers_and_head() {
        assert_eq!(layer_depth("embeddings.LayerNorm.weight", 6), 0);
        assert_eq!(layer_depth("embeddings.position_embeddings.weight", 6), 0);
        assert_eq!(layer_depth("encoder.layer.0.attention.self.query.weight", 6), 1);
        assert_eq!(layer_depth("encoder.layer.5.output.dense.bias", 6), 6);
        assert_eq!(layer_depth("classifier.weight", 6), 7);
    }

    #[test]
    fn automatic_patience_waits_at_least_an_epoch() {
        // SST-2: 59,520 rows in batches of 32, a validation every 200 steps: ten an epoch.
        assert_eq!(auto_patience(1_860, 200), 10);
        // TREC and Banking77: an epoch is one or two validations; three stays the floor.
        assert_eq!(auto_patience(154, 200), 3);
        assert_eq!(auto_patience(282, 200), 3);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(0, 100, 10, 1.0) - 0.1).abs() < 1e-9);
        assert!((lr_at(9, 100, 10, 1.0) - 1.0).abs() < 1e-9);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-9);
        assert_eq!(lr_at(100, 100, 10, 1.0), 0.0);
    }

    #[test]
    fn weight_average_follows_the_weights_and_puts_them_back() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let w = vb.get_with_hints(2, "w", candle_nn::Init::Const(0.0)).unwrap();
        let var = varmap.all_vars().pop().unwrap();
        let mut avg = WeightAverage::start(&varmap, 0.999, 0).unwrap();
        // The decay ramps up: the first update keeps 2/11 of the average and takes 9/11 of the weights.
        var.set(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        avg.update(WeightAverage::EVERY).unwrap();
        let a = avg.snapshot().unwrap()["w"].to_vec1::<f32>().unwrap();
        assert!((a[0] - 9.0 / 11.0).abs() < 1e-6 && (a[1] - 18.0 / 11.0).abs() < 1e-6, "{a:?}");
        // Once ramped up, a short-horizon decay (0.5 a step, 0.0625 an update) takes over.
        let mut fast = WeightAverage::start(&varmap, 0.5, 0).unwrap();
        var.set(&Tensor::new(&[3f32, 6.0], &Device::Cpu).unwrap()).unwrap();
        fast.update(WeightAverage::EVERY).unwrap();
        let f = fast.snapshot().unwrap()["w"].to_vec1::<f32>().unwrap();
        assert!((f[0] - (0.0625 + 0.9375 * 3.0)).abs() < 1e-6, "{f:?}");
        var.set(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        // The average is plain data: were it part of the autograd graph, every update would keep the
        // previous average alive (a fine-tuning run on SST-2 grew to 23 GB that way).
        assert!(avg.vars.iter().all(|(_, _, a)| !a.track_op()));
        // Between updates nothing moves.
        avg.update(WeightAverage::EVERY + 1).unwrap();
        assert_eq!(avg.snapshot().unwrap()["w"].to_vec1::<f32>().unwrap(), a);
        // Scoring with the average loads it, then the step's weights come back.
        let seen = avg.with_average(|| Ok(var.as_tensor().to_vec1::<f32>()?)).unwrap();
        assert_eq!(seen, a);
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    }
}
