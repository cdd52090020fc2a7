//! From paths given to `add` to files with their passages: folder walk, cleaning, splitting, offsets.

use std::path::{Component, Path, PathBuf};

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
/// A path that does not exist is listed in [`Collected::missing`] rather than failing here: the caller
/// decides whether it names something it indexed earlier (then its passages go) or is a mistake.
pub fn collect_files<P: AsRef<Path>>(paths: &[P]) -> Result<Collected, DocsError> {
    let mut found = Collected::default();
    for p in paths {
        let p = p.as_ref();
        let meta = match std::fs::metadata(p) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found.missing.push(MissingPath { given: p.to_path_buf(), resolved: resolve_missing(p) });
                continue;
            }
            Err(e) => return Err(DocsError::io(p, e)),
        };
        if meta.is_dir() {
            walk_folder(p, &mut found)?;
        } else {
            found.files.push(SourceFile { path: canonical(p)?, format: Format::for_explicit(p), explicit: true });
        }
    }
    // An explicit mention wins over a folder hit for the same file.
    found.files.sort_by(|a, b| a.path.cmp(&b.path).then(b.explicit.cmp(&a.explicit)));
    found.files.dedup_by(|b, a| a.path == b.path);
    Ok(found)
}

/// Adds the indexable files under folder `p` to `found`. Entries that are neither folders nor regular
/// files (named pipes, sockets, devices) but carry a document extension are listed too: reading them
/// fails with a clear reason (without opening them), so they are reported rather than silently passed over.
fn walk_folder(p: &Path, found: &mut Collected) -> Result<(), DocsError> {
    found.folders.push(canonical(p)?);
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
                found.unreadable.push((path, reason));
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        match Format::from_extension(entry.path()) {
            Some(format) => found.files.push(SourceFile { path: canonical(entry.path())?, format, explicit: false }),
            None => {
                found.ignored += 1;
                found.ignored_files.push(entry.path().to_path_buf());
            }
        }
    }
    Ok(())
}

/// What [`collect_files`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Files to index, sorted, without duplicates.
    pub files: Vec<SourceFile>,
    /// Files of other types inside folders.
    pub ignored: usize,
    /// Those files, as found by the walk (the given folder joined with the path below it).
    pub ignored_files: Vec<PathBuf>,
    /// Entries inside folders that could not be read (dangling links, loops), with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// The folders walked (canonical paths): a file indexed from one of them that the walk no longer
    /// finds was deleted or renamed.
    pub folders: Vec<PathBuf>,
    /// Paths given that do not exist.
    pub missing: Vec<MissingPath>,
}

/// A path given to `add` that does not exist (any more).
#[derive(Debug, Clone)]
pub struct MissingPath {
    /// As given.
    pub given: PathBuf,
    /// Where it would be, resolved like the paths stored in a collection (dangling links followed, the
    /// deepest existing folder made canonical); `None` when even that cannot be worked out.
    pub resolved: Option<PathBuf>,
}

/// Where a path that does not exist would be once resolved, so that it can be compared with the
/// canonical paths a collection stores: dangling symbolic links are followed to their targets, then the
/// deepest existing ancestor is made canonical and the rest appended (`.` and `..` applied lexically).
pub fn resolve_missing(p: &Path) -> Option<PathBuf> {
    let p = follow_dangling_links(p);
    let mut base = p.as_path();
    let mut rest = Vec::new();
    loop {
        let probe = if base.as_os_str().is_empty() { Path::new(".") } else { base };
        if let Ok(mut out) = std::fs::canonicalize(probe) {
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(name) => out.push(name),
                    _ => {}
                }
            }
            return Some(out);
        }
        rest.push(base.components().next_back()?);
        base = base.parent()?;
    }
}

/// `p` with symbolic links at its end followed (at most 40, like the kernel), for a link whose target is gone.
fn follow_dangling_links(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&p) else { break };
        p = p.parent().unwrap_or(Path::new("")).join(target);
    }
    p
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
///
/// The file's type is checked before it is opened: opening a named pipe without a writer blocks
/// forever, and a device may never end, so anything but a regular file fails with
/// [`DocsError::NotADocument`] without being opened.
pub fn read_with_hash(path: &Path) -> Result<(Vec<u8>, String), DocsError> {
    use std::io::Read;
    let not_doc = |reason: String| DocsError::NotADocument { path: path.to_path_buf(), reason };
    let io_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => DocsError::NotFound { path: path.to_path_buf() },
        _ => DocsError::io(path, e),
    };
    let before = std::fs::metadata(path).map_err(io_err)?;
    if !before.is_file() {
        return Err(not_doc(not_regular_reason(&before.file_type())));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    // Checked again on the open file: the path may have been replaced in between.
    let meta = file.metadata().map_err(|e| DocsError::io(path, e))?;
    if !meta.is_file() {
        return Err(not_doc(not_regular_reason(&meta.file_type())));
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

/// "not a regular file", with what it is where that can be told (a named pipe, a socket, a device).
fn not_regular_reason(kind: &std::fs::FileType) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            Some("a named pipe")
        } else if kind.is_socket() {
            Some("a socket")
        } else if kind.is_block_device() || kind.is_char_device() {
            Some("a device")
        } else if kind.is_dir() {
            Some("a folder")
        } else {
            None
        };
        if let Some(what) = what {
            return format!("not a regular file ({what})");
        }
    }
    #[cfg(not(unix))]
    let _ = kind;
    "not a regular file".into()
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
        cleaning: crate::clean::cleaning_version(file.format),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes a named pipe with the system's `mkfifo`; `None` where there is none.
    #[cfg(unix)]
    fn mkfifo(path: &Path) -> Option<()> {
        let status = std::process::Command::new("mkfifo").arg(path).status().ok()?;
        status.success().then_some(())
    }

    /// Runs `f` on a thread and fails the test if it does not return within a few seconds (a blocked
    /// `open` of a pipe would otherwise hang the test run).
    fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("did not return: blocked on the file?")
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_refused_without_being_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe.txt");
        if mkfifo(&fifo).is_none() {
            eprintln!("no mkfifo here; skipped");
            return;
        }
        let path = fifo.clone();
        let err = within_seconds(move || read_with_hash(&path)).unwrap_err();
        assert!(matches!(err, DocsError::NotADocument { .. }), "{err}");
        assert!(err.to_string().contains("not a regular file (a named pipe)"), "{err}");

        // Inside a folder it is listed (so that reading it reports why it is skipped), never opened.
        std::fs::write(tmp.path().join("ok.txt"), "Some text.\n").unwrap();
        let root = tmp.path().to_path_buf();
        let found = within_seconds(move || collect_files(&[root]).unwrap());
        assert_eq!(found.files.len(), 2, "{found:?}");
        assert!(found.files.iter().any(|f| f.path.ends_with("pipe.txt") && !f.explicit));
    }

    #[test]
    fn files_of_other_types_in_a_folder_are_listed_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        for name in ["a.pdf", "sub/b.PDF", "notes.md", "README"] {
            std::fs::write(tmp.path().join(name), "x").unwrap();
        }
        let found = collect_files(&[tmp.path()]).unwrap();
        assert_eq!(found.files.len(), 1, "{found:?}");
        assert_eq!(found.ignored, 3);
        let mut names: Vec<String> =
            found.ignored_files.iter().map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string()).collect();
        names.sort();
        assert_eq!(names, ["README", "a.pdf", "sub/b.PDF"]);
    }

    #[test]
    fn missing_paths_are_listed_and_resolved_like_stored_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let gone = tmp.path().join("sub/../gone.txt");
        let found = collect_files(&[&gone]).unwrap();
        assert!(found.files.is_empty());
        assert_eq!(found.missing.len(), 1);
        assert_eq!(found.missing[0].given, gone);
        assert_eq!(found.missing[0].resolved.as_deref(), Some(root.join("gone.txt").as_path()));
        // A whole missing folder, and a dangling link resolved to its target.
        assert_eq!(resolve_missing(&tmp.path().join("a/b/c.md")), Some(root.join("a/b/c.md")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("target.md", tmp.path().join("link.md")).unwrap();
            assert_eq!(resolve_missing(&tmp.path().join("link.md")), Some(root.join("target.md")));
        }
    }
}
