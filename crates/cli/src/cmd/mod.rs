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

/// Fails early (before any expensive work) when `path`, given with `flag` as an output folder, is an
/// existing file: the report would otherwise be lost after minutes of evaluation.
pub fn check_out_dir(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(!path.is_file(), "{flag} {}: is a file; give a folder for the report", path.display());
    Ok(())
}

/// Fails early when `path`, given with `flag` as an output file, is an existing folder.
pub fn check_out_file(flag: &str, path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(!path.is_dir(), "{flag} {}: is a folder; give a file name", path.display());
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
