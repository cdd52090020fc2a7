//! The encoder seam: anything that turns texts into unit-length sentence vectors.

/// Error from an embedding engine, carried as text so that callers need no engine types.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// Sentence vectors and, when the encoder has them, each text's token vectors (unit rows of the
/// encoder's width, concatenated): what [`Embedder::embed_with_tokens`] returns.
pub type WithTokens = (Vec<Vec<f32>>, Option<Vec<Vec<f32>>>);

/// A sentence encoder: texts in, L2-normalised vectors out (one per text, same order).
///
/// The router, the classifiers and the document index take `&dyn Embedder`, so tests can use a tiny fake
/// and production uses the candle MiniLM encoder. Implementations must be cheap to share across threads.
pub trait Embedder: Send + Sync {
    /// Embeds `texts`; every returned vector has length [`Embedder::dim`] and unit L2 norm.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Dimension of the vectors.
    fn dim(&self) -> usize;
    /// Name of the model, recorded in trained artefacts so a mismatch is caught at load time.
    fn model_id(&self) -> &str;
    /// Number of tokens the encoder would see for `text` (after truncation), for usage accounting.
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    /// Embeds `texts` and gives each one's token count ([`Embedder::count_tokens`]) with it. Encoders that
    /// tokenise anyway override this so usage accounting costs no second tokenisation.
    fn embed_counted(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), EmbedError> {
        let vectors = self.embed(texts)?;
        Ok((vectors, texts.iter().map(|t| self.count_tokens(t)).collect()))
    }
    /// Embeds `texts` and, from the same pass, gives each text's per-token vectors (unit length, one
    /// row of [`Embedder::dim`] values per word piece, special tokens left out, rows concatenated),
    /// for late-interaction scoring: each question token matched against its closest passage token.
    /// Encoders without token states (static or remote ones) return `None` for them.
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<WithTokens, EmbedError> {
        Ok((self.embed(texts)?, None))
    }
    /// Whether [`Embedder::embed_with_tokens`] gives token vectors.
    fn has_token_vectors(&self) -> bool {
        false
    }
}

/// Cosine similarity of two vectors (plain dot product when both are unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
