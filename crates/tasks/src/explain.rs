//! Word attributions by occlusion: drop one word at a time, re-score, and see how much the predicted
//! class's log-odds fall. Model-agnostic and faithful (it measures the model itself), at the price of one
//! extra encoder pass per word, which is why it only runs when asked for.

use serde::Serialize;

/// Words considered per text; longer texts are explained on their first words only.
pub const MAX_WORDS: usize = 64;

/// Longest text explain reads, in words (about 170 tokens of the encoder's 256). Every occluded copy
/// costs as much as the text read (a 100 KB text took 10 s before this bound, a 400-word one 6.5 s).
pub const MAX_READ_WORDS: usize = 128;

/// Encoder work of explaining `text`, in words passed through the encoder: the text once (the
/// prediction itself; the encoder reads at most its first [`ENCODER_WORDS`]), then one copy per
/// occluded word and, for a cut text, the cut baseline, each as long as the part read.
pub fn cost_in_words(text: &str) -> usize {
    let words = text.split_whitespace().count();
    let read = words.min(MAX_READ_WORDS);
    words.clamp(1, ENCODER_WORDS) + (read.min(MAX_WORDS) + usize::from(words > MAX_READ_WORDS)) * read.max(1)
}

/// Most words of one text the encoder reads: it keeps 256 word pieces, and every word is at least one.
pub const ENCODER_WORDS: usize = 256;
/// Attributions reported per text (largest magnitude first).
pub const TOP_TOKENS: usize = 10;

/// Why the classifier decided as it did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    /// Words with signed weights: positive pushed towards the predicted label, negative against it;
    /// largest magnitude first.
    pub tokens: Vec<(String, f32)>,
    /// The most similar training examples.
    pub neighbours: Vec<Neighbour>,
}

/// A stored training example close to the input.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Neighbour {
    /// The training text.
    pub text: String,
    /// Its label.
    pub label: String,
    /// Cosine similarity of the sentence embeddings.
    pub similarity: f32,
}

/// The words of `text` and, for each of the first [`MAX_WORDS`], the text with that word removed.
///
/// Words are split on whitespace; punctuation stuck to a word ("movie," or "(great)") stays in the
/// occluded copy and out of the reported word, so an explanation names "movie", not "movie,", and
/// measures the word alone. A whitespace token of punctuation only ("!", "--") is a word of its own.
pub fn occlusions(text: &str) -> (Vec<String>, Vec<String>) {
    let all: Vec<&str> = text.split_whitespace().collect();
    let words = &all[..all.len().min(MAX_READ_WORDS)];
    let n = words.len().min(MAX_WORDS);
    let mut variants: Vec<String> = (0..n)
        .map(|skip| {
            let mut kept: Vec<&str> = Vec::with_capacity(words.len() + 1);
            for (i, w) in words.iter().enumerate() {
                if i != skip {
                    kept.push(w);
                    continue;
                }
                let (lead, _, trail) = split_punctuation(w);
                kept.extend([lead, trail].into_iter().filter(|p| !p.is_empty()));
            }
            kept.join(" ")
        })
        .collect();
    // A longer text is explained as cut: the cut text itself comes last, as the baseline the occluded
    // copies are compared with.
    if all.len() > MAX_READ_WORDS {
        variants.push(words.join(" "));
    }
    (words[..n].iter().map(|w| split_punctuation(w).1.to_string()).collect(), variants)
}

/// A whitespace token as (leading punctuation, word, trailing punctuation); a token of punctuation
/// only is all word, so that it can still be occluded and reported.
fn split_punctuation(token: &str) -> (&str, &str, &str) {
    let punctuation = |c: char| !c.is_alphanumeric();
    let rest = token.trim_start_matches(punctuation);
    let core = rest.trim_end_matches(punctuation);
    if core.is_empty() {
        return ("", token, "");
    }
    let start = token.len() - rest.len();
    (&token[..start], core, &rest[core.len()..])
}

/// Log-odds of class `c`: its logit minus the log-sum-exp of the other logits.
pub fn log_odds(logits: &[f32], c: usize) -> f32 {
    let m = logits.iter().enumerate().filter(|(i, _)| *i != c).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return logits.get(c).copied().unwrap_or(0.0);
    }
    let rest: f32 = logits.iter().enumerate().filter(|(i, _)| *i != c).map(|(_, &v)| (v - m).exp()).sum();
    logits[c] - (m + rest.ln())
}

/// Signed weight of every word: log-odds of `class` with the full text minus without the word, then the
/// [`TOP_TOKENS`] largest by magnitude.
pub fn rank_tokens(words: Vec<String>, full: &[f32], without: &[Vec<f32>], class: usize) -> Vec<(String, f32)> {
    let base = log_odds(full, class);
    let mut w: Vec<(String, f32)> =
        words.into_iter().zip(without).map(|(word, l)| (word, base - log_odds(l, class))).collect();
    w.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    w.truncate(TOP_TOKENS);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occlusions_drop_each_word_once() {
        let (w, v) = occlusions("a  great film");
        assert_eq!(w, vec!["a", "great", "film"]);
        assert_eq!(v, vec!["great film", "a film", "a great"]);
    }

    #[test]
    fn punctuation_stays_in_the_text_and_out_of_the_word() {
        let (w, v) = occlusions("What a movie, (truly) great!! --");
        assert_eq!(w, vec!["What", "a", "movie", "truly", "great", "--"]);
        assert_eq!(v[2], "What a , (truly) great!! --");
        assert_eq!(v[3], "What a movie, ( ) great!! --");
        assert_eq!(v[4], "What a movie, (truly) !! --");
        assert_eq!(v[5], "What a movie, (truly) great!!");
        // Apostrophes and hyphens inside a word stay part of it.
        let (w, _) = occlusions("don't well-made");
        assert_eq!(w, vec!["don't", "well-made"]);
    }

    #[test]
    fn tokens_ranked_by_effect_on_log_odds() {
        let words = vec!["the".to_string(), "great".to_string()];
        let full = [0.0, 2.0];
        let without = vec![vec![0.0, 1.9], vec![0.0, -1.0]];
        let t = rank_tokens(words, &full, &without, 1);
        assert_eq!(t[0].0, "great");
        assert!((t[0].1 - 3.0).abs() < 1e-5);
    }
}
