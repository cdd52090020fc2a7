//! A document collection: create, open, add files (answering is in [`crate::ask`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rightmodel_core::Embedder;
use serde::{Deserialize, Serialize};

use crate::dense::{normalize, Matrix};
use crate::embed::embed_all;
use crate::ingest::{collect_files, prepare, read_with_hash, MissingPath, PreparedFile};
use crate::late::TokenStore;
use crate::lexical::LexicalIndex;
use crate::split::SplitParams;
use crate::store::{self, FileEntry, Manifest, Snapshot, StoredPassage, WriteLock};
use crate::terms::Terms;
use crate::DocsError;

/// Where `add` is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddProgress {
    /// Reading, cleaning and splitting files.
    Reading {
        /// Files done.
        done: usize,
        /// Files in all.
        total: usize,
    },
    /// Embedding passages and sentences.
    Embedding {
        /// Texts done.
        done: usize,
        /// Texts in all.
        total: usize,
    },
    /// Writing the new generation (lexical index, vectors).
    Writing,
}

/// A file `add` did not index, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedFile {
    /// The file.
    pub path: String,
    /// The error message.
    pub reason: String,
}

/// A file whose passages `add` dropped, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemovedFile {
    /// The file, as stored in the collection.
    pub path: String,
    /// Why, without the path: "deleted or renamed", "now empty", "no longer a text file (...)".
    pub reason: String,
}

impl std::fmt::Display for RemovedFile {
    /// `PATH: REASON`, as the CLI prints it after "removed".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// What `add` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddReport {
    /// Files indexed for the first time.
    pub added: Vec<String>,
    /// Files whose contents changed: their old passages were replaced.
    pub updated: Vec<String>,
    /// Files already indexed with the same contents.
    pub unchanged: Vec<String>,
    /// Files found in folders that could not be indexed (empty, binary, unreadable) and were not in the
    /// collection (those that were are in [`AddReport::removals`]).
    pub skipped: Vec<SkippedFile>,
    /// Files of the collection named again (directly or through their folder) that are gone (deleted,
    /// renamed) or can no longer be indexed (now empty, binary, not a regular file): their passages were
    /// dropped. Paths only; [`AddReport::removals`] has the same files with the reason.
    pub removed: Vec<String>,
    /// [`AddReport::removed`] with why each file went, in the same order.
    #[serde(default)]
    pub removals: Vec<RemovedFile>,
    /// Files in folders ignored for their extension.
    pub ignored: usize,
    /// Those files, as found in their folders, so that a user can see what was passed over (not only
    /// how many); see [`crate::clean::EXTENSIONS`] for the ones indexed.
    #[serde(default)]
    pub ignored_files: Vec<String>,
    /// Passages created.
    pub passages_added: usize,
    /// Passages dropped because their file changed.
    pub passages_removed: usize,
    /// Passages in the collection afterwards.
    pub passages_total: usize,
    /// Passages kept whose token vectors were computed by this add: the collection was indexed before
    /// they were kept (see [`Collection::has_token_vectors`]).
    #[serde(default)]
    pub passages_upgraded: usize,
}

/// A document collection stored in a folder (see [`crate::store`] for the layout), loaded in memory:
/// passages, their vectors and the BM25 index. `ask` takes `&self` and may run on many threads at once.
pub struct Collection {
    pub(crate) dir: PathBuf,
    pub(crate) gen_dir: PathBuf,
    pub(crate) snap: Snapshot,
    /// `sentence_rows[r]..sentence_rows[r + 1]`: sentence-vector rows of passage `r`.
    pub(crate) sentence_rows: Vec<usize>,
    pub(crate) lexical: Option<LexicalIndex>,
    pub(crate) terms: Terms,
    /// Deepest folder holding every indexed file (see [`Collection::relative_file`]).
    source_root: PathBuf,
}

impl Collection {
    /// Creates an empty collection in `dir` (created if missing). Fails if one exists there already.
    pub fn create(dir: &Path) -> Result<Self, DocsError> {
        if store::exists(dir) {
            return Err(DocsError::AlreadyExists { dir: dir.to_path_buf() });
        }
        std::fs::create_dir_all(dir).map_err(|e| DocsError::io(dir, e))?;
        let _lock = WriteLock::acquire(dir)?;
        // Another process may have created it between the check above and the lock.
        if store::exists(dir) {
            return Err(DocsError::AlreadyExists { dir: dir.to_path_buf() });
        }
        let snap = Snapshot {
            manifest: Manifest::empty(),
            passages: Vec::new(),
            passage_vecs: Matrix::new(0),
            sentence_vecs: Matrix::new(0),
            tokens: None,
        };
        let gen_dir = store::commit(dir, &snap)?;
        Self::from_snapshot(dir, gen_dir, snap)
    }

    /// Opens the collection in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DocsError> {
        // A writer may swap generations while we read; the second attempt sees the new one.
        let mut last = None;
        for _ in 0..3 {
            let gen_dir = store::current_generation(dir)?;
            match store::load(&gen_dir).and_then(|snap| Self::from_snapshot(dir, gen_dir, snap)) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(DocsError::NotACollection { dir: dir.to_path_buf() }))
    }

    /// Opens the collection in `dir`, creating an empty one if there is none.
    pub fn open_or_create(dir: &Path) -> Result<Self, DocsError> {
        if store::exists(dir) {
            Self::open(dir)
        } else {
            Self::create(dir)
        }
    }

    fn from_snapshot(dir: &Path, gen_dir: PathBuf, snap: Snapshot) -> Result<Self, DocsError> {
        let lexical =
            if snap.passages.is_empty() { None } else { Some(LexicalIndex::open(&store::lexical_dir(&gen_dir))?) };
        let mut sentence_rows = Vec::with_capacity(snap.passages.len() + 1);
        let mut acc = 0;
        sentence_rows.push(0);
        for p in &snap.passages {
            acc += p.sentences.len();
            sentence_rows.push(acc);
        }
        let source_root = common_folder(snap.manifest.files.iter().map(|f| Path::new(&f.path)));
        Ok(Collection {
            dir: dir.to_path_buf(),
            gen_dir,
            snap,
            sentence_rows,
            lexical,
            terms: Terms::default(),
            source_root,
        })
    }

    /// The collection's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Indexed files.
    pub fn files(&self) -> &[FileEntry] {
        &self.snap.manifest.files
    }

    /// `file` (an indexed file's path) relative to the deepest folder that holds all indexed files,
    /// e.g. `guide/setup.md` for `/srv/handbook/guide/setup.md` in a collection of `/srv/handbook`. Answers
    /// served over HTTP name their sources this way: unambiguous within the collection, without telling
    /// clients where the host keeps its files. Paths outside the collection come back unchanged.
    pub fn relative_file(&self, file: &str) -> String {
        match Path::new(file).strip_prefix(&self.source_root) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
            _ => file.to_string(),
        }
    }

    /// Number of passages.
    pub fn passage_count(&self) -> usize {
        self.snap.passages.len()
    }

    /// The passages' texts, in index order (for warming a language model's cache of them).
    pub fn passage_texts(&self) -> impl Iterator<Item = &str> {
        self.snap.passages.iter().map(|p| p.text.as_str())
    }

    /// Number of sentences.
    pub fn sentence_count(&self) -> usize {
        self.sentence_rows.last().copied().unwrap_or(0)
    }

    /// Model id of the embedder the collection was built with (`None` while empty).
    pub fn embedder_id(&self) -> Option<&str> {
        self.snap.manifest.embedder.as_deref()
    }

    /// The passage with id `id`, if it exists.
    pub fn passage(&self, id: u64) -> Option<&StoredPassage> {
        self.snap.passages.iter().find(|p| p.id == id)
    }

    /// Whether another process has changed the collection since it was opened (reopen to see it).
    pub fn is_stale(&self) -> bool {
        store::current_generation(&self.dir).map_or(true, |g| g != self.gen_dir)
    }

    /// Indexes files and folders (recursively: `.txt`, `.md`, `.html` and similar). A file already in
    /// the collection is skipped when unchanged and has its passages replaced when changed.
    ///
    /// A file named in `paths` that is missing, empty, binary or not a regular file fails the whole call
    /// (nothing is written) when it is new to the collection; such a file found inside a folder is
    /// reported in [`AddReport::skipped`]. A file the collection already holds, named again directly or
    /// through its folder, that is now gone or can no longer be indexed has its passages dropped and is
    /// reported in [`AddReport::removals`]: answers must not keep quoting text that no longer exists.
    pub fn add_paths<P: AsRef<Path>>(&mut self, embedder: &dyn Embedder, paths: &[P]) -> Result<AddReport, DocsError> {
        self.add_paths_with_progress(embedder, paths, &mut |_| {})
    }

    /// [`Collection::add_paths`] reporting progress.
    pub fn add_paths_with_progress<P: AsRef<Path>>(
        &mut self,
        embedder: &dyn Embedder,
        paths: &[P],
        progress: &mut dyn FnMut(AddProgress),
    ) -> Result<AddReport, DocsError> {
        let _lock = WriteLock::acquire(&self.dir)?;
        if self.is_stale() {
            *self = Self::open(&self.dir)?;
        }
        self.check_embedder(embedder)?;
        let collected = collect_files(paths)?;
        let ignored_files = collected.ignored_files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let mut report = AddReport { ignored: collected.ignored, ignored_files, ..AddReport::default() };
        let mut removals = self.missing_removals(&collected.missing)?;
        for (path, reason) in collected.unreadable {
            report.skipped.push(SkippedFile { path: path.to_string_lossy().into_owned(), reason });
        }
        let files = collected.files;
        let mut prepared: Vec<PreparedFile> = Vec::new();
        let split = SplitParams::default();
        for (i, f) in files.iter().enumerate() {
            progress(AddProgress::Reading { done: i, total: files.len() });
            let path = f.path.to_string_lossy().into_owned();
            let old = self.snap.manifest.files.iter().find(|e| e.path == path);
            let result = read_with_hash(&f.path).and_then(|(bytes, hash)| {
                if old.is_some_and(|o| o.is_current(&hash, f.format)) {
                    Ok(None)
                } else {
                    prepare(f, &bytes, hash, &split).map(Some)
                }
            });
            match result {
                Ok(None) => report.unchanged.push(path),
                Ok(Some(p)) => {
                    if old.is_some() {
                        report.updated.push(path);
                    } else {
                        report.added.push(path);
                    }
                    prepared.push(p);
                }
                // A file of the collection that can no longer be indexed leaves it, named or found.
                Err(e) if old.is_some() => removals.push(RemovedFile { path, reason: removal_reason(&e) }),
                Err(e) if f.explicit => return Err(e),
                Err(e) => report.skipped.push(SkippedFile { path, reason: e.to_string() }),
            }
        }
        progress(AddProgress::Reading { done: files.len(), total: files.len() });
        removals.extend(self.gone_from_folders(&collected.folders, &removals));
        report.removed = removals.iter().map(|r| r.path.clone()).collect();
        report.removals = removals;
        if prepared.is_empty() && report.removed.is_empty() && !self.lacks_tokens(embedder) {
            report.passages_total = self.passage_count();
            return Ok(report);
        }
        let snap = self.next_snapshot(embedder, prepared, &mut report, progress)?;
        progress(AddProgress::Writing);
        let gen_dir = store::commit(&self.dir, &snap)?;
        *self = Self::from_snapshot(&self.dir, gen_dir, snap)?;
        report.passages_total = self.passage_count();
        Ok(report)
    }

    /// Files of the collection that paths given to `add` but no longer existing stood for: the file itself
    /// when it was indexed, or every indexed file under it when it was a folder. A missing path that stands
    /// for nothing indexed is the user's mistake: [`DocsError::NotFound`], before anything is read.
    fn missing_removals(&self, missing: &[MissingPath]) -> Result<Vec<RemovedFile>, DocsError> {
        let mut out: Vec<RemovedFile> = Vec::new();
        for m in missing {
            let Some(resolved) = &m.resolved else {
                return Err(DocsError::NotFound { path: m.given.clone() });
            };
            // Only files that are really gone: a path spelled with `..` after a missing folder
            // (`typo/..`) resolves onto folders whose files still exist.
            let stood_for: Vec<&FileEntry> = self
                .snap
                .manifest
                .files
                .iter()
                .filter(|e| Path::new(&e.path).starts_with(resolved) && !Path::new(&e.path).exists())
                .collect();
            if stood_for.is_empty() {
                return Err(DocsError::NotFound { path: m.given.clone() });
            }
            for e in stood_for {
                if !out.iter().any(|r| r.path == e.path) {
                    out.push(RemovedFile { path: e.path.clone(), reason: "deleted or renamed".into() });
                }
            }
        }
        Ok(out)
    }

    /// A folder added again is synchronised: a file indexed from under it that no longer exists (deleted,
    /// renamed) leaves the collection, so a renamed file does not answer twice. Files the walk does not
    /// visit (hidden, other extensions, added by name) stay while they exist. Paths are stored resolved,
    /// so a file reached through a link is judged by its target. `already` are removals found otherwise.
    fn gone_from_folders(&self, folders: &[PathBuf], already: &[RemovedFile]) -> Vec<RemovedFile> {
        self.snap
            .manifest
            .files
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| folders.iter().any(|d| Path::new(p).starts_with(d)))
            .filter(|p| !already.iter().any(|r| r.path == *p))
            .filter(|p| !Path::new(p).exists())
            .map(|p| RemovedFile { path: p.to_string(), reason: "deleted or renamed (no longer in its folder)".into() })
            .collect()
    }

    /// Whether the collection keeps token vectors for late interaction (see [`crate::late`]): collections
    /// indexed by an earlier version get them at their next `add`.
    pub fn has_token_vectors(&self) -> bool {
        self.snap.tokens.is_some()
    }

    /// Whether the collection has passages but no token vectors although `embedder` gives them (it was
    /// indexed before they were kept): the next `add` computes them.
    fn lacks_tokens(&self, embedder: &dyn Embedder) -> bool {
        self.snap.tokens.is_none() && !self.snap.passages.is_empty() && embedder.has_token_vectors()
    }

    pub(crate) fn check_embedder(&self, embedder: &dyn Embedder) -> Result<(), DocsError> {
        match &self.snap.manifest.embedder {
            Some(id) if id != embedder.model_id() || self.snap.manifest.dim != embedder.dim() => {
                Err(DocsError::EmbedderMismatch {
                    expected: id.clone(),
                    expected_dim: self.snap.manifest.dim,
                    got: embedder.model_id().to_string(),
                    got_dim: embedder.dim(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The snapshot after replacing/adding `prepared` files: old passages of those files dropped, new
    /// passages embedded and appended.
    fn next_snapshot(
        &self,
        embedder: &dyn Embedder,
        prepared: Vec<PreparedFile>,
        report: &mut AddReport,
        progress: &mut dyn FnMut(AddProgress),
    ) -> Result<Snapshot, DocsError> {
        // Only sentences are embedded; a passage's vector is the normalised mean of its sentence vectors.
        // That halves indexing time (passages are the long inputs) and, unlike embedding the passage
        // text, covers passages longer than the encoder's 256-token window. On SQuAD it costs about one
        // point of hit@1 before re-scoring and nothing measurable after it.
        let mut replaced: HashSet<&str> = prepared.iter().map(|f| f.entry.path.as_str()).collect();
        replaced.extend(report.removed.iter().map(String::as_str));
        // A collection indexed before token vectors were kept gets them for the passages it keeps (their
        // sentence vectors stay): late interaction needs them for every sentence or for none.
        let upgrade = self.lacks_tokens(embedder);
        let mut texts: Vec<&str> = Vec::new();
        if upgrade {
            for p in self.snap.passages.iter().filter(|p| !replaced.contains(p.file.as_str())) {
                texts.extend(p.sentences.iter().map(|&(s, e)| p.text.get(s as usize..e as usize).unwrap_or("")));
            }
        }
        let kept_sentences = texts.len();
        for f in &prepared {
            for p in &f.passages {
                texts.extend(p.sentences.iter().map(|&(s, e)| &p.text[s as usize..e as usize]));
            }
        }
        let total = texts.len();
        progress(AddProgress::Embedding { done: 0, total });
        let (vecs, new_tokens) =
            embed_all(embedder, &texts, &mut |done| progress(AddProgress::Embedding { done, total }))?;

        let dim = embedder.dim();
        let mut manifest = self.snap.manifest.clone();
        manifest.files.retain(|e| !report.removed.contains(&e.path));
        manifest.generation += 1;
        manifest.embedder = Some(embedder.model_id().to_string());
        manifest.dim = dim;
        let mut passages = Vec::new();
        let mut passage_vecs = Matrix::new(dim);
        let mut sentence_vecs = Matrix::new(dim);
        // Token vectors only when every sentence has them: the kept ones (stored, or embedded above
        // when upgrading) and the new ones.
        let kept_tokens = if upgrade { new_tokens.as_ref() } else { self.snap.tokens.as_ref() };
        let mut tokens = match (&new_tokens, kept_tokens) {
            (Some(_), Some(_)) => Some(TokenStore::new(dim)),
            (Some(_), None) if self.snap.passages.iter().all(|p| replaced.contains(p.file.as_str())) => {
                Some(TokenStore::new(dim))
            }
            _ => None,
        };
        let mut upgraded = 0;
        for (row, p) in self.snap.passages.iter().enumerate() {
            if replaced.contains(p.file.as_str()) {
                report.passages_removed += 1;
                continue;
            }
            passages.push(p.clone());
            report.passages_upgraded += usize::from(upgrade && tokens.is_some());
            passage_vecs.push(self.snap.passage_vecs.row(row));
            for s in self.sentence_rows[row]..self.sentence_rows[row + 1] {
                sentence_vecs.push(self.snap.sentence_vecs.row(s));
                if let (Some(t), Some(kept)) = (tokens.as_mut(), kept_tokens) {
                    if upgrade {
                        t.push_from(kept, upgraded);
                        upgraded += 1;
                    } else {
                        t.push_from(kept, s);
                    }
                }
            }
        }
        let mut v = kept_sentences;
        for f in prepared {
            for p in f.passages {
                let mut mean = vec![0.0f32; dim];
                for _ in &p.sentences {
                    mean.iter_mut().zip(vecs.row(v)).for_each(|(m, x)| *m += x);
                    sentence_vecs.push(vecs.row(v));
                    if let (Some(t), Some(new)) = (tokens.as_mut(), new_tokens.as_ref()) {
                        t.push_from(new, v);
                    }
                    v += 1;
                }
                normalize(&mut mean);
                passage_vecs.push(&mean);
                passages.push(StoredPassage {
                    id: manifest.next_id,
                    file: f.entry.path.clone(),
                    start: p.start,
                    end: p.end,
                    text: p.text,
                    sentences: p.sentences,
                });
                manifest.next_id += 1;
                report.passages_added += 1;
            }
            match manifest.files.iter_mut().find(|e| e.path == f.entry.path) {
                Some(e) => *e = f.entry,
                None => manifest.files.push(f.entry),
            }
        }
        Ok(Snapshot { manifest, passages, passage_vecs, sentence_vecs, tokens })
    }
}

/// Why a file of the collection that failed to read or clean leaves it, phrased after "removed PATH: ".
fn removal_reason(e: &DocsError) -> String {
    match e {
        DocsError::NotFound { .. } => "deleted or renamed".into(),
        DocsError::EmptyFile { .. } => "now empty".into(),
        DocsError::BinaryFile { reason, .. } => format!("no longer a text file ({reason})"),
        DocsError::NotADocument { reason, .. } => format!("can no longer be indexed: {reason}"),
        DocsError::Io { error, .. } => format!("no longer readable: {error}"),
        other => format!("can no longer be indexed: {other}"),
    }
}

/// The deepest folder that contains every one of `files` (the parent of a single file; empty for none).
fn common_folder<'a>(files: impl Iterator<Item = &'a Path>) -> PathBuf {
    let mut root: Option<PathBuf> = None;
    for f in files {
        let parent = f.parent().unwrap_or(Path::new(""));
        root = Some(match root {
            None => parent.to_path_buf(),
            Some(r) => r.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    root.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::common_folder;
    use std::path::{Path, PathBuf};

    #[test]
    fn common_folder_is_the_deepest_shared_parent() {
        let f = |v: &[&str]| common_folder(v.iter().map(Path::new));
        assert_eq!(f(&["/srv/h/a.md", "/srv/h/guide/b.md"]), PathBuf::from("/srv/h"));
        assert_eq!(f(&["/srv/h/a.md"]), PathBuf::from("/srv/h"));
        assert_eq!(f(&["/srv/h/x/a.md", "/srv/hx/b.md"]), PathBuf::from("/srv"));
        assert_eq!(f(&[]), PathBuf::new());
    }
}
