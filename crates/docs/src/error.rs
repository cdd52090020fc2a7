//! Errors of document collections.

use std::path::PathBuf;

use rightmodel_core::{EmbedError, ScoreError};

/// Why a collection operation failed. Every variant names the file or collection involved, so the CLI and
/// the server can show it to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    /// A file or folder could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error, shown in the message (so not also a `source`, which would print it twice).
        error: std::io::Error,
    },
    /// A path given to `add` does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// A file has no text (zero bytes, only whitespace, or HTML without visible text).
    #[error("{}: the file is empty (no text to index)", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A file is not UTF-8 text (NUL bytes, invalid UTF-8): most likely a binary file.
    #[error("{}: not a text file ({reason}); only UTF-8 text, Markdown and HTML can be indexed", path.display())]
    BinaryFile {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A file in a document format that is not text (PDF, Word, OpenDocument, EPUB, ...), known by its
    /// extension or its first bytes: read as text it would index markup and compressed streams, or
    /// nothing readable at all, even when its bytes happen to be valid UTF-8.
    #[error(
        "{}: {kind}, which cannot be indexed; only UTF-8 text, Markdown and HTML files can ({}): convert it to text first",
        path.display(),
        crate::clean::supported_extensions()
    )]
    UnsupportedDocument {
        /// The file.
        path: PathBuf,
        /// What it is, for the message ("a PDF document").
        kind: &'static str,
    },
    /// A file too large to be a document, or not a regular file (a device, a pipe).
    #[error("{}: {reason}", path.display())]
    NotADocument {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A collection name with characters that cannot be a folder name.
    #[error("invalid collection name `{0}`: use letters, digits, `-`, `_` and `.` (not starting with `.`)")]
    InvalidName(String),
    /// `open` on a folder that holds no collection.
    #[error("{}: no document collection here", dir.display())]
    NotACollection {
        /// The folder.
        dir: PathBuf,
    },
    /// `create` on a folder that already holds a collection.
    #[error("{}: a document collection already exists here", dir.display())]
    AlreadyExists {
        /// The folder.
        dir: PathBuf,
    },
    /// Another process is adding documents to the same collection.
    #[error("{}: the collection is being updated by another process", dir.display())]
    Locked {
        /// The folder.
        dir: PathBuf,
    },
    /// A stored file of a collection cannot be parsed.
    #[error(
        "{}: corrupt collection file: {reason} (`rightmodel docs remove` the collection and add its files again)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The collection was built with another embedding model than the one passed in.
    #[error("the collection was indexed with embedding model `{expected}` ({expected_dim}-d), not `{got}` ({got_dim}-d); re-create it")]
    EmbedderMismatch {
        /// Model recorded in the collection.
        expected: String,
        /// Its dimension.
        expected_dim: usize,
        /// Model passed in.
        got: String,
        /// Its dimension.
        got_dim: usize,
    },
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The language model that re-ranks passages failed.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// The lexical (tantivy) index failed.
    #[error("lexical index: {0}")]
    Index(String),
    /// A question asked of a collection without documents.
    #[error("the collection has no documents; add some with `rightmodel docs add`")]
    EmptyCollection,
    /// An empty question.
    #[error("the question is empty")]
    EmptyQuestion,
    /// A question longer than [`crate::MAX_QUESTION_CHARS`].
    #[error("the question is {chars} characters long; at most {max} are read")]
    QuestionTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A SQuAD file that cannot be parsed.
    #[error("{}: not a SQuAD-format file: {reason}", path.display())]
    BadSquad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The report picture could not be drawn.
    #[error("cannot draw {}: {reason}", path.display())]
    Plot {
        /// The picture file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl DocsError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DocsError::Io { path: path.into(), error: source }
    }
}

impl From<tantivy::TantivyError> for DocsError {
    fn from(e: tantivy::TantivyError) -> Self {
        DocsError::Index(e.to_string())
    }
}
