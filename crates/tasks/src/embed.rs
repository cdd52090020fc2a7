//! Embedding many texts with progress, in an order that keeps padding low.

use rightmodel_core::Embedder;

use crate::progress::Progress;
use crate::TaskError;

/// Texts handed to the encoder per call (it batches further inside).
const CHUNK: usize = 256;

/// Embeds `texts` (any number) with `embedder`, reporting progress per chunk. Texts are processed
/// shortest first so each encoder batch pads little; the result is in the caller's order.
pub fn embed_all(embedder: &dyn Embedder, texts: &[&str], progress: &dyn Progress) -> Result<Vec<Vec<f32>>, TaskError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(CHUNK) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let vecs = embedder.embed(&batch)?;
        if vecs.len() != batch.len() {
            return Err(TaskError::Invalid(format!(
                "the encoder returned {} vectors for {} texts",
                vecs.len(),
                batch.len()
            )));
        }
        for (&i, v) in chunk.iter().zip(vecs) {
            out[i] = v;
        }
        progress.inc(chunk.len() as u64);
    }
    Ok(out)
}
