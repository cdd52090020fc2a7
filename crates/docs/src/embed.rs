//! Embedding many texts with progress: sorted by length across the whole set (so the encoder's batches
//! pad little), sent in chunks, returned in the caller's order.

use rightmodel_core::Embedder;

use crate::dense::{normalize, Matrix};
use crate::late::TokenStore;
use crate::DocsError;

/// Texts per call to the embedder (the unit of progress).
const CHUNK: usize = 128;

/// Embeds `texts` into a matrix (row `i` is `texts[i]`) and, when the embedder gives them, a store of
/// their token vectors (sentence `i` is `texts[i]`), calling `progress(done)` after each chunk.
pub fn embed_all(
    embedder: &dyn Embedder,
    texts: &[&str],
    progress: &mut dyn FnMut(usize),
) -> Result<(Matrix, Option<TokenStore>), DocsError> {
    let dim = embedder.dim();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let mut token_rows: Option<Vec<Vec<f32>>> = embedder.has_token_vectors().then(|| vec![Vec::new(); texts.len()]);
    let mut done = 0;
    for chunk in order.chunks(CHUNK) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let (vecs, toks) =
            if token_rows.is_some() { embedder.embed_with_tokens(&batch)? } else { (embedder.embed(&batch)?, None) };
        if vecs.len() != batch.len() || vecs.iter().any(|v| v.len() != dim) {
            return Err(DocsError::Embed(rightmodel_core::EmbedError(format!(
                "the embedder returned {} vectors for {} texts (or a vector not of length {dim})",
                vecs.len(),
                batch.len()
            ))));
        }
        match (token_rows.as_mut(), toks) {
            (Some(all), Some(toks)) if toks.len() == batch.len() && toks.iter().all(|t| t.len() % dim == 0) => {
                for (&i, t) in chunk.iter().zip(toks) {
                    all[i] = t;
                }
            }
            // An embedder that promised token vectors and gave none (or malformed ones): go without.
            _ => token_rows = None,
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
    let tokens = token_rows.map(|all| {
        let mut store = TokenStore::new(dim);
        for t in &all {
            store.push_f32(t);
        }
        store
    });
    Ok((m, tokens))
}

/// Embeds one question.
pub fn embed_one(embedder: &dyn Embedder, text: &str) -> Result<Vec<f32>, DocsError> {
    unit_question(embedder, embedder.embed(&[text])?)
}

/// Embeds one question with its token vectors (empty when the embedder gives none).
pub fn embed_question(embedder: &dyn Embedder, text: &str) -> Result<(Vec<f32>, Vec<f32>), DocsError> {
    if !embedder.has_token_vectors() {
        return Ok((embed_one(embedder, text)?, Vec::new()));
    }
    let (vecs, toks) = embedder.embed_with_tokens(&[text])?;
    let v = unit_question(embedder, vecs)?;
    let t = toks.and_then(|t| t.into_iter().next()).filter(|t| t.len() % embedder.dim() == 0).unwrap_or_default();
    Ok((v, t))
}

/// The one question vector of `vecs`, checked to be of the embedder's width and made unit length.
fn unit_question(embedder: &dyn Embedder, vecs: Vec<Vec<f32>>) -> Result<Vec<f32>, DocsError> {
    let mut v = vecs.into_iter().next().unwrap_or_default();
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
