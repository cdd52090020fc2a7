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
