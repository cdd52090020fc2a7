//! Dynamic batching for `/v1/embeddings`: requests that arrive while the encoder is busy share its
//! next call.
//!
//! One sentence alone costs the encoder about 4 ms on 2 cores, while a batch of 32 costs about
//! 1 ms per sentence, and concurrent encoder calls only fight over the same cores. So a single worker
//! thread owns the encoder: it takes the oldest waiting request, adds every other request already
//! waiting (up to [`MAX_BATCH`] texts), embeds them in one call and hands each caller its rows. Nothing
//! waits on purpose: a lone request runs at once, and batches form only under load.
//!
//! The texts gathered are encoded in chunks of at most [`MAX_BATCH`], shortest first; between chunks
//! the texts of callers that gave up are dropped, so a client that leaves in the middle of a request
//! of 2,048 texts stops costing the encoder. A request's permit (the server's cap on requests waiting
//! for the encoder) travels with it and is released only when the worker is done with it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use rightmodel_core::{EmbedError, Embedder};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Most texts gathered into one encoder call (one request with more runs alone).
pub const MAX_BATCH: usize = 64;

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

fn work(model: &dyn Embedder, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut n = first.texts.len();
        let mut jobs = vec![first];
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.texts.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        // Callers that gave up (client gone) are skipped.
        jobs.retain(|j| !j.reply.is_closed());
        if !jobs.is_empty() {
            encode(model, jobs);
        }
    }
}

/// Encodes the texts of `jobs` in chunks of at most [`MAX_BATCH`] (shortest texts first, so that
/// each chunk pads little) and answers each job. Texts of jobs whose caller left are skipped from
/// then on; the jobs (and their permits) are dropped when this returns.
fn encode(model: &dyn Embedder, jobs: Vec<Job>) {
    let mut vectors: Vec<Vec<Vec<f32>>> = jobs.iter().map(|j| vec![Vec::new(); j.texts.len()]).collect();
    let mut tokens = vec![0usize; jobs.len()];
    let mut order: Vec<(usize, usize)> =
        jobs.iter().enumerate().flat_map(|(j, job)| (0..job.texts.len()).map(move |i| (j, i))).collect();
    order.sort_by_key(|&(j, i)| jobs[j].texts[i].len());
    let mut pending = order.into_iter();
    loop {
        let chunk: Vec<(usize, usize)> =
            pending.by_ref().filter(|&(j, _)| !jobs[j].reply.is_closed()).take(MAX_BATCH).collect();
        if chunk.is_empty() {
            break;
        }
        let refs: Vec<&str> = chunk.iter().map(|&(j, i)| jobs[j].texts[i].as_str()).collect();
        let failure = match model.embed_counted(&refs) {
            Ok((rows, counts)) if rows.len() == refs.len() && counts.len() == refs.len() => {
                for ((&(j, i), row), count) in chunk.iter().zip(rows).zip(counts) {
                    vectors[j][i] = row;
                    tokens[j] += count;
                }
                continue;
            }
            Ok((rows, _)) => format!("the encoder returned {} vectors for {} texts", rows.len(), refs.len()),
            Err(e) => e.to_string(),
        };
        for j in jobs {
            let _ = j.reply.send(Err(failure.clone()));
        }
        return;
    }
    for ((job, v), t) in jobs.into_iter().zip(vectors).zip(tokens) {
        let _ = job.reply.send(Ok((v, t)));
    }
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
