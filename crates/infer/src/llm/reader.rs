//! A GGUF model reading document passages ([`rightmodel_core::PassageReader`]): `log P(question | passage)`
//! to re-rank them, and a short answer read off the answer sentence.
//!
//! The reader owns its own model and context on a dedicated thread (llama.cpp contexts are not `Sync`),
//! so it neither competes with the chat engine's slots nor blocks an async runtime. Each passage is
//! decoded with the question after it, logits read at the question's positions only, one passage at a
//! time: llama.cpp keeps a full-vocabulary row (1 MiB for Gemma's 262k tokens) per logit read, so a
//! batch of all passages would hold passages x question tokens of them, and a passage's score does not
//! depend on what shares its batch. The KV state after each passage is kept (least recently used out,
//! [`CACHE_BYTES`] in all), so a passage asked about again costs only the question's tokens: a chatbot
//! over a few documents sees the same passages again and again.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rightmodel_core::{PassageReader, Reading, ScoreError};

use crate::InferError;

/// Passage tokens kept (a longer passage is cut; passages are at most ~2,000 characters anyway).
const MAX_PASSAGE_TOKENS: usize = 512;
/// Question tokens scored: the first ones decide, and each costs a vocabulary-sized logit row.
const MAX_QUESTION_TOKENS: usize = 48;
/// Most passages one call scores.
pub const MAX_PASSAGES: usize = 8;
/// Room per sequence: passage, the "Question:" cue and the question.
const SEQ_TOKENS: usize = MAX_PASSAGE_TOKENS + MAX_QUESTION_TOKENS + 16;
/// Context tokens shown when reading an answer (the answer sentence; a longer context is cut).
const MAX_READ_CONTEXT_TOKENS: usize = 256;
/// Longest answer read, in tokens (SQuAD answers are a few words; a run-on answer stops here).
const MAX_ANSWER_TOKENS: usize = 16;
/// Worked examples before the context when reading an answer. A 270M base model follows a pattern far
/// better than an instruction; these are written for this purpose (no benchmark text), one per common
/// answer type: a date, a quantity, a person, a place, a reason, a term, a phrase, a list (eight
/// examples read answers 1.7 F1 points better than six on the tuning articles of SQuAD).
const READ_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "The lighthouse at Port Ellen was built in 1832 by the engineer Robert Stevenson and first lit two years later.",
        "When was the lighthouse at Port Ellen built?",
        "1832",
    ),
    (
        "The cooperative now has about 4,300 members, most of whom are dairy farmers in the northern valleys.",
        "How many members does the cooperative have?",
        "about 4,300",
    ),
    (
        "The treaty was negotiated by Anna Lindqvist, who later served as the country's first female foreign minister.",
        "Who negotiated the treaty?",
        "Anna Lindqvist",
    ),
    (
        "Most of the company's glass is produced at a plant in Leerdam, a small town south of Utrecht.",
        "Where is most of the company's glass produced?",
        "Leerdam",
    ),
    (
        "The bridge was closed in 1998 because corrosion had weakened its main cables.",
        "Why was the bridge closed in 1998?",
        "corrosion had weakened its main cables",
    ),
    (
        "The process that converts sugar into alcohol without oxygen is called fermentation.",
        "What is the process that converts sugar into alcohol called?",
        "fermentation",
    ),
    (
        "The orchestra's season opens each September with a free concert in the city's central park.",
        "What does the orchestra's season open with?",
        "a free concert",
    ),
    (
        "Early settlers used the bark of the birch tree to make canoes, containers and roofing.",
        "What did early settlers use birch bark to make?",
        "canoes, containers and roofing",
    ),
];
/// Context size: the examples, the context, the question and the answer fit; so does a scored passage.
const CTX_TOKENS: usize = 1024;
/// Memory for cached passage states (~18 KB per token for Gemma 3 270M: about 35 passages of 200 tokens).
pub const CACHE_BYTES: usize = 128 << 20;
/// Warming stops once the cache holds this much, leaving room for the passages questions bring.
const WARM_UNTIL_BYTES: usize = CACHE_BYTES / 10 * 9;

/// KV states after passage prefixes, keyed by their tokens; least recently used first out.
#[derive(Default)]
struct PrefixCache {
    entries: HashMap<Vec<i32>, (SeqState, u64)>,
    bytes: usize,
    clock: u64,
}

impl PrefixCache {
    fn get(&mut self, key: &[i32]) -> Option<&SeqState> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|e| {
            e.1 = clock;
            &e.0
        })
    }

    fn insert(&mut self, key: Vec<i32>, state: SeqState) {
        let size = state.byte_len();
        if size > CACHE_BYTES {
            return;
        }
        while self.bytes + size > CACHE_BYTES {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.1).map(|(k, _)| k.clone()) else { break };
            if let Some((s, _)) = self.entries.remove(&oldest) {
                self.bytes -= s.byte_len();
            }
        }
        self.clock += 1;
        self.bytes += size;
        if let Some((old, _)) = self.entries.insert(key, (state, self.clock)) {
            self.bytes -= old.byte_len();
        }
    }
}

/// What the reader's thread is asked, and where to send the result.
enum Job {
    /// `log P(question | passage)` for each passage.
    Score { question: String, passages: Vec<String>, reply: mpsc::Sender<Result<Vec<f32>, String>> },
    /// The answer to `question` read from `context`.
    Read { context: String, question: String, reply: mpsc::Sender<Result<Reading, String>> },
    /// Passages to decode into the cache while no other job waits.
    Warm { passages: Vec<String> },
    /// How many passages are cached, once every warming passage queued before it is done.
    Count { reply: mpsc::Sender<usize> },
}

/// Reads passages with a GGUF language model on a thread of its own.
pub struct LmReader {
    /// `None` once dropping: closing the channel ends the thread.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    max_passages: usize,
    model_id: String,
}

impl LmReader {
    /// Loads `model_path` on a new thread that scores up to `max_passages` passages per call with
    /// `threads` CPU threads. `model_id` names the model in answers.
    pub fn start(model_path: &Path, model_id: &str, max_passages: usize, threads: usize) -> Result<Self, InferError> {
        let max_passages = max_passages.clamp(1, MAX_PASSAGES);
        let path: PathBuf = model_path.to_path_buf();
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), InferError>>();
        let thread = std::thread::Builder::new()
            .name("rightmodel-reader".into())
            .spawn(move || worker(&path, threads, rx, ready_tx))
            .map_err(|e| InferError::Engine(format!("cannot start the reading thread: {e}")))?;
        ready_rx.recv().map_err(|_| InferError::Stopped)??;
        Ok(LmReader { jobs: Some(jobs), thread: Some(thread), max_passages, model_id: model_id.to_string() })
    }

    /// Most passages scored in one call.
    pub fn max_passages(&self) -> usize {
        self.max_passages
    }

    /// Decodes `passages` into the passage cache in the background, one at a time and only while no
    /// question waits, so that the first questions about a small collection cost only their own tokens
    /// (~70 ms instead of ~260 ms per passage on 2 cores). Warming stops when the cache is nearly full:
    /// it never pushes out passages that questions have used. Returns at once.
    pub fn warm(&self, passages: &[&str]) {
        let passages = passages.iter().map(|p| p.to_string()).collect();
        let _ = self.send(Job::Warm { passages });
    }

    /// Passages whose state is cached (for tests and diagnostics); waits for the jobs sent before it,
    /// background warming included.
    pub fn cached_passages(&self) -> usize {
        let (reply, rx) = mpsc::channel();
        if self.send(Job::Count { reply }).is_err() {
            return 0;
        }
        rx.recv().unwrap_or(0)
    }
}

impl LmReader {
    fn send(&self, job: Job) -> Result<(), ScoreError> {
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }
}

fn stopped() -> ScoreError {
    ScoreError("the reading thread has stopped".into())
}

impl Drop for LmReader {
    /// Ends the thread and waits for it, so the model is freed before the process exits (llama.cpp's own
    /// teardown at exit must not race a thread still holding it).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl PassageReader for LmReader {
    fn question_log_likelihood(&self, question: &str, passages: &[&str]) -> Result<Vec<f32>, ScoreError> {
        if passages.is_empty() {
            return Ok(Vec::new());
        }
        if passages.len() > self.max_passages {
            return Err(ScoreError(format!("{} passages (at most {})", passages.len(), self.max_passages)));
        }
        let (reply, rx) = mpsc::channel();
        let passages = passages.iter().map(|p| p.to_string()).collect();
        self.send(Job::Score { question: question.to_string(), passages, reply })?;
        rx.recv().map_err(|_| stopped())?.map_err(ScoreError)
    }

    fn read_answer(&self, context: &str, question: &str) -> Result<Reading, ScoreError> {
        let (reply, rx) = mpsc::channel();
        self.send(Job::Read { context: context.to_string(), question: question.to_string(), reply })?;
        rx.recv().map_err(|_| stopped())?.map_err(ScoreError)
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}

/// The reading thread: loads the model, reports readiness, then answers jobs until the scorer is dropped.
fn worker(path: &Path, threads: usize, jobs: mpsc::Receiver<Job>, ready: mpsc::Sender<Result<(), InferError>>) {
    let loaded = (|| {
        let backend = super::engine::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| InferError::Load { path: path.display().to_string(), reason: e.to_string() })?;
        let n_ctx = CTX_TOKENS.max(SEQ_TOKENS) as u32;
        let threads = threads.clamp(1, 256) as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_ubatch(n_ctx)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        Ok::<_, InferError>((backend, model, params))
    })();
    let (backend, model, params) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(InferError::Engine(e.to_string())));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let vocab = model.vocab();
    let cue = vocab.tokenize(b"\nQuestion:", false, false);
    let examples: String =
        READ_EXAMPLES.iter().map(|(c, q, a)| format!("Context: {c}\nQuestion: {q}\nAnswer: {a}\n\n")).collect();
    let examples = vocab.tokenize(examples.as_bytes(), true, false);
    let mut batch = LlamaBatch::new(CTX_TOKENS.max(SEQ_TOKENS), 1);
    let mut cache = PrefixCache::default();
    // The worked examples' state, kept apart from the passage cache so passages never push it out.
    let mut examples_state = None;
    let passage_tokens = |p: &str| {
        let mut t = vocab.tokenize(format!("Passage: {}", p.trim()).as_bytes(), true, false);
        t.truncate(MAX_PASSAGE_TOKENS);
        t
    };
    // Passages waiting to be warmed; questions go first.
    let mut warming: VecDeque<String> = VecDeque::new();
    let warm_next = |warming: &mut VecDeque<String>,
                     ctx: &mut llama_cpp_2::context::LlamaContext,
                     batch: &mut LlamaBatch,
                     cache: &mut PrefixCache| {
        if cache.bytes >= WARM_UNTIL_BYTES {
            warming.clear();
            return;
        }
        let Some(p) = warming.pop_front() else { return };
        let key: Vec<LlamaToken> = passage_tokens(&p).into_iter().chain(cue_head(&cue)).collect();
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_prefix(ctx, batch, cache, &key)));
        if !matches!(done, Ok(Ok(()))) {
            // Warming is an optimisation: a failure ends it, and questions decode their passages as usual.
            warming.clear();
        }
    };
    loop {
        let job = if warming.is_empty() {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        } else {
            match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    warm_next(&mut warming, &mut ctx, &mut batch, &mut cache);
                    continue;
                }
            }
        };
        // A panic in one job (a llama.cpp binding error) fails that job, not every later one.
        let panicked = || "the reader panicked".to_string();
        match job {
            Job::Warm { passages } => warming.extend(passages),
            Job::Count { reply } => {
                while !warming.is_empty() {
                    warm_next(&mut warming, &mut ctx, &mut batch, &mut cache);
                }
                let _ = reply.send(cache.entries.len());
            }
            Job::Score { question, passages, reply } => {
                let mut q = vocab.tokenize(format!(" {}", question.trim()).as_bytes(), false, false);
                q.truncate(MAX_QUESTION_TOKENS);
                let passages: Vec<Vec<LlamaToken>> = passages.iter().map(|p| passage_tokens(p)).collect();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    passages.iter().map(|p| score_one(&mut ctx, &mut batch, &mut cache, p, &cue, &q)).collect::<Result<
                        Vec<f32>,
                        String,
                    >>(
                    )
                }))
                .unwrap_or_else(|_| Err(panicked()));
                let _ = reply.send(result);
            }
            Job::Read { context, question, reply } => {
                let mut c = vocab.tokenize(format!("Context: {}", one_line(&context)).as_bytes(), false, false);
                c.truncate(MAX_READ_CONTEXT_TOKENS);
                let mut q = vocab.tokenize(format!("\nQuestion: {}", one_line(&question)).as_bytes(), false, false);
                q.truncate(MAX_QUESTION_TOKENS);
                q.extend(vocab.tokenize(b"\nAnswer:", false, false));
                let prompt: Vec<LlamaToken> = c.into_iter().chain(q).collect();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read_one(&mut ctx, &mut batch, &mut examples_state, &model, &examples, &prompt)
                }))
                .unwrap_or_else(|_| Err(panicked()));
                let _ = reply.send(result);
            }
        }
    }
}

/// `text` with its line breaks turned into spaces: a line break ends an answer, and in the prompt it
/// would look like the start of a new field.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Greedy answer after `examples` (their KV state kept in `examples_state` after the first call) and
/// `prompt`, up to [`MAX_ANSWER_TOKENS`] tokens or the first line break, with the log-probability of
/// each token chosen (the closing line break or end included).
fn read_one(
    ctx: &mut llama_cpp_2::context::LlamaContext,
    batch: &mut LlamaBatch,
    examples_state: &mut Option<SeqState>,
    model: &LlamaModel,
    examples: &[LlamaToken],
    prompt: &[LlamaToken],
) -> Result<Reading, String> {
    ctx.clear_kv_cache();
    match examples_state {
        Some(state) => ctx.state_seq_set(state, 0).map_err(|e| e.to_string())?,
        None => {
            batch.clear();
            for (pos, &tok) in examples.iter().enumerate() {
                batch.add(tok, pos as i32, &[0], false).map_err(|e| e.to_string())?;
            }
            ctx.decode(batch).map_err(|e| e.to_string())?;
            *examples_state = Some(ctx.state_seq_get(0, LlamaStateSeqFlags::empty()).map_err(|e| e.to_string())?);
        }
    }
    batch.clear();
    let mut pos = examples.len();
    for (j, &tok) in prompt.iter().enumerate() {
        batch.add(tok, (pos + j) as i32, &[0], j + 1 == prompt.len()).map_err(|e| e.to_string())?;
    }
    ctx.decode(batch).map_err(|e| e.to_string())?;
    pos += prompt.len();
    let vocab = model.vocab();
    let mut bytes = Vec::new();
    let mut logits_at = batch.n_tokens() - 1;
    let (mut log_prob, mut tokens) = (0f64, 0u32);
    for _ in 0..MAX_ANSWER_TOKENS {
        let logits = ctx.get_logits_ith(logits_at);
        let Some(next) = argmax(logits) else { break };
        log_prob += log_softmax_at(logits, next);
        tokens += 1;
        let token = LlamaToken(next as i32);
        if vocab.is_eog(token) {
            break;
        }
        let piece = vocab.token_to_piece(token, false, None);
        if let Some(nl) = piece.iter().position(|&b| b == b'\n') {
            bytes.extend_from_slice(&piece[..nl]);
            break;
        }
        bytes.extend_from_slice(&piece);
        batch.clear();
        batch.add(token, pos as i32, &[0], true).map_err(|e| e.to_string())?;
        ctx.decode(batch).map_err(|e| e.to_string())?;
        pos += 1;
        logits_at = 0;
    }
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    Ok(Reading { text, log_prob: log_prob as f32, tokens })
}

/// Index of the largest logit (`None` for an empty row).
fn argmax(logits: &[f32]) -> Option<usize> {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i)
}

/// `log P(question | passage + cue)`: the passage and the cue but its last token come from the cache or
/// are decoded (and cached), then the cue's last token and the question are decoded with logits read at
/// each position that predicts a question token. Both paths end in the same final decode, so a cached
/// passage scores exactly as a fresh one.
fn score_one(
    ctx: &mut llama_cpp_2::context::LlamaContext,
    batch: &mut LlamaBatch,
    cache: &mut PrefixCache,
    passage: &[LlamaToken],
    cue: &[LlamaToken],
    question: &[LlamaToken],
) -> Result<f32, String> {
    let Some(&last_cue) = cue.last() else { return Err("empty question cue".into()) };
    if question.is_empty() {
        return Ok(0.0);
    }
    let key: Vec<LlamaToken> = passage.iter().copied().chain(cue_head(cue)).collect();
    load_prefix(ctx, batch, cache, &key)?;
    batch.clear();
    let start = key.len();
    // The logits at tail position j predict tail token j + 1: every question token.
    let tail: Vec<LlamaToken> = std::iter::once(last_cue).chain(question.iter().copied()).collect();
    for (j, &tok) in tail.iter().enumerate() {
        batch.add(tok, (start + j) as i32, &[0], j + 1 < tail.len()).map_err(|e| e.to_string())?;
    }
    ctx.decode(batch).map_err(|e| e.to_string())?;
    let sum: f64 =
        (0..tail.len() - 1).map(|j| log_softmax_at(ctx.get_logits_ith(j as i32), tail[j + 1].0 as usize)).sum();
    Ok(sum as f32)
}

/// The question cue but its last token: a passage's cached state ends here, and the cue's last token
/// is decoded with the question so that its logits predict the question's first token.
fn cue_head(cue: &[LlamaToken]) -> impl Iterator<Item = LlamaToken> + '_ {
    cue[..cue.len().saturating_sub(1)].iter().copied()
}

/// Puts the KV state after `prefix` into the context: from the cache, or decoded and cached.
fn load_prefix(
    ctx: &mut llama_cpp_2::context::LlamaContext,
    batch: &mut LlamaBatch,
    cache: &mut PrefixCache,
    prefix: &[LlamaToken],
) -> Result<(), String> {
    let key: Vec<i32> = prefix.iter().map(|t| t.0).collect();
    ctx.clear_kv_cache();
    if let Some(state) = cache.get(&key) {
        return ctx.state_seq_set(state, 0).map_err(|e| e.to_string());
    }
    batch.clear();
    for (pos, &tok) in prefix.iter().enumerate() {
        batch.add(tok, pos as i32, &[0], pos + 1 == prefix.len()).map_err(|e| e.to_string())?;
    }
    ctx.decode(batch).map_err(|e| e.to_string())?;
    let state = ctx.state_seq_get(0, LlamaStateSeqFlags::empty()).map_err(|e| e.to_string())?;
    cache.insert(key, state);
    Ok(())
}

/// `log softmax(logits)[target]`, in f64 (a 262k-token vocabulary sums many small terms).
fn log_softmax_at(logits: &[f32], target: usize) -> f64 {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let z: f64 = logits.iter().map(|&x| f64::from(x - m).exp()).sum();
    f64::from(logits.get(target).copied().unwrap_or(f32::NEG_INFINITY) - m) - z.ln()
}

#[cfg(test)]
mod tests {
    use super::log_softmax_at;

    #[test]
    fn log_softmax_is_normalised() {
        let l = [1.0f32, 2.0, 3.0];
        let total: f64 = (0..3).map(|i| log_softmax_at(&l, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!((log_softmax_at(&l, 2) - (-0.407_605_964)).abs() < 1e-6);
    }
}
