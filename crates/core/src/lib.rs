//! Shared types of rightmodel.
//!
//! Everything that crosses a crate boundary lives here: the OpenAI wire schema ([`wire`]), the error
//! taxonomy that maps onto HTTP statuses ([`error`]), the description of a servable model ([`spec`]) and
//! the small traits that let the router, task models and document QA use an encoder or a language model
//! without knowing which engine runs it ([`embed`], [`reader`]), how an answer is scored against
//! expected ones ([`answer`]) and how a report escapes a Markdown table cell ([`markdown`]). Its only
//! I/O is [`fsutil`]'s atomic file write, shared by every crate that writes results; with the `png`
//! feature, `picture` encodes the charts they draw and `chart` holds the legend and the empty panel
//! they share.

pub mod answer;
#[cfg(feature = "png")]
pub mod chart;
pub mod embed;
pub mod error;
pub mod fsutil;
pub mod markdown;
#[cfg(feature = "png")]
pub mod picture;
pub mod reader;
pub mod spec;
pub mod tokens;
pub mod wire;

pub use embed::{EmbedError, Embedder, WithTokens};
pub use error::{ApiError, ErrorKind};
pub use reader::{PassageReader, Reading, ScoreError};
pub use spec::{ModelKind, ModelSpec, Price};
