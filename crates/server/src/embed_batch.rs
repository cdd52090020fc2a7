//! Dynamic batching for `/v1/embeddings`: requests that arrive while the encoder is busy share its
//! next call.
//!
//! One sentence alone costs the encoder about 4 ms on 2 cores, while a batch of 32 costs about
//! 1 ms per sentence, and concurrent encoder calls only fight over the same cores. So a single worker
//! thread owns the encoder: it takes the oldest waiting request, adds every other request already
//! waiting (up to [`MAX_BATCH`] texts), embeds them in one call and hands each caller its rows. Nothing
//! waits on purpose: a lone request runs at once, and batches form only under load.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use rightmodel_core::{EmbedError, Embedder};
use tokio::sync::oneshot;

/// Most texts gathered into one encoder call (one request with more runs alone).
pub const MAX_BATCH: usize = 64;

/// Vectors and prompt-token count of one request, or why the encoder failed.
pub type EmbedResult = Result<(Vec<Vec<f32>>, usize), String>;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<EmbedResult>,
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
    /// many requests wait (the server's embedding permits).
    pub fn submit(&self, texts: Vec<String>) -> oneshot::Receiver<EmbedResult> {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.send(Job { texts, reply }) {
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
        let rx = self.submit(texts.iter().map(|t| t.to_string()).collect());
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
        if jobs.is_empty() {
            continue;
        }
        let refs: Vec<&str> = jobs.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
        match model.embed_counted(&refs) {
            Ok((vectors, counts)) if vectors.len() == refs.len() && counts.len() == refs.len() => {
                let mut rows = vectors.into_iter();
                let mut counts = counts.into_iter();
                for j in jobs {
                    let v: Vec<Vec<f32>> = rows.by_ref().take(j.texts.len()).collect();
                    let tokens = counts.by_ref().take(j.texts.len()).sum();
                    let _ = j.reply.send(Ok((v, tokens)));
                }
            }
            Ok((vectors, _)) => {
                let msg = format!("the encoder returned {} vectors for {} texts", vectors.len(), refs.len());
                for j in jobs {
                    let _ = j.reply.send(Err(msg.clone()));
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.to_string()));
                }
            }
        }
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
        let rxs: Vec<_> = (1..=10).map(|i| b.submit(vec!["x".repeat(i), "y".repeat(i * 10)])).collect();
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
}
