//! From paths given to `add` to files with their passages: folder walk, cleaning, splitting, offsets.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::clean::{clean_bytes, Format};
use crate::split::{split_passages, SplitParams};
use crate::store::FileEntry;
use crate::DocsError;

/// A file to index.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Absolute, canonical path.
    pub path: PathBuf,
    /// How to clean it.
    pub format: Format,
    /// Named directly (errors are fatal) rather than found in a folder (errors skip the file).
    pub explicit: bool,
}

/// Files found under `paths`: files as given, folders walked recursively for text, Markdown and HTML
/// files (hidden entries skipped), with how many other files and which unreadable entries the walk passed over.
pub fn collect_files<P: AsRef<Path>>(paths: &[P]) -> Result<Collected, DocsError> {
    let mut out: Vec<SourceFile> = Vec::new();
    let mut ignored = 0;
    let mut unreadable = Vec::new();
    let mut folders = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DocsError::NotFound { path: p.to_path_buf() },
            _ => DocsError::io(p, e),
        })?;
        if meta.is_dir() {
            folders.push(canonical(p)?);
            let walk = walkdir::WalkDir::new(p).follow_links(true).sort_by_file_name().into_iter();
            for entry in walk.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')) {
                // A dangling link or a link loop inside a folder is skipped, like other unreadable files there.
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        let path = e.path().map_or_else(|| p.to_path_buf(), Path::to_path_buf);
                        let reason = match e.io_error() {
                            Some(io) => format!("{}: {io}", path.display()),
                            None => format!("{}: {e}", path.display()),
                        };
                        unreadable.push((path, reason));
                        continue;
                    }
                };
                if !entry.file_type().is_file() {
                    continue;
                }
                match Format::from_extension(entry.path()) {
                    Some(format) => out.push(SourceFile { path: canonical(entry.path())?, format, explicit: false }),
                    None => ignored += 1,
                }
            }
        } else {
            out.push(SourceFile { path: canonical(p)?, format: Format::for_explicit(p), explicit: true });
        }
    }
    // An explicit mention wins over a folder hit for the same file.
    out.sort_by(|a, b| a.path.cmp(&b.path).then(b.explicit.cmp(&a.explicit)));
    out.dedup_by(|b, a| a.path == b.path);
    Ok(Collected { files: out, ignored, unreadable, folders })
}

/// What [`collect_files`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Files to index, sorted, without duplicates.
    pub files: Vec<SourceFile>,
    /// Files of other types inside folders.
    pub ignored: usize,
    /// Entries inside folders that could not be read (dangling links, loops), with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// The folders walked (canonical paths): a file indexed from one of them that the walk no longer
    /// finds was deleted or renamed.
    pub folders: Vec<PathBuf>,
}

fn canonical(p: &Path) -> Result<PathBuf, DocsError> {
    std::fs::canonicalize(p).map_err(|e| DocsError::io(p, e))
}

/// A new passage before it has an id and vectors.
#[derive(Debug, Clone)]
pub struct NewPassage {
    /// First character in the cleaned text.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// Its text.
    pub text: String,
    /// Sentences as byte ranges into `text`.
    pub sentences: Vec<(u32, u32)>,
}

/// A read file, cleaned and split.
#[derive(Debug, Clone)]
pub struct PreparedFile {
    /// Its manifest entry.
    pub entry: FileEntry,
    /// Its passages in order.
    pub passages: Vec<NewPassage>,
}

/// Reads a file's bytes and their SHA-256 (hex).
pub fn read_with_hash(path: &Path) -> Result<(Vec<u8>, String), DocsError> {
    use std::io::Read;
    let not_doc = |reason: String| DocsError::NotADocument { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| DocsError::io(path, e))?;
    let meta = file.metadata().map_err(|e| DocsError::io(path, e))?;
    if !meta.is_file() {
        return Err(not_doc("not a regular file".into()));
    }
    // Read at most one byte past the limit: the size on disk may change while we read.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| DocsError::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(not_doc(format!("larger than {} MiB; split it into smaller documents", MAX_FILE_BYTES >> 20)));
    }
    let hash = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, hash))
}

/// Largest file indexed. Everything of a collection is held in memory, and a bigger "document" is
/// far more likely a log or a dump given by mistake.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Cleans and splits one file's bytes.
pub fn prepare(
    file: &SourceFile,
    bytes: &[u8],
    sha256: String,
    params: &SplitParams,
) -> Result<PreparedFile, DocsError> {
    let text = clean_bytes(bytes, file.format, &file.path)?;
    let spans = split_passages(&text, params);
    let mut chars = CharCounter::default();
    let mut passages = Vec::with_capacity(spans.len());
    for span in spans {
        let start = chars.at(&text, span.range.start);
        let end = chars.at(&text, span.range.end);
        let base = span.range.start;
        let sentences = span.sentences.iter().map(|s| ((s.start - base) as u32, (s.end - base) as u32)).collect();
        passages.push(NewPassage { start, end, text: text[span.range].to_string(), sentences });
    }
    if passages.is_empty() {
        return Err(DocsError::EmptyFile { path: file.path.clone() });
    }
    let entry = FileEntry {
        path: file.path.to_string_lossy().into_owned(),
        sha256,
        format: file.format,
        chars: chars.at(&text, text.len()),
        passages: passages.len(),
    };
    Ok(PreparedFile { entry, passages })
}

/// Converts increasing byte offsets to character offsets in one pass over the text.
#[derive(Default)]
struct CharCounter {
    byte: usize,
    chars: usize,
}

impl CharCounter {
    fn at(&mut self, text: &str, byte: usize) -> usize {
        if byte < self.byte {
            *self = CharCounter::default();
        }
        self.chars += text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}
