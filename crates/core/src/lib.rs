//! Shared types of rightmodel.
//!
//! Everything that crosses a crate boundary lives here: the OpenAI wire schema ([`wire`]), the error
//! taxonomy that maps onto HTTP statuses ([`error`]), the description of a servable model ([`spec`]) and
//! the small traits that let the router and task models use an encoder without knowing which engine
//! runs it ([`embed`]). This crate does no I/O.

pub mod embed;
pub mod error;
pub mod spec;
pub mod wire;

pub use embed::{EmbedError, Embedder};
pub use error::{ApiError, ErrorKind};
pub use spec::{ModelKind, ModelSpec, Price};
