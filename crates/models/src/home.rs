//! Where rightmodel keeps its state.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the folder rightmodel keeps its state in.
pub const HOME_ENV: &str = "RIGHTMODEL_HOME";

/// Why there is no folder for rightmodel's state.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `RIGHTMODEL_HOME` nor `HOME` is set. The shared temporary folder is no substitute: another
    /// user could plant model files and a `.verified` marker there, which the store trusts on a `stat`.
    #[error(
        "neither RIGHTMODEL_HOME nor HOME is set: set RIGHTMODEL_HOME to a folder of your own where rightmodel can keep its models and logs (or set HOME)"
    )]
    Unset,
    /// The state folder's path, or a folder on it, is a file. Said here, once for every command: each
    /// command would otherwise fail its own way further on (a model "not pulled", a collection not
    /// found), none of them naming the real cause.
    #[error("{}", not_a_folder_message(.path, .file, .var))]
    NotAFolder {
        /// The state folder's path.
        path: PathBuf,
        /// The file on it: `path` itself or one of its parents.
        file: PathBuf,
        /// The variable `path` came from (`RIGHTMODEL_HOME`, or `HOME` for the default below it).
        var: &'static str,
    },
}

/// The message of [`HomeError::NotAFolder`].
fn not_a_folder_message(path: &Path, file: &Path, var: &str) -> String {
    let what = if var == HOME_ENV {
        format!("{HOME_ENV} {}", path.display())
    } else {
        format!("the state folder {} (from HOME; RIGHTMODEL_HOME is not set)", path.display())
    };
    let is = if file == path {
        "is a file, not a folder".to_string()
    } else {
        format!("{} is a file, not a folder", file.display())
    };
    let sep = if file == path { " " } else { ": " };
    format!(
        "{what}{sep}{is}; set {HOME_ENV} to a folder (it is created when missing) where rightmodel can keep its models and logs"
    )
}

/// `$RIGHTMODEL_HOME`, or `$HOME/.cache/rightmodel` when unset: the model store, the request log,
/// trained task models and document collections live below it. Fails when neither variable is set,
/// rather than falling back to a folder other users can write to, and when the path (or a folder on
/// it) is a file, which no command could use.
pub fn try_rightmodel_home() -> Result<PathBuf, HomeError> {
    let (path, var) = home_from(|name| std::env::var_os(name))?;
    check_folder(&path, var)?;
    Ok(path)
}

/// [`try_rightmodel_home`] for callers that cannot fail. The binary checks [`try_rightmodel_home`] before
/// any command runs, so this falls back only in library use: without `RIGHTMODEL_HOME` and `HOME`, to a
/// path nothing can be created under, so every use fails with an error naming it, never to a shared
/// folder such as `/tmp`, where another user could plant model files and a `.verified` marker; with a
/// file in the way, to the path as set (every use fails naming it).
pub fn rightmodel_home() -> PathBuf {
    try_rightmodel_home().unwrap_or_else(|e| match e {
        HomeError::NotAFolder { path, .. } => path,
        HomeError::Unset if cfg!(unix) => PathBuf::from("/dev/null/rightmodel-home-unset"),
        HomeError::Unset => PathBuf::from("NUL").join("rightmodel-home-unset"),
    })
}

/// The state folder from the variables `var` reads (empty values count as unset), with the name of the
/// variable it came from.
fn home_from(var: impl Fn(&str) -> Option<OsString>) -> Result<(PathBuf, &'static str), HomeError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(home) = set(HOME_ENV) {
        return Ok((PathBuf::from(home), HOME_ENV));
    }
    let home = set("HOME").ok_or(HomeError::Unset)?;
    Ok((PathBuf::from(home).join(".cache").join("rightmodel"), "HOME"))
}

/// Fails when `path` (from variable `var`) or the nearest of its parents that exists is not a folder.
/// A missing folder is fine: commands that write create it.
fn check_folder(path: &Path, var: &'static str) -> Result<(), HomeError> {
    for at in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => return Err(HomeError::NotAFolder { path: path.to_path_buf(), file: at.to_path_buf(), var }),
            // Missing (or unreadable): its parent says more.
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn rightmodel_home_wins_then_home() {
        let both = home_from(vars(&[("RIGHTMODEL_HOME", "/rm"), ("HOME", "/h")])).unwrap();
        assert_eq!(both, (PathBuf::from("/rm"), HOME_ENV));
        let home = home_from(vars(&[("RIGHTMODEL_HOME", ""), ("HOME", "/h")])).unwrap();
        assert_eq!(home, (PathBuf::from("/h/.cache/rightmodel"), "HOME"));
    }

    #[test]
    fn a_file_in_place_of_the_home_folder_is_named_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("hostname");
        std::fs::write(&file, "x").unwrap();
        let e = check_folder(&file, HOME_ENV).unwrap_err().to_string();
        assert!(e.starts_with("RIGHTMODEL_HOME ") && e.contains("is a file, not a folder"), "{e}");
        assert!(!e.contains("pull"), "{e}");
        // A file on the way to it.
        let below = file.join("rm");
        let e = check_folder(&below, HOME_ENV).unwrap_err().to_string();
        assert!(e.contains(&format!("{}: {} is a file", below.display(), file.display())), "{e}");
        // The default below HOME says where it came from.
        let e = check_folder(&file, "HOME").unwrap_err().to_string();
        assert!(e.contains("from HOME") && e.contains("set RIGHTMODEL_HOME"), "{e}");
        // Folders, existing or still to be made, are fine.
        check_folder(tmp.path(), HOME_ENV).unwrap();
        check_folder(&tmp.path().join("new").join("deeper"), HOME_ENV).unwrap();
        check_folder(Path::new("relative-home-not-there"), HOME_ENV).unwrap();
    }

    #[test]
    fn no_home_is_an_error_not_the_temp_folder() {
        let err = home_from(vars(&[("HOME", "")])).unwrap_err();
        assert!(err.to_string().contains("set RIGHTMODEL_HOME"), "{err}");
    }
}
