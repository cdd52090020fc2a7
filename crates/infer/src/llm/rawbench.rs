//! The baseline for `rightmodel bench`: llama.cpp driven by the shortest possible loop (one context,
//! one batch of prompt tokens, then greedy single-token decodes), with none of the engine's machinery
//! (worker thread, channels, slots, stop handling). The engine's speed is reported as a ratio to it.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::InferError;

/// Tokens per second of prompt processing (`n_prompt` tokens) and of generation (`n_gen` tokens).
pub fn raw_llama_speed(
    model_path: &Path,
    threads: i32,
    n_prompt: usize,
    n_gen: usize,
) -> Result<(f64, f64), InferError> {
    let e = |m: String| InferError::Engine(m);
    let backend = super::engine::backend()?;
    let model = LlamaModel::load_from_file(backend, model_path, &LlamaModelParams::default())
        .map_err(|err| InferError::Load { path: model_path.display().to_string(), reason: err.to_string() })?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new((n_prompt + n_gen + 16) as u32))
        .with_n_batch(n_prompt as u32)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).map_err(|err| e(err.to_string()))?;
    let vocab = model.vocab();
    let filler = "the quick brown fox jumps over the lazy dog and ".repeat(n_prompt / 8 + 8);
    let mut tokens = vocab.tokenize(filler.as_bytes(), true, false);
    tokens.truncate(n_prompt);
    let mut batch = LlamaBatch::new(n_prompt.max(1), 1);
    for (i, t) in tokens.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i + 1 == tokens.len()).map_err(|err| e(err.to_string()))?;
    }
    let t0 = Instant::now();
    ctx.decode(&mut batch).map_err(|err| e(err.to_string()))?;
    let pp = tokens.len() as f64 / t0.elapsed().as_secs_f64();
    ctx.clear_kv_cache();

    let mut sampler = LlamaSampler::greedy();
    let mut batch = LlamaBatch::new(1, 1);
    batch.add(tokens[0], 0, &[0], true).map_err(|err| e(err.to_string()))?;
    ctx.decode(&mut batch).map_err(|err| e(err.to_string()))?;
    let t0 = Instant::now();
    for pos in 1..=n_gen {
        let tok = sampler.sample(&ctx, batch.n_tokens() - 1);
        batch.clear();
        batch.add(tok, pos as i32, &[0], true).map_err(|err| e(err.to_string()))?;
        ctx.decode(&mut batch).map_err(|err| e(err.to_string()))?;
    }
    let tg = n_gen as f64 / t0.elapsed().as_secs_f64();
    Ok((pp, tg))
}
