//! Evidence that a sentence answers a question: the features of the learned sentence ranker.
//!
//! Sentence features: cosine with the question; IDF-weighted share of the question's content terms in
//! the sentence, in the sentence and its neighbours (pronouns often point back one sentence), and as
//! adjacent pairs (phrases); whether the sentence holds something of the expected answer type (a year
//! for "when", a number for "how many", a name for "who"); and how much it says beyond the question.
//! Passage features: the first-stage fused score relative to the best, BM25 relative to the best, the
//! passage cosine, the passage's best sentence cosine and the share of question terms anywhere in it.
//! Late interaction ([`crate::late`]): each question token's closest token in the sentence, and in the
//! whole passage, averaged.

use serde::{Deserialize, Serialize};

use crate::dense::{dot, Matrix};
use crate::extract::{answer_type, has_answer_type, AnswerType};
use crate::late::{mean_best, QuantisedQuery, TokenStore};
use crate::rank::PassageScore;
use crate::store::StoredPassage;
use crate::terms::Terms;

/// Number of features in [`Evidence::to_array`].
pub const N_FEATURES: usize = 20;

/// What is known about the question.
pub struct QuestionInfo {
    /// Distinct content terms (stemmed).
    pub terms: Vec<String>,
    /// Their IDF weights.
    pub idf: Vec<f32>,
    /// Sum of `idf`.
    pub idf_total: f32,
    /// Largest of `idf`.
    pub idf_max: f32,
    /// Adjacent content-term pairs, in order.
    pub bigrams: Vec<(String, String)>,
    /// Expected answer type.
    pub qtype: AnswerType,
    /// Lower-cased words of the question.
    pub words: Vec<String>,
}

impl QuestionInfo {
    /// Analyses `question`; `idf` gives the weight of each distinct term.
    pub fn new(question: &str, analyzer: &mut Terms, idf: impl FnOnce(&[String]) -> Vec<f32>) -> Self {
        let seq = analyzer.terms(question);
        let bigrams = seq.windows(2).filter(|w| w[0] != w[1]).map(|w| (w[0].clone(), w[1].clone())).collect();
        let terms = analyzer.unique_terms(question);
        let idf = idf(&terms);
        let words =
            question.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        QuestionInfo {
            idf_total: idf.iter().sum(),
            idf_max: idf.iter().copied().fold(0.0, f32::max),
            terms,
            idf,
            bigrams,
            qtype: answer_type(question),
            words,
        }
    }

    /// IDF-weighted share of the question's terms present in `terms`.
    fn overlap<'a>(&self, contains: impl Fn(&str) -> bool + 'a) -> f32 {
        if self.idf_total <= 0.0 {
            return 0.0;
        }
        self.terms.iter().zip(&self.idf).filter(|(t, _)| contains(t)).map(|(_, w)| w).sum::<f32>() / self.idf_total
    }

    /// The largest IDF among the question's terms present in `terms`, divided by the largest IDF of
    /// the question: 1 when the rarest question term is there.
    fn rare_match<'a>(&self, contains: impl Fn(&str) -> bool + 'a) -> f32 {
        if self.idf_max <= 0.0 {
            return 0.0;
        }
        self.terms.iter().zip(&self.idf).filter(|(t, _)| contains(t)).map(|(_, w)| *w).fold(0.0, f32::max)
            / self.idf_max
    }
}

/// The evidence for one sentence (serialised with answers, for debugging and for the server's
/// escalation decisions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Question-sentence cosine.
    pub sentence_cosine: f32,
    /// IDF-weighted share of question terms in the sentence.
    pub overlap: f32,
    /// Share of the question's adjacent term pairs found adjacent in the sentence.
    pub bigrams: f32,
    /// IDF-weighted share of question terms in the sentence and its two neighbours.
    pub window_overlap: f32,
    /// 1 when the sentence holds a token of the expected answer type not in the question.
    pub type_match: f32,
    /// Share of the sentence's content terms that are not in the question.
    pub novelty: f32,
    /// First-stage fused score of the passage divided by the best one.
    pub passage_score: f32,
    /// BM25 of the passage divided by the best BM25.
    pub lexical: f32,
    /// Question-passage cosine.
    pub dense: f32,
    /// Best question-sentence cosine in the passage.
    pub passage_sentence_cosine: f32,
    /// IDF-weighted share of question terms anywhere in the passage.
    pub coverage: f32,
    /// The rarest question term found in the sentence (its IDF over the question's largest IDF).
    pub rare_match: f32,
    /// The same over the whole passage.
    pub passage_rare_match: f32,
    /// Best cosine of the question with the previous or next sentence.
    pub neighbour_cosine: f32,
    /// Unweighted share of the question's distinct terms found in the sentence.
    pub density: f32,
    /// Sentence length in content terms, divided by 60 and capped at 1.
    pub length: f32,
    /// 1 / (1 + position in the BM25 list), 0 when not in it.
    pub lexical_rank: f32,
    /// `sentence_cosine * overlap`.
    pub cosine_overlap: f32,
    /// Mean over the question's tokens of the best cosine with a token of the sentence (0 without
    /// token vectors).
    #[serde(default)]
    pub late: f32,
    /// The same over all tokens of the passage.
    #[serde(default)]
    pub passage_late: f32,
}

impl Evidence {
    /// The features in a fixed order (the ranker's weight order).
    pub fn to_array(&self) -> [f32; N_FEATURES] {
        [
            self.sentence_cosine,
            self.overlap,
            self.bigrams,
            self.window_overlap,
            self.type_match,
            self.novelty,
            self.passage_score,
            self.lexical,
            self.dense,
            self.passage_sentence_cosine,
            self.coverage,
            self.rare_match,
            self.passage_rare_match,
            self.neighbour_cosine,
            self.density,
            self.length,
            self.lexical_rank,
            self.cosine_overlap,
            self.late,
            self.passage_late,
        ]
    }
}

/// Inputs shared by all passages of one question.
pub struct EvidenceInput<'a> {
    /// The question.
    pub question: &'a QuestionInfo,
    /// Question vector (empty: cosines are 0).
    pub q_vec: &'a [f32],
    /// The collection's token vectors and the question's (`None`: late-interaction features are 0).
    pub late: Option<(&'a TokenStore, &'a QuantisedQuery)>,
    /// Sentence vectors of the collection.
    pub sentence_vecs: &'a Matrix,
    /// Best first-stage fused score of the question.
    pub top_fused: f32,
}

/// Evidence for every sentence of `passage`, whose first sentence vector is row `first_row` and whose
/// first-stage scores are `score`.
pub fn passage_evidence(
    input: &EvidenceInput<'_>,
    passage: &StoredPassage,
    first_row: usize,
    score: &PassageScore,
    analyzer: &mut Terms,
) -> Vec<Evidence> {
    let q = input.question;
    let texts: Vec<&str> =
        passage.sentences.iter().map(|&(s, e)| passage.text.get(s as usize..e as usize).unwrap_or("")).collect();
    let terms: Vec<Vec<String>> = texts.iter().map(|t| analyzer.terms(t)).collect();
    let cosines: Vec<f32> = (0..texts.len())
        .map(|i| if input.q_vec.is_empty() { 0.0 } else { dot(input.sentence_vecs.row(first_row + i), input.q_vec) })
        .collect();
    let best_cos = cosines.iter().copied().fold(0.0f32, f32::max);
    let (late, passage_late) = match input.late {
        Some((store, q_tokens)) => {
            let n_q = q_tokens.len();
            let mut passage_best = vec![f32::MIN; n_q];
            // One buffer for every sentence of the passage (this runs for ~100 sentences per question).
            let mut best = vec![f32::MIN; n_q];
            let late: Vec<f32> = (0..texts.len())
                .map(|i| {
                    best.fill(f32::MIN);
                    store.raise_best(q_tokens, first_row + i, &mut best);
                    passage_best.iter_mut().zip(&best).for_each(|(p, b)| *p = p.max(*b));
                    mean_best(&best)
                })
                .collect();
            (late, mean_best(&passage_best))
        }
        None => (vec![0.0; texts.len()], 0.0),
    };
    let in_passage = |t: &str| terms.iter().any(|ts| ts.iter().any(|x| x == t));
    let coverage = q.overlap(in_passage);
    let passage_rare_match = q.rare_match(in_passage);
    let lexical_rank = score.lexical_rank.map_or(0.0, |r| 1.0 / (1.0 + r as f32));
    let passage_score = if input.top_fused > 0.0 { score.fused / input.top_fused } else { 0.0 };
    (0..texts.len())
        .map(|i| {
            let ts = &terms[i];
            let near =
                |t: &str| (i.saturating_sub(1)..(i + 2).min(terms.len())).any(|j| terms[j].iter().any(|x| x == t));
            let pairs = ts.windows(2).collect::<Vec<_>>();
            let bigrams = if q.bigrams.is_empty() {
                0.0
            } else {
                q.bigrams.iter().filter(|(a, b)| pairs.iter().any(|w| &w[0] == a && &w[1] == b)).count() as f32
                    / q.bigrams.len() as f32
            };
            let novelty = if ts.is_empty() {
                0.0
            } else {
                ts.iter().filter(|t| !q.terms.contains(t)).count() as f32 / ts.len() as f32
            };
            let in_sentence = |t: &str| ts.iter().any(|x| x == t);
            let overlap = q.overlap(in_sentence);
            let neighbour_cosine =
                [i.wrapping_sub(1), i + 1].iter().filter_map(|&j| cosines.get(j)).copied().fold(0.0f32, f32::max);
            Evidence {
                sentence_cosine: cosines[i],
                overlap,
                bigrams,
                window_overlap: q.overlap(near),
                type_match: if has_answer_type(q.qtype, texts[i], &q.words) { 1.0 } else { 0.0 },
                novelty,
                passage_score,
                lexical: score.lexical_norm,
                dense: score.dense,
                passage_sentence_cosine: best_cos,
                coverage,
                rare_match: q.rare_match(in_sentence),
                passage_rare_match,
                neighbour_cosine,
                density: if q.terms.is_empty() {
                    0.0
                } else {
                    q.terms.iter().filter(|t| in_sentence(t)).count() as f32 / q.terms.len() as f32
                },
                length: (ts.len() as f32 / 60.0).min(1.0),
                lexical_rank,
                cosine_overlap: cosines[i] * overlap,
                late: late[i],
                passage_late,
            }
        })
        .collect()
}
