//! Errors of the router library (scoring, training, evaluation). Routing refusals that a client sees
//! as HTTP 422 are a separate type, [`crate::policy::RouteError`], because the server maps them
//! differently.

use rightmodel_core::EmbedError;

/// Failure while loading, training, scoring or reporting.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The sentence encoder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A weights or calibration file is missing or malformed.
    #[error("cannot load router weights from {path}: {reason}")]
    Weights {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The weights were trained with another kind of encoder (vector size, or static vs contextual).
    #[error("router weights expect {expected}-d embeddings from `{encoder}`, got {found}-d from `{found_encoder}`")]
    EncoderMismatch {
        /// Encoder named in the weights.
        encoder: String,
        /// Dimension the weights expect.
        expected: usize,
        /// Dimension of the encoder in use.
        found: usize,
        /// Id of the encoder in use.
        found_encoder: String,
    },
    /// A data file could not be read or has a bad row.
    #[error("{path}: {reason}")]
    Data {
        /// The file (and line, when known).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Training could not run (too few rows, a single class, ...).
    #[error("cannot train: {0}")]
    Training(String),
    /// Evaluation could not run (e.g. both models equally good, so PGR is undefined).
    #[error("cannot evaluate: {0}")]
    Eval(String),
    /// Writing a result file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file or directory.
        path: String,
        /// Why.
        reason: String,
    },
}

impl RouterError {
    /// A [`RouterError::Data`] for `path` with `reason`.
    pub fn data(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        RouterError::Data { path: path.to_string(), reason: reason.to_string() }
    }
    /// A [`RouterError::Write`] for `path` with `reason`.
    pub fn write(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        RouterError::Write { path: path.to_string(), reason: reason.to_string() }
    }
}
