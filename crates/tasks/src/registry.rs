//! Where classifiers live: `$RIGHTMODEL_HOME/classifiers/NAME/`, or any directory given as a path.

use std::path::{Path, PathBuf};

use crate::manifest::MANIFEST_FILE;
use crate::TaskError;

/// Sub-directory of the rightmodel home holding named classifiers.
pub const CLASSIFIERS_DIR: &str = "classifiers";

/// `home/classifiers`.
pub fn classifiers_root(home: &Path) -> PathBuf {
    home.join(CLASSIFIERS_DIR)
}

/// True when `spec` names a path rather than a registry name.
fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains('\\') || spec.starts_with('.') || spec.starts_with('~')
}

/// Checks a registry name: 1-64 characters of letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<(), TaskError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(TaskError::Invalid(format!(
            "invalid classifier name `{name}`: use 1-64 letters, digits, `-`, `_` or `.` (or give a path containing `/`)"
        )))
    }
}

/// The directory a new classifier called `spec` is written to: `spec` itself when it is a path,
/// otherwise `home/classifiers/spec`. Returns the directory and the classifier's name.
pub fn target_dir(home: &Path, spec: &str) -> Result<(PathBuf, String), TaskError> {
    if looks_like_path(spec) {
        let p = PathBuf::from(spec);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| TaskError::Invalid(format!("`{spec}` does not end in a directory name")))?;
        return Ok((p, name));
    }
    validate_name(spec)?;
    Ok((classifiers_root(home).join(spec), spec.to_string()))
}

/// The directory of an existing classifier: a path to a directory holding `classifier.json`, or a name
/// under `home/classifiers`.
pub fn resolve_in(home: &Path, spec: &str) -> Result<PathBuf, TaskError> {
    let as_path = Path::new(spec);
    if as_path.join(MANIFEST_FILE).is_file() {
        return Ok(as_path.to_path_buf());
    }
    if !looks_like_path(spec) && validate_name(spec).is_ok() {
        let d = classifiers_root(home).join(spec);
        if d.join(MANIFEST_FILE).is_file() {
            return Ok(d);
        }
    }
    let known = list_in(home).unwrap_or_default();
    let hint = if known.is_empty() {
        "no classifiers are saved yet; train one with `rightmodel train classify`".to_string()
    } else {
        format!("saved classifiers: {}", known.join(", "))
    };
    Err(TaskError::NotFound(format!("classifier `{spec}` not found ({hint})")))
}

/// [`resolve_in`] under the default home ([`rightmodel_models::home::rightmodel_home`]).
pub fn resolve(spec: &str) -> Result<PathBuf, TaskError> {
    resolve_in(&rightmodel_models::home::rightmodel_home(), spec)
}

/// Names of the classifiers saved under `home/classifiers`, sorted.
pub fn list_in(home: &Path) -> Result<Vec<String>, TaskError> {
    let root = classifiers_root(home);
    let rd = match std::fs::read_dir(&root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TaskError::io(&root, e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(MANIFEST_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Creates a directory next to `dest`, lets `fill` write into it, then renames it to `dest` so a
/// classifier appears complete or not at all. An existing `dest` is replaced only when `overwrite`.
pub fn write_dir_atomically(
    dest: &Path,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    check_writable(dest, overwrite)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| TaskError::io(&parent, e))?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "classifier".into());
    remove_abandoned(&parent, &name);
    // Removed automatically if `fill` fails or panics; the host and process id in the name let a later run
    // tell the leftovers of a killed run (Ctrl-C skips destructors) from a live one's.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-{}-{}-", host_tag(), std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| TaskError::io(&parent, e))?;
    fill(tmp.path())?;
    let tmp_path = tmp.keep();
    if dest.exists() {
        let old = parent.join(format!(".{name}.old-{}-{}", host_tag(), std::process::id()));
        std::fs::rename(dest, &old).map_err(|e| TaskError::io(dest, e))?;
        if let Err(e) = std::fs::rename(&tmp_path, dest) {
            // Put the previous classifier back.
            let _ = std::fs::rename(&old, dest);
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(TaskError::io(dest, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else if let Err(e) = std::fs::rename(&tmp_path, dest) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(TaskError::io(dest, e));
    }
    Ok(())
}

/// Fails early (before training) when `dest` exists and may not be replaced: without `overwrite`, or when it
/// is not a classifier directory (or an empty one), since replacing deletes it.
pub fn check_writable(dest: &Path, overwrite: bool) -> Result<(), TaskError> {
    if !dest.exists() {
        return Ok(());
    }
    if !overwrite {
        return Err(TaskError::Invalid(format!("{} already exists (use --force to replace it)", dest.display())));
    }
    let is_classifier = dest.join(MANIFEST_FILE).is_file();
    let is_empty_dir = std::fs::read_dir(dest).map(|mut d| d.next().is_none()).unwrap_or(false);
    if is_classifier || is_empty_dir {
        Ok(())
    } else {
        Err(TaskError::Invalid(format!(
            "{} exists and is not a classifier; --force only replaces classifiers (it deletes the old directory)",
            dest.display()
        )))
    }
}

/// This machine's name reduced to letters and digits (`host` when unknown), so runs on other machines or
/// containers sharing the folder, whose process ids mean nothing here, are told apart.
fn host_tag() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let tag: String = name.trim().chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect();
    if tag.is_empty() {
        "host".into()
    } else {
        tag
    }
}

/// Removes `.NAME.partial-HOST-PID-*` and `.NAME.old-HOST-PID` directories left in `parent` by runs on this
/// machine that were killed (their process is gone). Only where process ids can be checked (`/proc`);
/// elsewhere, and for other machines' runs, they stay.
fn remove_abandoned(parent: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let host = host_tag();
    let (partial, old) = (format!(".{name}.partial-{host}-"), format!(".{name}.old-{host}-"));
    for e in entries.flatten() {
        let file_name = e.file_name();
        let file_name = file_name.to_string_lossy();
        let Some(rest) = file_name.strip_prefix(&partial).or_else(|| file_name.strip_prefix(&old)) else { continue };
        let Ok(pid) = rest.split('-').next().unwrap_or_default().parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
