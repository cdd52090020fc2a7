//! `rightmodel router train|score|eval|calibrate|bench`: thin wrappers over `rightmodel-router` that
//! load the local encoder, draw progress bars, and read and write files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::check_writable_dir;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rightmodel_core::{Embedder, ModelKind, Price};
use rightmodel_infer::MiniLm;
use rightmodel_models::{home::rightmodel_home, Store};
use rightmodel_router::bench::time_decisions;
use rightmodel_router::data::{parse_prompt_lines, read_outcomes, read_prompts, Columns, LabelledPrompt};
use rightmodel_router::eval::{check_folds, CvConfig, CvReport};
use rightmodel_router::features::cache::{check_cache_path, embed_all};
use rightmodel_router::features::EmbedSpec;
use rightmodel_router::pipeline::{evaluate, exclude_groups, train_weights, TrainOptions};
use rightmodel_router::report::{existing_report_files, write_report, Existing};
use rightmodel_router::scorer::{Provenance, WEIGHTS_FILE};
use rightmodel_router::train::{LabelKind, TrainConfig};
use rightmodel_router::{
    BudgetState, Candidate, Conversation, DifficultyScorer, RouteRequest, Router, RouterConfig, RouterWeights, Scorer,
    StaticEmbedder,
};

/// Router commands.
#[derive(Subcommand)]
pub enum RouterCmd {
    /// Train the difficulty scorer on your own outcomes (CSV: prompt, weak_correct, strong_correct; or
    /// prompt plus two per-model score columns). Cross-validates first when the data has groups.
    #[command(after_help = concat!(
        "Example:\n",
        "  rightmodel router train --data ../shared/data/routing/mmlu.csv \\\n",
        "      --exclude-group high_school_mathematics --out my-router",
    ))]
    Train(TrainArgs),
    /// Score prompts: one JSON line `{"prompt": ...}` (or `{"messages": [...]}`) in, one
    /// `{"score": <float>}` out, same order; higher = needs the stronger model. Every line must be a
    /// non-empty prompt: all input is checked first, and blank or bad lines are listed with their line
    /// numbers and nothing is written.
    #[command(after_help = "Example:\n  rightmodel router score < prompts.jsonl > scores.jsonl")]
    Score(ScoreArgs),
    /// Cross-validated APGR and CPT(50%/80%) of the learned scorer beside a random and a prompt-length
    /// router, per fold and pooled, with a Markdown report and the quality-vs-strong-share curve (SVG).
    #[command(after_help = concat!(
        "Example:\n",
        "  rightmodel router eval --data ../shared/data/routing/mmlu.csv \\\n",
        "      --exclude-group high_school_mathematics --out router-eval",
    ))]
    Eval(EvalArgs),
    /// Set the threshold that sends a target share of your prompts to the strong model.
    #[command(after_help = "Example:\n  rightmodel router calibrate --data prompts.jsonl --strong-share 0.3")]
    Calibrate(CalibrateArgs),
    /// Time routing decisions (embedding included) for a prompt of a given length; prints p50/p90/p99.
    #[command(after_help = "Example:\n  rightmodel router bench --tokens 200 --runs 300")]
    Bench(BenchArgs),
}

/// What to train the model to predict.
#[derive(Clone, Copy, ValueEnum)]
pub enum LabelArg {
    /// The strong model's benefit, strong - weak, as a soft label.
    Benefit,
    /// Whether the weak model is wrong (difficulty for the weak model).
    WeakWrong,
    /// Whether only the strong model is right.
    StrongOnly,
}

impl From<LabelArg> for LabelKind {
    fn from(l: LabelArg) -> Self {
        match l {
            LabelArg::Benefit => LabelKind::Benefit,
            LabelArg::WeakWrong => LabelKind::WeakWrong,
            LabelArg::StrongOnly => LabelKind::StrongOnly,
        }
    }
}

/// Which vectors of the sentence encoder the scorer uses.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbeddingArg {
    /// Mean of the encoder's input word-piece vectors: under a millisecond per prompt (default).
    Static,
    /// The full MiniLM sentence embedding of clipped turns: ~0.5 ms per token on two cores.
    Contextual,
}

/// Data-file options shared by `train` and `eval`.
#[derive(Args)]
pub struct DataArgs {
    /// Outcome CSV with a header row.
    #[arg(long)]
    pub data: PathBuf,
    /// Column with the prompt (or a JSON array of {role, content} messages).
    #[arg(long, default_value = "prompt")]
    pub prompt_col: String,
    /// Column with the weak model's correctness (0/1) or score.
    #[arg(long, default_value = "weak_correct")]
    pub weak_col: String,
    /// Column with the strong model's correctness (0/1) or score.
    #[arg(long, default_value = "strong_correct")]
    pub strong_col: String,
    /// Column with the group (topic) used to hold whole groups out in cross-validation. Without the
    /// flag, a `subject` column is used when there is one (else folds are random rows); a column named
    /// here must exist.
    #[arg(long)]
    pub group_col: Option<String>,
    /// Leave this group out entirely (repeatable), e.g. one whose labels are known to be broken.
    #[arg(long = "exclude-group")]
    pub exclude_group: Vec<String>,
    /// Cache the prompt embeddings in this file so repeated runs on the same data skip embedding. Only
    /// an earlier cache is replaced: an existing file that is not one (or the --data file) is refused.
    #[arg(long)]
    pub embed_cache: Option<PathBuf>,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    /// Static input-embedding vectors (fast) or full contextual sentence embeddings.
    #[arg(long, value_enum, default_value = "static")]
    pub embedding: EmbeddingArg,
}

/// Model options shared by `train` and `eval`.
#[derive(Args)]
pub struct ModelArgs {
    /// What the model predicts.
    #[arg(long, value_enum, default_value = "benefit")]
    pub label: LabelArg,
    /// L2 penalty of the logistic regression.
    #[arg(long, default_value_t = 1.0)]
    pub l2: f64,
    /// Weight rows so that every group counts the same.
    #[arg(long)]
    pub balance_groups: bool,
}

impl ModelArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(self.l2.is_finite() && self.l2 >= 0.0, "--l2 must be a number >= 0, got {}", self.l2);
        Ok(TrainConfig {
            label: self.label.into(),
            l2: self.l2,
            balance_groups: self.balance_groups,
            ..TrainConfig::default()
        })
    }
}

/// `router train` arguments.
#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directory to write `router.json` to (default: $RIGHTMODEL_HOME/router, the router `serve`
    /// loads); checked before training.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a `router.json` already in --out (an earlier router, or the default one the gateway
    /// loads); without it the command refuses before training.
    #[arg(long)]
    pub force: bool,
    /// Share of the training prompts the stored threshold sends to the strong model.
    #[arg(long, default_value_t = 0.3)]
    pub strong_share: f32,
    /// Cross-validation folds run before the final fit (0 = skip).
    #[arg(long, default_value_t = 5, value_parser = in_range::<0, 100>)]
    pub folds: usize,
}

/// `router score` arguments.
#[derive(Args)]
pub struct ScoreArgs {
    /// Router directory with `router.json` (default: $RIGHTMODEL_HOME/router if present, else the
    /// shipped weights).
    #[arg(long)]
    pub router: Option<PathBuf>,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    /// Prompts embedded per batch.
    #[arg(long, default_value_t = 64, value_parser = in_range::<1, 4096>)]
    pub batch: usize,
}

/// `router eval` arguments.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directory for report.md, curve.svg, curve.png and report.json; checked before the evaluation
    /// runs.
    #[arg(long, default_value = "router-eval")]
    pub out: PathBuf,
    /// Replace report files already in --out (an earlier report, or your own report.md); without it
    /// the command refuses to overwrite them.
    #[arg(long)]
    pub force: bool,
    /// Number of folds.
    #[arg(long, default_value_t = 5, value_parser = in_range::<2, 100>)]
    pub folds: usize,
    /// Seed of the fold assignment and the random router.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threshold-sweep bins (RouteLLM uses 10).
    #[arg(long, default_value_t = 10, value_parser = in_range::<2, 1000>)]
    pub bins: usize,
}

/// `router calibrate` arguments.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Prompts typical of your traffic: JSON lines (`{"prompt": ...}`) or a CSV with a prompt column.
    #[arg(long)]
    pub data: PathBuf,
    /// Target share of strong-model calls, 0..1.
    #[arg(long)]
    pub strong_share: f32,
    /// Prompt column when --data is a CSV.
    #[arg(long, default_value = "prompt")]
    pub prompt_col: String,
    /// Router directory to calibrate (default: $RIGHTMODEL_HOME/router if present, else the shipped
    /// weights).
    #[arg(long)]
    pub router: Option<PathBuf>,
    /// Where to write the calibrated router (default: the --router directory, else
    /// $RIGHTMODEL_HOME/router).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
}

/// `router bench` arguments.
#[derive(Args)]
pub struct BenchArgs {
    /// Prompt length in encoder tokens, 1-512 (the contextual sentence encoder reads only the first
    /// 256).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub tokens: u64,
    /// Timed decisions (at least 1).
    #[arg(long, default_value_t = 300, value_parser = in_range::<1, 1_000_000>)]
    pub runs: usize,
    /// Untimed warm-up decisions.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Router directory (default: $RIGHTMODEL_HOME/router if present, else the shipped weights).
    #[arg(long)]
    pub router: Option<PathBuf>,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a router command.
pub fn run(cmd: RouterCmd) -> anyhow::Result<()> {
    match cmd {
        RouterCmd::Train(a) => train(a),
        RouterCmd::Score(a) => score(a),
        RouterCmd::Eval(a) => eval(a),
        RouterCmd::Calibrate(a) => calibrate(a),
        RouterCmd::Bench(a) => bench(a),
    }
}

/// The directory of the sentence encoder `spec` in the model store.
fn encoder_dir(spec: &str) -> anyhow::Result<PathBuf> {
    super::resolve_encoder(&Store::new(&rightmodel_home()), spec)
}

/// Loads the contextual MiniLM from `dir`, with all cores for candle.
fn load_contextual(dir: &Path) -> anyhow::Result<Arc<dyn Embedder>> {
    rightmodel_infer::threads::configure_candle_threads(rightmodel_infer::threads::available_cores());
    let enc = MiniLm::load(dir).with_context(|| format!("loading the sentence encoder from {}", dir.display()))?;
    Ok(Arc::new(enc))
}

/// The encoder of kind `kind` for the encoder `spec`.
fn load_encoder(spec: &str, kind: EmbeddingArg) -> anyhow::Result<Arc<dyn Embedder>> {
    let dir = encoder_dir(spec)?;
    match kind {
        EmbeddingArg::Static => Ok(Arc::new(
            StaticEmbedder::load(&dir)
                .with_context(|| format!("loading the encoder's embeddings from {}", dir.display()))?,
        )),
        EmbeddingArg::Contextual => load_contextual(&dir),
    }
}

/// The scorer for `weights`, with the encoder kind they were trained with.
fn scorer_for(weights: RouterWeights, spec: &str) -> anyhow::Result<DifficultyScorer> {
    let dir = encoder_dir(spec)?;
    let contextual = if weights.uses_static_embeddings() { None } else { Some(load_contextual(&dir)?) };
    Ok(DifficultyScorer::with_encoder_dir(weights, &dir, contextual)?)
}

fn spec_for(kind: EmbeddingArg) -> EmbedSpec {
    match kind {
        EmbeddingArg::Static => EmbedSpec::default(),
        EmbeddingArg::Contextual => EmbedSpec::contextual(),
    }
}

/// A whole number in `LO..=HI`, for flags whose value sizes buffers (a huge one would abort on
/// allocation instead of failing as a usage error).
pub(crate) fn in_range<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    let v: usize = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if (LO..=HI).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between {LO} and {HI}"))
    }
}

fn default_router_dir() -> PathBuf {
    rightmodel_home().join("router")
}

/// Fails before training when the weights could not be written to `out`, or would replace a
/// `router.json` already there without `force`: an earlier router (in the default folder, the one the
/// gateway loads) or someone's file of that name would be lost. `given` tells whether `--out` named
/// the folder or it is the default, so the message says which.
fn check_weights_out(out: &Path, given: bool, force: bool) -> anyhow::Result<()> {
    check_writable_dir("--out", out, WEIGHTS_FILE)?;
    let what = if given {
        format!("--out {}", out.display())
    } else {
        format!("{} (the default router folder, which `rightmodel serve` loads; --out chooses another)", out.display())
    };
    let file = out.join(WEIGHTS_FILE);
    match std::fs::symlink_metadata(&file) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => anyhow::bail!("{what}: {} is a folder, not a file", file.display()),
        Ok(_) if force => Ok(()),
        Ok(_) => {
            let kind =
                if RouterWeights::load(out).is_ok() { "a trained router" } else { "a file that is not router weights" };
            anyhow::bail!(
                "{what}: already holds {WEIGHTS_FILE} ({kind}); add --force to replace it, or give another --out folder"
            )
        }
    }
}

/// What happens to a result file found at its path when the work is done: replaced with `--force`,
/// else kept (the path was checked before the work began, so a file there now is another run's).
fn existing_for(force: bool) -> Existing {
    if force {
        Existing::Replace
    } else {
        Existing::Keep
    }
}

/// Fails when report files are already in `dir` and `force` is not set, naming them: an earlier report
/// or the user's own `report.md` is not replaced without `--force`.
fn check_report_files(dir: &Path, force: bool) -> anyhow::Result<()> {
    let existing = existing_report_files(dir);
    if force || existing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = existing.iter().map(|p| file_name(p)).collect();
    anyhow::bail!(
        "--out {}: already holds {}; use --force to replace them, or give another --out folder",
        dir.display(),
        names.join(", ")
    )
}

/// The weights of `--router DIR`, else `$RIGHTMODEL_HOME/router` when it holds weights, else the
/// shipped ones; says on stderr which were used.
fn load_weights(dir: Option<&Path>) -> anyhow::Result<(RouterWeights, Option<PathBuf>)> {
    let dir = dir.map(Path::to_path_buf).or_else(|| {
        let d = default_router_dir();
        d.join(WEIGHTS_FILE).is_file().then_some(d)
    });
    match dir {
        Some(d) => {
            let w = RouterWeights::load(&d).with_context(|| format!("router weights in {}", d.display()))?;
            eprintln!("router: weights from {}", d.display());
            Ok((w, Some(d)))
        }
        None => {
            eprintln!("router: shipped weights");
            Ok((RouterWeights::shipped().context("the shipped router weights")?, None))
        }
    }
}

use super::progress::{bar, bar_if_any};

/// The group column `--group-col` names, or the default one.
fn group_col(d: &DataArgs) -> String {
    d.group_col.clone().unwrap_or_else(|| Columns::default().group)
}

/// The columns the data flags name; a group column named with `--group-col` must exist.
fn columns(d: &DataArgs) -> Columns {
    Columns {
        prompt: d.prompt_col.clone(),
        weak: d.weak_col.clone(),
        strong: d.strong_col.clone(),
        group: group_col(d),
        require_group: d.group_col.is_some(),
    }
}

/// Reads the outcome file, drops excluded groups, checks that the rows fill `folds` cross-validation
/// folds (when set; `hint` says how else to fix it), embeds the prompts (with a progress bar and the
/// optional cache) and returns rows, their vectors and the encoder name.
fn load_and_embed(
    d: &DataArgs,
    spec: &EmbedSpec,
    folds: Option<(usize, &str)>,
) -> anyhow::Result<(Vec<LabelledPrompt>, Vec<Vec<f32>>, String)> {
    check_embed_cache(d)?;
    let rows = read_outcomes(&d.data, &columns(d))?;
    let total = rows.len();
    let (rows, dropped) = exclude_groups(rows, &d.exclude_group)?;
    let groups: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r.group.as_deref()).collect();
    eprintln!(
        "data: {} rows ({} dropped by --exclude-group), {} groups",
        rows.len(),
        dropped,
        if groups.is_empty() { "no".to_string() } else { groups.len().to_string() }
    );
    if total == dropped {
        anyhow::bail!("every row was excluded");
    }
    if let Some((k, hint)) = folds {
        check_folds(&rows, k).with_context(|| format!("--folds {k}{hint}"))?;
    }
    let encoder = load_encoder(&d.encoder, d.embedding)?;
    let convs: Vec<Conversation> = rows.iter().map(|r| r.conversation.clone()).collect();
    let pb = bar(convs.len() as u64, "embedding");
    let vecs =
        embed_all(encoder.as_ref(), &convs, spec, d.embed_cache.as_deref(), |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    Ok((rows, vecs, encoder.model_id().to_string()))
}

/// Fails before anything is read or embedded when `--embed-cache` names the `--data` file or an existing
/// file that is not an embedding cache: the cache is written over that path at the end.
fn check_embed_cache(d: &DataArgs) -> anyhow::Result<()> {
    if let Some(cache) = &d.embed_cache {
        check_cache_path(cache, &[&d.data]).context("--embed-cache")?;
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// What the folds of a cross-validation held out, for the summary: whole groups, or random rows when
/// the data has no `group_col` column (optimistic: held-out prompts may share topics with training ones).
fn folds_line(r: &CvReport, group_col: &str) -> String {
    if r.grouped {
        format!("{} folds by `{group_col}`: every group's rows held out together", r.config.folds)
    } else {
        format!(
            "{} folds of random rows: no `{group_col}` column, so held-out prompts may share topics with training ones (optimistic)",
            r.config.folds
        )
    }
}

/// Prints the pooled and per-fold tables of a cross-validation, then its warnings on stderr (metrics
/// that are undefined because the strong model does not beat the weak one read `n/a`, never NaN).
fn print_summary(r: &CvReport, group_col: &str) {
    use rightmodel_router::report::{apgr_cell, cpt_cell, mean_cell, mean_cpt_cell, mean_label};
    println!("{}\n", folds_line(r, group_col));
    let p = &r.pooled;
    println!("{:<28} {:>7} {:>10} {:>10}", "router (pooled held-out)", "APGR", "CPT(50%)", "CPT(80%)");
    for (name, m) in [("learned", &p.learned), ("prompt length", &p.length), ("random", &p.random)] {
        println!("{:<28} {:>7} {:>10} {:>10}", name, apgr_cell(m), cpt_cell(m, m.cpt50), cpt_cell(m, m.cpt80));
    }
    println!(
        "\n{:<6} {:>6} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "fold", "rows", "APGR", "CPT(50%)", "CPT(80%)", "length", "random"
    );
    for f in &r.folds {
        let m = &f.metrics;
        println!(
            "{:<6} {:>6} {:>8} {:>10} {:>10} {:>8} {:>8}",
            f.fold,
            f.rows,
            apgr_cell(&m.learned),
            cpt_cell(&m.learned, m.learned.cpt50),
            cpt_cell(&m.learned, m.learned.cpt80),
            apgr_cell(&m.length),
            apgr_cell(&m.random)
        );
    }
    let any_defined = r.undefined_folds().len() < r.folds.len();
    println!(
        "{:<6} {:>6} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "mean",
        "",
        mean_cell(r.fold_mean(|c| Some(c.learned.apgr))),
        mean_cpt_cell(r.fold_mean(|c| c.learned.cpt50), any_defined),
        mean_cpt_cell(r.fold_mean(|c| c.learned.cpt80), any_defined),
        mean_cell(r.fold_mean(|c| Some(c.length.apgr))),
        mean_cell(r.fold_mean(|c| Some(c.random.apgr))),
    );
    let label = mean_label(r);
    if !label.is_empty() {
        println!("(mean{label})");
    }
    for w in r.warnings() {
        eprintln!("warning: {w}");
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("rightmodel {}", args.join(" "))
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&a.strong_share) {
        anyhow::bail!("--strong-share must be between 0 and 1");
    }
    anyhow::ensure!(a.folds != 1, "--folds must be 0 (no cross-validation) or at least 2");
    let train_config = a.model.config()?;
    let out = a.out.clone().unwrap_or_else(default_router_dir);
    check_weights_out(&out, a.out.is_some(), a.force)?;
    let spec = spec_for(a.data.embedding);
    let folds = (a.folds >= 2).then_some((a.folds, " (or --folds 0 to train without cross-validation)"));
    let (rows, vecs, encoder) = load_and_embed(&a.data, &spec, folds)?;
    let cv = (a.folds >= 2).then_some(CvConfig { folds: a.folds, ..CvConfig::default() });
    let opts = TrainOptions {
        train: train_config,
        embed: spec,
        encoder,
        strong_share: a.strong_share,
        cv,
        provenance: Provenance {
            data: file_name(&a.data.data),
            excluded_groups: a.data.exclude_group.clone(),
            command: command_line(),
            ..Provenance::default()
        },
    };
    let pb = bar_if_any(a.folds as u64, "cv folds");
    let trained = train_weights(&rows, &vecs, &opts, |f| pb.set_position(f as u64))?;
    pb.finish_and_clear();
    // The warning `router calibrate` prints, from the same calibration code.
    if let Some(w) = &trained.calibration_warning {
        eprintln!("warning: {w}");
    }
    let (weights, report) = (trained.weights, trained.cv);
    // Saved before anything is printed: the weights must not depend on stdout being open. Without
    // --force, a router.json another run wrote while this one trained is kept (checked again here).
    weights.save(&out, existing_for(a.force))?;
    if let Some(r) = &report {
        print_summary(r, &group_col(&a.data));
        println!();
    }
    println!(
        "wrote {} (trained on {} rows; threshold {:.4} sends {:.0}% of the training prompts to the strong model)",
        out.join(WEIGHTS_FILE).display(),
        weights.provenance.rows,
        weights.calibration.threshold,
        100.0 * weights.calibration.strong_share
    );
    Ok(())
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    check_writable_dir("--out", &a.out, "the report")?;
    check_report_files(&a.out, a.force)?;
    anyhow::ensure!(a.folds >= 2, "--folds must be at least 2");
    anyhow::ensure!(a.bins >= 2, "--bins must be at least 2");
    let train = a.model.config()?;
    let spec = spec_for(a.data.embedding);
    let (rows, vecs, _) = load_and_embed(&a.data, &spec, Some((a.folds, "")))?;
    let cfg = CvConfig { folds: a.folds, seed: a.seed, bins: a.bins, train };
    let pb = bar_if_any(a.folds as u64, "cv folds");
    let report = evaluate(&rows, &vecs, &cfg, |f| pb.set_position(f as u64))?;
    pb.finish_and_clear();
    let excluded = if a.data.exclude_group.is_empty() { "none".to_string() } else { a.data.exclude_group.join(", ") };
    let notes = format!(
        "- data: `{}` ({} rows after exclusions)\n- excluded groups: {}\n- model: {:?} label, L2 {}, balance groups {}\n- command: `{}`\n",
        file_name(&a.data.data),
        rows.len(),
        excluded,
        cfg.train.label,
        cfg.train.l2,
        cfg.train.balance_groups,
        command_line()
    );
    // Written before anything is printed: the report must not depend on stdout being open.
    let written = write_report(
        &a.out,
        &report,
        "Router evaluation: quality vs strong-model calls",
        &notes,
        existing_for(a.force),
    )?;
    print_summary(&report, &group_col(&a.data));
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("\nwrote {}", names.join(", "));
    Ok(())
}

/// Every prompt of `input` (read to the end), one per line; all bad lines are reported together,
/// naming `source`, so that nothing is scored unless every line can be.
fn read_prompt_input(mut input: impl Read, source: &str) -> anyhow::Result<Vec<Conversation>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).with_context(|| format!("reading {source}"))?;
    parse_prompt_lines(&bytes).map_err(|bad| bad.into_error(source).into())
}

/// Scores `convs` in batches of `batch`; all scores, in order, or the first scoring error.
fn score_all(scorer: &dyn Scorer, convs: &[Conversation], batch: usize) -> anyhow::Result<Vec<f32>> {
    let mut scores = Vec::with_capacity(convs.len());
    for chunk in convs.chunks(batch.max(1)) {
        scores.extend(scorer.score_batch(chunk)?);
    }
    Ok(scores)
}

fn score(a: ScoreArgs) -> anyhow::Result<()> {
    let (weights, _) = load_weights(a.router.as_deref())?;
    // All input is read and checked, and every score computed, before the first line is written: a bad
    // line or a failure must not leave a partial scores file whose length depends on --batch.
    let convs = read_prompt_input(std::io::stdin().lock(), "stdin")?;
    let scorer = scorer_for(weights, &a.encoder)?;
    let scores = score_all(&scorer, &convs, a.batch)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in scores {
        writeln!(out, "{}", serde_json::json!({ "score": s }))?;
    }
    out.flush()?;
    Ok(())
}

fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&a.strong_share) {
        anyhow::bail!("--strong-share must be between 0 and 1");
    }
    let (mut weights, dir) = load_weights(a.router.as_deref())?;
    let out = a.out.or(dir).unwrap_or_else(default_router_dir);
    check_writable_dir("--out", &out, WEIGHTS_FILE)?;
    let prompts = read_prompts(&a.data, &a.prompt_col)?;
    if prompts.is_empty() {
        anyhow::bail!("{} has no prompts", a.data.display());
    }
    let scorer = scorer_for(weights.clone(), &a.encoder)?;
    let pb = bar(prompts.len() as u64, "scoring");
    let mut scores = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(64) {
        scores.extend(scorer.score_batch(chunk)?);
        pb.set_position(scores.len() as u64);
    }
    pb.finish_and_clear();
    let outcome = rightmodel_router::calibrate::calibrate(&scores, a.strong_share)?;
    if let Some(w) = &outcome.warning {
        eprintln!("warning: {w}");
    }
    let sent = outcome.strong;
    weights.calibration = outcome.calibration;
    // Calibration updates the weights it read: replacing them is its job.
    weights.save(&out, Existing::Replace)?;
    println!(
        "threshold {:.4}: {} of {} prompts ({:.1}%) go to the strong model; wrote {}",
        weights.calibration.threshold,
        sent,
        scores.len(),
        100.0 * sent as f64 / scores.len() as f64,
        out.join(WEIGHTS_FILE).display()
    );
    Ok(())
}

/// A prompt of about `tokens` encoder tokens: a realistic question padded with context sentences.
fn bench_prompt(encoder: &dyn Embedder, tokens: usize) -> String {
    const SENTENCES: &[&str] = &[
        "Our quarterly report shows revenue grew by 12 percent while operating costs stayed flat.",
        "The customer wrote in asking why the invoice from March was charged twice to the same card.",
        "Please explain the difference between a mutex and a semaphore, with an example in Rust.",
        "Summarise the main arguments of the attached memo about the new remote work policy.",
        "What are the side effects of ibuprofen when taken together with blood pressure medication?",
    ];
    let mut p = String::new();
    let mut i = 0;
    while encoder.count_tokens(&p) < tokens && i < 10_000 {
        if !p.is_empty() {
            p.push(' ');
        }
        p.push_str(SENTENCES[i % SENTENCES.len()]);
        i += 1;
    }
    while encoder.count_tokens(&p) > tokens && p.contains(' ') {
        if let Some(cut) = p.rfind(' ') {
            p.truncate(cut);
        }
    }
    p
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let (weights, _) = load_weights(a.router.as_deref())?;
    // The prompt is sized with the contextual MiniLM's tokenizer count (special tokens included).
    let dir = encoder_dir(&a.encoder)?;
    let counter = StaticEmbedder::load(&dir)?;
    let prompt = bench_prompt(&counter, a.tokens as usize);
    let tokens = counter.count_tokens(&prompt);
    drop(counter);
    let scorer = scorer_for(weights, &a.encoder)?;
    let config = RouterConfig::from_calibration(scorer.calibration());
    let candidates = vec![
        Candidate::new("local-small", ModelKind::LocalChat, Price::default(), 0.0, 80.0, 25.0),
        Candidate::new("upstream-large", ModelKind::Upstream, Price::new(2.5, 10.0), 1.0, 400.0, 15.0),
    ];
    let scorer: Arc<dyn Scorer> = Arc::new(scorer);
    let router = Router::new(candidates, scorer, config)?;
    let req = RouteRequest::from_prompt(&prompt);
    let budget = BudgetState { daily_usd: Some(10.0), spent_today_usd: 1.0, ..Default::default() };
    let pb = bar(a.runs as u64, "deciding");
    let stats = time_decisions(&router, &req, &budget, a.warmup, a.runs, || pb.inc(1))?;
    pb.finish_and_clear();
    let decision = router.decide(&req, &budget)?;
    if a.json {
        println!("{}", serde_json::json!({ "prompt_tokens": tokens, "latency": stats, "decision": decision }));
        return Ok(());
    }
    println!(
        "decision latency for a {tokens}-token prompt, embedding included ({} runs, {} cores):",
        stats.runs,
        rightmodel_infer::threads::available_cores()
    );
    println!(
        "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   mean {:.2} ms   max {:.2} ms",
        stats.p50_ms, stats.p90_ms, stats.p99_ms, stats.mean_ms, stats.max_ms
    );
    println!("  example decision: {}", decision.to_json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rightmodel_router::RouterError;

    /// A scratch folder under the system temp dir, removed on drop (the CLI crate has no `tempfile`).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("rightmodel-router-cli-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: RouterCmd,
    }

    fn data_args(data: PathBuf, cache: Option<PathBuf>) -> DataArgs {
        let cli = Cli::try_parse_from(["x", "train", "--data", "d.csv"]).unwrap();
        let RouterCmd::Train(mut a) = cli.cmd else { panic!("not train") };
        a.data.data = data;
        a.data.embed_cache = cache;
        a.data
    }

    #[test]
    fn out_folders_are_checked_before_the_work() {
        let dir = Scratch::new("out");
        let file = dir.file("ok.csv", "prompt\n");
        let e = check_writable_dir("--out", &file, "router.json").unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains("ok.csv: is a file; give a folder for router.json"), "{e}");
        let e = check_writable_dir("--out", &file.join("sub"), "the report").unwrap_err().to_string();
        assert!(e.contains("is a file, not a folder"), "{e}");
        // A folder still to be created is fine, and the check creates nothing.
        let new = dir.0.join("a").join("b");
        check_writable_dir("--out", &new, "the report").unwrap();
        assert!(!dir.0.join("a").exists());
        check_writable_dir("--out", &dir.0, "the report").unwrap();
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1, "the probe file is removed");
        if Path::new("/proc/self").is_dir() {
            let e = format!("{:#}", check_writable_dir("--out", Path::new("/proc/nope"), "the report").unwrap_err());
            assert!(e.contains("cannot create files in /proc"), "{e}");
        }
    }

    #[test]
    fn an_existing_router_is_replaced_only_with_force() {
        let dir = Scratch::new("train-out");
        check_weights_out(&dir.0, true, false).unwrap();
        dir.file(WEIGHTS_FILE, "my notes, not a router");
        let e = check_weights_out(&dir.0, true, false).unwrap_err().to_string();
        assert!(e.contains("already holds router.json") && e.contains("not router weights"), "{e}");
        assert!(e.contains("--force") && e.starts_with("--out "), "{e}");
        let e = check_weights_out(&dir.0, false, false).unwrap_err().to_string();
        assert!(e.contains("default router folder") && e.contains("--force"), "{e}");
        check_weights_out(&dir.0, false, true).unwrap();
        assert_eq!(std::fs::read_to_string(dir.0.join(WEIGHTS_FILE)).unwrap(), "my notes, not a router");
        let cli = Cli::try_parse_from(["x", "train", "--data", "d.csv", "--force"]).unwrap();
        assert!(matches!(cli.cmd, RouterCmd::Train(TrainArgs { force: true, .. })));
    }

    #[test]
    fn existing_reports_need_force() {
        let dir = Scratch::new("force");
        check_report_files(&dir.0, false).unwrap();
        dir.file("report.md", "mine");
        let e = check_report_files(&dir.0, false).unwrap_err().to_string();
        assert!(e.contains("already holds report.md") && e.contains("--force"), "{e}");
        check_report_files(&dir.0, true).unwrap();
        let cli = Cli::try_parse_from(["x", "eval", "--data", "d.csv", "--out", "o", "--force"]).unwrap();
        assert!(matches!(cli.cmd, RouterCmd::Eval(EvalArgs { force: true, .. })));
        let cli = Cli::try_parse_from(["x", "eval", "--data", "d.csv"]).unwrap();
        assert!(matches!(cli.cmd, RouterCmd::Eval(EvalArgs { force: false, .. })));
    }

    #[test]
    fn embed_cache_never_names_the_data_or_someone_elses_file() {
        let dir = Scratch::new("cache");
        let data = dir.file("ok.csv", "prompt,weak_correct,strong_correct\n");
        let e = format!("{:#}", check_embed_cache(&data_args(data.clone(), Some(data.clone()))).unwrap_err());
        assert!(e.starts_with("--embed-cache") && e.contains("is the data file itself"), "{e}");
        let notes = dir.file("precious.txt", "notes");
        let e = format!("{:#}", check_embed_cache(&data_args(data.clone(), Some(notes.clone()))).unwrap_err());
        assert!(e.contains("precious.txt") && e.contains("not an embedding cache"), "{e}");
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "notes");
        check_embed_cache(&data_args(data.clone(), Some(dir.0.join("new.bin")))).unwrap();
        check_embed_cache(&data_args(data, None)).unwrap();
    }

    #[test]
    fn score_input_is_checked_whole_before_scoring() {
        let mut text: String = (1..=69).map(|i| format!("{{\"prompt\":\"question {i}\"}}\n")).collect();
        text.push_str("{broken\n");
        let e = read_prompt_input(text.as_bytes(), "stdin").unwrap_err().to_string();
        assert!(e.starts_with("stdin: line 70: not JSON"), "{e}");
        let e = read_prompt_input(&b"{\"prompt\":\"a\"}\n\n{\"prompt\":\"\"}\n{\"messages\":[]}\n"[..], "stdin")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3 bad lines") && e.contains("line 2: blank line") && e.contains("line 4: no messages"),
            "{e}"
        );
        let convs = read_prompt_input(&b"{\"prompt\":\"a\"}\n{\"prompt\":\"bb\"}\n{\"prompt\":\"ccc\"}\n"[..], "stdin")
            .unwrap();
        assert_eq!(convs.len(), 3);
    }

    /// Scores a conversation by the length of its prompt.
    struct LengthScorer;

    impl Scorer for LengthScorer {
        fn score(&self, conv: &Conversation) -> Result<f32, RouterError> {
            Ok(conv.last_user().len() as f32)
        }
        fn name(&self) -> &str {
            "length"
        }
    }

    #[test]
    fn scores_keep_the_input_order_across_batches() {
        let convs: Vec<Conversation> = (1..=5).map(|n| Conversation::from_prompt(&"x".repeat(n))).collect();
        assert_eq!(score_all(&LengthScorer, &convs, 2).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
