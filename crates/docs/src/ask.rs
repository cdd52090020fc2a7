//! Answering a question from a collection: first-stage ranking ([`crate::rank`]), sentence evidence
//! ([`crate::features`]), re-ranking by the best sentence ([`crate::ranker`]), span extraction
//! ([`crate::extract`]).

use rightmodel_core::{Embedder, PassageReader};
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
use crate::read::best_match;
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
        if params.mode == RetrievalMode::Lexical && params.lexical_sentences {
            check_question(question)?;
            if self.passage_count() == 0 {
                return Err(DocsError::EmptyCollection);
            }
            return self.ask_scored(question, &[], k, params, None);
        }
        let q_vec = self.question_vector(embedder, question)?;
        self.ask_scored(question, &q_vec, k, params, None)
    }

    /// The question's unit vector from `embedder`, after checking the question, that the collection has
    /// passages, and that `embedder` is the model it was indexed with (for [`Collection::ask_scored`]).
    pub fn question_vector(&self, embedder: &dyn Embedder, question: &str) -> Result<Vec<f32>, DocsError> {
        check_question(question)?;
        if self.passage_count() == 0 {
            return Err(DocsError::EmptyCollection);
        }
        self.check_embedder(embedder)?;
        embed_one(embedder, question)
    }

    /// Answers `question` with explicit parameters and a language model reading the passages: the first
    /// `params.lm_depth` passages re-ordered by its `log P(question | passage)`, and with
    /// `params.lm_read` the answer span read by it. Slower, and more often right.
    pub fn ask_with_reader(
        &self,
        embedder: &dyn Embedder,
        question: &str,
        k: usize,
        params: &AskParams,
        scorer: &dyn PassageReader,
    ) -> Result<Answer, DocsError> {
        let q_vec = self.question_vector(embedder, question)?;
        self.ask_scored(question, &q_vec, k, params, Some(scorer))
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
        self.ask_scored(question, q_vec, k, params, None)
    }

    /// [`Collection::ask_with_vector`] with a language model reading the passages when there is one (see
    /// [`Collection::ask_with_reader`]).
    pub fn ask_scored(
        &self,
        question: &str,
        q_vec: &[f32],
        k: usize,
        params: &AskParams,
        scorer: Option<&dyn PassageReader>,
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
                Ranked { passage, evidence, logits, lm: None }
            })
            .collect();
        if params.rerank_depth > 0 {
            // Re-rank the scored passages by their best sentence (a stable sort: ties keep the
            // first-stage order); the others stay behind in first-stage order.
            let n = scored.min(items.len());
            items[..n].sort_by(|a, b| b.best_logit().total_cmp(&a.best_logit()));
        }
        if let Some(scorer) = scorer {
            self.rerank_with_lm(question, params, scorer, &mut items)?;
        }
        let reader = scorer.filter(|_| params.lm_read);
        self.build_answer(question, k, params, &items, reader)
    }

    /// Re-orders the first `params.lm_depth` passages by `log P(question | passage)` plus
    /// `params.lm_ranker_weight` times their sentence-ranker score.
    ///
    /// Crowd-written questions reuse the words and facts of the passage they were written from; the
    /// language model, having just read a passage, rewards exactly that, including paraphrase and
    /// word order that term-overlap features miss. The ranker score stays in the key so that a clear
    /// first-stage winner is not overturned by a small likelihood difference.
    fn rerank_with_lm(
        &self,
        question: &str,
        params: &AskParams,
        scorer: &dyn PassageReader,
        items: &mut [Ranked],
    ) -> Result<(), DocsError> {
        // Only passages the sentence ranker scored: the answer comes from the first one's best sentence.
        let n = params.lm_depth.min(params.rerank_depth.max(1)).min(items.len());
        if n < 2 {
            return Ok(());
        }
        let texts: Vec<&str> = items[..n].iter().map(|r| self.snap.passages[r.passage.row].text.as_str()).collect();
        let ll = scorer.question_log_likelihood(question, &texts)?;
        if ll.len() != n || ll.iter().any(|v| !v.is_finite()) {
            return Err(DocsError::Score(rightmodel_core::ScoreError(format!(
                "{} scores for {n} passages, or a score that is not a number",
                ll.len()
            ))));
        }
        let (w, pen) = (params.lm_ranker_weight, params.lm_rank_penalty);
        let keys: Vec<f32> = items[..n]
            .iter()
            .zip(&ll)
            .enumerate()
            .map(|(place, (r, &lm))| {
                let ranker = r.best_logit();
                lm - pen * place as f32 + if ranker.is_finite() { w * ranker } else { 0.0 }
            })
            .collect();
        for (r, v) in items.iter_mut().zip(ll) {
            r.lm = Some(v);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]));
        let reordered: Vec<Ranked> = order.iter().map(|&i| items[i].clone()).collect();
        for (slot, r) in items.iter_mut().zip(reordered) {
            *slot = r;
        }
        Ok(())
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
    /// citations and confidence. With a `reader`, it reads the first passage's best sentences and the
    /// answer is the words closest to what it said, in the sentence that holds them.
    fn build_answer(
        &self,
        question: &str,
        k: usize,
        params: &AskParams,
        items: &[Ranked],
        reader: Option<&dyn PassageReader>,
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
            read_by: None,
        };
        let Some(top) = items.first() else { return Ok(answer) };
        let key = |i: usize| if params.lexical_sentences { top.evidence[i].overlap } else { top.logits[i] };
        // Sentences best first (ties: the earlier one).
        let mut order: Vec<usize> = (0..top.evidence.len()).collect();
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        let Some(mut best) = order.first().copied() else { return Ok(answer) };
        let passage = &self.snap.passages[top.passage.row];
        let sentence_text = |i: usize| {
            passage.sentences.get(i).and_then(|&(s, e)| passage.text.get(s as usize..e as usize)).unwrap_or("")
        };
        let mut read_span = None;
        if let Some(reader) = reader {
            // Best sentence first; the next one only when the model's answer is not in it (then it is
            // likely the wrong sentence). Shown one at a time: a 270M model reads one sentence far
            // better than several (SQuAD F1 0.56 vs 0.52 with two).
            for &i in order.iter().take(params.lm_read_sentences.max(1)) {
                let said = reader.read_answer(sentence_text(i), question)?;
                if let Some(m) = best_match(&said, sentence_text(i)) {
                    best = i;
                    read_span = Some(m.range);
                    answer.read_by = Some(reader.model_id().to_string());
                    break;
                }
            }
        }
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
        answer.span = match read_span {
            Some(r) => Some(cite(s + r.start, s + r.end)),
            None => extract(question, &answer.sentence, &mut analyzer).map(|r| cite(s + r.start, s + r.end)),
        };
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
            question_log_likelihood: r.lm,
        }
    }
}

/// A passage with its sentences' evidence and ranker scores.
#[derive(Clone)]
struct Ranked {
    passage: PassageScore,
    evidence: Vec<Evidence>,
    logits: Vec<f32>,
    /// `log P(question | passage)` when a language model re-ranked this passage.
    lm: Option<f32>,
}

impl Ranked {
    /// The best sentence's score (-inf without scored sentences).
    fn best_logit(&self) -> f32 {
        self.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}
