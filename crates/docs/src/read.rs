//! Mapping a language model's answer back onto the answer sentence.
//!
//! A reader ([`rightmodel_core::PassageReader::read_answer`]) writes its answer in its own words:
//! usually a copy of a piece of the sentence, sometimes with a word dropped, added or changed, and
//! sometimes something the sentence does not say at all. A cited answer must be a piece of the source,
//! so the answer becomes the run of the sentence's words with the best SQuAD token F1 against what the
//! model wrote (the earliest and shortest among equals); when no word matches, the model's answer is
//! not used.

use std::collections::HashMap;
use std::ops::Range;

use crate::squad::normalize_answer;

/// Longest span considered, in words (answers are read with at most 16 tokens).
const MAX_SPAN_WORDS: usize = 24;

/// Characters trimmed off the ends of a span: sentence punctuation, not part of an answer.
const TRIM: &[char] = &['.', ',', ';', ':', '!', '?', '"', '\'', '(', ')', '[', ']', '\u{201c}', '\u{201d}'];

/// The run of a sentence's words closest to an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Its byte range in the sentence.
    pub range: Range<usize>,
    /// Its SQuAD token F1 against the answer, in (0, 1].
    pub f1: f32,
}

/// The words of `sentence` that best match `answer` and how well, or `None` when none match.
pub fn best_match(answer: &str, sentence: &str) -> Option<Match> {
    let target = normalize_answer(answer);
    let target: Vec<&str> = target.split_whitespace().collect();
    if target.is_empty() {
        return None;
    }
    let mut want: HashMap<&str, i32> = HashMap::new();
    for t in &target {
        *want.entry(t).or_default() += 1;
    }
    // Each word's normalised tokens ("the" has none, "well-known" one).
    let words: Vec<(usize, usize, Vec<String>)> = word_ranges(sentence)
        .map(|(s, e)| (s, e, normalize_answer(&sentence[s..e]).split_whitespace().map(str::to_string).collect()))
        .collect();
    let mut best: Option<(f32, usize, usize)> = None;
    for i in 0..words.len() {
        let mut left = want.clone();
        let (mut same, mut len) = (0usize, 0usize);
        for (j, (_, _, tokens)) in words.iter().enumerate().skip(i).take(MAX_SPAN_WORDS) {
            for t in tokens {
                len += 1;
                if let Some(c) = left.get_mut(t.as_str()) {
                    if *c > 0 {
                        *c -= 1;
                        same += 1;
                    }
                }
            }
            if same == 0 {
                continue;
            }
            let (p, r) = (same as f32 / len as f32, same as f32 / target.len() as f32);
            let f1 = 2.0 * p * r / (p + r);
            if best.is_none_or(|(b, _, _)| f1 > b + 1e-6) {
                best = Some((f1, i, j));
            }
        }
    }
    let (f1, i, j) = best?;
    let (start, end) = (words[i].0, words[j].1);
    let piece = &sentence[start..end];
    let trimmed_start = start + (piece.len() - piece.trim_start_matches(TRIM).len());
    let trimmed_end = start + piece.trim_end_matches(TRIM).len();
    let range = if trimmed_start < trimmed_end { trimmed_start..trimmed_end } else { start..end };
    Some(Match { range, f1 })
}

/// Byte ranges of the whitespace-separated words of `text`.
fn word_ranges(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = None;
    text.char_indices().chain(std::iter::once((text.len(), ' '))).filter_map(move |(i, c)| {
        if c.is_whitespace() {
            start.take().map(|s| (s, i))
        } else {
            if start.is_none() {
                start = Some(i);
            }
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::best_match;

    fn snap<'a>(answer: &str, sentence: &'a str) -> Option<&'a str> {
        best_match(answer, sentence).map(|m| &sentence[m.range])
    }

    #[test]
    fn an_exact_copy_is_found_without_its_punctuation() {
        let s = "The cooperative now has about 4,300 members, most of them farmers.";
        assert_eq!(snap("about 4,300", s), Some("about 4,300"));
        assert_eq!(snap("farmers", s), Some("farmers"));
    }

    #[test]
    fn a_paraphrase_snaps_to_the_closest_words() {
        let s = "It was designed by the architect Sir Christopher Wren in 1675.";
        assert_eq!(snap("Christopher Wren", s), Some("Christopher Wren"));
        assert_eq!(snap("architect Christopher Wren", s), Some("the architect Sir Christopher Wren"));
    }

    #[test]
    fn an_answer_the_sentence_does_not_hold_is_dropped() {
        assert_eq!(snap("Claude Monet", "The drawings include works by Ingres."), None);
        assert_eq!(snap("", "Anything."), None);
        assert_eq!(snap("the", "The end."), None);
    }

    #[test]
    fn multibyte_text_keeps_char_boundaries() {
        let s = "Der Fluss heißt „Rhein“ und fließt nach Köln.";
        assert_eq!(snap("Köln", s), Some("Köln"));
    }
}
