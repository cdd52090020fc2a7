//! Dynamic batching for `/v1/embeddings`: requests that arrive while the encoder is busy share its
//! next call.
//!
//! One sentence alone costs the encoder about 4 ms on 2 cores, while a batch of 32 costs about
//! 1 ms per sentence, and concurrent encoder calls only fight over the same cores. So a single worker
//! thread owns the encoder and encodes chunks of at most [`MAX_BATCH`] texts taken from every request
//! waiting, each request's shortest texts first (so that chunks pad little). Nothing waits on purpose:
//! a lone request runs at once, and batches form only under load. Each chunk gives every request an
//! equal share, those with the fewest texts left first: a one-text request (a document question)
//! that arrives while a client's 2,048 texts are encoded waits for one chunk, not for all of them.
//!
//! Between chunks the texts of callers that gave up are dropped, so a client that leaves in the
//! middle of a request of 2,048 texts stops costing the encoder. A request's permit (the server's cap
//! on requests waiting for the encoder) travels with it and is released only when the worker is done
//! with it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use rightmodel_core::{EmbedError, Embedder};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Most texts gathered into one encoder call (one request with more runs alone).
pub const MAX_BATCH: usize = 64;

/// Most characters of text in one encoder call (each text counted up to [`TEXT_CHARS_MAX`]): 64 texts
/// near the encoder's 256-word-piece cut took 20 s on 2 slow cores, and a one-word request that came
/// meanwhile waited for all of it. About five such texts, or 64 sentences, make a chunk.
const CHUNK_CHARS: usize = 8_000;
/// Characters of one text that count towards [`CHUNK_CHARS`]: the encoder reads about this much of it.
const TEXT_CHARS_MAX: usize = 1_500;

/// Vectors and prompt-token count of one request, or why the encoder failed.
pub type EmbedResult = Result<(Vec<Vec<f32>>, usize), String>;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<EmbedResult>,
    /// Held while the worker may still spend time on the job (released when it is dropped).
    _permit: Option<OwnedSemaphorePermit>,
}

/// Handle to the encoder's worker thread. It is itself an [`Embedder`] (blocking until its rows are
/// ready), so classifiers and document collections served by the gateway share the same batches.
pub struct EmbedBatcher {
    tx: Sender<Job>,
    model: Arc<dyn Embedder>,
}

impl EmbedBatcher {
    /// Starts the worker thread that owns `model`.
    pub fn start(model: Arc<dyn Embedder>) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let worker_model = model.clone();
        std::thread::Builder::new().name("rightmodel-embed".into()).spawn(move || work(worker_model.as_ref(), rx))?;
        Ok(EmbedBatcher { tx, model })
    }

    /// Queues `texts`; the receiver yields their vectors (in order) and token count. Callers bound how
    /// many requests wait with the server's embedding permits: `permit` is kept with the job until
    /// the worker has finished or dropped it, so that a caller who leaves early does not free its
    /// place while the encoder still works for it. Dropping the receiver cancels the job at the next
    /// chunk.
    pub fn submit(&self, texts: Vec<String>, permit: Option<OwnedSemaphorePermit>) -> oneshot::Receiver<EmbedResult> {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.send(Job { texts, reply, _permit: permit }) {
            let _ = e.0.reply.send(Err("the embedding worker has stopped".into()));
        }
        rx
    }
}

impl Embedder for EmbedBatcher {
    /// Embeds through the worker; blocks the calling thread (call it off the async runtime).
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.submit(texts.iter().map(|t| t.to_string()).collect(), None);
        match rx.blocking_recv() {
            Ok(Ok((vectors, _))) => Ok(vectors),
            Ok(Err(e)) => Err(EmbedError(e)),
            Err(_) => Err(EmbedError("the embedding worker has stopped".into())),
        }
    }

    /// Straight to the model on the calling thread, outside the worker's batches: only document
    /// questions ask for token vectors, one short text at a time.
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<rightmodel_core::WithTokens, EmbedError> {
        self.model.embed_with_tokens(texts)
    }

    fn has_token_vectors(&self) -> bool {
        self.model.has_token_vectors()
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn model_id(&self) -> &str {
        self.model.model_id()
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.model.count_tokens(text)
    }
}

/// A job the worker has started: its texts' order (shortest first, so that chunks pad little), how
/// many are done, and the rows so far.
struct Active {
    job: Job,
    order: Vec<usize>,
    next: usize,
    vectors: Vec<Vec<f32>>,
    tokens: usize,
}

impl Active {
    fn new(job: Job) -> Self {
        let mut order: Vec<usize> = (0..job.texts.len()).collect();
        order.sort_by_key(|&i| job.texts[i].len());
        let vectors = vec![Vec::new(); job.texts.len()];
        Active { job, order, next: 0, vectors, tokens: 0 }
    }

    fn left(&self) -> usize {
        self.order.len() - self.next
    }
}

/// The worker: encodes chunks of at most [`MAX_BATCH`] texts taken from every waiting job until each is
/// done. A chunk gives each job an equal share first, the jobs with the fewest texts left first, then
/// fills up with what is left: a one-text request (a document question, a routed classification)
/// that arrives while a 2,048-text batch runs waits for one chunk, not for the whole batch.
fn work(model: &dyn Embedder, rx: Receiver<Job>) {
    let mut active: Vec<Active> = Vec::new();
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(j) => active.push(Active::new(j)),
                Err(_) => return,
            }
        }
        while let Ok(j) = rx.try_recv() {
            active.push(Active::new(j));
        }
        // Callers that gave up (client gone) are dropped, and their permits with them.
        active.retain(|a| !a.job.reply.is_closed());
        active = answer_finished(active);
        if active.is_empty() {
            continue;
        }
        let left: Vec<usize> = active.iter().map(Active::left).collect();
        // Fewer texts per chunk when they are long, so a chunk stays short for whoever waits.
        let mut limit = MAX_BATCH;
        let mut take = shares(&left, limit);
        for _ in 0..4 {
            let chars: usize = active
                .iter()
                .zip(&take)
                .flat_map(|(a, &t)| {
                    a.order[a.next..a.next + t].iter().map(|&i| a.job.texts[i].len().min(TEXT_CHARS_MAX))
                })
                .sum();
            let count: usize = take.iter().sum();
            if chars <= CHUNK_CHARS || count <= 1 {
                break;
            }
            limit = (count * CHUNK_CHARS / chars).clamp(1, count - 1);
            take = shares(&left, limit);
        }
        let chunk: Vec<(usize, usize)> = active
            .iter()
            .zip(&take)
            .enumerate()
            .flat_map(|(k, (a, &t))| a.order[a.next..a.next + t].iter().map(move |&i| (k, i)))
            .collect();
        let refs: Vec<&str> = chunk.iter().map(|&(k, i)| active[k].job.texts[i].as_str()).collect();
        let failure = match model.embed_counted(&refs) {
            Ok((rows, counts)) if rows.len() == refs.len() && counts.len() == refs.len() => {
                for ((&(k, i), row), count) in chunk.iter().zip(rows).zip(counts) {
                    active[k].vectors[i] = row;
                    active[k].tokens += count;
                }
                None
            }
            Ok((rows, _)) => Some(format!("the encoder returned {} vectors for {} texts", rows.len(), refs.len())),
            Err(e) => Some(e.to_string()),
        };
        for (a, t) in active.iter_mut().zip(&take) {
            a.next += t;
        }
        if let Some(failure) = failure {
            // The jobs of the failed chunk fail; the others get their own try.
            let mut kept = Vec::with_capacity(active.len());
            for (a, t) in active.into_iter().zip(take) {
                if t > 0 {
                    let _ = a.job.reply.send(Err(failure.clone()));
                } else {
                    kept.push(a);
                }
            }
            active = kept;
        }
        active = answer_finished(active);
    }
}

/// Answers the jobs that have all their rows; returns the others.
fn answer_finished(active: Vec<Active>) -> Vec<Active> {
    let (done, running): (Vec<Active>, Vec<Active>) = active.into_iter().partition(|a| a.left() == 0);
    for a in done {
        let _ = a.job.reply.send(Ok((a.vectors, a.tokens)));
    }
    running
}

/// How many texts each job (given the texts it has left, oldest job first) puts into the next chunk of
/// at most `limit` texts: one for the oldest job whatever else waits (so that a large job cannot
/// starve behind a stream of small ones), an equal share each, the jobs with fewest left first, then
/// the room left over in the same order.
fn shares(left: &[usize], limit: usize) -> Vec<usize> {
    let mut by_left: Vec<usize> = (0..left.len()).collect();
    by_left.sort_by_key(|&k| left[k]);
    let limit = limit.max(1);
    let share = (limit / left.len().max(1)).max(1);
    let mut take = vec![0; left.len()];
    let mut room = limit;
    if let Some(&first) = left.first() {
        take[0] = first.min(1);
        room -= take[0];
    }
    for &k in &by_left {
        let more = (left[k] - take[k]).min(share.saturating_sub(take[k])).min(room);
        take[k] += more;
        room -= more;
    }
    for &k in &by_left {
        let more = (left[k] - take[k]).min(room);
        take[k] += more;
        room -= more;
    }
    take
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Embeds a text as [its length, call number], counting calls.
    struct Fake {
        calls: AtomicUsize,
    }

    impl Embedder for Fake {
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let call = self.calls.fetch_add(1, Ordering::SeqCst) as f32;
            Ok(texts.iter().map(|t| vec![t.len() as f32, call]).collect())
        }
        fn dim(&self) -> usize {
            2
        }
        fn model_id(&self) -> &str {
            "fake"
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.len()
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_calls_and_get_their_own_rows() {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0) });
        let b = EmbedBatcher::start(fake.clone()).unwrap();
        let rxs: Vec<_> = (1..=10).map(|i| b.submit(vec!["x".repeat(i), "y".repeat(i * 10)], None)).collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            let (v, tokens) = rx.await.unwrap().unwrap();
            let i = i + 1;
            assert_eq!((v[0][0], v[1][0]), (i as f32, (i * 10) as f32));
            assert_eq!(tokens, i + i * 10);
        }
        // Ten requests, at most two calls: the first may run alone, the rest queue behind it.
        assert!(fake.calls.load(Ordering::SeqCst) <= 2);
        // As an Embedder (blocking, off the runtime) it returns the same rows.
        let rows = tokio::task::spawn_blocking(move || b.embed(&["abc", "de"])).await.unwrap().unwrap();
        assert_eq!((rows[0][0], rows[1][0]), (3.0, 2.0));
    }

    #[tokio::test]
    async fn large_requests_come_back_whole_and_in_order() {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0) });
        let b = EmbedBatcher::start(fake.clone()).unwrap();
        let texts: Vec<String> = (0..MAX_BATCH * 3 + 5).map(|i| "z".repeat(1 + (i * 7919) % 97)).collect();
        let (v, tokens) = b.submit(texts.clone(), None).await.unwrap().unwrap();
        assert_eq!(v.len(), texts.len());
        assert!(v.iter().zip(&texts).all(|(row, t)| row[0] == t.len() as f32), "each row is its own text's");
        assert_eq!(tokens, texts.iter().map(String::len).sum::<usize>());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4, "chunks of at most MAX_BATCH texts");
    }

    fn shares_full(left: &[usize]) -> Vec<usize> {
        shares(left, MAX_BATCH)
    }

    #[tokio::test]
    async fn long_texts_make_short_chunks_so_a_small_request_waits_little() {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0) });
        let b = EmbedBatcher::start(fake.clone()).unwrap();
        let long = "word ".repeat(400);
        let large = b.submit(vec![long; 40], None);
        let small = b.submit(vec!["hi".to_string()], None);
        let (v, _) = small.await.unwrap().unwrap();
        // Chunks of about five long texts: the small request rides in one of the first ones.
        assert!(v[0][1] <= 1.0, "answered in call {}", v[0][1]);
        assert_eq!(large.await.unwrap().unwrap().0.len(), 40);
        assert!(fake.calls.load(Ordering::SeqCst) >= 8);
    }

    #[test]
    fn chunks_share_room_fewest_left_first() {
        assert_eq!(shares_full(&[2048]), [MAX_BATCH]);
        assert_eq!(shares_full(&[2048, 1]), [MAX_BATCH - 1, 1]);
        assert_eq!(shares_full(&[2048, 2048]), [MAX_BATCH / 2, MAX_BATCH / 2]);
        assert_eq!(shares_full(&[10, 100, 5]), [10, MAX_BATCH - 15, 5]);
        assert_eq!(shares_full(&[0]), [0]);
        let many = vec![3; MAX_BATCH + 6];
        assert_eq!(shares_full(&many).iter().sum::<usize>(), MAX_BATCH, "never more than a chunk");
        // The oldest job moves even when more small jobs wait than a chunk holds.
        let mut crowd = vec![1; MAX_BATCH + 6];
        crowd[0] = 2048;
        let take = shares_full(&crowd);
        assert!(take[0] >= 1 && take.iter().sum::<usize>() == MAX_BATCH, "{take:?}");
    }

    #[tokio::test]
    async fn a_small_request_does_not_wait_for_a_large_one() {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0) });
        let b = EmbedBatcher::start(fake.clone()).unwrap();
        // 20 chunks of 20 ms each.
        let mut large = b.submit(vec!["text".to_string(); MAX_BATCH * 20], None);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let (v, _) = b.submit(vec!["hi".to_string()], None).await.unwrap().unwrap();
        assert_eq!(v[0][0], 2.0);
        assert!(large.try_recv().is_err(), "the small request came back while the large one still ran");
        let (v, _) = large.await.unwrap().unwrap();
        assert_eq!(v.len(), MAX_BATCH * 20);
    }

    #[tokio::test]
    async fn an_abandoned_request_stops_early_and_holds_its_permit_until_then() {
        let fake = Arc::new(Fake { calls: AtomicUsize::new(0) });
        let b = EmbedBatcher::start(fake.clone()).unwrap();
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = permits.clone().try_acquire_owned().unwrap();
        // 32 chunks of 20 ms each if it ran to the end.
        let rx = b.submit(vec!["text".to_string(); MAX_BATCH * 32], Some(permit));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        drop(rx);
        assert_eq!(permits.available_permits(), 0, "the worker still holds the caller's place");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while permits.available_permits() == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(permits.available_permits(), 1, "released when the worker let go of the job");
        assert!(fake.calls.load(Ordering::SeqCst) <= 3, "stopped after the chunk in progress");
    }
}
