//! Named collections under `$RIGHTMODEL_HOME/docs`: where they live, listing, removal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{self, Manifest};
use crate::DocsError;

/// `$RIGHTMODEL_HOME/docs`: the folder holding one sub-folder per named collection.
pub fn collections_root() -> PathBuf {
    rightmodel_models::home::rightmodel_home().join("docs")
}

/// Checks that `name` can name a collection (a single safe path component).
pub fn validate_name(name: &str) -> Result<(), DocsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DocsError::InvalidName(name.to_string()))
    }
}

/// Folder of the collection `name` under `root`.
pub fn collection_dir(root: &Path, name: &str) -> Result<PathBuf, DocsError> {
    validate_name(name)?;
    Ok(root.join(name))
}

/// Summary of one collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// Its folder.
    pub dir: String,
    /// Indexed files.
    pub files: usize,
    /// Passages.
    pub passages: usize,
    /// Characters of cleaned text.
    pub chars: usize,
    /// Embedding model of its vectors.
    pub embedder: Option<String>,
    /// Why it cannot be read: its manifest (the counts are then 0) or another stored file; one broken
    /// collection does not hide the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The manifest of the collection in `dir`.
fn read_manifest(dir: &Path) -> Result<Manifest, DocsError> {
    let gen = store::current_generation(dir)?;
    let path = gen.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| DocsError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| DocsError::Corrupt { path: path.clone(), reason: e.to_string() })
}

/// Reads the current generation of the collection in `dir` as opening it would, keeping nothing.
fn check_files(dir: &Path) -> Result<(), DocsError> {
    store::current_generation(dir).and_then(|gen| store::load(&gen)).map(|_| ())
}

/// The collections under `root`, sorted by name (a missing root means none). Folders that are not
/// collections are left out; a collection whose manifest or stored files cannot be read is listed with its
/// error.
pub fn list_collections(root: &Path) -> Result<Vec<CollectionInfo>, DocsError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DocsError::io(root, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DocsError::io(root, e))?;
        let dir = entry.path();
        if !dir.is_dir() || !store::exists(&dir) {
            continue;
        }
        let (m, error) = match read_manifest(&dir) {
            // The counts come from the manifest; the stored files are read too, so that a truncated or
            // damaged one shows here rather than at the first question.
            Ok(m) => (m, check_files(&dir).err().map(|e| e.to_string())),
            Err(e) => (Manifest::empty(), Some(e.to_string())),
        };
        out.push(CollectionInfo {
            name: entry.file_name().to_string_lossy().into_owned(),
            dir: dir.to_string_lossy().into_owned(),
            files: m.files.len(),
            passages: m.files.iter().map(|f| f.passages).sum(),
            chars: m.files.iter().map(|f| f.chars).sum(),
            embedder: m.embedder,
            error,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes the collection `name` under `root`. The folder is first renamed aside, so a concurrent
/// reader never sees a half-deleted collection.
pub fn remove_collection(root: &Path, name: &str) -> Result<(), DocsError> {
    remove_locked(root, name, |_| Ok(true)).map(|_| ())
}

/// Removes collection `name` only if it holds no passages, checked under its write lock (so a
/// concurrent `docs add` that fills it first wins). Returns whether it was removed.
pub fn remove_collection_if_empty(root: &Path, name: &str) -> Result<bool, DocsError> {
    remove_locked(root, name, |dir| {
        let gen = store::current_generation(dir)?;
        Ok(store::load(&gen)?.passages.is_empty())
    })
}

fn remove_locked(
    root: &Path,
    name: &str,
    should: impl FnOnce(&Path) -> Result<bool, DocsError>,
) -> Result<bool, DocsError> {
    let dir = collection_dir(root, name)?;
    if !store::exists(&dir) {
        return Err(DocsError::NotACollection { dir });
    }
    let _lock = store::WriteLock::acquire(&dir)?;
    if !should(&dir)? {
        return Ok(false);
    }
    let trash = root.join(format!(".{name}.removing-{}", std::process::id()));
    std::fs::rename(&dir, &trash).map_err(|e| DocsError::io(&dir, e))?;
    std::fs::remove_dir_all(&trash).map_err(|e| DocsError::io(&trash, e))?;
    Ok(true)
}
