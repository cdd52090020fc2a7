//! On-disk layout of a collection, written atomically.
//!
//! ```text
//! NAME/
//!   CURRENT              name of the live generation ("gen-7-<unique suffix>"), replaced by rename
//!   .lock                held (flock) by the process that is adding documents
//!   gen-7-18c2f.../
//!     manifest.json      embedder, files (path, sha256, format), counters
//!     passages.json      passages with offsets, text and sentence ranges
//!     vectors.safetensors  "passages" [n, dim] and "sentences" [m, dim], f32; with an encoder that
//!                        gives token states also "token_values" [t, dim] i8, "token_scales" [t] f32
//!                        and "token_offsets" [m + 1] u32 (see `late`)
//!     lexical/           tantivy BM25 index, one document per passage
//! ```
//!
//! Every change writes a complete new generation into `gen-N.tmp`, renames it to `gen-N`, then points
//! `CURRENT` at it (write `CURRENT.tmp`, rename). A crash leaves either the old or the new collection,
//! never a mix; readers that opened the old generation keep working from their open files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::clean::Format;
use crate::dense::Matrix;
use crate::late::TokenStore;
use crate::{lexical, DocsError};

/// Version of the on-disk format, bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
const CURRENT: &str = "CURRENT";
const LOCK: &str = ".lock";
const MANIFEST: &str = "manifest.json";
const PASSAGES: &str = "passages.json";
const VECTORS: &str = "vectors.safetensors";
const LEXICAL: &str = "lexical";

/// One indexed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Absolute path of the file when it was added (the key for updates).
    pub path: String,
    /// SHA-256 of its bytes, to skip unchanged files.
    pub sha256: String,
    /// How it was cleaned.
    pub format: Format,
    /// [`crate::clean::cleaning_version`] of its format when it was cleaned (0 in collections written
    /// before it was kept): a file cleaned by an older version is cleaned again at the next `add`.
    #[serde(default)]
    pub cleaning: u32,
    /// Characters of cleaned text.
    pub chars: usize,
    /// Passages it produced.
    pub passages: usize,
}

impl FileEntry {
    /// Whether the entry still stands for a file whose bytes hash to `sha256`, to be read as `format`:
    /// the same bytes, cleaned the same way as this version cleans them.
    pub fn is_current(&self, sha256: &str, format: Format) -> bool {
        self.sha256 == sha256 && self.format == format && self.cleaning == crate::clean::cleaning_version(format)
    }
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Generation number (the `N` of `gen-N`).
    pub generation: u64,
    /// Model id of the embedder the vectors come from; `None` until the first document.
    pub embedder: Option<String>,
    /// Dimension of the vectors (0 until the first document).
    pub dim: usize,
    /// Indexed files, in the order they were added.
    pub files: Vec<FileEntry>,
    /// Next passage id to hand out (ids are never reused, so a citation never silently changes meaning).
    pub next_id: u64,
}

impl Manifest {
    /// The manifest of a new, empty collection.
    pub fn empty() -> Self {
        Manifest {
            format_version: FORMAT_VERSION,
            generation: 0,
            embedder: None,
            dim: 0,
            files: Vec::new(),
            next_id: 0,
        }
    }
}

/// A passage as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPassage {
    /// Stable id within the collection.
    pub id: u64,
    /// Path of its file (as in [`FileEntry::path`]).
    pub file: String,
    /// Character offset of its first character in the file's cleaned text.
    pub start: usize,
    /// Character offset one past its last character.
    pub end: usize,
    /// Its text (a slice of the cleaned text).
    pub text: String,
    /// Its sentences as byte ranges into `text`.
    pub sentences: Vec<(u32, u32)>,
}

/// Everything a generation holds except the lexical index.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The manifest.
    pub manifest: Manifest,
    /// Passages in row order (row `i` of the vectors and of the lexical index).
    pub passages: Vec<StoredPassage>,
    /// One vector per passage.
    pub passage_vecs: Matrix,
    /// One vector per sentence, passages' sentences concatenated in row order.
    pub sentence_vecs: Matrix,
    /// Token vectors per sentence, in the same order; `None` when the encoder gives none (or the
    /// collection was indexed before they were kept).
    pub tokens: Option<TokenStore>,
}

/// Whether `dir` holds a collection.
pub fn exists(dir: &Path) -> bool {
    dir.join(CURRENT).is_file()
}

/// Folder of the live generation of the collection in `dir`.
pub fn current_generation(dir: &Path) -> Result<PathBuf, DocsError> {
    let path = dir.join(CURRENT);
    let name = match std::fs::read_to_string(&path) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DocsError::NotACollection { dir: dir.to_path_buf() })
        }
        Err(e) => return Err(DocsError::io(path, e)),
    };
    let name = name.trim();
    if !name.starts_with("gen-") || name.contains(['/', '\\']) {
        return Err(DocsError::Corrupt { path, reason: format!("unexpected generation name `{name}`") });
    }
    Ok(dir.join(name))
}

/// Path of the lexical index of a generation.
pub fn lexical_dir(gen: &Path) -> PathBuf {
    gen.join(LEXICAL)
}

/// Reads a generation's manifest, passages and vectors.
pub fn load(gen: &Path) -> Result<Snapshot, DocsError> {
    let manifest: Manifest = read_json(&gen.join(MANIFEST))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(DocsError::Corrupt {
            path: gen.join(MANIFEST),
            reason: format!("format version {} (this build reads {FORMAT_VERSION})", manifest.format_version),
        });
    }
    let passages: Vec<StoredPassage> = read_json(&gen.join(PASSAGES))?;
    let (passage_vecs, sentence_vecs, tokens) = if manifest.dim == 0 {
        (Matrix::new(0), Matrix::new(0), None)
    } else {
        read_vectors(&gen.join(VECTORS), manifest.dim)?
    };
    let n_sent: usize = passages.iter().map(|p| p.sentences.len()).sum();
    let token_sentences = tokens.as_ref().map_or(n_sent, TokenStore::sentences);
    if passage_vecs.rows() != passages.len() || sentence_vecs.rows() != n_sent || token_sentences != n_sent {
        return Err(DocsError::Corrupt {
            path: gen.join(VECTORS),
            reason: format!(
                "{} passage and {} sentence vectors ({token_sentences} with token vectors) for {} passages and \
                 {n_sent} sentences",
                passage_vecs.rows(),
                sentence_vecs.rows(),
                passages.len()
            ),
        });
    }
    Ok(Snapshot { manifest, passages, passage_vecs, sentence_vecs, tokens })
}

/// Writes `snap` as generation `snap.manifest.generation` of the collection in `dir` and makes it live;
/// removes older generations. Returns the new generation's folder.
pub fn commit(dir: &Path, snap: &Snapshot) -> Result<PathBuf, DocsError> {
    // The folder name is unique, not just the number: generation numbers restart when a collection is
    // removed and created again, and a reader compares folder names to notice a change.
    let name = format!("gen-{}-{}", snap.manifest.generation, unique_suffix());
    let tmp = dir.join(format!("{name}.tmp"));
    let gen = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DocsError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DocsError::io(&tmp, e))?;
    let written = write_generation(&tmp, snap).and_then(|()| {
        if gen.exists() {
            std::fs::remove_dir_all(&gen).map_err(|e| DocsError::io(&gen, e))?;
        }
        std::fs::rename(&tmp, &gen).map_err(|e| DocsError::io(&gen, e))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The new generation is on disk before CURRENT names it, and CURRENT is on disk before the old
    // generation goes: a power cut leaves one complete collection.
    sync_dir(&gen)?;
    sync_dir(dir)?;
    write_atomic(&dir.join(CURRENT), name.as_bytes())?;
    sync_dir(dir)?;
    remove_old_generations(dir, &name);
    Ok(gen)
}

/// A suffix no other generation of any collection has had: time and process id.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}

/// Flushes a folder's entries (created and renamed files) to disk.
fn sync_dir(dir: &Path) -> Result<(), DocsError> {
    #[cfg(unix)]
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| DocsError::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn write_generation(tmp: &Path, snap: &Snapshot) -> Result<(), DocsError> {
    write_json(&tmp.join(PASSAGES), &snap.passages)?;
    if snap.manifest.dim > 0 {
        write_vectors(&tmp.join(VECTORS), &snap.passage_vecs, &snap.sentence_vecs, snap.tokens.as_ref())?;
    }
    if !snap.passages.is_empty() {
        let lex = lexical_dir(tmp);
        std::fs::create_dir_all(&lex).map_err(|e| DocsError::io(&lex, e))?;
        lexical::build(&lex, snap.passages.iter().map(|p| p.text.as_str()))?;
    }
    // The manifest goes last: a generation folder without one is never read.
    write_json(&tmp.join(MANIFEST), &snap.manifest)
}

fn remove_old_generations(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("gen-") && name != keep {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!("cannot remove old generation {}: {err}", e.path().display());
            }
        }
    }
}

/// Exclusive writer lock on a collection, released on drop.
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Takes the lock of the collection in `dir` or fails at once with [`DocsError::Locked`].
    pub fn acquire(dir: &Path) -> Result<Self, DocsError> {
        let path = dir.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DocsError::io(&path, e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => Ok(WriteLock { _file: file }),
            Ok(false) => Err(DocsError::Locked { dir: dir.to_path_buf() }),
            Err(e) => Err(DocsError::io(&path, e)),
        }
    }
}

/// Writes `bytes` to `path` atomically and durably ([`rightmodel_core::fsutil::write_atomic`]), as a
/// [`DocsError`] naming `path` on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DocsError> {
    rightmodel_core::fsutil::write_atomic(path, bytes).map_err(|e| DocsError::io(path, e))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DocsError> {
    let bytes = serde_json::to_vec(value).map_err(|e| DocsError::io(path, e.into()))?;
    write_synced(path, &bytes)
}

/// Writes a new file of a generation and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), DocsError> {
    let mut f = File::create(path).map_err(|e| DocsError::io(path, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| DocsError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, DocsError> {
    let bytes = std::fs::read(path).map_err(|e| DocsError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| DocsError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })
}

fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_vectors(
    path: &Path,
    passages: &Matrix,
    sentences: &Matrix,
    tokens: Option<&TokenStore>,
) -> Result<(), DocsError> {
    let corrupt =
        |e: safetensors::SafeTensorError| DocsError::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
    let (pb, sb) = (to_le_bytes(passages.as_flat()), to_le_bytes(sentences.as_flat()));
    let mut views = vec![
        ("passages", TensorView::new(Dtype::F32, vec![passages.rows(), passages.dim()], &pb).map_err(corrupt)?),
        ("sentences", TensorView::new(Dtype::F32, vec![sentences.rows(), sentences.dim()], &sb).map_err(corrupt)?),
    ];
    let token_bytes = tokens.map(|t| {
        let (values, scales, offsets) = t.parts();
        let values: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        let offsets: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        (values, to_le_bytes(scales), offsets, t.rows(), t.dim(), t.sentences())
    });
    if let Some((values, scales, offsets, rows, dim, n)) = &token_bytes {
        views.push(("token_values", TensorView::new(Dtype::I8, vec![*rows, *dim], values).map_err(corrupt)?));
        views.push(("token_scales", TensorView::new(Dtype::F32, vec![*rows], scales).map_err(corrupt)?));
        views.push(("token_offsets", TensorView::new(Dtype::U32, vec![n + 1], offsets).map_err(corrupt)?));
    }
    let bytes = safetensors::serialize(views, None::<HashMap<String, String>>).map_err(corrupt)?;
    write_synced(path, &bytes)
}

/// Passage vectors, sentence vectors and (when stored) token vectors.
type Vectors = (Matrix, Matrix, Option<TokenStore>);

fn read_vectors(path: &Path, dim: usize) -> Result<Vectors, DocsError> {
    let file = std::fs::File::open(path).map_err(|e| DocsError::io(path, e))?;
    // SAFETY: a generation's files are written once under a temporary name, renamed into place and
    // never modified (an update writes a new generation; removing an old one leaves this mapping
    // valid), so the mapped bytes do not change under the reader.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DocsError::io(path, e))?);
    let corrupt = |reason: String| DocsError::Corrupt { path: path.to_path_buf(), reason };
    let st = safetensors::SafeTensors::deserialize(&map[..]).map_err(|e| corrupt(e.to_string()))?;
    let read = |name: &str| -> Result<Matrix, DocsError> {
        let t = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 2 || t.shape()[1] != dim {
            return Err(corrupt(format!("tensor `{name}` has shape {:?}, expected [n, {dim}] f32", t.shape())));
        }
        let data: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Matrix::from_flat(dim, data).ok_or_else(|| corrupt(format!("tensor `{name}` is not a multiple of {dim}")))
    };
    let tokens = match st.tensor("token_values") {
        Err(_) => None,
        Ok(values) => {
            let four = |name: &str, dtype: Dtype| -> Result<Vec<[u8; 4]>, DocsError> {
                let t = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
                if t.dtype() != dtype || t.shape().len() != 1 {
                    return Err(corrupt(format!("tensor `{name}` has shape {:?}, expected [n] {dtype:?}", t.shape())));
                }
                Ok(t.data().chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
            };
            let scales = four("token_scales", Dtype::F32)?.into_iter().map(f32::from_le_bytes).collect();
            let offsets = four("token_offsets", Dtype::U32)?.into_iter().map(u32::from_le_bytes).collect();
            if values.dtype() != Dtype::I8 {
                return Err(corrupt(format!("tensor `token_values` is {:?}, expected i8", values.dtype())));
            }
            // The values stay in the mapped file (most of its size); the view lies inside the map.
            let start = values.data().as_ptr() as usize - map.as_ptr() as usize;
            let range = start..start + values.data().len();
            Some(
                TokenStore::from_mapped(dim, Arc::clone(&map), range, scales, offsets)
                    .ok_or_else(|| corrupt("token vectors, scales and offsets do not fit together".into()))?,
            )
        }
    };
    Ok((read("passages")?, read("sentences")?, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_vectors_are_read_back_mapped_and_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VECTORS);
        let passages = Matrix::from_flat(2, vec![0.6, 0.8]).unwrap();
        let sentences = Matrix::from_flat(2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let mut tokens = TokenStore::new(2);
        tokens.push_f32(&[0.6, 0.8, -1.0, 0.0]);
        tokens.push_f32(&[0.0, 1.0]);
        write_vectors(&path, &passages, &sentences, Some(&tokens)).unwrap();
        let (p, s, t) = read_vectors(&path, 2).unwrap();
        assert_eq!((p.rows(), s.rows()), (1, 2));
        let t = t.unwrap();
        assert!(t.is_mapped());
        assert_eq!(t, tokens);
        // A store built from a mapped one copies what it takes and grows in memory.
        let mut next = TokenStore::new(2);
        next.push_from(&t, 1);
        assert!(!next.is_mapped());
        assert_eq!(next.sentence_f32(0), tokens.sentence_f32(1));
        // The mapping outlives the file's removal (an old generation deleted while served).
        std::fs::remove_file(&path).unwrap();
        assert_eq!(t.sentence_f32(0), tokens.sentence_f32(0));
        // Without token vectors there is no store.
        write_vectors(&path, &passages, &sentences, None).unwrap();
        assert!(read_vectors(&path, 2).unwrap().2.is_none());
    }
}
