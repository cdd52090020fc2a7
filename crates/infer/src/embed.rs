//! Sentence embeddings with candle's BERT: mean pooling over the attention mask, L2-normalised, as
//! sentence-transformers computes them for all-MiniLM-L6-v2.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;

use crate::bert::BertEncoder;
use rightmodel_core::{EmbedError, Embedder, WithTokens};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::InferError;

/// Longest input in tokens; sentence-transformers truncates all-MiniLM-L6-v2 at 256.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass; larger batches are split.
pub const BATCH: usize = 32;

/// A BERT sentence encoder loaded from a directory with `config.json`, `tokenizer.json` and
/// `model.safetensors` (the layout of the `minilm-l6` store entry and of Hugging Face snapshots).
pub struct MiniLm {
    model: BertEncoder,
    tokenizer: Tokenizer,
    dim: usize,
    id: String,
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> InferError {
    InferError::Load { path: path.display().to_string(), reason: reason.to_string() }
}

impl MiniLm {
    /// Loads the encoder from `dir`.
    pub fn load(dir: &Path) -> Result<Self, InferError> {
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(|e| load_err(&config_path, e))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| load_err(&config_path, e))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| load_err(&tok_path, e))?;
        // The shipped tokenizer.json pads every input to 128 tokens; padding to the longest item of the
        // batch is ~10x faster for short sentences.
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| load_err(&tok_path, e))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(load_err(&weights, "file not found"));
        }
        // SAFETY: the file is memory-mapped read-only; the store never rewrites a model file in place
        // (pulls rename a new directory into place).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
            .map_err(|e| load_err(&weights, crate::candle_error::message(e)))?;
        let model = BertEncoder::load(vb, &config).map_err(|e| load_err(&weights, crate::candle_error::message(e)))?;
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "encoder".into());
        Ok(MiniLm { model, tokenizer, dim: config.hidden_size, id })
    }

    /// Token ids and attention masks of `texts` (padded to the longest), for callers that need them
    /// (explanations). Returns (ids, masks) as row-major `texts.len() x seq_len`.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Vec<u32>, Vec<u32>, usize), InferError> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| InferError::Engine(e.to_string()))?;
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        for e in &enc {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        Ok((ids, mask, len))
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Last hidden states `[batch, seq, dim]` and the attention mask `[batch, seq]` (as f32) for texts.
    pub fn hidden_states(&self, texts: &[&str]) -> Result<(Tensor, Tensor), InferError> {
        let (ids, mask, len) = self.tokenize(texts)?;
        self.forward(ids, mask, texts.len(), len)
    }

    /// The encoder over already tokenised rows (`n x len`, row-major).
    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, n: usize, len: usize) -> Result<(Tensor, Tensor), InferError> {
        let e = |e: candle_core::Error| InferError::Engine(crate::candle_error::message(e));
        if n == 0 {
            let empty = Tensor::zeros((0, 0, self.dim), DType::F32, &Device::Cpu).map_err(e)?;
            return Ok((empty, Tensor::zeros((0, 0), DType::F32, &Device::Cpu).map_err(e)?));
        }
        let ids = Tensor::from_vec(ids, (n, len), &Device::Cpu).map_err(e)?;
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).map_err(e)?;
        let hidden = self.model.forward(&ids, &mask).map_err(e)?;
        let maskf = mask.to_dtype(DType::F32).map_err(e)?;
        Ok((hidden, maskf))
    }

    /// Unit-length mean-pooled vectors of one batch, with each text's token count (its mask length).
    fn embed_batch(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), InferError> {
        let (vectors, counts, _) = self.embed_batch_tokens(texts, false)?;
        Ok((vectors, counts))
    }

    /// [`MiniLm::embed_batch`], plus with `tokens` each text's unit-length token states without
    /// `[CLS]` and `[SEP]` (rows concatenated).
    fn embed_batch_tokens(&self, texts: &[&str], tokens: bool) -> Result<BatchOutput, InferError> {
        let e = |e: candle_core::Error| InferError::Engine(crate::candle_error::message(e));
        let (ids, mask, len) = self.tokenize(texts)?;
        let counts: Vec<usize> = if len == 0 {
            vec![0; texts.len()]
        } else {
            mask.chunks(len).map(|row| row.iter().filter(|&&m| m != 0).count()).collect()
        };
        let (hidden, maskf) = self.forward(ids, mask, texts.len(), len)?;
        let summed = hidden.broadcast_mul(&maskf.unsqueeze(2).map_err(e)?).map_err(e)?.sum(1).map_err(e)?;
        let n_tokens = maskf.sum_keepdim(1).map_err(e)?.clamp(1e-9f32, f32::MAX).map_err(e)?;
        let mean = summed.broadcast_div(&n_tokens).map_err(e)?;
        let norm = mean
            .sqr()
            .map_err(e)?
            .sum_keepdim(1)
            .map_err(e)?
            .sqrt()
            .map_err(e)?
            .clamp(1e-12f32, f32::MAX)
            .map_err(e)?;
        let unit = mean.broadcast_div(&norm).map_err(e)?;
        let vectors = unit.to_vec2::<f32>().map_err(e)?;
        // Good weights never give NaN or infinity here; damaged ones do, and a vector of nulls must not
        // pass for an answer (a search or a classifier would go on with it).
        if vectors.iter().flatten().any(|x| !x.is_finite()) {
            return Err(InferError::Engine(format!(
                "the encoder `{}` computed non-finite values: its weights look damaged (a default model is \
                 checked and fetched again by `rightmodel pull --verify`)",
                self.id
            )));
        }
        let token_rows = if tokens { token_rows(&hidden, &counts, self.dim).map_err(e)? } else { Vec::new() };
        Ok((vectors, counts, token_rows))
    }
}

/// One batch's unit sentence vectors, token counts and (when asked for) token vectors.
type BatchOutput = (Vec<Vec<f32>>, Vec<usize>, Vec<Vec<f32>>);

/// Each text's token states from `hidden` `[batch, seq, dim]`, without the first (`[CLS]`) and last
/// (`[SEP]`) of its `counts[i]` tokens, each scaled to unit length, rows concatenated.
fn token_rows(hidden: &Tensor, counts: &[usize], dim: usize) -> candle_core::Result<Vec<Vec<f32>>> {
    let states = hidden.to_vec3::<f32>()?;
    Ok(states
        .into_iter()
        .zip(counts)
        .map(|(rows, &n)| {
            let mut out = Vec::with_capacity(n.saturating_sub(2) * dim);
            for row in rows.iter().take(n.saturating_sub(1)).skip(1) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                out.extend(row.iter().map(|x| x / norm));
            }
            out
        })
        .collect())
}

impl Embedder for MiniLm {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_counted(texts)?.0)
    }

    fn embed_counted(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), EmbedError> {
        if texts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Sort by length so each batch pads little, then restore the caller's order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        let mut counts = vec![0; texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let (vecs, lens) = self.embed_batch(&batch).map_err(|e| EmbedError(e.to_string()))?;
            for ((&i, v), n) in chunk.iter().zip(vecs).zip(lens) {
                out[i] = v;
                counts[i] = n;
            }
        }
        Ok((out, counts))
    }

    fn embed_with_tokens(&self, texts: &[&str]) -> Result<WithTokens, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        let mut toks = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let (vecs, _, rows) = self.embed_batch_tokens(&batch, true).map_err(|e| EmbedError(e.to_string()))?;
            for ((&i, v), t) in chunk.iter().zip(vecs).zip(rows) {
                out[i] = v;
                toks[i] = t;
            }
        }
        Ok((out, Some(toks)))
    }

    fn has_token_vectors(&self) -> bool {
        true
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.id
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text, true).map(|e| e.get_ids().len()).unwrap_or(0)
    }
}
