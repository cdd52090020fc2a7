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
    /// The sentence encoder failed.
    #[error(transparent)]
    Embed(#[from] rightmodel_core::EmbedError),
    /// A tensor operation failed (shape mismatch, corrupt weights, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// An inference-engine call failed (loading or running the encoder).
    #[error(transparent)]
    Infer(#[from] rightmodel_infer::InferError),
    /// Writing a report or picture failed.
    #[error("report: {0}")]
    Report(String),
}

impl TaskError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TaskError::Io { path: path.into(), error: source }
    }

    /// A problem with a saved classifier directory.
    pub fn model(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        TaskError::Model { path: path.into(), reason: reason.to_string() }
    }
}
