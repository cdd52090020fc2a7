//! What a question to a collection returns, and the prompt for a generative answer over it.

use serde::{Deserialize, Serialize};

use crate::features::Evidence;

/// A cited piece of a source file.
///
/// `start` and `end` are **character** (Unicode scalar value) offsets, end exclusive, into the file's
/// *cleaned text*: for plain text files that is the file's contents as is, for Markdown and HTML the text
/// that [`crate::clean::clean_file`] renders (markup dropped). `text` is exactly that slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// Path of the source file as it was added (absolute).
    pub file: String,
    /// Id of the passage the text lies in (stable within the collection).
    pub passage_id: u64,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The cited text.
    pub text: String,
}

/// A retrieved passage with its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPassage {
    /// Stable passage id.
    pub passage_id: u64,
    /// Path of the source file.
    pub file: String,
    /// First character of the passage in the file's cleaned text.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// The passage text.
    pub text: String,
    /// Fused retrieval score (higher is better; comparable within one question only).
    pub score: f32,
    /// Raw BM25 score (0 when BM25 did not return it).
    pub lexical: f32,
    /// Cosine between question and passage vectors.
    pub dense: f32,
    /// Sentence-ranker score of the passage's best sentence: the re-ranking key (`None` for passages
    /// beyond the re-ranking depth).
    pub rerank_score: Option<f32>,
    /// `log P(question | passage)` under the language model that re-ranked the first passages (`None`
    /// without one, or beyond its depth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_log_likelihood: Option<f32>,
}

/// The answer to a question: an extracted span (or the whole sentence when no span stands out), the
/// sentence it comes from, citations, a confidence and the passages it was drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The question asked.
    pub question: String,
    /// The extracted answer span, or the answer sentence when no span was extracted.
    pub answer: String,
    /// The sentence the answer comes from.
    pub sentence: String,
    /// Where the answer span lies, when one was extracted.
    pub span: Option<Citation>,
    /// Probability in [0, 1] that the answer is right (fitted on SQuAD, with questions whose article was
    /// left out as negatives, so questions the documents do not answer score low).
    pub confidence: f32,
    /// Features of the answer sentence.
    pub evidence: Evidence,
    /// Sentence-ranker score of the answer sentence.
    pub score: f32,
    /// Its lead over the best sentence of the best other passage (ranker units; 10 when there is none;
    /// negative when a reader chose it from a passage the ranker put lower).
    pub margin: f32,
    /// Sources of the answer: the answer sentence first.
    pub citations: Vec<Citation>,
    /// The top passages, best first (the context of a generative answer).
    pub passages: Vec<ScoredPassage>,
    /// The language model that read the answer span off the sentence (`None`: the span scorer chose it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_by: Option<String>,
}

/// Confidence under which an answer should be treated as "not found in the documents" (the server
/// escalates or says so).
pub const LOW_CONFIDENCE: f32 = 0.35;

impl Answer {
    /// Whether the confidence is below [`LOW_CONFIDENCE`].
    pub fn is_low_confidence(&self) -> bool {
        self.confidence < LOW_CONFIDENCE
    }

    /// A prompt asking a language model to answer `question` from the retrieved passages only, citing
    /// them as `[1]`, `[2]`, ... (numbered in [`Answer::passages`] order, so `[n]` maps back to
    /// `passages[n-1]`). Used for the local small model and for escalation to a large one.
    pub fn context_prompt(&self, question: &str) -> String {
        context_prompt(question, &self.passages)
    }

    /// Rewrites every source path the answer names (span, citations, passages) with `f`; the server
    /// uses it to show paths relative to the collection's folder instead of the host's absolute ones.
    pub fn map_files(&mut self, f: impl Fn(&str) -> String) {
        let span = self.span.iter_mut();
        for c in span.chain(self.citations.iter_mut()) {
            c.file = f(&c.file);
        }
        for p in &mut self.passages {
            p.file = f(&p.file);
        }
    }
}

/// The prompt of [`Answer::context_prompt`] for any list of passages.
pub fn context_prompt(question: &str, passages: &[ScoredPassage]) -> String {
    let mut p = String::from(
        "Answer the question using only the numbered passages below. After each statement, cite the \
         passages it comes from as [1], [2], and so on. If the passages do not contain the answer, say \
         that the documents do not answer it.\n\n",
    );
    for (i, s) in passages.iter().enumerate() {
        let name =
            std::path::Path::new(&s.file).file_name().map_or(s.file.clone(), |n| n.to_string_lossy().into_owned());
        p.push_str(&format!("[{}] ({}, characters {}-{})\n{}\n\n", i + 1, name, s.start, s.end, s.text.trim()));
    }
    p.push_str(&format!("Question: {}\nAnswer:", question.trim()));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_numbers_passages() {
        let sp = |id: u64, text: &str| ScoredPassage {
            passage_id: id,
            file: format!("/docs/f{id}.txt"),
            start: 0,
            end: text.chars().count(),
            text: text.into(),
            score: 1.0,
            lexical: 1.0,
            dense: 0.5,
            rerank_score: None,
            question_log_likelihood: None,
        };
        let p = context_prompt("Who?", &[sp(3, "Alpha."), sp(9, "Beta.")]);
        assert!(p.contains("[1] (f3.txt, characters 0-6)\nAlpha."));
        assert!(p.contains("[2] (f9.txt, characters 0-5)\nBeta."));
        assert!(p.ends_with("Question: Who?\nAnswer:"));
    }
}
