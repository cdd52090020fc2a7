//! The sentence ranker: a linear score over [`Evidence`] that orders candidate sentences. Passages are
//! re-ranked by their best sentence and the answer sentence is the best one.
//!
//! The weights were fitted with `rightmodel eval docs --fit-ranker` on the questions of the first six
//! articles of the SQuAD dev half with a listwise (softmax) objective over all sentences of a question's
//! top 20 passages, positives being the sentences of the question's paragraph that contain a gold
//! answer ([`crate::learn::fit_listwise`]).

use crate::features::{Evidence, N_FEATURES};

/// One weight per feature in [`Evidence::to_array`] order.
pub const WEIGHTS: [f32; N_FEATURES] = [4.875014, 1.8197173, 1.8672566, 3.7780232, 1.7801914, 0.08177415, 3.0562725, -2.1038845, 0.6795579, 6.9962096, 3.0190785, -0.07204653, 3.1294792, -0.10805197, 1.8744552, 0.26281717, 0.3911927, -0.056226593];

/// The ranking score of `e` (higher is better).
pub fn score(e: &Evidence) -> f32 {
    score_with(&WEIGHTS, &e.to_array())
}

/// The score under explicit weights.
pub fn score_with(w: &[f32; N_FEATURES], x: &[f32; N_FEATURES]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_sentences_score_higher() {
        let low = Evidence { sentence_cosine: 0.05, overlap: 0.0, novelty: 1.0, ..Evidence::default() };
        let high = Evidence {
            sentence_cosine: 0.7,
            overlap: 0.8,
            bigrams: 0.5,
            window_overlap: 0.9,
            type_match: 1.0,
            novelty: 0.6,
            passage_score: 1.0,
            lexical: 1.0,
            dense: 0.6,
            passage_sentence_cosine: 0.7,
            coverage: 0.9,
            ..Evidence::default()
        };
        assert!(score(&high) > score(&low) + 5.0, "{} vs {}", score(&high), score(&low));
    }
}
