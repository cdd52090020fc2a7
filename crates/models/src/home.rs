//! Where rightmodel keeps its state.

use std::path::PathBuf;

/// `$RIGHTMODEL_HOME`, or `~/.cache/rightmodel` when unset: the model store, the request log,
/// trained task models and document collections live below it.
pub fn rightmodel_home() -> PathBuf {
    if let Some(h) = std::env::var_os("RIGHTMODEL_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    base.join(".cache").join("rightmodel")
}
