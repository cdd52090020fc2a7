//! The `.verified` marker: records each file's sha256, size and mtime after it was hashed, so that a
//! later pull or resolve can trust the files with a `stat` instead of re-hashing hundreds of MB.

use crate::catalog::DefaultModel;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::UNIX_EPOCH;

/// Name of the marker file inside a model directory.
pub const MARKER: &str = ".verified";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    name: String,
    sha256: String,
    size: u64,
    mtime_ns: u64,
}

/// Size and mtime (ns since the epoch) of a file, or None when it cannot be stat'ed.
fn stat(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    let mtime = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((m.len(), u64::try_from(mtime.as_nanos()).ok()?))
}

/// True when `dir` holds every file of `model`, unchanged since it was verified against the catalog.
pub fn is_verified(dir: &Path, model: &DefaultModel) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(MARKER)) else { return false };
    let Ok(marker) = serde_json::from_str::<Marker>(&text) else { return false };
    model.files.iter().all(|f| {
        let Some(e) = marker.files.iter().find(|e| e.name == f.name) else { return false };
        e.sha256 == f.sha256 && stat(&dir.join(f.name)) == Some((e.size, e.mtime_ns))
    })
}

/// Writes the marker for `model`'s files in `dir`, whose hashes the caller has just checked.
/// Written to a temporary name and renamed, so a reader never sees half a marker.
pub fn write(dir: &Path, model: &DefaultModel) -> std::io::Result<()> {
    let mut files = Vec::with_capacity(model.files.len());
    for f in model.files {
        let (size, mtime_ns) = stat(&dir.join(f.name))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} vanished", f.name)))?;
        files.push(Entry { name: f.name.to_string(), sha256: f.sha256.to_string(), size, mtime_ns });
    }
    let text = serde_json::to_string_pretty(&Marker { files }).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{MARKER}.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(MARKER)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
