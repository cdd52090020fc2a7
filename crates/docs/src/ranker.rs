//! The sentence ranker: a linear score over [`Evidence`] that orders candidate sentences. Passages are
//! re-ranked by their best sentence and the answer sentence is the best one.
//!
//! The weights were fitted with `rightmodel eval docs --fit-ranker` on the questions of the first six
//! articles of the SQuAD dev half with a listwise (softmax) objective over all sentences of a question's
//! top 20 passages, positives being the sentences of the question's paragraph that contain a gold
//! answer ([`crate::learn::fit_listwise`]). Two sets: [`WEIGHTS`] with the late-interaction features,
//! and [`WEIGHTS_WITHOUT_LATE`], fitted before those existed, for collections without token vectors
//! (indexed by an earlier version until the next `docs add`, or by an encoder that gives none).

use crate::features::{Evidence, N_FEATURES};

/// One weight per feature in [`Evidence::to_array`] order, for questions scored with token vectors.
pub const WEIGHTS: [f32; N_FEATURES] = [
    -2.9128892,
    1.6019675,
    1.4638717,
    3.607841,
    1.6054713,
    -0.64999723,
    0.1975914,
    -0.8455592,
    -0.009647889,
    0.75268155,
    -0.064097404,
    -0.254442,
    4.1169243,
    -0.11219084,
    0.3178426,
    -0.53231305,
    0.49331877,
    -0.41772127,
    11.881889,
    20.025757,
];

/// The weights without the two late-interaction features (the last two, 0 here).
pub const WEIGHTS_WITHOUT_LATE: [f32; N_FEATURES] = [
    5.397006,
    2.3184824,
    1.9149072,
    3.7840135,
    1.7969017,
    0.07149841,
    1.3784155,
    -1.4238914,
    1.7235163,
    8.0312805,
    2.9499438,
    -0.11791227,
    3.4440627,
    -0.09567192,
    1.8366365,
    0.2753016,
    0.33172488,
    -0.9470128,
    0.0,
    0.0,
];

/// The weights for evidence with (`late`) or without late-interaction features.
pub fn weights(late: bool) -> &'static [f32; N_FEATURES] {
    if late {
        &WEIGHTS
    } else {
        &WEIGHTS_WITHOUT_LATE
    }
}

/// The ranking score of `e` (higher is better); `late` says whether its late-interaction features
/// were computed.
pub fn score(e: &Evidence, late: bool) -> f32 {
    score_with(weights(late), &e.to_array())
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
        for late in [false, true] {
            let high = Evidence {
                late: 0.8 * f32::from(u8::from(late)),
                passage_late: 0.8 * f32::from(u8::from(late)),
                ..high
            };
            let low = Evidence {
                late: 0.3 * f32::from(u8::from(late)),
                passage_late: 0.3 * f32::from(u8::from(late)),
                ..low
            };
            assert!(score(&high, late) > score(&low, late) + 5.0, "{} vs {}", score(&high, late), score(&low, late));
        }
    }
}
