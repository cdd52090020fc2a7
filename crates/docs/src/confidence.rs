//! Confidence that an answer is right: a logistic model over absolute evidence (how similar the answer
//! sentence is to the question, how many of the question's terms and its rarest term it contains, how
//! far the best passage leads the second), so that a question the documents do not answer scores low.
//!
//! Fitted with `rightmodel eval docs --fit-confidence` on the tuning articles of the SQuAD dev half.
//! Positives: answers whose sentence contains a gold answer. Negatives: the other answers, and the same
//! questions asked with their own article excluded from the collection (so the collection does not hold
//! the answer, as for an out-of-scope question).

use crate::features::Evidence;
use crate::learn::sigmoid;

/// Number of confidence features.
pub const N_CONF: usize = 9;

/// Intercept, then one weight per feature of [`features`], for answers ranked with late-interaction
/// features (their ranker scores run higher).
pub const CONF_WEIGHTS: [f32; N_CONF + 1] =
    [-8.200176, 2.723868, 2.1983366, 1.8801, 1.7837024, 1.3581196, -2.973757, -0.7455483, 0.43565428, -0.32036892];

/// The same for answers ranked without them ([`crate::ranker::WEIGHTS_WITHOUT_LATE`]).
pub const CONF_WEIGHTS_WITHOUT_LATE: [f32; N_CONF + 1] =
    [-6.851125, 1.4609605, 2.415979, 4.4616165, 2.6887188, 1.4243472, -2.7619696, 0.02268431, 0.3442613, -0.2083029];

/// The confidence features: the answer sentence's ranker score and its lead over the next passage (both
/// scaled by 1/10, the lead capped at 10), then sentence cosine, term overlap, rarest-term match in the
/// sentence and in the passage, passage coverage, passage cosine and answer-type match.
pub fn features(e: &Evidence, score: f32, margin: f32) -> [f32; N_CONF] {
    [
        score / 10.0,
        margin.clamp(0.0, 10.0) / 10.0,
        e.sentence_cosine,
        e.overlap,
        e.rare_match,
        e.passage_rare_match,
        e.coverage,
        e.dense,
        e.type_match,
    ]
}

/// Confidence in [0, 1] for an answer sentence with evidence `e`, ranker score `score` and lead
/// `margin` over the best sentence of the next passage; `late` says which ranker scored it.
pub fn confidence(e: &Evidence, score: f32, margin: f32, late: bool) -> f32 {
    let w = if late { &CONF_WEIGHTS } else { &CONF_WEIGHTS_WITHOUT_LATE };
    let x = features(e, score, margin);
    sigmoid(w[0] + w[1..].iter().zip(&x).map(|(w, v)| w * v).sum::<f32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_is_lower_than_related() {
        let low = Evidence { sentence_cosine: 0.05, overlap: 0.0, novelty: 1.0, ..Evidence::default() };
        let high = Evidence {
            sentence_cosine: 0.7,
            overlap: 0.8,
            rare_match: 1.0,
            passage_rare_match: 1.0,
            coverage: 0.9,
            dense: 0.6,
            type_match: 1.0,
            ..Evidence::default()
        };
        // A good sentence scores about 20 under the ranker without late interaction, 35 with it.
        for (late, good) in [(false, 20.0), (true, 35.0)] {
            assert!(confidence(&low, 0.0, 0.0, late) < 0.1);
            assert!(confidence(&high, good, 3.0, late) > confidence(&low, 0.0, 0.0, late) + 0.5);
        }
    }
}
