//! Word uni- and bi-gram TF-IDF features, the lexical half of the `fast` classifier's input.
//!
//! Frozen sentence embeddings blur exact wording ("not good" and "good" sit close together); a sparse
//! n-gram block next to them lets the linear head pick up those cues cheaply. Hand-written because it is
//! a few dozen lines and must tokenise identically at training and prediction time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A fitted vocabulary: n-gram -> column, with inverse document frequencies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NgramVocab {
    /// The n-grams, in column order (bigrams are two words joined by a space).
    pub terms: Vec<String>,
    /// Smoothed inverse document frequency of each column.
    pub idf: Vec<f32>,
    /// Longest n-gram length (1 or 2).
    pub max_n: usize,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

/// Lower-cased word tokens: runs of letters, digits and apostrophes, plus `!` and `?` on their own.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '\'' {
            cur.extend(ch.to_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if ch == '!' || ch == '?' {
                out.push(ch.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The distinct n-grams (1..=max_n) of a token list, with their counts.
fn ngram_counts(tokens: &[String], max_n: usize) -> HashMap<String, u32> {
    let mut m: HashMap<String, u32> = HashMap::new();
    for n in 1..=max_n {
        for w in tokens.windows(n) {
            *m.entry(w.join(" ")).or_insert(0) += 1;
        }
    }
    m
}

impl NgramVocab {
    /// Checks a vocabulary read from disk (after [`NgramVocab::build_index`]): one finite weight per
    /// distinct term and a sensible n-gram length, so that a damaged file is an error, not a panic.
    pub fn check(&self) -> Result<(), String> {
        if self.idf.len() != self.terms.len() {
            return Err(format!("{} weights for {} terms", self.idf.len(), self.terms.len()));
        }
        if self.idf.iter().any(|w| !w.is_finite()) {
            return Err("a weight is not a finite number".into());
        }
        if !(1..=3).contains(&self.max_n) {
            return Err(format!("n-gram length {} (expected 1 to 3)", self.max_n));
        }
        if self.index.len() != self.terms.len() {
            return Err("a term is listed twice".into());
        }
        Ok(())
    }

    /// Fits the vocabulary on `texts`: n-grams of up to `max_n` words seen in at least `min_df` texts,
    /// the `max_features` most frequent kept.
    pub fn fit(texts: &[&str], max_n: usize, min_df: u32, max_features: usize) -> Self {
        let mut df: HashMap<String, u32> = HashMap::new();
        for t in texts {
            for (g, _) in ngram_counts(&tokenize(t), max_n) {
                *df.entry(g).or_insert(0) += 1;
            }
        }
        let mut kept: Vec<(String, u32)> = df.into_iter().filter(|(_, c)| *c >= min_df).collect();
        // Most frequent first, ties by text, so the vocabulary is deterministic.
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        kept.truncate(max_features);
        let n = texts.len() as f32;
        let idf = kept.iter().map(|(_, c)| ((1.0 + n) / (1.0 + *c as f32)).ln() + 1.0).collect();
        let terms: Vec<String> = kept.into_iter().map(|(t, _)| t).collect();
        let mut v = NgramVocab { terms, idf, max_n, index: HashMap::new() };
        v.build_index();
        v
    }

    /// Rebuilds the lookup table (after deserialising).
    pub fn build_index(&mut self) {
        self.index = self.terms.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// True when no n-gram was kept.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The L2-normalised sublinear-TF-IDF vector of `text`, as sorted (column, value) pairs.
    pub fn transform(&self, text: &str) -> Vec<(u32, f32)> {
        let mut row: Vec<(u32, f32)> = ngram_counts(&tokenize(text), self.max_n)
            .into_iter()
            .filter_map(|(g, c)| self.index.get(&g).map(|&j| (j, (1.0 + (c as f32).ln()) * self.idf[j as usize])))
            .collect();
        // Sort before summing: the counts come out of a HashMap in a per-process random order, and a float sum
        // in that order would make the same text score a few ulps differently from one load to the next.
        row.sort_unstable_by_key(|(j, _)| *j);
        let norm = row.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_words_and_marks() {
        assert_eq!(tokenize("It's GREAT, isn't it?!"), vec!["it's", "great", "isn't", "it", "?", "!"]);
    }

    #[test]
    fn transform_is_unit_length_and_ignores_unknown_words() {
        let v = NgramVocab::fit(&["good film", "bad film", "good plot"], 2, 1, 100);
        let row = v.transform("good film zebra");
        let norm: f32 = row.iter().map(|(_, x)| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(row.len(), 3); // good, film, "good film"
        assert!(v.transform("zebra").is_empty());
    }
}
