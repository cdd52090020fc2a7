//! SQuAD-format files and the official SQuAD v1.1 answer metrics (exact match and token F1 after
//! normalisation).

use std::collections::HashMap;
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
    /// Gold answers (several annotators).
    #[serde(default)]
    pub answers: Vec<GoldAnswer>,
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

/// SQuAD's answer normalisation: lower case, no ASCII punctuation, no articles, single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    no_punct.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Exact match of `prediction` with any of `golds` after normalisation (1.0 or 0.0).
pub fn exact_match(prediction: &str, golds: &[String]) -> f32 {
    let p = normalize_answer(prediction);
    if golds.iter().any(|g| normalize_answer(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// Best token F1 of `prediction` against `golds`.
pub fn f1(prediction: &str, golds: &[String]) -> f32 {
    golds.iter().map(|g| f1_one(prediction, g)).fold(0.0, f32::max)
}

fn f1_one(prediction: &str, gold: &str) -> f32 {
    let (p, g) = (normalize_answer(prediction), normalize_answer(gold));
    let (pt, gt): (Vec<&str>, Vec<&str>) = (p.split_whitespace().collect(), g.split_whitespace().collect());
    if pt.is_empty() || gt.is_empty() {
        return if pt == gt { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f32 / pt.len() as f32;
    let recall = same as f32 / gt.len() as f32;
    2.0 * precision * recall / (precision + recall)
}

/// Whether `text` contains one of `golds` as whole words after normalisation.
pub fn contains_answer(text: &str, golds: &[String]) -> bool {
    let t = format!(" {} ", normalize_answer(text));
    golds.iter().map(|g| normalize_answer(g)).any(|g| !g.is_empty() && t.contains(&format!(" {g} ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_metrics() {
        let golds = vec!["the Rankine cycle".to_string(), "Rankine".to_string()];
        assert_eq!(exact_match("Rankine cycle.", &golds), 1.0);
        assert_eq!(exact_match("cycle", &golds), 0.0);
        assert!((f1("the cycle of Rankine", &golds) - 0.8).abs() < 1e-6);
        assert!(contains_answer("It is called the Rankine cycle.", &golds));
        assert!(!contains_answer("Rankines are here.", &["Rankine".to_string()]));
    }
}
