//! Terms of a text for lexical matching: tantivy's English analyzer (split on non-alphanumerics,
//! lower-case, Porter stemming), with stop-words and question words removed for queries and overlap.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};

/// Name of the tantivy tokenizer the passage field is indexed with (registered by tantivy by default:
/// simple tokenizer, long-token removal, lower-casing, English stemming).
pub const INDEX_TOKENIZER: &str = "en_stem";

/// Words that carry no content in a question or a sentence: function words and question words.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "kind",
    "many",
    "me",
    "more",
    "most",
    "much",
    "my",
    "myself",
    "name",
    "named",
    "no",
    "nor",
    "not",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "type",
    "under",
    "until",
    "up",
    "use",
    "used",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "s",
    "t",
    "called",
    "term",
    "according",
    "?",
];

/// A reusable analyzer producing content terms (stop-words removed, stemmed).
#[derive(Clone)]
pub struct Terms {
    analyzer: TextAnalyzer,
}

impl Default for Terms {
    fn default() -> Self {
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(StopWordFilter::remove(STOP_WORDS.iter().map(|w| w.to_string())))
            .filter(Stemmer::new(Language::English))
            .build();
        Terms { analyzer }
    }
}

impl Terms {
    /// Content terms of `text`, in order, with repetitions.
    pub fn terms(&mut self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = self.analyzer.token_stream(text);
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    /// Distinct content terms of `text`, in first-seen order.
    pub fn unique_terms(&mut self, text: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.terms(text).into_iter().filter(|t| seen.insert(t.clone())).collect()
    }
}

/// Whether `word` (any case) is a stop-word.
pub fn is_stop_word(word: &str) -> bool {
    let lower = word.to_lowercase();
    STOP_WORDS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_and_drops_stop_words() {
        let mut t = Terms::default();
        assert_eq!(t.terms("What were the engines running on?"), vec!["engin", "run"]);
        assert_eq!(t.unique_terms("Engines, engine; ENGINE"), vec!["engin"]);
    }
}
