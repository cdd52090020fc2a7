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
pub mod terminal;

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

/// The bytes of the input file `path`, given with `flag` (standard input, `-`, is the caller's to
/// read): a missing file or a folder is named as such, rather than with the system's terse error.
pub fn read_input_file(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    use rightmodel_core::fsutil::{check_input_file, NotAFile};
    match check_input_file(path) {
        Err(NotAFile::Folder) => {
            anyhow::bail!("{flag} {}: is a folder; give a file (or - for standard input)", path.display())
        }
        Err(NotAFile::Missing) => anyhow::bail!("{flag} {}: no such file", path.display()),
        // Other failures are the read's to name.
        Ok(()) | Err(NotAFile::Other(_)) => {}
    }
    std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
}

/// Whether `a` and `b` name the same existing file (through symbolic or hard links, `..` or another
/// spelling): an output must never be written over an input. Compares the files themselves (device and
/// inode on unix), not their paths, so a hard link to an input counts; a missing file is never the same.
pub fn same_file(a: &Path, b: &Path) -> bool {
    // From the files' metadata, without opening them (opening a named pipe would block).
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        same_file::is_same_file(a, b).unwrap_or(false)
    }
}

/// The folder that `dir` is or would be created in: `dir` itself when it exists, else its nearest
/// existing ancestor. Fails when that is a file (`what` says what the folder is for); `label` (what
/// names `dir`, e.g. `--out DIR`) leads the messages.
fn nearest_existing_dir(label: &str, dir: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::metadata(&at) {
            Ok(m) if m.is_dir() => return Ok(at),
            Ok(_) if at == dir => anyhow::bail!("{label}: is a file; give a folder for {what}"),
            Ok(_) => anyhow::bail!("{label}: {} is a file, not a folder", at.display()),
            // Missing, or below a file (`file.csv/sub`): look at the parent, which says which.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {}
            Err(e) => anyhow::bail!("{label}: {e}"),
        }
        let parent = match at.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_path_buf(),
            None => anyhow::bail!("{label}: no existing folder to create it in"),
        };
        if parent == at {
            anyhow::bail!("{label}: no existing folder to create it in");
        }
        at = parent;
    }
}

/// Fails before any long work when `dir`, given with `flag` as an output folder for `what`, could not
/// be written later: it (or the folder it would be created in) is a file, or new files cannot be
/// created there. Probes with a temporary file that is removed at once; creates no folder.
pub fn check_writable_dir(flag: &str, dir: &Path, what: &str) -> anyhow::Result<()> {
    check_writable_dir_as(&format!("{flag} {}", dir.display()), dir, what)
}

/// [`check_writable_dir`] with `label` (what names `dir`) leading its messages.
fn check_writable_dir_as(label: &str, dir: &Path, what: &str) -> anyhow::Result<()> {
    let at = nearest_existing_dir(label, dir, what)?;
    let probe = at.join(format!(".rightmodel-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("{label}: cannot create files in {}", at.display()))?;
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
    report_dir_as(&format!("{flag} {}", dir.display()), dir, files, inputs, force)
}

/// [`check_report_dir`] for the folder a command writes its report to when `flag` is not given:
/// messages name it as the default and say that `flag` chooses another, since the user never typed it.
pub fn check_default_report_dir(
    flag: &str,
    dir: &Path,
    files: &[&str],
    inputs: &[(&str, &Path)],
    force: bool,
) -> anyhow::Result<()> {
    let label = format!("{} (the default report folder; {flag} chooses another)", dir.display());
    report_dir_as(&label, dir, files, inputs, force)
}

/// The checks of [`check_report_dir`], with `label` (what names `dir`) leading their messages.
fn report_dir_as(label: &str, dir: &Path, files: &[&str], inputs: &[(&str, &Path)], force: bool) -> anyhow::Result<()> {
    check_writable_dir_as(label, dir, "the report")?;
    let mut existing = Vec::new();
    for f in files {
        let path = dir.join(f);
        check_not_input(label, &path, inputs)?;
        if path.symlink_metadata().is_ok() {
            existing.push(*f);
        }
    }
    anyhow::ensure!(
        force || existing.is_empty(),
        "{label}: already holds {}; add --force to replace them, or give another folder",
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

/// Fails when the output `path` (named by `label`: its flag, or the folder it goes in) is the same file
/// as one of `inputs` (each with the flag that named it).
fn check_not_input(label: &str, path: &Path, inputs: &[(&str, &Path)]) -> anyhow::Result<()> {
    if let Some((input_flag, input)) = inputs.iter().find(|(_, i)| same_file(path, i)) {
        anyhow::bail!(
            "{label}: {} is the {input_flag} input {}; writing there would destroy it, so give another path",
            path.display(),
            input.display()
        );
    }
    Ok(())
}

/// A command stopped by Ctrl-C (SIGINT) or SIGTERM after it saved what it could; `main` prints it and
/// exits with status 130, the shell's status for a command ended by SIGINT, so a script can tell an
/// interrupted run from a finished or a failed one.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Completes when the process gets Ctrl-C (SIGINT) or SIGTERM, for a command that stops its work
/// itself and keeps what it has. The handlers are installed on the first poll; where they cannot be,
/// it never completes (the default handling stays, and the signal ends the process as before).
pub async fn interrupt_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs `cleanup` and exits with status 130 when the process gets Ctrl-C (SIGINT) or SIGTERM, for a
/// command that leaves something half-made when stopped (a killed process runs no destructors). The
/// handlers are in place when this returns (a signal before that still kills the process at once); a
/// watcher thread waits for them, named `name`. Without a thread or a runtime the default handling
/// stays, which is logged.
pub fn on_interrupt(name: &str, cleanup: impl FnOnce() + Send + 'static) {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let watch = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
                else {
                    return;
                };
                let _ = ready_tx.send(());
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ready_tx.send(());
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
            }
            cleanup();
            std::process::exit(130);
        });
    };
    match std::thread::Builder::new().name(name.into()).spawn(watch) {
        Ok(_) => {
            let _ = ready.recv_timeout(std::time::Duration::from_secs(2));
        }
        Err(e) => tracing::debug!("no signal watcher: {e}"),
    }
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

/// Whether a model spec that names no model is meant as a path (it has a folder separator or a model
/// file's extension), so that a missing file is reported as missing, not as an unknown model name.
fn looks_like_path(spec: &str) -> bool {
    let lower = spec.to_ascii_lowercase();
    spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || lower.ends_with(".gguf") || spec.starts_with('~')
}

/// A GGUF language model for `spec` (a pulled name or a file path). An unknown name lists only the
/// language models, not every model the store knows (an encoder name would not work here).
pub fn resolve_gguf(store: &rightmodel_models::Store, spec: &str) -> anyhow::Result<std::path::PathBuf> {
    store.resolve_gguf(spec).map_err(|e| match e {
        rightmodel_models::PullError::UnknownModel { .. } if looks_like_path(spec) => {
            anyhow::anyhow!("{spec}: no such file (a GGUF model file was expected here)")
        }
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
        rightmodel_models::PullError::UnknownModel { .. } if looks_like_path(spec) => anyhow::anyhow!(
            "{spec}: no such folder (a sentence-encoder folder with config.json, tokenizer.json and model.safetensors was expected here)"
        ),
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
    fn a_missing_model_path_is_reported_as_missing() {
        let store = rightmodel_models::Store::new(&std::env::temp_dir().join("rightmodel-cli-no-store"));
        let e = resolve_gguf(&store, "/nonexistent/model.gguf").unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        let e = resolve_gguf(&store, "no-such-model").unwrap_err().to_string();
        assert!(e.contains("known language models"), "{e}");
        let e = resolve_encoder(&store, "./no/such/encoder").unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{e}");
    }

    #[test]
    fn an_input_folder_or_missing_file_is_named_as_such() {
        let dir = std::env::temp_dir().join(format!("rightmodel-cli-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_input_file("--input", &dir).unwrap_err().to_string();
        assert!(e.starts_with("--input ") && e.contains("is a folder; give a file"), "{e}");
        let e = read_input_file("--input", &dir.join("gone.txt")).unwrap_err().to_string();
        assert!(e.ends_with("gone.txt: no such file"), "{e}");
        std::fs::write(dir.join("t.txt"), "hello\n").unwrap();
        assert_eq!(read_input_file("--input", &dir.join("t.txt")).unwrap(), b"hello\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        std::fs::hard_link(&data, dir.join("hard.jsonl")).unwrap();
        for other in [dir.join("sub/../data.jsonl"), dir.join("link.jsonl"), dir.join("hard.jsonl")] {
            assert!(same_file(&other, &data), "{}", other.display());
            let e = check_new_file("--dump", &other, &[("--data", &data)], true).unwrap_err().to_string();
            assert!(e.contains("--data input"), "{e}");
        }
        assert!(!same_file(&dir.join("new.jsonl"), &data) && !same_file(&data, &dir.join("new.jsonl")));
        // A copy is another file, whatever it holds.
        std::fs::copy(&data, dir.join("copy.jsonl")).unwrap();
        assert!(!same_file(&dir.join("copy.jsonl"), &data));
        check_new_file("--dump", &dir.join("new.jsonl"), &[("--data", &data)], false).unwrap();
        let e = check_report_dir("--out", &dir, &["data.jsonl", "x.md"], &[], false).unwrap_err().to_string();
        assert!(e.contains("already holds data.jsonl") && e.contains("--force"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_default_report_folder_is_named_as_the_default() {
        let dir = std::env::temp_dir().join(format!("rightmodel-cli-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.md"), "mine").unwrap();
        let e = check_default_report_dir("--out", &dir, &["report.md"], &[], false).unwrap_err().to_string();
        assert!(e.contains("the default report folder; --out chooses another") && e.contains("--force"), "{e}");
        check_default_report_dir("--out", &dir, &["report.md"], &[], true).unwrap();
        let e = check_report_dir("--out", &dir, &["report.md"], &[], false).unwrap_err().to_string();
        assert!(e.starts_with("--out ") && !e.contains("default"), "{e}");
        // A report file that is an input is refused even with --force.
        let input = dir.join("report.md");
        let e = check_default_report_dir("--out", &dir, &["report.md"], &[("--data", &input)], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--data input") && e.contains("default report folder"), "{e}");
        let e = format!("{:#}", check_default_report_dir("--out", &input.join("x"), &[], &[], false).unwrap_err());
        assert!(e.contains("is a file, not a folder") && e.contains("default report folder"), "{e}");
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
