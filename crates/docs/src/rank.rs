//! Passage ranking: BM25 and dense scores fused by a weighted sum.
//!
//! BM25 is divided by the question's best BM25 score (so it lies in [0, 1] whatever the question length);
//! the dense side adds the question-passage cosine and the best question-sentence cosine in the passage
//! (a passage vector blurs a long paragraph; its best sentence does not). Weighted sums of normalised
//! scores beat reciprocal-rank fusion here because they keep how far ahead the leader is.

use crate::dense::{dot, Matrix};
use crate::params::{AskParams, RetrievalMode};

/// Scores of one candidate passage.
#[derive(Debug, Clone, Copy)]
pub struct PassageScore {
    /// Row of the passage.
    pub row: usize,
    /// Raw BM25 (0 when not among BM25's candidates).
    pub lexical: f32,
    /// BM25 divided by the best BM25 of the question.
    pub lexical_norm: f32,
    /// Position in the BM25 list (0 = first), `None` when BM25 did not return it.
    pub lexical_rank: Option<usize>,
    /// Question-passage cosine.
    pub dense: f32,
    /// Best question-sentence cosine in the passage.
    pub sentence: f32,
    /// The fused score.
    pub fused: f32,
}

/// Inputs of [`rank`] for one question.
pub struct RankInput<'a> {
    /// BM25 hits (row, score), best first.
    pub bm25: &'a [(usize, f32)],
    /// Question vector (empty in lexical mode).
    pub q_vec: &'a [f32],
    /// Passage vectors.
    pub passage_vecs: &'a Matrix,
    /// Sentence vectors.
    pub sentence_vecs: &'a Matrix,
    /// `sentence_rows[r]..sentence_rows[r + 1]` are the sentence rows of passage `r`.
    pub sentence_rows: &'a [usize],
    /// Whether row `r` may be returned (files excluded by the caller are not).
    pub allowed: &'a dyn Fn(usize) -> bool,
}

/// Ranks passages for one question; returns the best `k` (fewer when fewer passages match), best first.
pub fn rank(input: &RankInput<'_>, params: &AskParams, k: usize) -> Vec<PassageScore> {
    let n = input.passage_vecs.rows();
    let use_dense = params.mode != RetrievalMode::Lexical && !input.q_vec.is_empty() && n > 0;
    let use_lexical = params.mode != RetrievalMode::Dense;
    let best_bm25 = input.bm25.first().map_or(0.0, |h| h.1);

    // Candidates: BM25's list and the dense top list.
    let mut cands: Vec<usize> = Vec::new();
    if use_lexical {
        cands.extend(input.bm25.iter().map(|h| h.0));
    }
    let dense_all = if use_dense { input.passage_vecs.dots(input.q_vec) } else { Vec::new() };
    if use_dense {
        cands.extend(top_indices(&dense_all, params.candidates));
    }
    cands.sort_unstable();
    cands.dedup();
    cands.retain(|&r| (input.allowed)(r));

    let mut scored: Vec<PassageScore> = cands
        .into_iter()
        .map(|row| {
            let lexical_rank = if use_lexical { input.bm25.iter().position(|h| h.0 == row) } else { None };
            let lexical = lexical_rank.map_or(0.0, |i| input.bm25[i].1);
            let lexical_norm = if best_bm25 > 0.0 { lexical / best_bm25 } else { 0.0 };
            let (dense, sentence) = if use_dense {
                let sents = input.sentence_rows[row]..input.sentence_rows[row + 1];
                let best = sents.map(|s| dot(input.sentence_vecs.row(s), input.q_vec)).fold(f32::MIN, f32::max);
                (dense_all[row], if best == f32::MIN { dense_all[row] } else { best })
            } else {
                (0.0, 0.0)
            };
            let mut fused = 0.0;
            if use_lexical {
                fused += params.w_lexical * lexical_norm;
            }
            if use_dense {
                fused += params.w_dense * dense + params.w_sentence * sentence;
            }
            PassageScore { row, lexical, lexical_norm, lexical_rank, dense, sentence, fused }
        })
        .collect();
    scored.sort_by(|a, b| b.fused.total_cmp(&a.fused).then(a.row.cmp(&b.row)));
    scored.truncate(k);
    scored
}

/// Indices of the `k` largest values, in no particular order.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |&a, &b| values[b].total_cmp(&values[a]));
        idx.truncate(k);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuses_lexical_and_dense() {
        // Three passages with one sentence each; dense prefers row 2, BM25 prefers row 0.
        let pv = Matrix::from_flat(2, vec![1.0, 0.0, 0.6, 0.8, 0.0, 1.0]).unwrap();
        let sv = pv.clone();
        let rows = [0, 1, 2, 3];
        let q = [0.0, 1.0];
        let bm25 = [(0, 10.0), (1, 9.0)];
        let input = RankInput {
            bm25: &bm25,
            q_vec: &q,
            passage_vecs: &pv,
            sentence_vecs: &sv,
            sentence_rows: &rows,
            allowed: &|_| true,
        };
        let lex = rank(&input, &AskParams { mode: RetrievalMode::Lexical, ..AskParams::default() }, 3);
        assert_eq!(lex.iter().map(|s| s.row).collect::<Vec<_>>(), vec![0, 1]);
        let dense = rank(&input, &AskParams { mode: RetrievalMode::Dense, ..AskParams::default() }, 3);
        assert_eq!(dense[0].row, 2);
        let hybrid = rank(&input, &AskParams::default(), 3);
        // Row 1 is good on both sides.
        assert_eq!(hybrid[0].row, 1);
        assert!((hybrid[0].lexical_norm - 0.9).abs() < 1e-6);
    }
}
