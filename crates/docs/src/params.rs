//! Knobs of retrieval and answer selection, with the defaults tuned on SQuAD (see the crate docs).

use serde::{Deserialize, Serialize};

/// Which retrievers rank passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    /// BM25 and dense similarity, fused.
    Hybrid,
    /// BM25 only (the baseline).
    Lexical,
    /// Dense similarity only.
    Dense,
}

/// Passages a language model re-orders by default, when one is given (see [`AskParams::lm_depth`]).
pub const LM_DEPTH: usize = 3;
/// Default [`AskParams::lm_ranker_weight`].
pub const LM_RANKER_WEIGHT: f32 = 2.0;
/// Default [`AskParams::lm_read_sentences`]: on the tuning articles of SQuAD, reading the first
/// passage's three best sentences and choosing by the readings (see [`ReadWeights`]) lifted F1 by 3
/// points over reading only the best one (cross-validated by article).
pub const LM_READ_SENTENCES: usize = 3;
/// Default [`AskParams::lm_read_passages`]: the best sentence of the second and third passages too
/// added another point.
pub const LM_READ_PASSAGES: usize = 3;

/// The lowest mean log-probability a reading counts with (and what an unusable one counts as).
const UNSURE: f32 = 1e4;

/// How readings of several sentences choose the answer sentence: the sentence ranker's score, plus
/// `mean_log_prob` times the reading's mean token log-probability (a model reading the sentence that
/// holds the answer copies it with confidence; after another sentence it hesitates), plus `match_f1`
/// times how closely the sentence's words match what it wrote (a made-up answer matches poorly),
/// minus `passage_place` per place the sentence's passage stands behind the first. Fitted with
/// `rightmodel eval docs --fit-read` on the tuning articles of SQuAD (grid search, stable across
/// leave-one-article-out folds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReadWeights {
    /// Weight of the reading's mean token log-probability.
    pub mean_log_prob: f32,
    /// Weight of the token F1 between the reading and the sentence's closest words.
    pub match_f1: f32,
    /// Penalty per place behind the first passage.
    pub passage_place: f32,
}

impl Default for ReadWeights {
    fn default() -> Self {
        ReadWeights { mean_log_prob: 6.0, match_f1: 2.0, passage_place: 1.0 }
    }
}

impl ReadWeights {
    /// The choice key of a sentence with ranker score `logit` in the passage at `place`, read as
    /// `reading` whose closest words in it match with token F1 `match_f1`.
    pub fn key(&self, logit: f32, place: usize, reading: &rightmodel_core::Reading, match_f1: f32) -> f32 {
        let logit = if logit.is_finite() { logit } else { 0.0 };
        // A log-probability is at most 0; a reader that reports a positive one or none (NaN) is taken
        // as very unsure rather than allowed to win (or to poison every comparison).
        let lp = reading.mean_log_prob();
        let lp = if lp.is_nan() { -UNSURE } else { lp.clamp(-UNSURE, 0.0) };
        logit + self.mean_log_prob * lp + self.match_f1 * match_f1.clamp(0.0, 1.0) - self.passage_place * place as f32
    }

    /// The highest [`ReadWeights::key`] a sentence with ranker score `logit` in the passage at `place`
    /// can reach, whatever the reading (a mean log-probability is at most 0, a match F1 in [0, 1]);
    /// infinite when a negative weight on the log-probability leaves it unbounded.
    pub fn upper_bound(&self, logit: f32, place: usize) -> f32 {
        if self.mean_log_prob < 0.0 {
            return f32::INFINITY;
        }
        let logit = if logit.is_finite() { logit } else { 0.0 };
        logit + self.match_f1.max(0.0) - self.passage_place * place as f32
    }
}
/// Default [`AskParams::lm_rank_penalty`].
pub const LM_RANK_PENALTY: f32 = 0.0;

/// Parameters of [`crate::Collection::ask_with`]. `Default` gives the tuned configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AskParams {
    /// Retrievers to use.
    pub mode: RetrievalMode,
    /// Passages taken from BM25 and from the dense scan before fusion.
    pub candidates: usize,
    /// Weight of the BM25 score divided by the query's best BM25 score.
    pub w_lexical: f32,
    /// Weight of the cosine between question and passage vectors.
    pub w_dense: f32,
    /// Weight of the best cosine between the question and one sentence of the passage.
    pub w_sentence: f32,
    /// Passages re-ranked by their best sentence (sentence ranker); 0 keeps the fused order and only
    /// looks for the answer in the first passage.
    pub rerank_depth: usize,
    /// Choose the answer sentence by term overlap alone (the BM25 baseline) instead of the ranker.
    pub lexical_sentences: bool,
    /// Ignore the passages of these files (paths as stored), as if they were not in the collection.
    pub exclude_files: Vec<String>,
    /// Passages re-ordered by a language model's `log P(question | passage)` when the caller passes a
    /// [`rightmodel_core::PassageReader`] (after the sentence ranker, among the passages it scored; 0 turns
    /// it off).
    pub lm_depth: usize,
    /// Weight of the sentence ranker's score next to the language model's log-likelihood in that order.
    pub lm_ranker_weight: f32,
    /// Log-likelihood taken off per place a passage stands behind the first in the ranker's order.
    pub lm_rank_penalty: f32,
    /// Let the [`rightmodel_core::PassageReader`], when the caller passes one, read the best sentences
    /// (see [`AskParams::lm_read_sentences`]) and choose the answer sentence and span by its readings
    /// (the span is the sentence's words closest to what it wrote; see [`crate::read`]). Off by
    /// default: it costs a few short generations per question (about two on SQuAD).
    pub lm_read: bool,
    /// Sentences of the first passage the reader reads (the ranker's best ones); the reading that
    /// [`AskParams::read_weights`] rank first gives the answer sentence and span.
    pub lm_read_sentences: usize,
    /// Passages whose sentences are read: the first passage's [`AskParams::lm_read_sentences`] best
    /// ones and the best one of each further passage up to this many (1 reads only the first passage).
    pub lm_read_passages: usize,
    /// How the readings choose among the sentences read.
    pub read_weights: ReadWeights,
}

impl Default for AskParams {
    fn default() -> Self {
        AskParams {
            mode: RetrievalMode::Hybrid,
            candidates: 100,
            w_lexical: 3.0,
            w_dense: 0.0,
            w_sentence: 1.0,
            rerank_depth: 40,
            lexical_sentences: false,
            exclude_files: Vec::new(),
            lm_depth: LM_DEPTH,
            lm_ranker_weight: LM_RANKER_WEIGHT,
            lm_rank_penalty: LM_RANK_PENALTY,
            lm_read: false,
            lm_read_sentences: LM_READ_SENTENCES,
            lm_read_passages: LM_READ_PASSAGES,
            read_weights: ReadWeights::default(),
        }
    }
}

impl AskParams {
    /// The BM25 baseline: BM25 ranks passages, word overlap picks the sentence of the first one.
    pub fn lexical_baseline() -> Self {
        AskParams { mode: RetrievalMode::Lexical, rerank_depth: 0, lexical_sentences: true, ..AskParams::default() }
    }

    /// Dense retrieval only, re-ranked by the sentence ranker.
    pub fn dense_only() -> Self {
        AskParams { mode: RetrievalMode::Dense, ..AskParams::default() }
    }

    /// Hybrid first stage without re-ranking (the ranker still picks the sentence of the first passage).
    pub fn without_rerank() -> Self {
        AskParams { rerank_depth: 0, ..AskParams::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadWeights;
    use rightmodel_core::Reading;

    #[test]
    fn no_reading_beats_the_upper_bound() {
        let w = ReadWeights::default();
        for logit in [-3.0f32, 0.0, 2.5, f32::NEG_INFINITY] {
            for place in 0..3 {
                for (lp, tokens) in [(0.0f32, 1u32), (-0.01, 3), (-20.0, 4), (0.0, 0)] {
                    for m in [0.0f32, 0.4, 1.0] {
                        let r = Reading { text: "x".into(), log_prob: lp, tokens };
                        assert!(w.key(logit, place, &r, m) <= w.upper_bound(logit, place));
                    }
                }
            }
        }
        // Other weight signs, and readings with a positive or missing log-probability, stay bounded.
        for w in [ReadWeights { match_f1: -2.0, passage_place: -1.0, ..w }, ReadWeights { mean_log_prob: 0.0, ..w }] {
            for (lp, tokens) in [(3.0f32, 1u32), (f32::NAN, 2), (f32::NEG_INFINITY, 2), (-1.0, 2)] {
                for m in [0.0f32, 1.0, 7.0] {
                    let r = Reading { text: "x".into(), log_prob: lp, tokens };
                    let key = w.key(1.0, 2, &r, m);
                    assert!(key.is_finite() && key <= w.upper_bound(1.0, 2), "{w:?} {lp} {m}: {key}");
                }
            }
        }
        // A negative weight on the log-probability leaves the key unbounded.
        let odd = ReadWeights { mean_log_prob: -1.0, ..w };
        assert_eq!(odd.upper_bound(0.0, 0), f32::INFINITY);
    }
}
