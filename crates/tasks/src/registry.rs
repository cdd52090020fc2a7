//! Where classifiers live: `$RIGHTMODEL_HOME/classifiers/NAME/`, or any directory given as a path.

use std::path::{Component, Path, PathBuf};

use crate::manifest::MANIFEST_FILE;
use crate::TaskError;

/// Sub-directory of the rightmodel home holding named classifiers.
pub const CLASSIFIERS_DIR: &str = "classifiers";

/// `home/classifiers`.
pub fn classifiers_root(home: &Path) -> PathBuf {
    home.join(CLASSIFIERS_DIR)
}

/// True when `spec` names a path rather than a registry name: it contains a path separator (`/`, and
/// `\` on Windows). Everything else must be a valid name ([`validate_name`]), so `.hidden` or `a\b` is
/// refused rather than quietly written to the current directory.
fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || (cfg!(windows) && spec.contains('\\'))
}

/// Longest classifier name.
const MAX_NAME_LEN: usize = 64;

/// Checks a registry name: 1-64 ASCII letters, digits, `-`, `_` and `.`, not starting with `.` (hidden,
/// and `.`/`..` are directories) nor `-` (it would read as a flag in `--model -x`).
pub fn validate_name(name: &str) -> Result<(), TaskError> {
    let why = if name.is_empty() {
        Some("a name cannot be empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("a name has at most {MAX_NAME_LEN} characters"))
    } else if name.starts_with('.') {
        Some("a name cannot start with `.`".to_string())
    } else if name.starts_with('-') {
        Some("a name cannot start with `-` (it would read as a flag)".to_string())
    } else {
        name.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).map(|c| {
            let shown = if c.is_control() { c.escape_default().to_string() } else { c.to_string() };
            format!("`{shown}` is not allowed in a name")
        })
    };
    match why {
        None => Ok(()),
        Some(why) => Err(TaskError::Invalid(format!(
            "invalid classifier name `{name}`: {why}; use 1-{MAX_NAME_LEN} ASCII letters, digits, `-`, `_` or `.`, \
             not starting with `.` or `-` (or give a directory path containing `/`)"
        ))),
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
        check_target_path(&p)?;
        return Ok((p, name));
    }
    validate_name(spec)?;
    Ok((classifiers_root(home).join(spec), spec.to_string()))
}

/// The directory of an existing classifier: a path to a directory holding `classifier.json`, or a name
/// under `home/classifiers`.
pub fn resolve_in(home: &Path, spec: &str) -> Result<PathBuf, TaskError> {
    // A classifier a killed run moved aside is put back before it is looked for.
    recover_abandoned(&classifiers_root(home));
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
    Err(TaskError::NotFound(not_found_message(spec, &saved_hint(home))))
}

/// What to say about the saved classifiers when `spec` resolves to none: their names, or that there
/// are none yet.
fn saved_hint(home: &Path) -> String {
    let known = list_in(home).unwrap_or_default();
    if known.is_empty() {
        "no classifiers are saved yet; train one with `rightmodel train classify`".to_string()
    } else {
        format!("saved classifiers: {}", known.join(", "))
    }
}

/// Why `spec` resolves to no classifier, judged from what is on disk at `spec` as a path: a folder
/// without [`MANIFEST_FILE`], a file (not the classifier's folder), a missing folder, or a name that is
/// not saved. `hint` lists the saved classifiers.
fn not_found_message(spec: &str, hint: &str) -> String {
    let as_path = Path::new(spec);
    let no_manifest = format!("it has no {MANIFEST_FILE}, which `rightmodel train classify` writes");
    match std::fs::metadata(as_path) {
        Ok(m) if m.is_dir() && looks_like_path(spec) => {
            format!(
                "{spec}: this folder holds no classifier ({no_manifest}); give a classifier's folder or name ({hint})"
            )
        }
        Ok(m) if m.is_dir() => format!(
            "classifier `{spec}` not found: none is saved under that name, and the folder `{spec}` here holds none \
             ({no_manifest}) ({hint})"
        ),
        Ok(_) => format!(
            "{spec}: is a file; give the classifier's folder (the one holding {MANIFEST_FILE}) or its name ({hint})"
        ),
        Err(_) if looks_like_path(spec) => format!("{spec}: no such classifier folder ({hint})"),
        Err(_) => format!("classifier `{spec}` not found ({hint})"),
    }
}

/// [`resolve_in`] under the default home ([`rightmodel_models::home::rightmodel_home`]).
pub fn resolve(spec: &str) -> Result<PathBuf, TaskError> {
    resolve_in(&rightmodel_models::home::rightmodel_home(), spec)
}

/// Names of the classifiers saved under `home/classifiers`, sorted. Leftovers of killed training runs
/// there are cleaned up first ([`recover_abandoned`]), so they do not pile up between runs.
pub fn list_in(home: &Path) -> Result<Vec<String>, TaskError> {
    let root = classifiers_root(home);
    recover_abandoned(&root);
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

/// The folder a classifier at `dest` is built in by [`write_dir_atomically`] (its parent; `.` for a bare
/// name), where a stopped run's leftovers lie: what [`recover_own`] and [`recover_abandoned`] clean.
pub fn build_dir(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates a directory next to `dest`, lets `fill` write into it, then renames it to `dest` so a
/// classifier appears complete or not at all. An existing `dest` is replaced only when `overwrite`.
///
/// `dest` is checked again at the rename, not only before `fill` (which trains, for minutes): without
/// `overwrite`, a classifier another run saved there meanwhile is kept and this one is discarded with
/// [`TaskError::CreatedMeanwhile`], never silently replaced.
pub fn write_dir_atomically(
    dest: &Path,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let parent = build_dir(dest);
    // Before the check: a classifier a killed run moved aside is back in place when it is judged.
    recover_abandoned(&parent);
    check_writable(dest, overwrite)?;
    std::fs::create_dir_all(&parent).map_err(|e| TaskError::io(&parent, e))?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "classifier".into());
    // Removed automatically if `fill` fails or panics; the host and process id in the name let a later run
    // tell the leftovers of a killed run (Ctrl-C skips destructors) from a live one's.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-{}-{}-", host_tag(), std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| TaskError::io(&parent, e))?;
    fill(tmp.path())?;
    // Other users read classifiers like any other files: not the owner-only mode of a temporary folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| TaskError::io(tmp.path(), e))?;
    }
    // An interrupt's cleanup waits until the classifier is in place (or the old one back).
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tmp.keep();
    let aside = parent.join(format!(".{name}.old-{}-{}", host_tag(), std::process::id()));
    let result = if dest.exists() {
        install_over(&tmp, dest, overwrite, &aside)
    } else {
        match rename_new(&tmp, dest) {
            // Another run (or person) put something at `dest` between the check and the rename.
            Err(_) if dest.exists() => install_over(&tmp, dest, overwrite, &aside),
            other => other,
        }
    };
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Held while a finished classifier is put in place, from the moment its folder stops being temporary
/// until the renames are done, so that an interrupt's cleanup ([`recover_own`], on another thread)
/// never runs between them.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Renames directory `from` to `dest`, which must not exist: never replaces anything. (A plain rename
/// onto an existing empty directory would replace it, so existence is checked first; a non-empty one is
/// refused by the rename itself, so a classifier appearing in between is never lost.)
fn rename_new(from: &Path, dest: &Path) -> Result<(), TaskError> {
    if dest.symlink_metadata().is_ok() {
        return Err(TaskError::io(dest, std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
    }
    std::fs::rename(from, dest).map_err(|e| TaskError::io(dest, e))
}

/// Puts `from` in place of the existing `dest`: only with `overwrite`, and only over a classifier (the
/// checks of [`check_writable`], made again because `dest` may have changed while training ran).
fn install_over(from: &Path, dest: &Path, overwrite: bool, aside: &Path) -> Result<(), TaskError> {
    if !overwrite {
        return Err(TaskError::CreatedMeanwhile(dest.to_path_buf()));
    }
    check_writable(dest, true)?;
    replace_dir(from, dest, aside)
}

/// Replaces directory `dest` by `from`: `dest` is moved to `aside`, `from` renamed into place, and
/// `aside` deleted. When the second rename fails the old directory is put back; if even that fails, the
/// error says where it was kept.
fn replace_dir(from: &Path, dest: &Path, aside: &Path) -> Result<(), TaskError> {
    std::fs::rename(dest, aside).map_err(|e| TaskError::io(dest, e))?;
    if let Err(e) = rename_new(from, dest) {
        if std::fs::rename(aside, dest).is_err() {
            return Err(TaskError::Invalid(format!(
                "{}: cannot put the new classifier in place ({e}); the previous one was kept as {}",
                dest.display(),
                aside.display()
            )));
        }
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(aside);
    Ok(())
}

/// Fails, before anything is created, when directory path `dest` cannot be a new classifier's home:
/// it goes into a folder and back out (`a/../b` would leave a stray, empty `a` behind, since missing
/// folders are created), or one of its folders is a file ([`check_folders_are_folders`]).
pub fn check_target_path(dest: &Path) -> Result<(), TaskError> {
    let mut went_down = false;
    for part in dest.components() {
        match part {
            Component::Normal(_) => went_down = true,
            Component::ParentDir if went_down => {
                return Err(TaskError::Invalid(format!(
                    "`{}`: a classifier path cannot go into a folder and back out with `..`; \
                     give the directory without the detour",
                    dest.display()
                )));
            }
            _ => {}
        }
    }
    check_folders_are_folders(dest)
}

/// Fails when a folder `dest` goes through exists but is a file (`data.csv/m`): creating the classifier
/// would fail later with a bare "File exists".
fn check_folders_are_folders(dest: &Path) -> Result<(), TaskError> {
    for folder in dest.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
        if let Ok(meta) = std::fs::metadata(folder) {
            if meta.is_dir() {
                break;
            }
            return Err(TaskError::Invalid(format!(
                "`{}`: `{}` is a file, not a folder; give a directory path whose folders are folders \
                 (or a plain name, saved under the classifiers folder)",
                dest.display(),
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Fails early (before training) when `dest` exists and may not be replaced: without `overwrite`, or when it
/// is not a classifier directory (or an empty one), since replacing deletes it; or when one of its folders
/// is a file.
pub fn check_writable(dest: &Path, overwrite: bool) -> Result<(), TaskError> {
    check_folders_are_folders(dest)?;
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

/// A leftover of a training run in a classifiers folder: `.NAME.partial-HOST-PID-RANDOM` (being
/// written) or `.NAME.old-HOST-PID` (a replaced classifier moved aside).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leftover {
    /// The classifier's name.
    name: String,
    /// The process that made it.
    pid: u32,
    /// Whether it is a replaced classifier rather than a partial one.
    old: bool,
}

/// Parses a directory entry's name as a [`Leftover`] of a run on the machine tagged `host`.
fn parse_leftover(file_name: &str, host: &str) -> Option<Leftover> {
    let hidden = file_name.strip_prefix('.')?;
    for (marker, old) in [(format!(".partial-{host}-"), false), (format!(".old-{host}-"), true)] {
        let Some((name, rest)) = hidden.rsplit_once(marker.as_str()) else { continue };
        let pid = rest.split('-').next().unwrap_or_default();
        if let (false, Ok(pid)) = (name.is_empty(), pid.parse::<u32>()) {
            return Some(Leftover { name: name.to_string(), pid, old });
        }
    }
    None
}

/// Whether process `pid` of this machine is running (this process counts as running).
fn is_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Cleans up after training runs on this machine that were killed (their process is gone) in classifiers
/// folder `parent`, whatever classifier they were writing: partial directories (`.NAME.partial-*`, left by
/// Ctrl-C, which skips destructors) are removed. A classifier moved aside to `.NAME.old-*` while being
/// replaced is put back when the run died before the new one took its place (`NAME` missing), and removed
/// otherwise. Only where process ids can be checked (`/proc`); elsewhere, and for other machines' runs,
/// leftovers stay.
pub fn recover_abandoned(parent: &Path) {
    let _ = recover_where(parent, |l| !is_alive(l.pid));
}

/// [`recover_abandoned`] for this process's own leftovers, for an interrupt handler to call before
/// exiting (Ctrl-C skips destructors, so the partial directory would otherwise stay until the next run):
/// the partial directory of the training run it stops, or a classifier it had moved aside. Returns what
/// it did, for the handler to say.
pub fn recover_own(parent: &Path) -> Recovered {
    // Never in the middle of an install: deleting the folder being renamed into place, or the one
    // moved aside, would lose both classifiers. The caller exits right after, still holding it.
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    recover_where(parent, |l| l.pid == me)
}

/// What [`recover_own`] cleaned up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Leftovers removed (partial directories, and moved-aside classifiers whose place was taken).
    pub removed: usize,
    /// Classifiers moved aside that were put back in their place.
    pub restored: Vec<PathBuf>,
}

/// Removes (or, for a moved-aside classifier whose place is empty, restores) the leftovers in `parent`
/// that `pick` selects.
fn recover_where(parent: &Path, pick: impl Fn(&Leftover) -> bool) -> Recovered {
    let mut done = Recovered::default();
    if !Path::new("/proc/self").exists() {
        return done;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return done };
    let host = host_tag();
    for e in entries.flatten() {
        let Some(left) = parse_leftover(&e.file_name().to_string_lossy(), &host) else { continue };
        if !pick(&left) {
            continue;
        }
        let dest = parent.join(&left.name);
        if left.old && rename_new(&e.path(), &dest).is_ok() {
            tracing::warn!("{}: restored the classifier an interrupted run had moved aside", dest.display());
            done.restored.push(dest);
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            done.removed += 1;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal classifier directory (a manifest file is what marks one).
    fn fake_classifier(dir: &Path, marker: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), marker).unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_path_that_holds_no_classifier_says_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        fake_classifier(&classifiers_root(&home).join("trec"), "{}");
        let resolve = |p: &Path| resolve_in(&home, p.to_str().unwrap()).unwrap_err().to_string();
        let folder = tmp.path().join("folder");
        std::fs::create_dir_all(&folder).unwrap();
        let e = resolve(&folder);
        assert!(e.contains("this folder holds no classifier") && e.contains("no classifier.json"), "{e}");
        assert!(e.contains("saved classifiers: trec") && !e.contains("not found"), "{e}");
        std::fs::write(folder.join("classifier.txt"), "x").unwrap();
        let e = resolve(&folder.join("classifier.txt"));
        assert!(e.contains("is a file; give the classifier's folder"), "{e}");
        let e = resolve(&tmp.path().join("gone"));
        assert!(e.contains("gone: no such classifier folder"), "{e}");
        let e = resolve_in(&home, "no-such-name-here").unwrap_err().to_string();
        assert_eq!(e, "classifier `no-such-name-here` not found (saved classifiers: trec)");
        assert_eq!(resolve_in(&home, "trec").unwrap(), classifiers_root(&home).join("trec"));
    }

    #[test]
    fn a_classifier_saved_by_another_run_meanwhile_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("race");
        // The other run finishes while this one is "training".
        let err = write_dir_atomically(&dest, false, |out| {
            fake_classifier(&dest, "other run");
            std::fs::write(out.join(MANIFEST_FILE), "this run").unwrap();
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, TaskError::CreatedMeanwhile(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("another training run") && msg.contains("NOT saved") && msg.contains("--force"), "{msg}");
        assert_eq!(std::fs::read_to_string(dest.join(MANIFEST_FILE)).unwrap(), "other run");
        assert_eq!(entries(tmp.path()), vec!["race"], "temporary directories left behind");
    }

    #[test]
    fn an_empty_directory_created_meanwhile_is_not_replaced_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("m");
        let err = write_dir_atomically(&dest, false, |_| {
            std::fs::create_dir(&dest).unwrap();
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, TaskError::CreatedMeanwhile(_)), "{err}");
        assert_eq!(entries(tmp.path()), vec!["m"]);
    }

    #[test]
    fn with_force_a_classifier_saved_meanwhile_is_replaced_but_other_files_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("m");
        write_dir_atomically(&dest, true, |out| {
            fake_classifier(&dest, "other run");
            std::fs::write(out.join(MANIFEST_FILE), "this run").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(dest.join(MANIFEST_FILE)).unwrap(), "this run");
        assert_eq!(entries(tmp.path()), vec!["m"]);

        let other = tmp.path().join("notes");
        let err = write_dir_atomically(&other, true, |out| {
            std::fs::create_dir(&other).unwrap();
            std::fs::write(other.join("thesis.txt"), "important").unwrap();
            std::fs::write(out.join(MANIFEST_FILE), "this run").unwrap();
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("not a classifier"), "{err}");
        assert!(other.join("thesis.txt").is_file());
        assert_eq!(entries(tmp.path()), vec!["m", "notes"]);
    }

    #[test]
    fn names_and_paths_follow_one_rule() {
        let home = Path::new("/home/u");
        for bad in [".hidden", "a\\b", "-x", "--force", "~x", "", ".", "..", "bad name", "é", &"n".repeat(65)] {
            let err = target_dir(home, bad).unwrap_err().to_string();
            assert!(err.contains("invalid classifier name") && err.contains("containing `/`"), "{bad}: {err}");
        }
        assert!(target_dir(home, "-x").unwrap_err().to_string().contains("cannot start with `-`"));
        assert!(target_dir(home, ".hidden").unwrap_err().to_string().contains("cannot start with `.`"));
        assert!(target_dir(home, "a\\b").unwrap_err().to_string().contains("`\\` is not allowed"));
        for good in ["reviews", "v1.2", "a-b_c", "X9"] {
            assert_eq!(target_dir(home, good).unwrap(), (home.join("classifiers").join(good), good.to_string()));
        }
        // A path is anything with a `/`, hidden or not.
        assert_eq!(target_dir(home, "./.hidden").unwrap(), (PathBuf::from("./.hidden"), ".hidden".to_string()));
        assert_eq!(target_dir(home, "out/m").unwrap().1, "m");
    }

    /// The id of a process that has exited (so is not alive).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn leftovers_of_killed_runs_are_cleaned_by_any_later_run_or_listing() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let root = classifiers_root(home.path());
        let (host, dead, me) = (host_tag(), dead_pid(), std::process::id());
        fake_classifier(&root.join("kept"), "kept");
        // A killed run of another name, a replaced classifier whose new one never took its place, and one
        // whose new one did; plus a live run's partial directory, which must stay.
        std::fs::create_dir_all(root.join(format!(".other.partial-{host}-{dead}-x1y2"))).unwrap();
        fake_classifier(&root.join(format!(".v1.2.old-{host}-{dead}")), "old v1.2");
        fake_classifier(&root.join(format!(".kept.old-{host}-{dead}")), "older kept");
        std::fs::create_dir_all(root.join(format!(".live.partial-{host}-{me}-abc"))).unwrap();
        assert_eq!(list_in(home.path()).unwrap(), vec!["kept", "v1.2"]);
        assert_eq!(std::fs::read_to_string(root.join("v1.2").join(MANIFEST_FILE)).unwrap(), "old v1.2");
        assert_eq!(std::fs::read_to_string(root.join("kept").join(MANIFEST_FILE)).unwrap(), "kept");
        let live = format!(".live.partial-{host}-{me}-abc");
        assert_eq!(entries(&root), vec![live.clone(), "kept".into(), "v1.2".into()]);
        // An interrupt handler removes this process's own partial directory.
        assert_eq!(recover_own(&root), Recovered { removed: 1, restored: vec![] });
        assert_eq!(entries(&root), vec!["kept", "v1.2"]);
        // Training another name cleans too.
        std::fs::create_dir_all(root.join(format!(".gone.partial-{host}-{dead}-q"))).unwrap();
        write_dir_atomically(&root.join("new"), false, |out| {
            std::fs::write(out.join(MANIFEST_FILE), "new").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(entries(&root), vec!["kept", "new", "v1.2"]);
    }

    #[test]
    fn an_interrupted_replacement_puts_the_old_classifier_back() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (host, me, dead) = (host_tag(), std::process::id(), dead_pid());
        // Stopped between moving `m` aside and renaming the new one into place: `m` is missing.
        fake_classifier(&root.join(format!(".m.old-{host}-{me}")), "old m");
        std::fs::create_dir_all(root.join(format!(".m.partial-{host}-{me}-r4nd"))).unwrap();
        // Another (dead) run's leftovers are not this handler's business.
        let others = format!(".n.partial-{host}-{dead}-q");
        std::fs::create_dir_all(root.join(&others)).unwrap();
        let done = recover_own(root);
        assert_eq!(done, Recovered { removed: 1, restored: vec![root.join("m")] });
        assert_eq!(std::fs::read_to_string(root.join("m").join(MANIFEST_FILE)).unwrap(), "old m");
        assert_eq!(entries(root), vec![others, "m".to_string()]);
        // Nothing of this process's left: nothing to do.
        assert_eq!(recover_own(root), Recovered::default());
    }

    #[test]
    fn leftover_names_are_parsed_strictly() {
        let p = |n: &str| parse_leftover(n, "vm");
        assert_eq!(p(".a.b.partial-vm-12-xyz"), Some(Leftover { name: "a.b".into(), pid: 12, old: false }));
        assert_eq!(p(".m.old-vm-7"), Some(Leftover { name: "m".into(), pid: 7, old: true }));
        assert_eq!(p(".m.old-other-7"), None, "another machine's");
        assert_eq!(p("m.old-vm-7"), None);
        assert_eq!(p(".m.partial-vm-x-1"), None);
        assert_eq!(p("..partial-vm-3-a"), None);
    }

    #[test]
    fn paths_that_detour_or_go_through_a_file_are_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let detour = home.join("a/../b");
        let err = target_dir(home, &detour.to_string_lossy()).unwrap_err().to_string();
        assert!(err.contains("back out with `..`"), "{err}");
        assert!(!home.join("a").exists());
        std::fs::write(home.join("small.csv"), "x,y\n").unwrap();
        let through_file = home.join("small.csv/sub");
        let err = target_dir(home, &through_file.to_string_lossy()).unwrap_err().to_string();
        assert!(err.contains("small.csv` is a file, not a folder"), "{err}");
        assert!(check_writable(&through_file, false).is_err());
        // Leading `..` and `.` are fine, and so are folders still to be created.
        assert!(target_dir(home, "../models/m").is_ok());
        assert!(target_dir(home, &home.join("new/deeper/m").to_string_lossy()).is_ok());
    }
}
