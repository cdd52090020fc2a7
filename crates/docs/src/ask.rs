//! Answering a question from a collection: first-stage ranking ([`crate::rank`]), sentence evidence
//! ([`crate::features`]), re-ranking by the best sentence ([`crate::ranker`]), span extraction
//! ([`crate::extract`]).

use rightmodel_core::Embedder;
use serde::{Deserialize, Serialize};

use crate::answer::{Answer, Citation, ScoredPassage};
use crate::collection::Collection;
use crate::confidence::confidence;
use crate::embed::embed_one;
use crate::extract::extract;
use crate::features::{passage_evidence, Evidence, EvidenceInput, QuestionInfo};
use crate::params::{AskParams, RetrievalMode};
use crate::rank::{rank, PassageScore, RankInput};
use crate::ranker::score;
use crate::split::char_len;
use crate::DocsError;

/// A candidate answer sentence with its evidence (for training and inspecting the ranker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentenceCandidate {
    /// Source file.
    pub file: String,
    /// Passage id.
    pub passage_id: u64,
    /// Character range of the passage in the file's cleaned text.
    pub passage_range: (usize, usize),
    /// The sentence.
    pub sentence: String,
    /// Its features.
    pub evidence: Evidence,
}

/// First-stage ranking plus the evidence of the first passages' sentences.
struct Analysis {
    ranked: Vec<PassageScore>,
    /// `evidence[i]`: evidence for the sentences of `ranked[i]` (computed for the first passages only).
    evidence: Vec<Vec<Evidence>>,
}

/// Longest question answered, in characters. Question analysis compares every question term with
/// every candidate sentence; without a bound one request could hold a core for minutes.
pub const MAX_QUESTION_CHARS: usize = 4000;

fn check_question(question: &str) -> Result<(), DocsError> {
    if question.trim().is_empty() {
        return Err(DocsError::EmptyQuestion);
    }
    let chars = question.chars().count();
    if chars > MAX_QUESTION_CHARS {
        return Err(DocsError::QuestionTooLong { chars, max: MAX_QUESTION_CHARS });
    }
    Ok(())
}

impl Collection {
    /// Answers `question` from the `k` best passages with the default parameters.
    pub fn ask(&self, embedder: &dyn Embedder, question: &str, k: usize) -> Result<Answer, DocsError> {
        self.ask_with(embedder, question, k, &AskParams::default())
    }

    /// Answers `question` with explicit parameters.
    pub fn ask_with(
        &self,
        embedder: &dyn Embedder,
        question: &str,
        k: usize,
        params: &AskParams,
    ) -> Result<Answer, DocsError> {
        check_question(question)?;
        if self.passage_count() == 0 {
            return Err(DocsError::EmptyCollection);
        }
        self.check_embedder(embedder)?;
        let q_vec = if params.mode == RetrievalMode::Lexical && params.lexical_sentences {
            Vec::new()
        } else {
            embed_one(embedder, question)?
        };
        self.ask_with_vector(question, &q_vec, k, params)
    }

    /// Answers `question` given its unit vector from the collection's embedder (an empty vector turns
    /// dense scores off), for callers that embed questions in batches.
    pub fn ask_with_vector(
        &self,
        question: &str,
        q_vec: &[f32],
        k: usize,
        params: &AskParams,
    ) -> Result<Answer, DocsError> {
        check_question(question)?;
        let k = k.max(1);
        let scored = params.rerank_depth.max(1);
        let Analysis { ranked, evidence } = self.analyse(question, q_vec, params, k.max(scored), scored)?;
        let mut items: Vec<Ranked> = ranked
            .into_iter()
            .enumerate()
            .map(|(i, passage)| {
                let evidence = evidence.get(i).cloned().unwrap_or_default();
                let logits = evidence.iter().map(score).collect();
                Ranked { passage, evidence, logits }
            })
            .collect();
        if params.rerank_depth > 0 {
            // Re-rank the scored passages by their best sentence (a stable sort: ties keep the
            // first-stage order); the others stay behind in first-stage order.
            let n = scored.min(items.len());
            items[..n].sort_by(|a, b| b.best_logit().total_cmp(&a.best_logit()));
        }
        self.build_answer(question, k, params, &items)
    }

    /// The candidate sentences of the first `params.rerank_depth` passages with their evidence.
    pub fn sentence_candidates(
        &self,
        question: &str,
        q_vec: &[f32],
        params: &AskParams,
    ) -> Result<Vec<SentenceCandidate>, DocsError> {
        let depth = params.rerank_depth.max(1);
        let Analysis { ranked, evidence } = self.analyse(question, q_vec, params, depth, depth)?;
        let mut out = Vec::new();
        for (p, es) in ranked.iter().zip(&evidence) {
            let passage = &self.snap.passages[p.row];
            for (&(s, e), ev) in passage.sentences.iter().zip(es) {
                out.push(SentenceCandidate {
                    file: passage.file.clone(),
                    passage_id: passage.id,
                    passage_range: (passage.start, passage.end),
                    sentence: passage.text.get(s as usize..e as usize).unwrap_or("").to_string(),
                    evidence: *ev,
                });
            }
        }
        Ok(out)
    }

    /// Ranks `depth` passages and computes sentence evidence for the first `scored` of them.
    fn analyse(
        &self,
        question: &str,
        q_vec: &[f32],
        params: &AskParams,
        depth: usize,
        scored: usize,
    ) -> Result<Analysis, DocsError> {
        if question.trim().is_empty() {
            return Err(DocsError::EmptyQuestion);
        }
        let Some(lexical) = &self.lexical else { return Err(DocsError::EmptyCollection) };
        let dim = self.snap.passage_vecs.dim();
        if !q_vec.is_empty() && q_vec.len() != dim {
            return Err(DocsError::EmbedderMismatch {
                expected: self.embedder_id().unwrap_or_default().to_string(),
                expected_dim: dim,
                got: "question vector".into(),
                got_dim: q_vec.len(),
            });
        }
        let mut analyzer = self.terms.clone();
        let searcher = lexical.searcher();
        let mut idf_err = None;
        let info = QuestionInfo::new(question, &mut analyzer, |terms| {
            lexical.idf(&searcher, terms).unwrap_or_else(|e| {
                idf_err = Some(e);
                Vec::new()
            })
        });
        if let Some(e) = idf_err {
            return Err(e);
        }
        let allowed =
            |r: usize| params.exclude_files.is_empty() || !params.exclude_files.contains(&self.snap.passages[r].file);
        let mut bm25 = if params.mode == RetrievalMode::Dense {
            Vec::new()
        } else {
            lexical.search(&searcher, &info.terms, params.candidates)?
        };
        bm25.retain(|h| allowed(h.0));
        let input = RankInput {
            bm25: &bm25,
            q_vec: if params.mode == RetrievalMode::Lexical { &[] } else { q_vec },
            passage_vecs: &self.snap.passage_vecs,
            sentence_vecs: &self.snap.sentence_vecs,
            sentence_rows: &self.sentence_rows,
            allowed: &allowed,
        };
        let ranked = rank(&input, params, depth.max(2));
        let ev_input = EvidenceInput {
            question: &info,
            q_vec,
            sentence_vecs: &self.snap.sentence_vecs,
            top_fused: ranked.first().map_or(0.0, |p| p.fused),
        };
        let evidence = ranked
            .iter()
            .take(scored)
            .map(|p| {
                passage_evidence(&ev_input, &self.snap.passages[p.row], self.sentence_rows[p.row], p, &mut analyzer)
            })
            .collect();
        Ok(Analysis { ranked, evidence })
    }

    /// The answer from the (re-)ranked passages: the best sentence of the first passage, its span,
    /// citations and confidence.
    fn build_answer(
        &self,
        question: &str,
        k: usize,
        params: &AskParams,
        items: &[Ranked],
    ) -> Result<Answer, DocsError> {
        let passages: Vec<ScoredPassage> = items.iter().take(k).map(|r| self.scored_passage(r)).collect();
        let mut answer = Answer {
            question: question.to_string(),
            answer: String::new(),
            sentence: String::new(),
            span: None,
            confidence: 0.0,
            evidence: Evidence::default(),
            score: 0.0,
            margin: 0.0,
            citations: Vec::new(),
            passages,
        };
        let Some(top) = items.first() else { return Ok(answer) };
        let key = |i: usize| if params.lexical_sentences { top.evidence[i].overlap } else { top.logits[i] };
        let Some(best) = (0..top.evidence.len()).max_by(|&a, &b| key(a).total_cmp(&key(b)).then(b.cmp(&a))) else {
            return Ok(answer);
        };
        let passage = &self.snap.passages[top.passage.row];
        let Some(&(s, e)) = passage.sentences.get(best) else { return Ok(answer) };
        let (s, e) = (s as usize, e as usize);
        let cite = |bs: usize, be: usize| Citation {
            file: passage.file.clone(),
            passage_id: passage.id,
            start: passage.start + char_len(&passage.text[..bs]),
            end: passage.start + char_len(&passage.text[..be]),
            text: passage.text[bs..be].to_string(),
        };
        answer.sentence = passage.text[s..e].to_string();
        let mut analyzer = self.terms.clone();
        answer.span = extract(question, &answer.sentence, &mut analyzer).map(|r| cite(s + r.start, s + r.end));
        answer.answer = answer.span.as_ref().map_or_else(|| answer.sentence.clone(), |c| c.text.clone());
        answer.evidence = top.evidence[best];
        answer.score = top.logits[best];
        answer.margin = match items.get(1).map(Ranked::best_logit) {
            Some(next) if next.is_finite() => answer.score - next,
            _ => 10.0,
        };
        answer.confidence = confidence(&answer.evidence, answer.score, answer.margin);
        answer.citations = vec![cite(s, e)];
        Ok(answer)
    }

    fn scored_passage(&self, r: &Ranked) -> ScoredPassage {
        let s = &r.passage;
        let p = &self.snap.passages[s.row];
        ScoredPassage {
            passage_id: p.id,
            file: p.file.clone(),
            start: p.start,
            end: p.end,
            text: p.text.clone(),
            score: s.fused,
            lexical: s.lexical,
            dense: s.dense,
            rerank_score: (!r.logits.is_empty()).then(|| r.best_logit()),
        }
    }
}

/// A passage with its sentences' evidence and ranker scores.
struct Ranked {
    passage: PassageScore,
    evidence: Vec<Evidence>,
    logits: Vec<f32>,
}

impl Ranked {
    /// The best sentence's score (-inf without scored sentences).
    fn best_logit(&self) -> f32 {
        self.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}
