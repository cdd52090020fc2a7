//! File-system helpers every crate that writes results or reads input files needs in the same form.
//!
//! One implementation of [`write_atomic`] instead of a copy per crate: the copies had drifted (one
//! skipped `fsync`, two named their temporary file `FILE.tmp`, which could replace an input of that
//! name).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one, never a
/// half-written one, even after a crash or a power cut.
///
/// The bytes go to a uniquely named hidden temporary file in the same folder (`.NAME.XXXXXX.tmp`, so
/// it never collides with another file, such as an input called `NAME.tmp`, nor with a concurrent
/// writer), which is flushed to disk and renamed over `path`; the folder is then flushed too (best
/// effort: some file systems cannot). The new file gets the permissions a plain [`std::fs::File::create`]
/// gives (`0o666` less the umask, so usually `0o644`), not the owner-only `0o600` of temporary files:
/// results are meant to be read by others the way every other file the program writes is. On error the
/// temporary file is removed and `path` is unchanged.
///
/// Errors are plain [`std::io::Error`]s; callers add the path in their own error types.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_through_temp(path, bytes, Place::Replace)
}

/// [`write_atomic`] for a file that must not exist yet: fails with
/// [`std::io::ErrorKind::AlreadyExists`] (and writes nothing) when `path` exists, checked and created
/// in one step, so of two runs writing the same new file one wins and the other is told, where a
/// check before a long job and a replacing write at its end would let the later run silently replace
/// the earlier one's result.
pub fn write_atomic_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_through_temp(path, bytes, Place::New)
}

/// Why an input path cannot be read as a file, found before reading it so that the message says so
/// plainly (the system's own errors for these are terse: "Is a directory (os error 21)").
#[derive(Debug)]
pub enum NotAFile {
    /// Nothing is there.
    Missing,
    /// A folder is there.
    Folder,
    /// Its metadata cannot be read (permissions, ...): the system's reason.
    Other(std::io::Error),
}

/// `Ok` when `path` is an existing file (or something else readable, such as a pipe); otherwise why
/// not. Each crate words the message in its own error type.
pub fn check_input_file(path: &Path) -> Result<(), NotAFile> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(NotAFile::Folder),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NotAFile::Missing),
        Err(e) => Err(NotAFile::Other(e)),
    }
}

/// How [`write_through_temp`] puts its file in place.
#[derive(Clone, Copy)]
enum Place {
    /// Rename over whatever is there.
    Replace,
    /// Link into place, failing when the name exists.
    New,
}

/// Writes `bytes` to a hidden temporary file next to `path`, flushes it and puts it in place as `place`
/// says (the common body of [`write_atomic`] and [`write_atomic_new`]).
fn write_through_temp(path: &Path, bytes: &[u8], place: Place) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Applied through open(2), so the umask still narrows it, as for any new file.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary file comes back inside the error and is removed when that is dropped.
    match place {
        Place::Replace => tmp.persist(path).map_err(|e| e.error)?,
        Place::New => tmp.persist_noclobber(path).map_err(|e| e.error)?,
    };
    sync_dir(dir);
    Ok(())
}

/// Flushes `dir`'s entries (a rename into it) to disk; best effort, since some file systems refuse to
/// sync a folder and the file itself is already safe.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    let _ = std::fs::File::open(dir).and_then(|f| f.sync_all());
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["d"]);
    }

    #[test]
    fn a_file_named_like_the_old_temporary_file_is_left_alone() {
        // The old copies wrote `d.json` through `d.tmp`, destroying an input of that name.
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("d.tmp");
        std::fs::write(&input, "my data").unwrap();
        write_atomic(&dir.path().join("d.json"), b"{}").unwrap();
        write_atomic(&dir.path().join("d"), b"x").unwrap();
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "my data");
        assert_eq!(names(dir.path()), ["d", "d.json", "d.tmp"]);
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty folder: the rename fails.
        let target = dir.path().join("out");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "x").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(names(dir.path()), ["out"]);
        assert!(write_atomic(&dir.path().join("missing").join("f"), b"x").is_err());
    }

    #[test]
    fn a_new_file_never_replaces_one_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.json");
        write_atomic_new(&path, b"first").unwrap();
        let e = write_atomic_new(&path, b"second").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["router.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_mode_of_a_plain_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let path = dir.path().join("atomic");
        write_atomic(&path, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Under the usual umask 022 both are 0644, where a temporary file would be 0600.
        assert_eq!(mode(&path), mode(&plain), "{:o} vs {:o}", mode(&path), mode(&plain));
    }
}
