//! Generative answers over retrieved passages: the prompt a small base language model continues, and
//! the check that keeps what it writes tied to the passages it was given.
//!
//! A 270M-parameter base model follows instructions loosely: it may cite nothing, cite a passage it was
//! not given, or run on into a new question. [`cite_generated`] cuts the text at the first sign of a new
//! turn, keeps only citations that name a passage of the prompt, and, when none is left, cites the
//! passage of the extractive answer, so a generated answer always points at a source.

use serde::{Deserialize, Serialize};

use crate::answer::{Answer, Citation, ScoredPassage};

/// Passages a small model gets as context: more costs prompt time and dilutes its attention.
pub const SMALL_MODEL_PASSAGES: usize = 3;

/// An answer written by a language model from the retrieved passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedAnswer {
    /// The model's answer, cut to one answer and ending with its citations as `[n]`.
    pub text: String,
    /// Passage numbers (1-based, into [`Answer::passages`]) the text cites.
    pub cited: Vec<usize>,
    /// The cited passages as citations, in `cited` order.
    pub citations: Vec<Citation>,
    /// Whether the model cited nothing valid and the extractive answer's passage was cited for it.
    pub citation_added: bool,
    /// Share in [0, 1] of the answer's content words and numbers that occur in the cited passages: a
    /// small model can cite a passage and still make up what it says, and a low value flags that.
    pub support: f32,
    /// The model that wrote it.
    pub model: String,
}

/// The prompt a base language model continues to answer `question` from the first
/// [`SMALL_MODEL_PASSAGES`] passages, citing them as `[1]`, `[2]`, ...
pub fn small_model_prompt(question: &str, passages: &[ScoredPassage]) -> String {
    let used = &passages[..passages.len().min(SMALL_MODEL_PASSAGES)];
    let mut p = String::from("Read the passages, then answer the question in one sentence using only the passages. ");
    p.push_str("End the answer with the number of the passage it comes from in brackets, like [1].\n\n");
    for (i, s) in used.iter().enumerate() {
        p.push_str(&format!("[{}] {}\n\n", i + 1, s.text.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    p.push_str(&format!("Question: {}\nAnswer:", question.split_whitespace().collect::<Vec<_>>().join(" ")));
    p
}

/// Markers after which a base model has stopped answering and started a new turn or passage.
pub const STOP_MARKERS: [&str; 4] = ["\n\n", "\nQuestion:", "\nQ:", "\n["];

/// Turns a model's raw continuation of [`small_model_prompt`] into a cited answer (see the module docs).
pub fn cite_generated(raw: &str, answer: &Answer, model: &str) -> GeneratedAnswer {
    let given = answer.passages.len().min(SMALL_MODEL_PASSAGES);
    let mut text = raw;
    for m in STOP_MARKERS {
        if let Some(i) = text.find(m) {
            text = &text[..i];
        }
    }
    let mut text = text.trim().to_string();
    let mut cited = Vec::new();
    for n in bracket_numbers(&text) {
        if (1..=given).contains(&n) && !cited.contains(&n) {
            cited.push(n);
        }
    }
    // Citations that name no passage of the prompt are removed from the text.
    for (start, end, n) in bracket_spans(&text).into_iter().rev() {
        if !(1..=given).contains(&n) {
            text.replace_range(start..end, "");
        }
    }
    let wrote_nothing = text.trim().is_empty();
    let mut citation_added = false;
    if cited.is_empty() {
        let fallback = answer
            .citations
            .first()
            .and_then(|c| answer.passages.iter().position(|p| p.passage_id == c.passage_id))
            .filter(|&i| i < given)
            .map(|i| i + 1)
            .or((given > 0).then_some(1));
        if let Some(n) = fallback {
            cited.push(n);
            text = format!("{} [{n}]", text.trim_end());
            citation_added = true;
        }
    }
    let citations: Vec<Citation> = cited
        .iter()
        .map(|&n| {
            let p = &answer.passages[n - 1];
            Citation {
                file: p.file.clone(),
                passage_id: p.passage_id,
                start: p.start,
                end: p.end,
                text: p.text.clone(),
            }
        })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let support = if wrote_nothing { 0.0 } else { support(&text, &citations) };
    GeneratedAnswer { text, cited, citations, citation_added, support, model: model.to_string() }
}

/// Share of the content words (longer than three letters) and numbers of `text`, citation markers
/// aside, that occur in the cited passages; 1 when it has none.
fn support(text: &str, citations: &[Citation]) -> f32 {
    let words = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 3 || (!w.is_empty() && w.chars().all(|c| c.is_ascii_digit())))
            .map(str::to_lowercase)
            .collect()
    };
    let mut plain = text.to_string();
    for n in bracket_numbers(text) {
        plain = plain.replace(&format!("[{n}]"), " ");
    }
    let source: std::collections::HashSet<String> = citations.iter().flat_map(|c| words(&c.text)).collect();
    let ours = words(&plain);
    if ours.is_empty() {
        return 1.0;
    }
    ours.iter().filter(|w| source.contains(*w)).count() as f32 / ours.len() as f32
}

/// Every `[n]` (spaces allowed inside the brackets) in `text`, in order.
fn bracket_numbers(text: &str) -> Vec<usize> {
    bracket_spans(text).into_iter().map(|s| s.2).collect()
}

/// Byte range and number of every `[n]` in `text`, in order.
fn bracket_spans(text: &str) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find('[').map(|i| from + i) {
        from = open + 1;
        if let Some(close) = text[from..].find(']').map(|i| from + i) {
            if let Ok(n) = text[from..close].trim().parse::<usize>() {
                out.push((open, close + 1, n));
                from = close + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Evidence;

    fn passage(id: u64, text: &str) -> ScoredPassage {
        ScoredPassage {
            passage_id: id,
            file: format!("/docs/f{id}.txt"),
            start: 10 * id as usize,
            end: 10 * id as usize + text.chars().count(),
            text: text.into(),
            score: 1.0,
            lexical: 1.0,
            dense: 0.5,
            rerank_score: None,
            question_log_likelihood: None,
        }
    }

    fn answer() -> Answer {
        let passages = vec![
            passage(7, "The museum opened in 1852."),
            passage(8, "It has a garden."),
            passage(9, "Entry is free."),
        ];
        let p = &passages[1];
        Answer {
            question: "q".into(),
            answer: "a garden".into(),
            sentence: p.text.clone(),
            span: None,
            confidence: 0.9,
            evidence: Evidence::default(),
            score: 1.0,
            margin: 1.0,
            citations: vec![Citation {
                file: p.file.clone(),
                passage_id: p.passage_id,
                start: p.start,
                end: p.end,
                text: p.text.clone(),
            }],
            passages,
            read_by: None,
        }
    }

    #[test]
    fn keeps_valid_citations_and_drops_made_up_ones() {
        let g = cite_generated(" It opened in 1852 [1][5].\n\nQuestion: next", &answer(), "m");
        assert_eq!(g.text, "It opened in 1852 [1].");
        assert_eq!(g.support, 1.0, "`opened` and `1852` are in passage 1");
        assert_eq!(g.cited, vec![1]);
        assert_eq!(g.citations[0].passage_id, 7);
        assert!(!g.citation_added);
    }

    #[test]
    fn cites_the_extractive_passage_when_the_model_cites_nothing() {
        let g = cite_generated(" There is a garden.\nQuestion: more", &answer(), "m");
        assert_eq!(g.text, "There is a garden. [2]");
        assert_eq!(g.cited, vec![2]);
        assert_eq!(g.citations[0].passage_id, 8);
        assert!(g.citation_added);
    }

    #[test]
    fn spaced_made_up_citations_are_removed_and_empty_answers_unsupported() {
        let g = cite_generated(" Free entry [ 7 ] [3]", &answer(), "m");
        assert_eq!((g.text.as_str(), g.cited.clone()), ("Free entry [3]", vec![3]));
        let empty = cite_generated("\n\nQuestion: x", &answer(), "m");
        assert!(empty.citation_added && empty.support == 0.0);
    }

    #[test]
    fn made_up_content_has_low_support() {
        let g = cite_generated(" It opened in 1907 with 12000 visitors [1]", &answer(), "m");
        assert!(g.support < 0.5, "{}", g.support);
    }

    #[test]
    fn prompt_holds_only_the_first_passages() {
        let mut a = answer();
        a.passages.push(passage(10, "Fourth passage."));
        let p = small_model_prompt("When did it open?", &a.passages);
        assert!(p.contains("[3] Entry is free."));
        assert!(!p.contains("Fourth"));
        assert!(p.ends_with("Question: When did it open?\nAnswer:"));
    }
}
