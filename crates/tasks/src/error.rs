//! The one error type of this crate.

use std::path::PathBuf;

/// Why reading data, training, loading or running a classifier failed.
///
/// Data problems carry the file and the 1-based line so a user can fix the input without guessing.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file or directory could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error, shown in the message (so not also a `source`, which would print it twice).
        error: std::io::Error,
    },
    /// The training or evaluation data is unusable; the message names the file, line and fix.
    #[error("{0}")]
    Data(String),
    /// A column (CSV/TSV) or field (JSON lines) asked for is in no row of a data file. Kept apart from
    /// [`TaskError::Data`] so a caller can suggest the flag that names the column.
    #[error("{path}: missing column(s) {}; {found}", names(.missing))]
    MissingColumn {
        /// The data file.
        path: PathBuf,
        /// The columns or fields asked for and not found.
        missing: Vec<String>,
        /// What the file has instead ("the header row has: `a`, `b`").
        found: String,
    },
    /// A saved classifier is missing, incomplete or from an incompatible version.
    #[error("classifier {path}: {reason}")]
    Model {
        /// The classifier directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A classifier name or path does not resolve to a saved classifier.
    #[error("{0}")]
    NotFound(String),
    /// The caller asked for something impossible (bad option value, wrong encoder, ...).
    #[error("{0}")]
    Invalid(String),
    /// Another run wrote the classifier directory while this one was training; this run's classifier
    /// was not saved (the other one is kept).
    #[error(
        "{}: another training run created this classifier while this one was running; \
         the classifier just trained was NOT saved (the other run's is kept). \
         Train again with --force to replace it, or choose another name",
        .0.display()
    )]
    CreatedMeanwhile(PathBuf),
    /// The sentence encoder failed.
    #[error(transparent)]
    Embed(rightmodel_core::EmbedError),
    /// A tensor operation failed (shape mismatch, corrupt weights, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(#[source] candle_core::Error),
    /// An inference-engine call failed (loading or running the encoder).
    #[error(transparent)]
    Infer(rightmodel_infer::InferError),
    /// Writing a report or picture failed.
    #[error("report: {0}")]
    Report(String),
}

/// `a`, `b` as a list of backquoted names.
fn names(list: &[String]) -> String {
    list.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

impl TaskError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TaskError::Io { path: path.into(), error: source }
    }

    /// A problem with a saved classifier directory. A backtrace inside `reason` (candle adds one to
    /// its errors when `RUST_BACKTRACE` is set) is left out: the user needs the one-line cause.
    pub fn model(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        TaskError::Model { path: path.into(), reason: strip_backtrace(&reason.to_string()) }
    }
}

impl From<candle_core::Error> for TaskError {
    /// Keeps the error without the backtrace candle attaches when `RUST_BACKTRACE` is set.
    fn from(e: candle_core::Error) -> Self {
        TaskError::Tensor(without_backtrace(e))
    }
}

impl From<rightmodel_core::EmbedError> for TaskError {
    /// Keeps the encoder's message without a candle backtrace inside it.
    fn from(e: rightmodel_core::EmbedError) -> Self {
        TaskError::Embed(rightmodel_core::EmbedError(strip_backtrace(&e.0)))
    }
}

impl From<rightmodel_infer::InferError> for TaskError {
    /// Keeps the engine's message without a candle backtrace inside it (the engine formats candle
    /// errors, backtrace included, into its strings).
    fn from(e: rightmodel_infer::InferError) -> Self {
        use rightmodel_infer::InferError as E;
        TaskError::Infer(match e {
            E::Load { path, reason } => E::Load { path, reason: strip_backtrace(&reason) },
            E::Invalid(m) => E::Invalid(strip_backtrace(&m)),
            E::Engine(m) => E::Engine(strip_backtrace(&m)),
            other => other,
        })
    }
}

pub use rightmodel_infer::candle_error::without_backtrace;

/// `msg` cut before a Rust backtrace printed into it (lines `   0: function` / `at file:line`), for
/// messages that were formatted from a candle error elsewhere. Messages without one are unchanged.
pub fn strip_backtrace(msg: &str) -> String {
    let frame = |line: &str, start: &str| line.starts_with(' ') && line.trim_start().starts_with(start);
    let mut offset = 0;
    for line in msg.split_inclusive('\n') {
        // A printed backtrace starts with frame 0, indented, followed by its location or frame 1.
        let rest = &msg[offset + line.len()..];
        if offset > 0 && frame(line, "0: ") && rest.lines().any(|l| frame(l, "1: ") || frame(l, "at ")) {
            return msg[..offset].trim_end().to_string();
        }
        offset += line.len();
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_backtrace(msg: &str) -> candle_core::Error {
        candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg(msg.into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        }
    }

    #[test]
    fn candle_backtraces_are_left_out_of_messages() {
        let raw = with_backtrace("shape mismatch for w, expected: [256, 256], got: [384, 384]");
        let raw_text = raw.to_string();
        assert!(raw_text.lines().count() > 2, "a captured backtrace should print frames: {raw_text}");
        let e: TaskError = raw.into();
        assert_eq!(
            e.to_string(),
            "tensor operation failed: shape mismatch for w, expected: [256, 256], got: [384, 384]"
        );
        let e = TaskError::model("/m", format!("cannot load model w.safetensors: {raw_text}"));
        assert_eq!(e.to_string(), "classifier /m: cannot load model w.safetensors: shape mismatch for w, expected: [256, 256], got: [384, 384]");
        let e: TaskError = rightmodel_infer::InferError::Load { path: "p".into(), reason: raw_text.clone() }.into();
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        let e: TaskError = rightmodel_core::EmbedError(raw_text).into();
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        // Context around a backtrace keeps both messages.
        let e: TaskError = with_backtrace("inner").context("outer").into();
        assert_eq!(e.to_string(), "tensor operation failed: outer\ninner");
    }

    #[test]
    fn messages_without_a_backtrace_are_unchanged() {
        for m in ["plain", "two\nlines", "list:\n  0: first item", ""] {
            assert_eq!(strip_backtrace(m), m);
        }
    }
}
