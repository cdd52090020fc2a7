//! The generation engine: a worker thread per model that owns the llama.cpp context and decodes all
//! active sequences together.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rightmodel_core::wire::ChatMessage;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use llama_cpp_2::token_type::LlamaTokenAttr;

use super::chat::{ChatTemplate, RenderedPrompt};
use super::logprobs::logprob_and_top;
use super::sampling::{Sampler, SamplingParams};
use super::stop::{Push, StopBuffer};
use super::{Completion, FinishReason, Finished, GenEvent, GenRequest, Prompt, TokenAlt, TokenOut};
use crate::InferError;

/// How an engine is sized.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Sequences decoded together (and prompt caches kept).
    pub slots: usize,
    /// Most tokens (prompt + completion) one sequence may hold.
    pub ctx_per_slot: u32,
    /// CPU threads for llama.cpp.
    pub threads: i32,
    /// Most tokens decoded in one step (prompt chunks plus one per generating sequence).
    pub batch: u32,
    /// Requests that may wait for a slot when every slot is busy; beyond them `submit` answers
    /// [`InferError::Busy`].
    pub queue: usize,
}

impl EngineConfig {
    /// Defaults for a small machine: 4 slots of 2048 tokens, one thread per core.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        EngineConfig {
            model_path: model_path.into(),
            slots: 4,
            ctx_per_slot: 2048,
            threads: crate::threads::available_cores() as i32,
            batch: 512,
            queue: 64,
        }
    }
}

/// Live counters of an engine (cheap atomics, read by metrics and the router's latency estimate).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Requests waiting or running.
    pub in_flight: AtomicUsize,
    /// Requests waiting for a slot (with the running ones, bounded by [`EngineConfig::slots`] plus
    /// [`EngineConfig::queue`]).
    pub queued: AtomicUsize,
    /// Prompt tokens decoded.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens served from the KV cache.
    pub cached_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// The worker thread has ended (it panicked, or the engine is being dropped): nothing more will be
    /// generated. Read by readiness checks.
    pub stopped: AtomicBool,
}

/// Marks [`EngineStats::stopped`] when the worker thread ends, however it ends (a panic included).
struct StoppedOnDrop(Arc<EngineStats>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
    }
}

/// A generation waiting for the worker: its prompt already tokenised (on the caller's thread).
struct Job {
    prompt: Vec<LlamaToken>,
    params: SamplingParams,
    events: UnboundedSender<GenEvent>,
}

struct Shared {
    model: &'static LlamaModel,
    template: ChatTemplate,
    /// Most prompt bytes one token can stand for ([`max_token_bytes`]), when that bound is sound.
    max_token_bytes: Option<usize>,
    tx: SyncSender<Job>,
    stats: Arc<EngineStats>,
    config: EngineConfig,
}

/// A loaded GGUF model with its worker thread. Cheap to clone; the worker stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// The process-wide llama.cpp backend (it may be initialised only once).
pub(crate) fn backend() -> Result<&'static LlamaBackend, InferError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("RIGHTMODEL_LLAMA_LOGS").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| InferError::Engine(e.clone()))
}

impl Engine {
    /// Loads the model and starts the worker. The model is kept for the life of the process (contexts
    /// borrow it for `'static`), so start one engine per model, not per request.
    pub fn start(config: EngineConfig) -> Result<Self, InferError> {
        let backend = backend()?;
        let path = config.model_path.clone();
        check_file(&path, config.ctx_per_slot)?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| InferError::Load { path: path.display().to_string(), reason: e.to_string() })?;
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let template = ChatTemplate::for_model(model)?;
        let max_token_bytes = max_token_bytes(model);
        // Room for a whole burst: every slot's job plus the waiting line, before the worker moves any.
        let (tx, rx) = sync_channel::<Job>((config.slots + config.queue).max(1));
        let stats = Arc::new(EngineStats::default());
        let (ready_tx, ready_rx) = sync_channel::<Result<(), InferError>>(1);
        let worker_cfg = config.clone();
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name("rightmodel-llm".into())
            .spawn(move || {
                let _stopped = StoppedOnDrop(worker_stats.clone());
                match new_context(model, backend, &worker_cfg) {
                    Ok(ctx) => {
                        let _ = ready_tx.send(Ok(()));
                        Worker::new(model, ctx, &worker_cfg, worker_stats).run(rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| InferError::Engine(format!("cannot start engine thread: {e}")))?;
        ready_rx.recv().map_err(|_| InferError::Stopped)??;
        Ok(Engine { shared: Arc::new(Shared { model, template, max_token_bytes, tx, stats, config }) })
    }

    /// Queues a generation; events arrive on the returned channel. Dropping the receiver cancels it.
    ///
    /// The prompt is rendered and tokenised here, on the calling thread, so that the worker (which
    /// decodes every active sequence) never stalls on a long prompt, and a prompt too long for the
    /// context fails at once with [`InferError::ContextLength`]. That takes up to milliseconds for a
    /// prompt that fits: async callers should call this on a blocking pool. It never waits for the
    /// queue: a full queue answers [`InferError::Busy`].
    pub fn submit(&self, req: GenRequest) -> Result<UnboundedReceiver<GenEvent>, InferError> {
        req.params.validate()?;
        let prompt = self.prompt_tokens(&req.prompt)?;
        self.check_answer_room(prompt.len(), &req.params)?;
        let (events, rx) = unbounded_channel();
        let stats = &self.shared.stats;
        // The bound is on live jobs, running or waiting: the slots plus the waiting line. (Bounding
        // the jobs not yet in a slot refused bursts on an idle engine: a burst's jobs all count as
        // waiting until the worker gets to them, so 4 at once on 4 free slots and a line of 2 got a
        // refusal.) The worker drops waiting jobs whose client left, so they free their place.
        let limit = self.shared.config.slots.max(1) + self.shared.config.queue;
        if stats.in_flight.fetch_add(1, Ordering::AcqRel) >= limit {
            stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(InferError::Busy);
        }
        stats.queued.fetch_add(1, Ordering::AcqRel);
        match self.shared.tx.try_send(Job { prompt, params: req.params, events }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                stats.queued.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => InferError::Busy,
                    TrySendError::Disconnected(_) => InferError::Stopped,
                })
            }
        }
    }

    /// Runs a generation to the end on the calling thread (not for async contexts).
    pub fn generate(&self, req: GenRequest) -> Result<Completion, InferError> {
        let start = Instant::now();
        let mut rx = self.submit(req)?;
        let mut text = String::new();
        let mut tokens = Vec::new();
        let mut ttft = None;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                GenEvent::Started { .. } => {}
                GenEvent::Token(t) => {
                    ttft.get_or_insert_with(|| start.elapsed());
                    text.push_str(&t.text);
                    tokens.push(t);
                }
                GenEvent::Done(f) => {
                    text.push_str(&f.tail);
                    let total = start.elapsed();
                    return Ok(Completion { text, tokens, finished: f, ttft: ttft.unwrap_or(total), total });
                }
                GenEvent::Error(e) => return Err(e),
            }
        }
        Err(InferError::Stopped)
    }

    /// Refuses a prompt that certainly has too many tokens for one sequence, judging by its size
    /// alone: each token stands for at most [`max_token_bytes`] bytes of plain text, so more bytes
    /// than that many tokens could hold cannot fit. Costs no tokenising (a 4 MiB prompt is refused
    /// in microseconds); prompts it lets through are measured exactly by [`Engine::submit`].
    pub fn check_prompt_size(&self, prompt: &Prompt) -> Result<(), InferError> {
        let Some(per_token) = self.shared.max_token_bytes.filter(|&b| b > 0) else { return Ok(()) };
        let bytes = match prompt {
            Prompt::Text(t) => t.len(),
            Prompt::Chat(m) => super::chat::content_bytes(m),
            // Control-token text may stand for any amount of whitespace next to it: no bound.
            Prompt::TrustedText(_) => return Ok(()),
        };
        let limit = self.shared.config.ctx_per_slot as usize;
        let fits = limit.saturating_sub(1).saturating_mul(per_token);
        if bytes <= fits {
            return Ok(());
        }
        Err(InferError::ContextLength { tokens: bytes.div_ceil(per_token), limit, at_least: true })
    }

    /// The prompt's tokens, refused when empty or too long for one sequence (one token must be left
    /// for the answer).
    fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, InferError> {
        self.check_prompt_size(prompt)?;
        let vocab = self.shared.model.vocab();
        let tokens = match prompt {
            Prompt::Text(t) => vocab.tokenize(t.as_bytes(), true, false),
            Prompt::TrustedText(t) => vocab.tokenize(t.as_bytes(), true, true),
            Prompt::Chat(m) => self.shared.template.render(self.shared.model, m)?.tokens,
        };
        if tokens.is_empty() {
            return Err(InferError::Invalid("the prompt is empty".into()));
        }
        let limit = self.shared.config.ctx_per_slot as usize;
        if tokens.len() >= limit {
            return Err(InferError::ContextLength { tokens: tokens.len(), limit, at_least: false });
        }
        Ok(tokens)
    }

    /// Refuses a request whose `max_tokens` the caller asked for ([`SamplingParams::max_tokens_must_fit`])
    /// and that does not fit beside its `prompt_tokens` in one sequence's context: the answer would be
    /// cut at the context, short of what was asked, without saying so.
    fn check_answer_room(&self, prompt_tokens: usize, params: &SamplingParams) -> Result<(), InferError> {
        let limit = self.shared.config.ctx_per_slot as usize;
        let max_tokens = params.max_tokens as usize;
        if params.max_tokens_must_fit && prompt_tokens.saturating_add(max_tokens) > limit {
            return Err(InferError::AnswerTooLong { prompt_tokens, max_tokens, limit });
        }
        Ok(())
    }

    /// Token ids of `text` (BOS added when `add_bos`; control tokens parsed only when `special`).
    pub fn tokenize(&self, text: &str, add_bos: bool, special: bool) -> Vec<i32> {
        self.shared.model.vocab().tokenize(text.as_bytes(), add_bos, special).into_iter().map(|t| t.0).collect()
    }

    /// Text of one token id (empty for an id outside the vocabulary, which llama.cpp would throw on).
    pub fn token_text(&self, id: i32) -> String {
        let vocab = self.shared.model.vocab();
        if id < 0 || id >= vocab.n_tokens() {
            return String::new();
        }
        String::from_utf8_lossy(&vocab.token_to_piece(LlamaToken(id), false, None)).into_owned()
    }

    /// The chat prompt the engine would decode for `messages`.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<RenderedPrompt, InferError> {
        self.shared.template.render(self.shared.model, messages)
    }

    /// Where the chat template came from (`gguf` or a built-in name).
    pub fn template_source(&self) -> &str {
        &self.shared.template.source
    }

    /// Whether the worker thread is still there to generate (it ends only on a panic, or with the last
    /// clone of the engine).
    pub fn is_running(&self) -> bool {
        !self.shared.stats.stopped.load(Ordering::Acquire)
    }

    /// Live counters.
    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Training context length of the model.
    pub fn n_ctx_train(&self) -> u32 {
        self.shared.model.n_ctx_train()
    }
}

/// Most bytes of prompt text one token can stand for, or `None` when no such bound holds.
///
/// The bound holds for tokenizers that keep every byte of their input: byte-level BPE (`gpt2`) and
/// SentencePiece as llama.cpp runs it (`llama`: spaces escaped, never normalised away). There each
/// token covers a piece of the input no longer than its vocabulary text (BPE's byte-to-character
/// mapping and SentencePiece's `▁` only lengthen it; byte tokens read `<0xNN>`). WordPiece and
/// Unigram normalise (dropping or collapsing whitespace), and tokens marked to strip whitespace next
/// to them swallow any amount of it; for those there is no bound.
fn max_token_bytes(model: &LlamaModel) -> Option<usize> {
    let kind = model.meta_val_str("tokenizer.ggml.model").ok()?;
    if kind != "gpt2" && kind != "llama" {
        return None;
    }
    let vocab = model.vocab();
    let mut most = 0usize;
    for t in vocab.tokens() {
        let attr = vocab.attr(t);
        if attr.contains(LlamaTokenAttr::LStrip) || attr.contains(LlamaTokenAttr::RStrip) {
            return None;
        }
        let text = vocab.text(t).map_or(0, |c| c.to_bytes().len());
        let piece = vocab.token_to_piece(t, true, None).len();
        most = most.max(text).max(piece);
    }
    (most > 0).then_some(most)
}

/// Refuses files llama.cpp would crash on (missing, not GGUF, or cut short) and a `ctx_per_slot` the
/// model does not have ([`check_context`]).
fn check_file(path: &Path, ctx_per_slot: u32) -> Result<(), InferError> {
    let load = |reason: String| InferError::Load { path: path.display().to_string(), reason };
    let info = rightmodel_models::gguf::GgufInfo::read(path).map_err(|e| load(e.to_string()))?;
    check_context(ctx_per_slot, info.context_length).map_err(load)
}

/// Refuses a context per slot beyond the one the model was trained for (`trained`, from its GGUF file):
/// past it answers degrade, and a context that large may not even be allocated (llama.cpp then fails
/// with a null context, naming neither the setting nor the limit). The reason says what to set.
pub fn check_context(ctx_per_slot: u32, trained: Option<u64>) -> Result<(), String> {
    match trained {
        Some(t) if u64::from(ctx_per_slot) > t => Err(format!(
            "ctx_per_slot = {ctx_per_slot} is more than the model's context of {t} tokens; set it to at most {t}"
        )),
        _ => Ok(()),
    }
}

fn new_context<'m>(
    model: &'m LlamaModel,
    backend: &LlamaBackend,
    cfg: &EngineConfig,
) -> Result<LlamaContext<'m>, InferError> {
    let n_ctx = (cfg.slots as u32).saturating_mul(cfg.ctx_per_slot).max(256);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(cfg.batch)
        .with_n_ubatch(cfg.batch)
        .with_n_seq_max(cfg.slots as u32)
        .with_n_threads(cfg.threads)
        .with_n_threads_batch(cfg.threads)
        // One cache shared by all slots, so a cached prefix can be copied between them; full-size
        // sliding-window layers, so that positions can be removed from the middle of a sequence.
        .with_kv_unified(true)
        .with_swa_full(true);
    let params = match std::env::var("RIGHTMODEL_FLASH_ATTN").ok().and_then(|v| v.parse::<i32>().ok()) {
        Some(v) => params.with_flash_attention_policy(v as _),
        None => params,
    };
    model.new_context(backend, params).map_err(|e| InferError::Engine(format!("cannot create context: {e}")))
}

/// A sequence being served.
struct Active {
    events: UnboundedSender<GenEvent>,
    params: SamplingParams,
    sampler: Sampler,
    prompt: Vec<LlamaToken>,
    /// Tokens of this sequence already in the KV cache.
    n_past: usize,
    /// Sampled token not yet decoded.
    next: Option<LlamaToken>,
    /// Index in the current batch whose logits belong to this sequence.
    logits_at: Option<i32>,
    generated: u32,
    max_tokens: u32,
    cached_tokens: u32,
    stop: StopBuffer,
    /// Tokens whose text the stop buffer holds back (the start of a possible stop sequence, or part of a
    /// character): reported once text is released, dropped when a stop sequence completes.
    deferred: Vec<TokenOut>,
}

struct Slot {
    /// Tokens whose keys and values this sequence id holds, in order from position 0.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    slots: Vec<Slot>,
    batch: LlamaBatch<'static>,
    batch_cap: usize,
    ctx_per_slot: usize,
    stats: Arc<EngineStats>,
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<'m> Worker<'m> {
    fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, cfg: &EngineConfig, stats: Arc<EngineStats>) -> Self {
        let slots = (0..cfg.slots).map(|_| Slot { cached: Vec::new(), active: None }).collect();
        Worker {
            model,
            ctx,
            slots,
            batch: LlamaBatch::new(cfg.batch as usize, cfg.slots as i32),
            batch_cap: cfg.batch as usize,
            ctx_per_slot: cfg.ctx_per_slot as usize,
            stats,
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        loop {
            // Move new jobs into the waiting line; block only when there is nothing to do.
            let idle = self.slots.iter().all(|s| s.active.is_none());
            if idle && waiting.is_empty() {
                match rx.recv() {
                    Ok(j) => waiting.push_back(j),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(j) => waiting.push_back(j),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            // Jobs whose client has left give up their place in line.
            waiting.retain(|j| {
                let live = !j.events.is_closed();
                if !live {
                    self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                    self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                live
            });
            // Admit waiting jobs while slots are free.
            while self.slots.iter().any(|s| s.active.is_none()) {
                let Some(job) = waiting.pop_front() else { break };
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                self.admit(job);
            }
            self.drop_cancelled();
            if self.slots.iter().all(|s| s.active.is_none()) {
                continue;
            }
            self.step();
        }
    }

    /// Ends a job that cannot run, before it took a slot.
    fn refuse(&self, job: Job, e: InferError) {
        let _ = job.events.send(GenEvent::Error(e));
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn admit(&mut self, job: Job) {
        let prompt = job.prompt.as_slice();
        // `submit` measured the prompt against the same limits; this keeps the arithmetic below safe.
        if prompt.is_empty() {
            return self.refuse(job, InferError::Invalid("the prompt is empty".into()));
        }
        if prompt.len() >= self.ctx_per_slot {
            let e = InferError::ContextLength { tokens: prompt.len(), limit: self.ctx_per_slot, at_least: false };
            return self.refuse(job, e);
        }
        let room = (self.ctx_per_slot - prompt.len()) as u32;
        let max_tokens = job.params.max_tokens.min(room);
        let sampler = match job.params.build(self.model, max_tokens) {
            Ok(s) => s,
            Err(e) => return self.refuse(job, e),
        };

        // Pick the free slot whose cache shares the longest prefix with the prompt, and the best
        // source of a prefix among all slots.
        let free: Vec<usize> = (0..self.slots.len()).filter(|&i| self.slots[i].active.is_none()).collect();
        let Some(&target) = free
            .iter()
            .max_by_key(|&&i| (common_prefix(&self.slots[i].cached, prompt), usize::MAX - self.slots[i].cached.len()))
        else {
            return self.refuse(job, InferError::Engine("no free slot".into()));
        };
        let own = common_prefix(&self.slots[target].cached, prompt);
        let (src, best) = (0..self.slots.len())
            .map(|i| (i, common_prefix(&self.slots[i].cached, prompt)))
            .max_by_key(|&(_, n)| n)
            .unwrap_or((target, 0));
        // Keep at least one prompt token to decode: its logits start the generation.
        let limit = prompt.len() - 1;
        let seq = target as i32;
        let mut reused = if !job.params.cache_prompt {
            0
        } else if src != target && best > own {
            let n = best.min(limit);
            let ok = self.ctx.kv_cache_seq_rm(seq, None, None).is_ok()
                && self.ctx.kv_cache_seq_cp(src as i32, seq, Some(0), Some(n as u32)).is_ok();
            if ok {
                n
            } else {
                0
            }
        } else {
            let n = own.min(limit);
            if self.ctx.kv_cache_seq_rm(seq, Some(n as u32), None).is_ok() {
                n
            } else {
                0
            }
        };
        if reused == 0 {
            let _ = self.ctx.kv_cache_seq_rm(seq, None, None);
            reused = 0;
        }
        let slot = &mut self.slots[target];
        slot.cached.clear();
        slot.cached.extend_from_slice(&prompt[..reused]);

        let _ = job.events.send(GenEvent::Started { prompt_tokens: prompt.len() as u32 });
        self.stats.prompt_tokens.fetch_add((prompt.len() - reused) as u64, Ordering::Relaxed);
        self.stats.cached_tokens.fetch_add(reused as u64, Ordering::Relaxed);
        slot.active = Some(Active {
            stop: StopBuffer::new(job.params.stop.clone()),
            deferred: Vec::new(),
            events: job.events,
            params: job.params,
            sampler,
            prompt: job.prompt,
            n_past: reused,
            next: None,
            logits_at: None,
            generated: 0,
            max_tokens,
            cached_tokens: reused as u32,
        });
    }

    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                slot.active = None;
                self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// One decode over every active sequence: a token for each generating sequence, then prompt
    /// chunks in the space that is left.
    fn step(&mut self) {
        self.batch.clear();
        let mut used = 0usize;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else { continue };
            a.logits_at = None;
            if let Some(tok) = a.next.take() {
                if self.batch.add(tok, a.n_past as i32, &[i as i32], true).is_ok() {
                    a.logits_at = Some(used as i32);
                    slot.cached.push(tok);
                    a.n_past += 1;
                    used += 1;
                } else {
                    a.next = Some(tok);
                }
            }
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else { continue };
            if a.n_past >= a.prompt.len() || a.logits_at.is_some() {
                continue;
            }
            let room = self.batch_cap.saturating_sub(used);
            if room == 0 {
                break;
            }
            let end = (a.n_past + room).min(a.prompt.len());
            for p in a.n_past..end {
                let last = p + 1 == a.prompt.len();
                if self.batch.add(a.prompt[p], p as i32, &[i as i32], last).is_err() {
                    break;
                }
                if last {
                    a.logits_at = Some(used as i32);
                }
                slot.cached.push(a.prompt[p]);
                used += 1;
            }
            a.n_past = end;
        }
        if used == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            let msg = InferError::Engine(format!("decode failed: {e}"));
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Some(a) = slot.active.take() {
                    let _ = a.events.send(GenEvent::Error(msg.clone()));
                    self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
                slot.cached.clear();
                let _ = self.ctx.kv_cache_seq_rm(i as i32, None, None);
            }
            return;
        }
        for i in 0..self.slots.len() {
            self.after_decode(i);
        }
    }

    /// Samples the next token of slot `i` if this step produced its logits, and streams it.
    fn after_decode(&mut self, i: usize) {
        let vocab = self.model.vocab();
        let slot = &mut self.slots[i];
        let Some(a) = slot.active.as_mut() else { return };
        let Some(idx) = a.logits_at.take() else { return };
        let token = match a.sampler.sample(&self.ctx, idx) {
            Ok(t) => t,
            Err(e) => {
                let _ = a.events.send(GenEvent::Error(e));
                slot.active = None;
                self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        a.generated += 1;
        self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let (logprob, top) = if a.params.logprobs {
            let logits = self.ctx.get_logits_ith(idx);
            let (lp, top) = logprob_and_top(logits, token.0 as usize, a.params.top_logprobs);
            let top = top
                .into_iter()
                .map(|(id, logprob)| {
                    let piece = vocab.token_to_piece(LlamaToken(id as i32), false, None);
                    TokenAlt { id: id as i32, text: String::from_utf8_lossy(&piece).into_owned(), piece, logprob }
                })
                .collect();
            (Some(lp), top)
        } else {
            (None, Vec::new())
        };
        let eog = vocab.is_eog(token);
        let mut finish = None;
        let (text, piece) = if eog {
            finish = Some(FinishReason::Stop);
            (String::new(), Vec::new())
        } else {
            let piece = vocab.token_to_piece(token, false, None);
            match a.stop.push(&piece) {
                Push::Emit(t) => (t, piece),
                Push::Stop(t) => {
                    finish = Some(FinishReason::Stop);
                    (t, piece)
                }
            }
        };
        if finish.is_none() && (a.generated >= a.max_tokens || a.n_past + 1 >= self.ctx_per_slot) {
            finish = Some(FinishReason::Length);
        }
        // Tokens of a stop sequence are not part of the answer: like an end-of-turn token they are not
        // reported (OpenAI's log-probabilities end with the answer's last token). A token that releases
        // no text is held until it is known whether it began a stop sequence.
        let only_stop = !eog && finish == Some(FinishReason::Stop) && text.is_empty();
        if only_stop {
            a.deferred.clear();
        } else {
            if !eog {
                a.deferred.push(TokenOut { id: token.0, text, logprob, piece, top });
            }
            let released = finish.is_some() || a.deferred.last().is_some_and(|t| !t.text.is_empty());
            if released {
                for out in a.deferred.drain(..) {
                    if a.events.send(GenEvent::Token(out)).is_err() {
                        finish = Some(FinishReason::Cancelled);
                        break;
                    }
                }
            }
        }
        match finish {
            Some(reason) => {
                let tail = a.stop.flush();
                let done = Finished {
                    reason,
                    prompt_tokens: a.prompt.len() as u32,
                    cached_tokens: a.cached_tokens,
                    completion_tokens: a.generated - u32::from(eog),
                    tail,
                };
                let _ = a.events.send(GenEvent::Done(done));
                slot.active = None;
                self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            None => a.next = Some(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rightmodel_models::{home::rightmodel_home, Store};

    /// The default model (the test script pulls it first) with one small slot.
    fn engine() -> &'static Engine {
        static E: OnceLock<Engine> = OnceLock::new();
        E.get_or_init(|| {
            let path = Store::new(&rightmodel_home())
                .resolve_gguf("gemma3-270m")
                .expect("default GGUF missing: run `rightmodel pull all` first (the test script does)");
            let mut cfg = EngineConfig::new(path);
            cfg.slots = 1;
            cfg.ctx_per_slot = 256;
            Engine::start(cfg).expect("engine starts")
        })
    }

    fn user(text: String) -> ChatMessage {
        ChatMessage::new("user", text)
    }

    fn context_error(prompt: Prompt) -> (usize, usize, bool) {
        match engine().submit(GenRequest { prompt, params: SamplingParams::default() }) {
            Err(InferError::ContextLength { tokens, limit, at_least }) => (tokens, limit, at_least),
            Err(e) => panic!("expected a context-length error, got {e}"),
            Ok(_) => panic!("expected a context-length error, the prompt was queued"),
        }
    }

    #[test]
    fn the_longest_token_bounds_every_piece() {
        let e = engine();
        let most = e.shared.max_token_bytes.expect("SentencePiece keeps every byte: a bound exists");
        let vocab = e.shared.model.vocab();
        assert!(vocab.tokens().all(|t| vocab.token_to_piece(t, false, None).len() <= most));
        assert!(most < 1024, "a sane bound: {most}");
    }

    #[test]
    fn a_prompt_longer_than_the_context_is_refused_with_its_size() {
        // Measured: a few hundred tokens, more than the 256 of a slot.
        let (tokens, limit, at_least) = context_error(Prompt::Text("hello there ".repeat(200)));
        assert_eq!((limit, at_least), (256, false));
        assert!(tokens >= 400, "{tokens}");
        let (tokens, _, at_least) = context_error(Prompt::Chat(vec![user("hello there ".repeat(200))]));
        assert!(tokens >= 400 && !at_least, "{tokens}");
    }

    #[test]
    fn a_huge_prompt_is_refused_by_its_bytes_without_tokenising() {
        let huge = "x".repeat(4 << 20);
        let (tokens, limit, at_least) = context_error(Prompt::Text(huge.clone()));
        assert!(at_least && tokens >= limit, "{tokens} {limit}");
        let (_, _, at_least) = context_error(Prompt::Chat(vec![user(huge)]));
        assert!(at_least);
    }

    #[test]
    fn without_a_token_limit_the_answer_fills_the_context() {
        let params = SamplingParams {
            max_tokens: u32::MAX,
            ignore_eos: true,
            // Penalties look back over the whole answer (here up to the room left in the context).
            frequency_penalty: 0.5,
            presence_penalty: 0.5,
            ..SamplingParams::default()
        };
        let out = engine()
            .generate(GenRequest { prompt: Prompt::Text("Once upon a time".repeat(50)), params })
            .expect("generates");
        let f = out.finished;
        assert_eq!(f.reason, FinishReason::Length);
        assert_eq!(f.prompt_tokens + f.completion_tokens, 256, "{f:?}");
    }

    #[test]
    fn a_max_tokens_the_caller_asked_for_must_fit_beside_the_prompt() {
        let prompt = || Prompt::Text("Once upon a time".repeat(20));
        let asked = |max_tokens| SamplingParams { max_tokens, max_tokens_must_fit: true, ..SamplingParams::default() };
        // Refused before it is queued, with the prompt's exact size.
        match engine().submit(GenRequest { prompt: prompt(), params: asked(250) }) {
            Err(InferError::AnswerTooLong { prompt_tokens, max_tokens, limit }) => {
                assert!(prompt_tokens > 6 && prompt_tokens + max_tokens > limit, "{prompt_tokens} + {max_tokens}");
                assert_eq!((max_tokens, limit), (250, 256));
            }
            other => panic!("expected AnswerTooLong, got {:?}", other.map(|_| ())),
        }
        // Within the context it runs; without the flag an oversized limit still fills the room left.
        let out = engine().generate(GenRequest { prompt: prompt(), params: asked(4) }).expect("generates");
        assert!(out.finished.completion_tokens <= 4);
        let loose = SamplingParams { max_tokens: 250, ..SamplingParams::default() };
        assert!(engine().generate(GenRequest { prompt: prompt(), params: loose }).is_ok());
    }

    #[test]
    fn tokens_of_a_stop_sequence_are_not_reported() {
        let greedy = |stop: Vec<String>| {
            let params =
                SamplingParams { max_tokens: 24, temperature: 0.0, logprobs: true, stop, ..Default::default() };
            let prompt = Prompt::Text("The capital of France is Paris. The capital of Italy is".into());
            engine().generate(GenRequest { prompt, params }).expect("generates")
        };
        let free = greedy(Vec::new());
        // A stop sequence made of two whole tokens of the free answer, found nowhere else in it.
        let t = &free.tokens;
        let two = |i: usize| format!("{}{}", t[i].text, t[i + 1].text);
        let i = (1..t.len().saturating_sub(1))
            .find(|&i| {
                !t[i].text.trim().is_empty()
                    && !t[i + 1].text.trim().is_empty()
                    && free.text.matches(&two(i)).count() == 1
            })
            .expect("two plain tokens in the answer");
        let cut = greedy(vec![two(i)]);
        assert_eq!(cut.finished.reason, FinishReason::Stop);
        let reported: String = cut.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(reported, cut.text, "{:?}", two(i));
        assert_eq!(cut.tokens.len(), i, "the answer's tokens, neither of the stop's two: {:?}", two(i));
    }

    #[test]
    fn without_prompt_caching_the_prompt_is_computed_afresh() {
        let run = |cache_prompt: bool| {
            let params = SamplingParams { max_tokens: 8, temperature: 0.0, cache_prompt, ..Default::default() };
            let prompt = Prompt::Text("A list of colours: red, green,".into());
            engine().generate(GenRequest { prompt, params }).expect("generates")
        };
        run(true);
        let a = run(false);
        let b = run(false);
        assert_eq!((a.finished.cached_tokens, b.finished.cached_tokens), (0, 0));
        assert_eq!(a.text, b.text, "two fresh computations of one greedy request agree");
    }

    #[test]
    fn out_of_range_token_ids_read_as_empty() {
        assert_eq!(engine().token_text(-1), "");
        assert_eq!(engine().token_text(i32::MAX), "");
    }
}
