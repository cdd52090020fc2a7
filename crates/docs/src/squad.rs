//! SQuAD-format files and the official SQuAD v1.1 answer metrics (exact match and token F1 after
//! normalisation).

use std::path::Path;

use serde::Deserialize;

use crate::DocsError;

/// A SQuAD file.
#[derive(Debug, Clone, Deserialize)]
pub struct SquadFile {
    /// The articles.
    pub data: Vec<Article>,
}

/// One article.
#[derive(Debug, Clone, Deserialize)]
pub struct Article {
    /// Its title.
    #[serde(default)]
    pub title: String,
    /// Its paragraphs.
    pub paragraphs: Vec<Paragraph>,
}

/// One paragraph with its questions.
#[derive(Debug, Clone, Deserialize)]
pub struct Paragraph {
    /// The paragraph text.
    pub context: String,
    /// Questions about it.
    pub qas: Vec<Qa>,
}

/// A question with its gold answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Qa {
    /// Question id.
    #[serde(default)]
    pub id: String,
    /// The question.
    pub question: String,
    /// Gold answers (several annotators); none for a SQuAD 2.0 question its paragraph does not answer.
    #[serde(default)]
    pub answers: Vec<GoldAnswer>,
    /// SQuAD 2.0: the paragraph does not answer the question (its `answers` are empty).
    #[serde(default)]
    pub is_impossible: bool,
}

impl Qa {
    /// Whether the question has a gold answer to score against: not a SQuAD 2.0 unanswerable one.
    pub fn is_answerable(&self) -> bool {
        !self.is_impossible && !self.answers.is_empty()
    }
}

/// A gold answer span.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldAnswer {
    /// Its text.
    pub text: String,
}

/// Reads a SQuAD JSON file.
pub fn read_squad(path: &Path) -> Result<SquadFile, DocsError> {
    let bytes = std::fs::read(path).map_err(|e| DocsError::io(path, e))?;
    let file: SquadFile = serde_json::from_slice(&bytes)
        .map_err(|e| DocsError::BadSquad { path: path.to_path_buf(), reason: e.to_string() })?;
    if file.data.is_empty() {
        return Err(DocsError::BadSquad { path: path.to_path_buf(), reason: "no articles".into() });
    }
    Ok(file)
}

pub use rightmodel_core::answer::{contains_answer, exact_match, f1, normalize_answer};
