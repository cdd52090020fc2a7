//! One module per command group; each holds its clap arguments and a thin `run` that calls library code.

pub mod bench;
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
}

/// Runs an `eval` subcommand.
pub fn eval(cmd: EvalCmd) -> anyhow::Result<()> {
    match cmd {
        EvalCmd::Classify(a) => tasks::eval_classify(a),
        EvalCmd::Docs(a) => docs::eval_docs(a),
    }
}
