//! Answering a question from a collection: first-stage ranking ([`crate::rank`]), sentence evidence
//! ([`crate::features`]), re-ranking by the best sentence ([`crate::ranker`]), span extraction
//! ([`crate::extract`]).

use std::ops::Range;

use rightmodel_core::{Embedder, PassageReader};
use serde::{Deserialize, Serialize};

use crate::answer::{Answer, Citation, ScoredPassage};
use crate::collection::Collection;
use crate::confidence::confidence;
use crate::embed::embed_question;
use crate::extract::{extract, most_probable};
use crate::features::{passage_evidence, Evidence, EvidenceInput, QuestionInfo};
use crate::late::QuantisedQuery;
use crate::params::{AskParams, RetrievalMode};
use crate::rank::{rank, PassageScore, RankInput};
use crate::ranker::score;
use crate::read::best_match;
use crate::split::char_len;
use crate::store::StoredPassage;
use crate::DocsError;

/// A question as the collection's embedder sees it: its sentence vector (empty turns dense scores off)
/// and its token vectors (empty turns late interaction off), borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'a> {
    /// Unit sentence vector.
    pub vec: &'a [f32],
    /// Unit token vectors, rows concatenated.
    pub tokens: &'a [f32],
}

impl<'a> Query<'a> {
    /// A question known by its sentence vector only.
    pub fn vector(vec: &'a [f32]) -> Self {
        Query { vec, tokens: &[] }
    }
}

/// A question's vectors, owned (see [`Query`]).
#[derive(Debug, Clone, Default)]
pub struct QuestionVector {
    /// Unit sentence vector.
    pub vec: Vec<f32>,
    /// Unit token vectors, rows concatenated (empty when the embedder gives none).
    pub tokens: Vec<f32>,
}

impl QuestionVector {
    /// Borrowed, for the `ask` calls.
    pub fn query(&self) -> Query<'_> {
        Query { vec: &self.vec, tokens: &self.tokens }
    }
}

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

/// A sentence a language model read, with what it answered (see [`Collection::read_candidates`]).
#[derive(Debug, Clone, Serialize)]
pub struct ReadCandidate {
    /// Place of its passage after (re-)ranking, from 0.
    pub passage_place: usize,
    /// Place of the sentence in its passage's ranker order, from 0.
    pub sentence_place: usize,
    /// Source file.
    pub file: String,
    /// Character range of the passage in the file's cleaned text.
    pub passage_range: (usize, usize),
    /// The sentence.
    pub sentence: String,
    /// The sentence ranker's score.
    pub logit: f32,
    /// `log P(question | passage)` when the passage was re-ranked.
    pub passage_lm: Option<f32>,
    /// What the model answered.
    pub reading: rightmodel_core::Reading,
    /// The sentence's words closest to it, if any.
    pub span: Option<String>,
    /// Their token F1 against the model's answer (0 without a match).
    pub match_f1: f32,
    /// The span scorer's answer in the sentence: the answer's span when the reading matched nothing.
    #[serde(default)]
    pub extracted: Option<String>,
}

/// First-stage ranking plus the evidence of the first passages' sentences.
struct Analysis {
    ranked: Vec<PassageScore>,
    /// Whether the evidence has late-interaction features (the collection and the question have token
    /// vectors): it chooses the ranker's and the confidence model's weights.
    late: bool,
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
            return self.ask_scored(question, Query::default(), k, params, None);
        }
        let q = self.question_vector(embedder, question)?;
        self.ask_scored(question, q.query(), k, params, None)
    }

    /// The question's vectors from `embedder` (token vectors only when the collection keeps them), after
    /// checking the question, that the collection has passages, and that `embedder` is the model it was
    /// indexed with (for [`Collection::ask_scored`]).
    pub fn question_vector(&self, embedder: &dyn Embedder, question: &str) -> Result<QuestionVector, DocsError> {
        check_question(question)?;
        if self.passage_count() == 0 {
            return Err(DocsError::EmptyCollection);
        }
        self.check_embedder(embedder)?;
        if self.snap.tokens.is_none() {
            return Ok(QuestionVector { vec: crate::embed::embed_one(embedder, question)?, tokens: Vec::new() });
        }
        let (vec, tokens) = embed_question(embedder, question)?;
        Ok(QuestionVector { vec, tokens })
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
        let q = self.question_vector(embedder, question)?;
        self.ask_scored(question, q.query(), k, params, Some(scorer))
    }

    /// Answers `question` given its vectors from the collection's embedder (see [`Query`]), for callers
    /// that embed questions in batches.
    pub fn ask_with_vector(
        &self,
        question: &str,
        q: Query<'_>,
        k: usize,
        params: &AskParams,
    ) -> Result<Answer, DocsError> {
        self.ask_scored(question, q, k, params, None)
    }

    /// [`Collection::ask_with_vector`] with a language model reading the passages when there is one (see
    /// [`Collection::ask_with_reader`]).
    pub fn ask_scored(
        &self,
        question: &str,
        q: Query<'_>,
        k: usize,
        params: &AskParams,
        scorer: Option<&dyn PassageReader>,
    ) -> Result<Answer, DocsError> {
        let items = self.ranked(question, q, k, params, scorer)?;
        let reader = scorer.filter(|_| params.lm_read);
        self.build_answer(question, k, params, &items, reader)
    }

    /// Every sentence `reader` reads for `question` under `params` (see [`AskParams::lm_read_sentences`]
    /// and [`AskParams::lm_read_passages`]), with what it answered. For fitting how readings choose the
    /// answer sentence (`eval docs --fit-read`).
    pub fn read_candidates(
        &self,
        question: &str,
        q: Query<'_>,
        params: &AskParams,
        reader: &dyn PassageReader,
    ) -> Result<Vec<ReadCandidate>, DocsError> {
        let items = self.ranked(question, q, 1, params, Some(reader))?;
        let mut out: Vec<ReadCandidate> = Vec::new();
        let mut analyzer = self.terms.clone();
        for (place, i) in reading_slots(&items, params, usize::MAX) {
            // Slots come best first within each passage.
            let sentence_place = out.iter().filter(|c| c.passage_place == place).count();
            let item = &items[place];
            let passage = &self.snap.passages[item.passage.row];
            let sentence = sentence_text(passage, i).to_string();
            let reading = reader.read_answer(&sentence, question)?;
            let found = best_match(&reading.text, &sentence);
            let extracted = most_probable(question, &sentence, &mut analyzer).map(|r| sentence[r].to_string());
            out.push(ReadCandidate {
                passage_place: place,
                sentence_place,
                file: passage.file.clone(),
                passage_range: (passage.start, passage.end),
                logit: item.logits[i],
                passage_lm: item.lm,
                span: found.as_ref().map(|m| sentence[m.range.clone()].to_string()),
                match_f1: found.map_or(0.0, |m| m.f1),
                extracted,
                sentence,
                reading,
            });
        }
        Ok(out)
    }

    /// The sentence the reader's readings choose (see [`AskParams::read_weights`]); `None` when nothing
    /// was read. Without a span (the reading matched none of its words) the span scorer finds one.
    ///
    /// A reading that matches none of the sentence's words says the small model misread, not that the
    /// sentence is wrong: such a sentence stays a candidate on its ranker score (with a match of 0).
    /// Dropping it, as an earlier version did, moved the answer off the ranker's best sentence whenever
    /// the model wrote a paraphrase, a misspelling or a made-up answer there, and it was right more often
    /// than the sentence that replaced it.
    ///
    /// The choice key of a sentence is bounded before it is read (its ranker score and place are known,
    /// a log-probability is at most 0 and a match at most 1), so sentences are read in order of that
    /// bound and reading stops once the best key so far reaches the next bound: the same choice as
    /// reading them all, with about two readings instead of five on SQuAD.
    fn read_best(
        &self,
        question: &str,
        k: usize,
        params: &AskParams,
        items: &[Ranked],
        reader: &dyn PassageReader,
    ) -> Result<Option<ReadChoice>, DocsError> {
        let w = &params.read_weights;
        let mut slots: Vec<(f32, usize, usize)> = reading_slots(items, params, k)
            .into_iter()
            .map(|(place, i)| (w.upper_bound(items[place].logits[i], place), place, i))
            .collect();
        // Highest bound first; ties keep the slot order (better ranked first).
        slots.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best: Option<(f32, ReadChoice)> = None;
        for (bound, place, i) in slots {
            if best.as_ref().is_some_and(|b| b.0 >= bound) {
                break;
            }
            let item = &items[place];
            let sentence = sentence_text(&self.snap.passages[item.passage.row], i);
            let reading = reader.read_answer(sentence, question)?;
            let found = best_match(&reading.text, sentence);
            let key = w.key(item.logits[i], place, &reading, found.as_ref().map_or(0.0, |m| m.f1));
            // Ties keep the sentence read first.
            if best.as_ref().is_none_or(|b| key > b.0) {
                best = Some((key, ReadChoice { place, sentence: i, span: found.map(|m| m.range) }));
            }
        }
        Ok(best.map(|(_, choice)| choice))
    }

    /// The passages for `question`, ranked (and re-ranked by `scorer` when there is one), the first ones
    /// with their sentences' evidence and ranker scores.
    fn ranked(
        &self,
        question: &str,
        q: Query<'_>,
        k: usize,
        params: &AskParams,
        scorer: Option<&dyn PassageReader>,
    ) -> Result<Vec<Ranked>, DocsError> {
        check_question(question)?;
        let k = k.max(1);
        let scored = params.rerank_depth.max(1);
        let Analysis { ranked, late, evidence } = self.analyse(question, q, params, k.max(scored), scored)?;
        let mut items: Vec<Ranked> = ranked
            .into_iter()
            .enumerate()
            .map(|(i, passage)| {
                let evidence = evidence.get(i).cloned().unwrap_or_default();
                let logits = evidence.iter().map(|e| score(e, late)).collect();
                Ranked { passage, evidence, logits, lm: None, late }
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
        Ok(items)
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
        // Only passages the sentence ranker scored: the answer comes from their sentences.
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
        q: Query<'_>,
        params: &AskParams,
    ) -> Result<Vec<SentenceCandidate>, DocsError> {
        let depth = params.rerank_depth.max(1);
        let Analysis { ranked, evidence, .. } = self.analyse(question, q, params, depth, depth)?;
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
        q: Query<'_>,
        params: &AskParams,
        depth: usize,
        scored: usize,
    ) -> Result<Analysis, DocsError> {
        if question.trim().is_empty() {
            return Err(DocsError::EmptyQuestion);
        }
        let Some(lexical) = &self.lexical else { return Err(DocsError::EmptyCollection) };
        let dim = self.snap.passage_vecs.dim();
        let q_vec = q.vec;
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
        // Token vectors count only beside a sentence vector (a lexical-only ask has neither).
        let late_query = match &self.snap.tokens {
            Some(t) if !q_vec.is_empty() && !q.tokens.is_empty() && q.tokens.len().is_multiple_of(t.dim()) => {
                Some((t, QuantisedQuery::new(q.tokens, t.dim())))
            }
            _ => None,
        };
        let late = late_query.as_ref().map(|(t, q)| (*t, q));
        let ev_input = EvidenceInput {
            question: &info,
            q_vec,
            late,
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
        Ok(Analysis { ranked, late: late.is_some(), evidence })
    }

    /// The answer from the (re-)ranked passages: the best sentence of the first passage, its span,
    /// citations and confidence. With a `reader`, it reads the best sentences of the first passages
    /// (see [`AskParams::lm_read_sentences`]); the reading [`AskParams::read_weights`] rank first gives
    /// the answer sentence, which may lie in a later passage, and the answer is the words of it closest
    /// to what the model said.
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
        let Some(&first_best) = sentence_order(top, params).first() else { return Ok(answer) };
        // The ranker's best sentence of the first passage, unless the reader's readings choose another.
        let (mut place, mut best, mut read_span) = (0, first_best, None);
        if let Some(reader) = reader {
            if let Some(choice) = self.read_best(question, k, params, items, reader)? {
                (place, best, read_span) = (choice.place, choice.sentence, choice.span);
                if read_span.is_some() {
                    answer.read_by = Some(reader.model_id().to_string());
                }
            }
        }
        let item = &items[place];
        let passage = &self.snap.passages[item.passage.row];
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
            // The language model read and matched nothing: its fallback is the scorer's best span.
            None if reader.is_some() => {
                most_probable(question, &answer.sentence, &mut analyzer).map(|r| cite(s + r.start, s + r.end))
            }
            None => extract(question, &answer.sentence, &mut analyzer).map(|r| cite(s + r.start, s + r.end)),
        };
        answer.answer = answer.span.as_ref().map_or_else(|| answer.sentence.clone(), |c| c.text.clone());
        // Score and lead of a sentence of passage `p` over the best sentence of the first other passage.
        let lead = |p: usize, i: usize| {
            let score = items[p].logits[i];
            let other = items.iter().enumerate().find(|(j, _)| *j != p).map(|(_, r)| r.best_logit());
            match other {
                Some(next) if next.is_finite() => (score, score - next),
                // The next passage was not scored (re-scoring depth 0): as far ahead as can be.
                Some(_) => (score, 10.0),
                // No other passage to lead (a collection of one): no lead rather than the largest,
                // which added 2.4 to the logit and made any answer of a one-paragraph file look sure.
                None => (score, 0.0),
            }
        };
        (answer.score, answer.margin) = lead(place, best);
        answer.evidence = item.evidence[best];
        answer.confidence = confidence(&answer.evidence, answer.score, answer.margin, item.late);
        if (place, best) != (0, first_best) {
            // The reader chose another sentence than the ranker: its own evidence, and a lead that is
            // negative when it lies in a passage the ranker put lower, would say "unsure" exactly when
            // the model found the answer elsewhere. The ranker's confidence that the collection answers
            // the question still holds, so the answer keeps the larger of the two.
            let (score, margin) = lead(0, first_best);
            answer.confidence = answer.confidence.max(confidence(&top.evidence[first_best], score, margin, top.late));
        }
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

/// The sentence the readings chose (see [`Collection::read_best`]).
struct ReadChoice {
    /// Place of its passage in the ranked list.
    place: usize,
    /// Its index in the passage.
    sentence: usize,
    /// The span of it closest to the reading (byte range in the sentence); `None` when the reading
    /// matched none of its words.
    span: Option<Range<usize>>,
}

/// A passage with its sentences' evidence and ranker scores.
#[derive(Clone)]
struct Ranked {
    passage: PassageScore,
    evidence: Vec<Evidence>,
    logits: Vec<f32>,
    /// `log P(question | passage)` when a language model re-ranked this passage.
    lm: Option<f32>,
    /// Whether `evidence` has late-interaction features (see [`Analysis::late`]).
    late: bool,
}

impl Ranked {
    /// The best sentence's score (-inf without scored sentences).
    fn best_logit(&self) -> f32 {
        self.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// The sentences of `r` best first (ranker score, or word overlap for the lexical baseline; ties: the
/// earlier one).
fn sentence_order(r: &Ranked, params: &AskParams) -> Vec<usize> {
    let key = |i: usize| if params.lexical_sentences { r.evidence[i].overlap } else { r.logits[i] };
    let mut order: Vec<usize> = (0..r.evidence.len().min(r.logits.len())).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}

/// The sentences a reader reads, as (passage place, sentence index): the first passage's
/// `lm_read_sentences` best, then the best one of each further passage up to `lm_read_passages`, and
/// only among the first `k` (the passages an answer lists, so that it cites one of them). Only passages
/// the sentence ranker scored take part.
fn reading_slots(items: &[Ranked], params: &AskParams, k: usize) -> Vec<(usize, usize)> {
    let mut slots = Vec::new();
    for (place, item) in items.iter().enumerate().take(params.lm_read_passages.max(1).min(k.max(1))) {
        let n = if place == 0 { params.lm_read_sentences.max(1) } else { 1 };
        slots.extend(sentence_order(item, params).into_iter().take(n).map(|i| (place, i)));
    }
    slots
}

/// Sentence `i` of `passage` ("" when out of range).
fn sentence_text(passage: &StoredPassage, i: usize) -> &str {
    passage.sentences.get(i).and_then(|&(s, e)| passage.text.get(s as usize..e as usize)).unwrap_or("")
}
