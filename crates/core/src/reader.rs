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
    /// The model's short answer to `question` from `context` (one sentence or a few), as it wrote it,
    /// with how sure it was; the caller maps it back onto the context's text.
    fn read_answer(&self, context: &str, question: &str) -> Result<Reading, ScoreError>;
    /// Name of the model, reported with the answers it re-ranked or read.
    fn model_id(&self) -> &str;
}

/// A reader's answer as it wrote it, and how likely the model found it.
///
/// The likelihood lets a caller compare readings of different sentences: a model reading the sentence
/// that holds the answer tends to copy it with confidence, while after a sentence that does not it
/// hesitates between words.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// The answer text, trimmed, on one line.
    pub text: String,
    /// Summed log-probability of the answer's tokens and of the line break or end that closed it
    /// (0 for an answer the reader did not generate, such as a fake's).
    pub log_prob: f32,
    /// Tokens summed in `log_prob`.
    pub tokens: u32,
}

impl Reading {
    /// A reading with no likelihood attached (fakes, tests).
    pub fn text(text: impl Into<String>) -> Self {
        Reading { text: text.into(), log_prob: 0.0, tokens: 0 }
    }

    /// Mean log-probability per token (0 when no token was scored).
    pub fn mean_log_prob(&self) -> f32 {
        if self.tokens == 0 {
            0.0
        } else {
            self.log_prob / self.tokens as f32
        }
    }
}
