//! Where rightmodel keeps its state.

use std::ffi::OsString;
use std::path::PathBuf;

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
}

/// `$RIGHTMODEL_HOME`, or `$HOME/.cache/rightmodel` when unset: the model store, the request log,
/// trained task models and document collections live below it. Fails when neither variable is set,
/// rather than falling back to a folder other users can write to.
pub fn try_rightmodel_home() -> Result<PathBuf, HomeError> {
    home_from(|name| std::env::var_os(name))
}

/// [`try_rightmodel_home`] for callers that cannot fail. The binary checks [`try_rightmodel_home`] before
/// any command runs, so this falls back only in library use without `RIGHTMODEL_HOME` and `HOME`: to a
/// path nothing can be created under, so every use fails with an error naming it, never to a shared
/// folder such as `/tmp`, where another user could plant model files and a `.verified` marker.
pub fn rightmodel_home() -> PathBuf {
    try_rightmodel_home().unwrap_or_else(|_| {
        if cfg!(unix) {
            PathBuf::from("/dev/null/rightmodel-home-unset")
        } else {
            PathBuf::from("NUL").join("rightmodel-home-unset")
        }
    })
}

/// The state folder from the variables `var` reads (empty values count as unset).
fn home_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, HomeError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(home) = set(HOME_ENV) {
        return Ok(PathBuf::from(home));
    }
    let home = set("HOME").ok_or(HomeError::Unset)?;
    Ok(PathBuf::from(home).join(".cache").join("rightmodel"))
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
        assert_eq!(both, PathBuf::from("/rm"));
        let home = home_from(vars(&[("RIGHTMODEL_HOME", ""), ("HOME", "/h")])).unwrap();
        assert_eq!(home, PathBuf::from("/h/.cache/rightmodel"));
    }

    #[test]
    fn no_home_is_an_error_not_the_temp_folder() {
        let err = home_from(vars(&[("HOME", "")])).unwrap_err();
        assert!(err.to_string().contains("set RIGHTMODEL_HOME"), "{err}");
    }
}
