//! The language-model seam of document QA: how likely a question is after each candidate passage.

/// Error from a scoring engine, carried as text so that callers need no engine types.
#[derive(Debug, thiserror::Error)]
#[error("question scoring failed: {0}")]
pub struct ScoreError(pub String);

/// Scores passages for a question by `log P(question | passage)` under a language model.
///
/// A question written about a passage reuses its words, names and facts, so a language model that has just
/// read the right passage finds the question more likely than after a passage that merely shares its
/// keywords. Document QA uses it to re-order its first passages; tests can use a fake, production uses
/// the local GGUF model. Implementations must be cheap to share across threads.
pub trait QuestionScorer: Send + Sync {
    /// The summed log-probability of the question's tokens after each passage, in passage order.
    fn question_log_likelihood(&self, question: &str, passages: &[&str]) -> Result<Vec<f32>, ScoreError>;
    /// Name of the model, reported with the answers it re-ranked.
    fn model_id(&self) -> &str;
}
