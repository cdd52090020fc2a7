//! One module per command group; each holds its clap arguments and a thin `run` that calls library code.

pub mod bench;
pub mod compare;
pub mod docs;
pub mod embed;
pub mod generate;
pub mod models;
pub mod progress;
pub mod router;
pub mod serve;
pub mod tasks;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

/// `rightmodel eval ...`
#[derive(Subcommand)]
pub enum EvalCmd {
    /// Accuracy, macro-F1, per-class scores and confusion matrix of a classifier on labelled data.
    Classify(tasks::EvalClassifyArgs),
    /// Retrieval and answer quality of document QA on a SQuAD-format file.
    Docs(docs::EvalDocsArgs),
    /// Small vs large vs routed on your own prompts and expected answers, through a running gateway:
    /// quality, latency and cost per model, as a table and a chart.
    Route(compare::EvalRouteArgs),
}

/// Runs an `eval` subcommand.
pub fn eval(cmd: EvalCmd) -> anyhow::Result<()> {
    match cmd {
        EvalCmd::Classify(a) => tasks::eval_classify(a),
        EvalCmd::Docs(a) => docs::eval_docs(a),
        EvalCmd::Route(a) => compare::eval_route(a),
    }
}

/// Fails early when `path`, given with `flag` as an output file, is an existing folder.
pub fn check_out_file(flag: &str, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!path.is_dir(), "{flag} {}: is a folder; give a file name", path.display());
    Ok(())
}

/// Whether `a` and `b` name the same existing file (through links, `..` or another spelling): an
/// output must never be written over an input.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The folder that `dir` is or would be created in: `dir` itself when it exists, else its nearest
/// existing ancestor. Fails when that is a file (`what` says what the folder is for).
pub fn nearest_existing_dir(flag: &str, dir: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::metadata(&at) {
            Ok(m) if m.is_dir() => return Ok(at),
            Ok(_) if at == dir => anyhow::bail!("{flag} {}: is a file; give a folder for {what}", dir.display()),
            Ok(_) => anyhow::bail!("{flag} {}: {} is a file, not a folder", dir.display(), at.display()),
            // Missing, or below a file (`file.csv/sub`): look at the parent, which says which.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {}
            Err(e) => anyhow::bail!("{flag} {}: {e}", dir.display()),
        }
        let parent = match at.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_path_buf(),
            None => anyhow::bail!("{flag} {}: no existing folder to create it in", dir.display()),
        };
        if parent == at {
            anyhow::bail!("{flag} {}: no existing folder to create it in", dir.display());
        }
        at = parent;
    }
}

/// Fails before any long work when `dir`, given with `flag` as an output folder for `what`, could not
/// be written later: it (or the folder it would be created in) is a file, or new files cannot be
/// created there. Probes with a temporary file that is removed at once; creates no folder.
pub fn check_writable_dir(flag: &str, dir: &Path, what: &str) -> anyhow::Result<()> {
    let at = nearest_existing_dir(flag, dir, what)?;
    let probe = at.join(format!(".rightmodel-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("{flag} {}: cannot create files in {}", dir.display(), at.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks a report folder before the work that fills it (minutes, or paid requests), so that a bad
/// path costs nothing: `dir` can be written (or created), none of `files` in it is one of `inputs`
/// (always refused: the input would be lost), and none of them exists unless `force`.
pub fn check_report_dir(
    flag: &str,
    dir: &Path,
    files: &[&str],
    inputs: &[(&str, &Path)],
    force: bool,
) -> anyhow::Result<()> {
    check_writable_dir(flag, dir, "the report")?;
    let mut existing = Vec::new();
    for f in files {
        let path = dir.join(f);
        check_not_input(flag, &path, inputs)?;
        if path.symlink_metadata().is_ok() {
            existing.push(*f);
        }
    }
    anyhow::ensure!(
        force || existing.is_empty(),
        "{flag} {}: already holds {}; add --force to replace them, or give another folder",
        dir.display(),
        existing.join(", ")
    );
    Ok(())
}

/// Checks an output file before the work that fills it: not a folder, not one of `inputs` (always
/// refused), not an existing file unless `force`, and its folder can be written; a missing folder is
/// created now, since the writers that fill the file after minutes of work do not create folders.
pub fn check_new_file(flag: &str, path: &Path, inputs: &[(&str, &Path)], force: bool) -> anyhow::Result<()> {
    check_out_file(flag, path)?;
    check_not_input(flag, path, inputs)?;
    anyhow::ensure!(
        force || path.symlink_metadata().is_err(),
        "{flag} {}: already exists; add --force to replace it, or give another file name",
        path.display()
    );
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_writable_dir(flag, parent, "the file").with_context(|| format!("{flag} {}", path.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("{flag} {}: cannot create its folder", path.display()))
}

/// Fails when the output `path` (given with `flag`) is the same file as one of `inputs` (each with the
/// flag that named it).
fn check_not_input(flag: &str, path: &Path, inputs: &[(&str, &Path)]) -> anyhow::Result<()> {
    if let Some((input_flag, input)) = inputs.iter().find(|(_, i)| same_file(path, i)) {
        anyhow::bail!(
            "{flag}: {} is the {input_flag} input {}; writing there would destroy it, so give another path",
            path.display(),
            input.display()
        );
    }
    Ok(())
}

/// A whole number of at least 1, for counts where 0 would make a command do nothing useful (or divide
/// by zero) and silently rounding it up would hide the mistake.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// Names of the catalog models that have a file for which `is_kind` holds, comma-separated.
fn catalog_names(is_kind: impl Fn(&str) -> bool) -> String {
    let names: Vec<&str> = rightmodel_models::catalog::ALL
        .iter()
        .filter(|m| m.files.iter().any(|f| is_kind(f.name)))
        .map(|m| m.name)
        .collect();
    names.join(", ")
}

/// A GGUF language model for `spec` (a pulled name or a file path). An unknown name lists only the
/// language models, not every model the store knows (an encoder name would not work here).
pub fn resolve_gguf(store: &rightmodel_models::Store, spec: &str) -> anyhow::Result<std::path::PathBuf> {
    store.resolve_gguf(spec).map_err(|e| match e {
        rightmodel_models::PullError::UnknownModel { .. } => anyhow::anyhow!(
            "`{spec}` is neither a .gguf file nor a known language model; known language models: {} (or pass a path to a .gguf file)",
            catalog_names(|f| f.ends_with(".gguf"))
        ),
        other => other.into(),
    })
}

/// A sentence-encoder folder for `spec` (a pulled name or a folder). An unknown name says so and lists
/// the known encoders, instead of suggesting a pull that could not help.
pub fn resolve_encoder(store: &rightmodel_models::Store, spec: &str) -> anyhow::Result<std::path::PathBuf> {
    store.resolve_encoder(spec).map_err(|e| match e {
        rightmodel_models::PullError::UnknownModel { .. } => anyhow::anyhow!(
            "sentence encoder `{spec}` is neither a model folder nor a known model name; known encoders: {} (or pass a folder with config.json, tokenizer.json and model.safetensors)",
            catalog_names(|f| f == "model.safetensors")
        ),
        other => anyhow::Error::new(other).context(format!("sentence encoder `{spec}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_refuses_zero_and_junk() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("-1").is_err() && at_least_one("x").is_err());
    }

    #[test]
    fn an_input_is_recognised_under_another_spelling() {
        let dir = std::env::temp_dir().join(format!("rightmodel-cli-same-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let data = dir.join("data.jsonl");
        std::fs::write(&data, "x").unwrap();
        std::os::unix::fs::symlink(&data, dir.join("link.jsonl")).unwrap();
        for other in [dir.join("sub/../data.jsonl"), dir.join("link.jsonl")] {
            assert!(same_file(&other, &data), "{}", other.display());
            let e = check_new_file("--dump", &other, &[("--data", &data)], true).unwrap_err().to_string();
            assert!(e.contains("--data input"), "{e}");
        }
        assert!(!same_file(&dir.join("new.jsonl"), &data));
        check_new_file("--dump", &dir.join("new.jsonl"), &[("--data", &data)], false).unwrap();
        let e = check_report_dir("--out", &dir, &["data.jsonl", "x.md"], &[], false).unwrap_err().to_string();
        assert!(e.contains("already holds data.jsonl") && e.contains("--force"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_model_names_list_only_models_of_the_right_kind() {
        let dir = std::env::temp_dir().join(format!("rightmodel-cli-test-{}", std::process::id()));
        let store = rightmodel_models::Store::new(&dir);
        let e = resolve_gguf(&store, "nosuch").unwrap_err().to_string();
        assert!(e.contains(rightmodel_models::DEFAULT_CHAT_MODEL), "{e}");
        assert!(!e.contains(rightmodel_models::DEFAULT_EMBED_MODEL), "{e}");
        let e = resolve_encoder(&store, "nosuch").unwrap_err().to_string();
        assert!(e.contains("neither") && e.contains(rightmodel_models::DEFAULT_EMBED_MODEL), "{e}");
        assert!(!e.contains("rightmodel pull") && !e.contains(rightmodel_models::DEFAULT_CHAT_MODEL), "{e}");
    }
}
