//! Progress reporting seam: the library says what it is doing, the CLI draws bars.

/// Receives progress of long operations (embedding, training). All methods default to doing nothing.
pub trait Progress: Sync {
    /// A new stage with `total` units of work (0 when unknown).
    fn start(&self, _stage: &str, _total: u64) {}
    /// `n` more units done.
    fn inc(&self, _n: u64) {}
    /// A transient status line (current loss, ...).
    fn message(&self, _msg: &str) {}
    /// A milestone worth keeping in the log (a validation score, a chosen setting).
    fn note(&self, _msg: &str) {}
    /// The stage ended.
    fn finish(&self) {}
}

/// Reports nothing (tests, the server).
pub struct NoProgress;

impl Progress for NoProgress {}
