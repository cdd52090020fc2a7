//! Document-QA evaluation on a SQuAD-format file: articles become documents (one paragraph per
//! passage), every question is asked, and the answer is scored against the question's paragraph and gold
//! answers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rightmodel_core::{Embedder, PassageReader};
use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::ask::{Query, SentenceCandidate};
use crate::confidence::{features as conf_features, N_CONF};
use crate::dense::Matrix;
use crate::extract::{span_candidates, N_SPAN};
use crate::features::N_FEATURES;
use crate::learn::Group;
use crate::params::AskParams;
use crate::split::char_len;
use crate::split::split_sentences;
use crate::squad::normalize_answer;
use crate::squad::{contains_answer, exact_match, f1, SquadFile};
use crate::terms::Terms;
use crate::{Collection, DocsError};

/// Passages retrieved per question (hit@5 needs five).
pub const TOP_K: usize = 5;

/// A question with what a right answer looks like.
#[derive(Debug, Clone)]
pub struct EvalQuestion {
    /// The question.
    pub question: String,
    /// Gold answers.
    pub golds: Vec<String>,
    /// Index of its article.
    pub article: usize,
    /// Character range of its paragraph in the article's file.
    pub paragraph: (usize, usize),
}

/// A SQuAD file laid out as documents: one text per article, paragraphs separated by blank lines.
#[derive(Debug, Clone)]
pub struct EvalCorpus {
    /// File name and text of each article.
    pub articles: Vec<(String, String)>,
    /// All questions with a gold answer, in file order.
    pub questions: Vec<EvalQuestion>,
    /// Questions left out for having no gold answer (SQuAD 2.0's unanswerable ones): every metric
    /// here scores a returned answer against gold ones, which would count each of them as a miss.
    pub unanswerable: usize,
}

/// Lays out `squad` as documents. Line breaks inside a paragraph become spaces so that a paragraph is
/// exactly one block. Questions without a gold answer are counted, not asked.
pub fn build_corpus(squad: &SquadFile) -> EvalCorpus {
    let mut articles = Vec::new();
    let mut questions = Vec::new();
    let mut unanswerable = 0;
    for (a, article) in squad.data.iter().enumerate() {
        let mut text = String::new();
        let mut chars = 0;
        for p in &article.paragraphs {
            if !text.is_empty() {
                text.push_str("\n\n");
                chars += 2;
            }
            let para: String = p.context.split_whitespace().collect::<Vec<_>>().join(" ");
            let len = char_len(&para);
            text.push_str(&para);
            for qa in &p.qas {
                if !qa.is_answerable() {
                    unanswerable += 1;
                    continue;
                }
                questions.push(EvalQuestion {
                    question: qa.question.clone(),
                    golds: qa.answers.iter().map(|g| g.text.clone()).collect(),
                    article: a,
                    paragraph: (chars, chars + len),
                });
            }
            chars += len;
        }
        let safe: String =
            article.title.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).take(60).collect();
        articles.push((format!("{a:03}_{safe}.txt"), text));
    }
    EvalCorpus { articles, questions, unanswerable }
}

/// Writes the article files into `dir` (created if missing); unchanged files are left alone so that a
/// kept collection sees them as unchanged. Returns their paths.
pub fn write_articles(corpus: &EvalCorpus, dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    std::fs::create_dir_all(dir).map_err(|e| DocsError::io(dir, e))?;
    let mut paths = Vec::new();
    for (name, text) in &corpus.articles {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            crate::store::write_atomic(&path, text.as_bytes())?;
        }
        paths.push(std::fs::canonicalize(&path).map_err(|e| DocsError::io(&path, e))?);
    }
    Ok(paths)
}

/// `limit` questions spread evenly over `n` (all when `limit` is `None` or at least `n`).
pub fn spread(n: usize, limit: Option<usize>) -> Vec<usize> {
    match limit {
        Some(l) if l < n => (0..l).map(|i| i * n / l).collect(),
        _ => (0..n).collect(),
    }
}

/// Scores of one answered question.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct QuestionScore {
    /// The first passage is (part of) the question's paragraph.
    pub hit1: bool,
    /// One of the first five is.
    pub hit5: bool,
    /// The answer sentence contains a gold answer.
    pub in_sentence: bool,
    /// Exact match of the extracted answer.
    pub em: f32,
    /// F1 of the extracted answer.
    pub f1: f32,
    /// Time to answer, milliseconds.
    pub ms: f32,
    /// The answer's confidence.
    pub confidence: f32,
}

/// Scores `answer` to `q`, whose article file is `article_path`.
pub fn score_answer(answer: &Answer, q: &EvalQuestion, article_path: &str, ms: f32) -> QuestionScore {
    let hit = |p: &crate::ScoredPassage| p.file == article_path && p.start < q.paragraph.1 && q.paragraph.0 < p.end;
    QuestionScore {
        hit1: answer.passages.first().is_some_and(hit),
        hit5: answer.passages.iter().take(TOP_K).any(hit),
        in_sentence: contains_answer(&answer.sentence, &q.golds),
        em: exact_match(&answer.answer, &q.golds),
        f1: f1(&answer.answer, &q.golds),
        ms,
        confidence: answer.confidence,
    }
}

/// Passage hit@1 of language-model re-ranking at each depth, ranker weight and rank penalty, from answers
/// produced with the language model scoring the first [`TOP_K`] passages (their passages carry both scores,
/// so every combination is replayed without asking the model again). Rows: (depth, weight, penalty, hit@1).
pub fn lm_grid(
    answers: &[(usize, Answer)],
    corpus: &EvalCorpus,
    article_paths: &[String],
    depths: &[usize],
    weights_and_penalties: &[(f32, f32)],
) -> Vec<(usize, f32, f32, f32)> {
    let mut rows = Vec::new();
    for &d in depths {
        for &(w, pen) in weights_and_penalties {
            let mut hits = 0usize;
            for (i, a) in answers {
                let q = &corpus.questions[*i];
                // The sentence ranker's order (a stable sort by its score), then the re-ranking key.
                let mut ps: Vec<&crate::ScoredPassage> = a.passages.iter().collect();
                ps.sort_by(|x, y| {
                    let (x, y) =
                        (x.rerank_score.unwrap_or(f32::NEG_INFINITY), y.rerank_score.unwrap_or(f32::NEG_INFINITY));
                    y.total_cmp(&x)
                });
                let key = |place: usize, p: &crate::ScoredPassage| {
                    p.question_log_likelihood.unwrap_or(f32::NEG_INFINITY) + w * p.rerank_score.unwrap_or(0.0)
                        - pen * place as f32
                };
                let top = ps
                    .iter()
                    .take(d.max(1))
                    .enumerate()
                    .reduce(|best, p| if key(p.0, p.1) > key(best.0, best.1) { p } else { best })
                    .map(|(_, p)| *p);
                let path = &article_paths[q.article];
                if top.is_some_and(|p| &p.file == path && p.start < q.paragraph.1 && q.paragraph.0 < p.end) {
                    hits += 1;
                }
            }
            rows.push((d, w, pen, hits as f32 / answers.len().max(1) as f32));
        }
    }
    rows
}

impl EvalSet<'_> {
    /// Confidences of questions `which` asked with their own article excluded (out-of-scope
    /// questions: the collection does not hold the answer).
    pub fn out_of_scope(
        &self,
        which: &[usize],
        q_vecs: &QuestionVectors,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>, DocsError> {
        let mut out = Vec::with_capacity(which.len());
        for (done, &i) in which.iter().enumerate() {
            let q = &self.corpus.questions[i];
            let params =
                AskParams { exclude_files: vec![self.article_paths[q.article].clone()], ..AskParams::default() };
            out.push(self.collection.ask_with_vector(&q.question, q_vecs.row(i), TOP_K, &params)?.confidence);
            progress(done + 1);
        }
        Ok(out)
    }

    /// Training rows for the confidence model from questions `which`: each question asked normally
    /// (label: the answer sentence contains a gold answer) and asked with its own article excluded
    /// (label: false, the collection cannot answer it).
    pub fn confidence_rows(
        &self,
        which: &[usize],
        q_vecs: &QuestionVectors,
    ) -> Result<Vec<([f32; N_CONF], bool)>, DocsError> {
        let mut rows = Vec::new();
        for &i in which {
            let q = &self.corpus.questions[i];
            let a = self.collection.ask_with_vector(&q.question, q_vecs.row(i), TOP_K, &AskParams::default())?;
            rows.push((conf_features(&a.evidence, a.score, a.margin), contains_answer(&a.sentence, &q.golds)));
            let without =
                AskParams { exclude_files: vec![self.article_paths[q.article].clone()], ..AskParams::default() };
            let a = self.collection.ask_with_vector(&q.question, q_vecs.row(i), TOP_K, &without)?;
            rows.push((conf_features(&a.evidence, a.score, a.margin), false));
        }
        Ok(rows)
    }
}

/// Every question's vectors for [`EvalSet::run`] with cached vectors: row `i` is question `i` (empty for
/// questions not embedded).
pub struct QuestionVectors {
    vecs: Matrix,
    tokens: Vec<Vec<f32>>,
}

impl QuestionVectors {
    /// Question `i`'s vectors.
    pub fn row(&self, i: usize) -> Query<'_> {
        Query { vec: self.vecs.row(i), tokens: self.tokens.get(i).map_or(&[][..], Vec::as_slice) }
    }
}

/// Embeds the questions `which` of `corpus` (with token vectors when the collection keeps them); row
/// `i` of the result is question `i` (zero for questions not in `which`), for [`EvalSet::run`] with
/// cached vectors.
pub fn question_vectors(
    embedder: &dyn Embedder,
    corpus: &EvalCorpus,
    which: &[usize],
    progress: &mut dyn FnMut(usize),
) -> Result<QuestionVectors, DocsError> {
    let texts: Vec<&str> = which.iter().map(|&i| corpus.questions[i].question.as_str()).collect();
    let (vecs, tokens) = crate::embed::embed_all(embedder, &texts, progress)?;
    let mut rows = vec![None; corpus.questions.len()];
    for (r, &i) in which.iter().enumerate() {
        rows[i] = Some(r);
    }
    let zero = vec![0.0f32; vecs.dim()];
    let mut out = Matrix::new(vecs.dim());
    let mut token_rows = Vec::new();
    for r in rows {
        out.push(r.map_or(&zero[..], |r| vecs.row(r)));
        if let Some(t) = &tokens {
            token_rows.push(r.map_or_else(Vec::new, |r| t.sentence_f32(r)));
        }
    }
    Ok(QuestionVectors { vecs: out, tokens: token_rows })
}

/// Writes one JSON line per answered question (question, gold answers, answer, sentence, scores,
/// evidence, top passages) to `path`, for error analysis.
pub fn write_dump(
    path: &Path,
    corpus: &EvalCorpus,
    which: &[usize],
    answers: &[(QuestionScore, Answer)],
) -> Result<(), DocsError> {
    let mut lines = String::new();
    for (&i, (score, answer)) in which.iter().zip(answers) {
        let q = &corpus.questions[i];
        let line = serde_json::json!({
            "question": q.question, "golds": q.golds, "article": q.article, "paragraph": q.paragraph,
            "answer": answer.answer, "sentence": answer.sentence, "confidence": answer.confidence,
            "score": score, "evidence": answer.evidence,
            "top": answer.passages.iter().map(|p| (&p.file, p.start, p.end)).collect::<Vec<_>>(),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    crate::store::write_atomic(path, lines.as_bytes())
}

/// Training groups for the span extractor from questions `which`: for every sentence of the
/// question's paragraph that contains a gold answer, its candidate spans, positive when equal to a gold
/// answer after SQuAD normalisation. Sentences without a positive candidate are left out.
pub fn span_groups(corpus: &EvalCorpus, which: &[usize]) -> Vec<Group<N_SPAN>> {
    let mut analyzer = Terms::default();
    let mut groups = Vec::new();
    for &i in which {
        let q = &corpus.questions[i];
        let text = &corpus.articles[q.article].1;
        let paragraph: String = text.chars().skip(q.paragraph.0).take(q.paragraph.1 - q.paragraph.0).collect();
        let golds: Vec<String> = q.golds.iter().map(|g| normalize_answer(g)).collect();
        for r in split_sentences(&paragraph, 0..paragraph.len()) {
            let sentence = &paragraph[r];
            if !contains_answer(sentence, &q.golds) {
                continue;
            }
            let g: Group<N_SPAN> = span_candidates(&q.question, sentence, &mut analyzer)
                .into_iter()
                .map(|c| {
                    let hit = golds.contains(&normalize_answer(&sentence[c.range]));
                    (c.features, hit)
                })
                .collect();
            if g.iter().any(|c| c.1) {
                groups.push(g);
            }
        }
    }
    groups
}

/// Aggregate metrics (the keys of `eval docs --json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Questions scored.
    pub questions: usize,
    /// Passage hit@1.
    pub hit_at_1: f32,
    /// Passage hit@5.
    pub hit_at_5: f32,
    /// Share of answer sentences containing a gold answer.
    pub answer_in_sentence: f32,
    /// Exact match of extracted answers.
    pub em: f32,
    /// F1 of extracted answers.
    pub f1: f32,
    /// Median time per question, ms.
    pub p50_ms: f32,
    /// 99th percentile time per question, ms.
    pub p99_ms: f32,
    /// Mean confidence when the sentence holds the answer.
    pub confidence_right: f32,
    /// Mean confidence when it does not.
    pub confidence_wrong: f32,
    /// Area under the ROC curve of confidence for "the sentence holds the answer" (0.5 = no signal).
    pub confidence_auc: f32,
}

/// Aggregates question scores.
pub fn summarize(scores: &[QuestionScore]) -> Metrics {
    let n = scores.len();
    if n == 0 {
        return Metrics::default();
    }
    let mean = |f: &dyn Fn(&QuestionScore) -> f32| scores.iter().map(f).sum::<f32>() / n as f32;
    let mut ms: Vec<f32> = scores.iter().map(|s| s.ms).collect();
    ms.sort_by(f32::total_cmp);
    let pct = |p: f32| ms[((p * (n - 1) as f32).round() as usize).min(n - 1)];
    let conf_mean = |right: bool| {
        let v: Vec<f32> = scores.iter().filter(|s| s.in_sentence == right).map(|s| s.confidence).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f32>() / v.len() as f32
        }
    };
    Metrics {
        questions: n,
        hit_at_1: mean(&|s| s.hit1 as u8 as f32),
        hit_at_5: mean(&|s| s.hit5 as u8 as f32),
        answer_in_sentence: mean(&|s| s.in_sentence as u8 as f32),
        em: mean(&|s| s.em),
        f1: mean(&|s| s.f1),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        confidence_right: conf_mean(true),
        confidence_wrong: conf_mean(false),
        confidence_auc: auc(&scores.iter().map(|s| (s.confidence, s.in_sentence)).collect::<Vec<_>>()),
    }
}

/// Area under the ROC curve of `(score, label)` pairs: the chance that a random positive scores above a
/// random negative (ties count half); 0.5 when one class is missing.
pub fn auc(rows: &[(f32, bool)]) -> f32 {
    let mut sorted: Vec<(f32, bool)> = rows.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0f64, 0);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += mid * sorted[i..j].iter().filter(|r| r.1).count() as f64;
        i = j;
    }
    let pos = sorted.iter().filter(|r| r.1).count() as f64;
    let neg = sorted.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    ((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)) as f32
}

/// A collection loaded with a corpus, ready to be asked its questions.
pub struct EvalSet<'a> {
    /// The collection.
    pub collection: &'a Collection,
    /// The corpus.
    pub corpus: &'a EvalCorpus,
    /// Paths of the article files as the collection knows them.
    pub article_paths: Vec<String>,
}

impl EvalSet<'_> {
    /// Asks questions `which` and scores them. With `embedder`, each question is embedded as part of
    /// the timed call (end-to-end latency); otherwise `q_vecs` (row per question of the corpus) is used.
    pub fn run(
        &self,
        which: &[usize],
        embedder: Option<&dyn Embedder>,
        q_vecs: Option<&QuestionVectors>,
        params: &AskParams,
        scorer: Option<&dyn PassageReader>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<(QuestionScore, Answer)>, DocsError> {
        let mut out = Vec::with_capacity(which.len());
        for (done, &i) in which.iter().enumerate() {
            let q = &self.corpus.questions[i];
            let t = Instant::now();
            let answer = match (embedder, q_vecs, scorer) {
                (Some(e), _, Some(s)) => self.collection.ask_with_reader(e, &q.question, TOP_K, params, s)?,
                (Some(e), _, None) => self.collection.ask_with(e, &q.question, TOP_K, params)?,
                (None, Some(v), s) => self.collection.ask_scored(&q.question, v.row(i), TOP_K, params, s)?,
                (None, None, s) => self.collection.ask_scored(&q.question, Query::default(), TOP_K, params, s)?,
            };
            let ms = t.elapsed().as_secs_f32() * 1000.0;
            out.push((score_answer(&answer, q, &self.article_paths[q.article], ms), answer));
            progress(done + 1);
        }
        Ok(out)
    }

    /// The candidate sentences of question `i` (every sentence of the first `params.rerank_depth`
    /// passages, in first-stage order), each with whether its passage is (part of) the question's
    /// paragraph and whether it contains a gold answer.
    fn labelled_candidates(
        &self,
        i: usize,
        q_vecs: &QuestionVectors,
        params: &AskParams,
    ) -> Result<Vec<(SentenceCandidate, bool, bool)>, DocsError> {
        let q = &self.corpus.questions[i];
        let path = &self.article_paths[q.article];
        Ok(self
            .collection
            .sentence_candidates(&q.question, q_vecs.row(i), params)?
            .into_iter()
            .map(|c| {
                let in_paragraph =
                    &c.file == path && c.passage_range.0 < q.paragraph.1 && q.paragraph.0 < c.passage_range.1;
                let contains = contains_answer(&c.sentence, &q.golds);
                (c, in_paragraph, contains)
            })
            .collect())
    }

    /// Training groups for the sentence ranker from questions `which`: every candidate sentence of the
    /// first `params.rerank_depth` passages, positive when it lies in the question's paragraph and
    /// contains a gold answer.
    pub fn ranker_groups(
        &self,
        which: &[usize],
        q_vecs: &QuestionVectors,
        params: &AskParams,
    ) -> Result<Vec<Group<N_FEATURES>>, DocsError> {
        let mut groups = Vec::new();
        for &i in which {
            let g = self.labelled_candidates(i, q_vecs, params)?;
            groups.push(g.into_iter().map(|(c, para, contains)| (c.evidence.to_array(), para && contains)).collect());
        }
        Ok(groups)
    }

    /// Writes the sentence ranker's candidates of questions `which` to `path`, one JSON line per
    /// question, for fitting rankers outside this crate: `question` (index), `article`, `held_out`
    /// (article not among the first `tune_articles`), and per candidate in first-stage order `passage`
    /// (id), `gold_passage` (the passage is the question's paragraph), `contains` (the sentence holds a
    /// gold answer) and `features` ([`crate::features::Evidence::to_array`] order). The ranker's best
    /// candidate gives passage hit@1 (its passage is the gold one) and answer-in-sentence (it contains
    /// a gold answer); ties go to the earlier candidate.
    pub fn write_ranker_dump(
        &self,
        path: &Path,
        which: &[usize],
        q_vecs: &QuestionVectors,
        params: &AskParams,
        tune_articles: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), DocsError> {
        let mut lines = String::new();
        for (done, &i) in which.iter().enumerate() {
            let article = self.corpus.questions[i].article;
            let candidates: Vec<serde_json::Value> = self
                .labelled_candidates(i, q_vecs, params)?
                .into_iter()
                .map(|(c, para, contains)| {
                    serde_json::json!({
                        "passage": c.passage_id, "gold_passage": para, "contains": contains,
                        "features": c.evidence.to_array(),
                    })
                })
                .collect();
            let line = serde_json::json!({
                "question": i, "article": article, "held_out": article >= tune_articles, "candidates": candidates,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
            progress(done + 1);
        }
        crate::store::write_atomic(path, lines.as_bytes())
    }

    /// Coordinate ascent over the retrieval and sentence weights on questions `which` (cached vectors):
    /// each knob in turn tries a few values with the others fixed and keeps the best, two rounds.
    /// Objective: hit@1 + answer-in-sentence + hit@5 / 2. Returns the best parameters and every tried
    /// configuration with its metrics.
    pub fn tune(
        &self,
        which: &[usize],
        q_vecs: &QuestionVectors,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(AskParams, Vec<(AskParams, Metrics)>), DocsError> {
        type Knob = (&'static [f32], fn(&mut AskParams, f32));
        let knobs: [Knob; 4] = [
            (&[0.5, 1.0, 1.5, 2.0, 3.0], |p, v| p.w_lexical = v),
            (&[0.0, 0.5, 1.0, 2.0], |p, v| p.w_dense = v),
            (&[0.0, 0.5, 1.0, 2.0], |p, v| p.w_sentence = v),
            (&[5.0, 10.0, 20.0, 40.0], |p, v| p.rerank_depth = v as usize),
        ];
        const ROUNDS: usize = 2;
        let total = ROUNDS * knobs.iter().map(|k| k.0.len()).sum::<usize>();
        let objective = |m: &Metrics| m.hit_at_1 + m.answer_in_sentence + 0.5 * m.hit_at_5;
        let mut tried = Vec::new();
        let mut best = AskParams::default();
        let mut best_score = f32::MIN;
        let mut step = 0;
        for _ in 0..ROUNDS {
            for (values, set) in &knobs {
                let mut round_best = (best_score, best.clone());
                for &v in values.iter() {
                    let mut p = best.clone();
                    set(&mut p, v);
                    let scores: Vec<QuestionScore> =
                        self.run(which, None, Some(q_vecs), &p, None, &mut |_| {})?.into_iter().map(|r| r.0).collect();
                    let m = summarize(&scores);
                    if objective(&m) > round_best.0 {
                        round_best = (objective(&m), p.clone());
                    }
                    tried.push((p, m));
                    step += 1;
                    progress(step, total);
                }
                best_score = round_best.0;
                best = round_best.1;
            }
        }
        Ok((best, tried))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::squad::{Article, GoldAnswer, Paragraph, Qa};

    #[test]
    fn corpus_offsets_cover_paragraphs() {
        let squad = SquadFile {
            data: vec![Article {
                title: "T/x".into(),
                paragraphs: vec![
                    Paragraph { context: "Alpha  beta.\nGamma.".into(), qas: vec![] },
                    Paragraph {
                        context: "Délta epsilon.".into(),
                        qas: vec![
                            Qa {
                                id: "1".into(),
                                question: "Q?".into(),
                                answers: vec![GoldAnswer { text: "epsilon".into() }],
                                is_impossible: false,
                            },
                            // SQuAD 2.0: unanswerable questions are counted, not asked.
                            Qa { id: "2".into(), question: "Zeta?".into(), answers: vec![], is_impossible: true },
                            Qa { id: "3".into(), question: "Eta?".into(), answers: vec![], is_impossible: false },
                        ],
                    },
                ],
            }],
        };
        let c = build_corpus(&squad);
        assert_eq!((c.questions.len(), c.unanswerable), (1, 2));
        assert_eq!(c.articles[0].0, "000_T_x.txt");
        assert_eq!(c.articles[0].1, "Alpha beta. Gamma.\n\nDélta epsilon.");
        let (s, e) = c.questions[0].paragraph;
        let text: String = c.articles[0].1.chars().skip(s).take(e - s).collect();
        assert_eq!(text, "Délta epsilon.");
        assert_eq!(spread(10, Some(3)), vec![0, 3, 6]);
        assert_eq!(auc(&[(0.1, false), (0.4, true), (0.3, false), (0.9, true)]), 1.0);
        assert_eq!(auc(&[(0.5, false), (0.5, true)]), 0.5);
    }
}
