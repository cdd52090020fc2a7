//! The language-model seam of document QA: a model that reads candidate passages, to say which one a
//! question comes from and what its answer is.

/// Error from a reading engine, carried as text so that callers need no engine types.
#[derive(Debug, thiserror::Error)]
#[error("passage reading failed: {0}")]
pub struct ScoreError(pub String);

/// A language model reading passages for document QA.
///
/// A question written about a passage reuses its words, names and facts, so a language model that has just
/// read the right passage finds the question more likely than after a passage that merely shares its
/// keywords; and, shown the answer sentence and the question, it names the answer the way people do
/// (a whole name, a number with its unit) where surface features only guess. Document QA uses the first
/// to re-order its first passages and the second to pick the answer span; tests can use a fake,
/// production uses the local GGUF model. Implementations must be cheap to share across threads.
pub trait PassageReader: Send + Sync {
    /// The summed log-probability of the question's tokens after each passage, in passage order.
    fn question_log_likelihood(&self, question: &str, passages: &[&str]) -> Result<Vec<f32>, ScoreError>;
    /// The model's short answer to `question` from `context` (one sentence or a few), as it wrote it;
    /// the caller maps it back onto the context's text.
    fn read_answer(&self, context: &str, question: &str) -> Result<String, ScoreError>;
    /// Name of the model, reported with the answers it re-ranked or read.
    fn model_id(&self) -> &str;
}
