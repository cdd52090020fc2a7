//! Embedding many texts with progress: sorted by length across the whole set (so the encoder's batches
//! pad little), sent in chunks, returned in the caller's order.

use rightmodel_core::Embedder;

use crate::dense::{normalize, Matrix};
use crate::DocsError;

/// Texts per call to the embedder (the unit of progress).
const CHUNK: usize = 128;

/// Embeds `texts` into a matrix (row `i` is `texts[i]`), calling `progress(done)` after each chunk.
pub fn embed_all(
    embedder: &dyn Embedder,
    texts: &[&str],
    progress: &mut dyn FnMut(usize),
) -> Result<Matrix, DocsError> {
    let dim = embedder.dim();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let mut done = 0;
    for chunk in order.chunks(CHUNK) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let vecs = embedder.embed(&batch)?;
        if vecs.len() != batch.len() || vecs.iter().any(|v| v.len() != dim) {
            return Err(DocsError::Embed(rightmodel_core::EmbedError(format!(
                "the embedder returned {} vectors for {} texts (or a vector not of length {dim})",
                vecs.len(),
                batch.len()
            ))));
        }
        for (&i, mut v) in chunk.iter().zip(vecs) {
            normalize(&mut v);
            rows[i] = v;
        }
        done += chunk.len();
        progress(done);
    }
    let mut m = Matrix::new(dim);
    for r in &rows {
        m.push(r);
    }
    Ok(m)
}

/// Embeds one question.
pub fn embed_one(embedder: &dyn Embedder, text: &str) -> Result<Vec<f32>, DocsError> {
    let mut v = embedder.embed(&[text])?.into_iter().next().unwrap_or_default();
    if v.len() != embedder.dim() {
        return Err(DocsError::Embed(rightmodel_core::EmbedError(format!(
            "the embedder returned a vector of length {} (expected {})",
            v.len(),
            embedder.dim()
        ))));
    }
    normalize(&mut v);
    Ok(v)
}
