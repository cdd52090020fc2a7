//! `rightmodel train classify`, `rightmodel classify` and `rightmodel eval classify`: thin wrappers over
//! `rightmodel_tasks` that parse flags, load the encoder, draw progress bars and print results.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rightmodel_infer::MiniLm;
use rightmodel_models::{home::rightmodel_home, Store};
use rightmodel_tasks::eval::{self, EvalOptions};
use rightmodel_tasks::train::{self, TrainSpec};
use rightmodel_tasks::{data, plot, registry, Classifier, Mode, Progress};

/// Training commands.
#[derive(Subcommand)]
pub enum TrainCmd {
    /// Train a text classifier on a labelled CSV, TSV or JSONL file.
    #[command(
        after_help = concat!(
            "Examples:\n",
            "  rightmodel train classify --data ../shared/data/classify/trec/train.tsv \\\n",
            "      --text-col question --label-col coarse --name trec\n",
            "  rightmodel train classify --data reviews.jsonl --text-col text \\\n",
            "      --label-col label --name reviews --mode finetune --max-minutes 20",
        )
    )]
    Classify(TrainClassifyArgs),
}

/// Training mode (CLI spelling of [`Mode`]).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Frozen sentence embeddings + n-gram TF-IDF + logistic regression (seconds to minutes).
    Fast,
    /// Fine-tune the whole encoder with a classification head (minutes to hours on a laptop CPU), mixed
    /// with a `fast` head at a weight chosen on validation.
    Finetune,
}

/// `rightmodel train classify` arguments.
#[derive(Args)]
pub struct TrainClassifyArgs {
    /// Labelled data: .csv, .tsv or .jsonl.
    #[arg(long)]
    data: PathBuf,
    /// Column (or JSON field) holding the text.
    #[arg(long)]
    text_col: String,
    /// Column (or JSON field) holding the label.
    #[arg(long)]
    label_col: String,
    /// Name to save under ($RIGHTMODEL_HOME/classifiers/NAME): 1-64 ASCII letters, digits, `-`, `_` or `.`,
    /// not starting with `.` or `-`. Anything containing `/` is a directory path instead (e.g. `./my-model`).
    #[arg(long)]
    name: String,
    /// Training mode.
    #[arg(long, value_enum, default_value = "fast")]
    mode: ModeArg,
    /// Validation file (same columns; not the --data file, whose rows it would score); the default holds
    /// out --valid-split of --data.
    #[arg(long, conflicts_with = "valid_split")]
    valid: Option<PathBuf>,
    /// Share of --data held out (stratified) for validation when --valid is not given. In finetune mode
    /// on phrase-level data (10% or more of the rows inside other rows, as SST-2's phrases), the share of
    /// whole texts held out, and the rows inside them are not trained on.
    #[arg(long, default_value_t = 0.1)]
    valid_split: f64,
    /// Train on a stratified sample of at most N rows (embedding dominates training time); N must be at
    /// least the number of classes, since every class keeps a row.
    #[arg(long)]
    max_train: Option<usize>,
    /// Fast mode: leave out the word n-gram TF-IDF features (embeddings only).
    #[arg(long)]
    no_ngrams: bool,
    /// Encoder (pulled name or safetensors directory).
    #[arg(long, default_value = rightmodel_models::DEFAULT_EMBED_MODEL)]
    encoder: String,
    /// Seed for the split, sampling and initialisation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replace an existing classifier of the same name.
    #[arg(long)]
    force: bool,
    /// Fine-tuning only: maximum epochs, at least 1 (default 3; early stopping may end sooner).
    #[arg(long, value_parser = super::at_least_one)]
    epochs: Option<usize>,
    /// Fine-tuning only: batch size, at least 1 (default 32).
    #[arg(long, value_parser = super::at_least_one)]
    batch_size: Option<usize>,
    /// Fine-tuning only: peak learning rate (AdamW, linear warm-up then decay; default 0.0001).
    #[arg(long)]
    lr: Option<f64>,
    /// Fine-tuning only: longest input in tokens, at least 8 and at most what the encoder reads
    /// (default 128).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(8..=100_000))]
    max_len: Option<usize>,
    /// Fine-tuning only: dropout rate inside the encoder while training, 0 to 0.9 (default: the
    /// encoder's own, 0.1 for MiniLM; 0 turns it off, which may suit many classes with few examples).
    #[arg(long)]
    dropout: Option<f32>,
    /// Fine-tuning only: also keep a moving average of the weights with this decay per step, 0 to
    /// below 1 (e.g. 0.998: a horizon of about 500 steps), from the end of warm-up; each validation
    /// scores it beside the step's own weights and the better one competes for "best" (default: none).
    #[arg(long)]
    ema: Option<f64>,
    /// Fine-tuning only: train the word embeddings too (a third of the encoder's parameters; frozen by
    /// default, which suits small data sets and is faster).
    #[arg(long)]
    train_embeddings: bool,
    /// Fine-tuning only: layer-wise learning-rate decay, above 0 and at most 1 (e.g. 0.8: the top
    /// encoder layer learns at 0.8 times the head's rate, each layer below at 0.8 times the one above;
    /// default: one rate for every layer).
    #[arg(long)]
    layer_decay: Option<f64>,
    /// Fine-tuning only: validations without improvement before stopping, at least 1 (a validation
    /// comes every 200 steps and at each epoch's end; default: 3, or one epoch's worth when an epoch
    /// holds more).
    #[arg(long, value_parser = super::at_least_one)]
    patience: Option<usize>,
    /// Fine-tuning only: stop after this many minutes, keeping the best weights so far.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Training examples kept for explanations and domain fit (at least 10: domain fit averages the
    /// 10 nearest).
    #[arg(long, default_value_t = 20_000)]
    max_neighbours: usize,
}

/// `rightmodel classify` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  echo 'What is the capital of France ?' | rightmodel classify --model trec\n",
        "  rightmodel classify --model sst2 --input reviews.txt --explain\n",
        "  rightmodel classify --model ./my-classifier --input texts.jsonl \\\n",
        "      > labels.jsonl\n",
        "\n",
        "Input: the format is decided once, from the first non-blank line. If that line is a JSON object, the input is JSON lines: every line must be an object with a string `text` field (an `id` field is echoed), and a line that is not is an error. Otherwise every line is one text, taken as it is, even one that starts with `{`. Blank lines are skipped.\n",
        "Output: one JSON line per text, in order: {\"label\", \"confidence\", \"probs\", \"in_domain\"} (+ \"explanation\" with --explain).",
    )
)]
pub struct ClassifyArgs {
    /// Classifier name (under $RIGHTMODEL_HOME/classifiers) or directory.
    #[arg(long)]
    model: String,
    /// Input file, or `-` for standard input.
    #[arg(long, default_value = "-")]
    input: String,
    /// Add the words that pushed the decision most (signed weights) and the nearest training examples.
    #[arg(long)]
    explain: bool,
    /// Texts per encoder call (at least 1).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    batch: usize,
    /// Encoder (pulled name or safetensors directory); must be the one the classifier was trained with.
    #[arg(long, default_value = rightmodel_models::DEFAULT_EMBED_MODEL)]
    encoder: String,
}

/// `rightmodel eval classify` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel eval classify --model trec \\\n",
        "      --data ../shared/data/classify/trec/test.tsv\n",
        "  rightmodel eval classify --model sst2 \\\n",
        "      --data ../shared/data/classify/sst2/dev.tsv \\\n",
        "      --ood ../shared/data/classify/trec/test.tsv --ood-text-col question\n",
        "\n",
        "Writes report.md, report.json and confusion.png to --out and prints the Markdown. Existing report files there are kept (the command stops before evaluating) unless --force is given.",
    )
)]
pub struct EvalClassifyArgs {
    /// Classifier name or directory.
    #[arg(long)]
    model: String,
    /// Labelled evaluation data (.csv, .tsv, .jsonl).
    #[arg(long)]
    data: PathBuf,
    /// Text column (default: the one used in training).
    #[arg(long)]
    text_col: Option<String>,
    /// Label column (default: the one used in training).
    #[arg(long)]
    label_col: Option<String>,
    /// Out-of-domain texts (.csv, .tsv, .jsonl) to measure how well `in_domain` separates them.
    #[arg(long)]
    ood: Option<PathBuf>,
    /// Text column of --ood (default: --text-col).
    #[arg(long)]
    ood_text_col: Option<String>,
    /// Report directory (default: ./rightmodel-eval-NAME); created if missing.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace report.md, report.json and confusion.png already in the --out directory.
    #[arg(long)]
    force: bool,
    /// Texts per call in the throughput measurement (at least 1).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    batch: usize,
    /// Single-text calls timed for latency (at least 1).
    #[arg(long, default_value_t = 100, value_parser = super::at_least_one)]
    latency_samples: usize,
    /// Encoder (pulled name or safetensors directory).
    #[arg(long, default_value = rightmodel_models::DEFAULT_EMBED_MODEL)]
    encoder: String,
}

/// Progress bars on stderr. When stderr is not a terminal the bars are hidden and status messages are
/// printed as plain lines instead (at most one every ten seconds), so logs still show training progress.
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    last_line: Mutex<Option<std::time::Instant>>,
}

impl Bars {
    fn new() -> Self {
        Bars { bar: Mutex::new(None), last_line: Mutex::new(None) }
    }
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(g) = self.bar.lock() {
            if let Some(b) = g.as_ref() {
                f(b);
            }
        }
    }
}

impl Progress for Bars {
    fn start(&self, stage: &str, total: u64) {
        let bar = if total > 0 {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b
        } else {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        };
        bar.set_prefix(stage.to_string());
        if let Ok(mut g) = self.bar.lock() {
            if let Some(old) = g.take() {
                old.finish_and_clear();
            }
            *g = Some(bar);
        }
    }
    fn inc(&self, n: u64) {
        self.with(|b| b.inc(n));
    }
    fn message(&self, msg: &str) {
        let mut hidden = false;
        self.with(|b| {
            b.set_message(msg.to_string());
            hidden = b.is_hidden();
        });
        if hidden {
            if let Ok(mut last) = self.last_line.lock() {
                if last.is_none_or(|t| t.elapsed().as_secs() >= 10) {
                    eprintln!("{msg}");
                    *last = Some(std::time::Instant::now());
                }
            }
        }
    }
    fn note(&self, msg: &str) {
        let mut shown = false;
        self.with(|b| {
            if !b.is_hidden() {
                b.println(msg);
                shown = true;
            }
        });
        if !shown {
            eprintln!("{msg}");
        }
    }
    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                let stage = b.prefix();
                let secs = b.elapsed().as_secs_f64();
                b.finish_and_clear();
                eprintln!("{stage}: done in {secs:.1}s");
            }
        }
    }
}

/// Loads the encoder named by `spec` (after sizing candle's thread pool).
fn load_encoder(spec: &str) -> anyhow::Result<(MiniLm, PathBuf)> {
    rightmodel_infer::threads::configure_candle_threads(rightmodel_infer::threads::available_cores());
    let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
    let dir = super::resolve_encoder(&store, spec)?;
    let enc = MiniLm::load(&dir).with_context(|| format!("cannot load encoder from {}", dir.display()))?;
    Ok((enc, dir))
}

/// Runs a training command.
pub fn train(c: TrainCmd) -> anyhow::Result<()> {
    match c {
        TrainCmd::Classify(a) => train_classify(a),
    }
}

/// The fine-tuning-only flags given on the command line, by their names.
fn finetune_flags_given(a: &TrainClassifyArgs) -> Vec<&'static str> {
    [
        ("--epochs", a.epochs.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--lr", a.lr.is_some()),
        ("--max-len", a.max_len.is_some()),
        ("--dropout", a.dropout.is_some()),
        ("--ema", a.ema.is_some()),
        ("--train-embeddings", a.train_embeddings),
        ("--layer-decay", a.layer_decay.is_some()),
        ("--patience", a.patience.is_some()),
        ("--max-minutes", a.max_minutes.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
}

/// Checks the flags before any work starts (a mistake found after the fast head has trained wastes
/// minutes): fine-tuning flags only with `--mode finetune`, and numbers the manifest can record.
fn check_train_flags(a: &TrainClassifyArgs) -> anyhow::Result<()> {
    let given = finetune_flags_given(a);
    anyhow::ensure!(
        a.mode == ModeArg::Finetune || given.is_empty(),
        "{} only appl{} to --mode finetune; add --mode finetune or leave {} out",
        given.join(", "),
        if given.len() == 1 { "ies" } else { "y" },
        if given.len() == 1 { "it" } else { "them" }
    );
    anyhow::ensure!(a.max_train != Some(0), "--max-train must be at least 1");
    // Every mode records these settings in the manifest, where a non-finite number cannot be read back.
    if let Some(lr) = a.lr {
        anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number");
    }
    if let Some(p) = a.dropout {
        anyhow::ensure!(p.is_finite() && (0.0..=0.9).contains(&p), "--dropout must be a number from 0 to 0.9");
    }
    if let Some(d) = a.ema {
        anyhow::ensure!(d.is_finite() && (0.0..1.0).contains(&d), "--ema must be a number from 0 to below 1");
    }
    if let Some(d) = a.layer_decay {
        anyhow::ensure!(d.is_finite() && d > 0.0 && d <= 1.0, "--layer-decay must be a number above 0 and at most 1");
    }
    anyhow::ensure!(a.valid_split.is_finite(), "--valid-split must be a number");
    if let Some(m) = a.max_minutes {
        anyhow::ensure!(m.is_finite() && m > 0.0, "--max-minutes must be a positive number");
    }
    Ok(())
}

/// Fails when `--max-len` is longer than the encoder in `encoder_dir` has positions for: fine-tuning
/// would stop on it only after the fast head was trained.
fn check_max_len(max_len: usize, encoder_dir: &Path) -> anyhow::Result<()> {
    let info = rightmodel_models::EncoderInfo::read(encoder_dir)
        .with_context(|| format!("reading the encoder's config in {}", encoder_dir.display()))?;
    if let Some(positions) = info.max_position_embeddings {
        anyhow::ensure!(
            max_len as u64 <= positions,
            "--max-len {max_len} is longer than the encoder has positions for ({positions} tokens)"
        );
    }
    Ok(())
}

fn train_classify(a: TrainClassifyArgs) -> anyhow::Result<()> {
    check_train_flags(&a)?;
    // A missing file, a folder or an unknown format is said before the encoder loads.
    for path in std::iter::once(&a.data).chain(&a.valid) {
        data::DataFormat::from_path(path)?;
    }
    let home = rightmodel_home();
    let (dest, name) = registry::target_dir(&home, &a.name)?;
    registry::check_writable(&dest, a.force)?;
    let mode = match a.mode {
        ModeArg::Fast => Mode::Fast,
        ModeArg::Finetune => Mode::Finetune,
    };
    let mut settings = train::default_settings(mode);
    settings.seed = a.seed;
    settings.valid_split = a.valid_split;
    settings.max_train = a.max_train;
    settings.ngrams = !a.no_ngrams;
    settings.epochs = a.epochs.unwrap_or(settings.epochs);
    settings.batch_size = a.batch_size.unwrap_or(settings.batch_size);
    settings.learning_rate = a.lr.unwrap_or(settings.learning_rate);
    settings.max_len = a.max_len.unwrap_or(settings.max_len);
    settings.dropout = a.dropout.or(settings.dropout);
    settings.ema = a.ema.or(settings.ema);
    settings.train_embeddings = a.train_embeddings || settings.train_embeddings;
    settings.layer_decay = a.layer_decay.or(settings.layer_decay);
    settings.patience = a.patience.unwrap_or(settings.patience);
    settings.max_neighbours = a.max_neighbours;
    // Stopped with Ctrl-C, the run removes its unfinished classifier folder (or puts back the classifier
    // it was replacing) instead of leaving it for the next run to find.
    let build_dir = registry::build_dir(&dest);
    super::on_interrupt("train-signals", move || say_recovered(&registry::recover_own(&build_dir)));
    let (encoder, encoder_dir) = load_encoder(&a.encoder)?;
    if mode == Mode::Finetune {
        check_max_len(settings.max_len, &encoder_dir)?;
    }
    let spec = TrainSpec {
        name: name.clone(),
        dest,
        overwrite: a.force,
        train_path: a.data.clone(),
        valid_path: a.valid.clone(),
        text_col: a.text_col.clone(),
        label_col: a.label_col.clone(),
        settings,
        base_encoder: Some(encoder_dir),
        time_budget_s: a.max_minutes.map(|m| (m * 60.0).round() as u64),
        threads: rightmodel_infer::threads::available_cores(),
    };
    let bars = Bars::new();
    let out = train::train_classifier(&spec, &encoder, &bars).context("training failed")?;
    let m = &out.manifest;
    println!("saved classifier `{}` ({} mode, {} labels) to {}", name, m.mode, m.labels.len(), out.dir.display());
    println!(
        "training rows: {} (of {} available); validation rows: {}",
        m.train_data.rows, out.rows_available, m.valid_data.rows
    );
    if let Some(c) = m.settings.chosen_c {
        let left_out = match m.settings.purged_rows {
            Some(n) if n > 0 => format!(" (without the {n} training rows that overlap validation texts)"),
            _ => String::new(),
        };
        println!("head: C = {c} chosen on validation{left_out}; n-grams: {}", m.settings.ngrams);
    }
    if let Some(n) = m.settings.refit_rows {
        println!("final head: refit on all {n} rows; the validation scores are those of the head chosen on the split");
    }
    if let Some(f) = &out.finetune {
        println!(
            "fine-tuning: {} steps, {} examples, {:.1} s per 1k examples; {}",
            f.steps, f.examples_seen, f.seconds_per_1k, f.stopped
        );
    }
    println!("validation accuracy {:.4}, macro-F1 {:.4}", m.validation.accuracy, m.validation.macro_f1);
    println!("training time {:.1}s", m.train_seconds);
    Ok(())
}

/// Says on stderr what an interrupted training run cleaned up before exiting.
fn say_recovered(done: &registry::Recovered) {
    for dir in &done.restored {
        eprintln!("interrupted: the classifier being replaced was put back at {}", dir.display());
    }
    if done.removed > 0 {
        eprintln!("interrupted: the unfinished classifier was removed");
    } else if done.restored.is_empty() {
        eprintln!("interrupted");
    }
}

/// One output line of `classify`: the input's `id` (when it had one) and the prediction's fields.
#[derive(serde::Serialize)]
struct OutputLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    #[serde(flatten)]
    prediction: &'a rightmodel_tasks::Prediction,
}

/// Runs `classify`.
pub fn classify(a: ClassifyArgs) -> anyhow::Result<()> {
    let dir = registry::resolve(&a.model)?;
    let clf = Classifier::load(&dir)?;
    let mut bytes = Vec::new();
    let source = if a.input == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
        "<stdin>".to_string()
    } else {
        bytes = super::read_input_file("--input", Path::new(&a.input))?;
        a.input.clone()
    };
    let inputs = data::read_inputs(&source, &bytes)?;
    anyhow::ensure!(!inputs.is_empty(), "{source}: no texts to classify");
    let (encoder, _) = load_encoder(&a.encoder)?;
    clf.check_encoder(&encoder)?;
    let bars = Bars::new();
    bars.start("classifying", inputs.len() as u64);
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    for chunk in inputs.chunks(a.batch) {
        let texts: Vec<&str> = chunk.iter().map(|t| t.text.as_str()).collect();
        let preds = clf.predict(&encoder, &texts, a.explain)?;
        for (inp, p) in chunk.iter().zip(&preds) {
            let line = serde_json::to_string(&OutputLine { id: inp.id.as_ref(), prediction: p })?;
            writeln!(w, "{line}").context("cannot write output")?;
        }
        w.flush().context("cannot write output")?;
        bars.inc(chunk.len() as u64);
    }
    if let Ok(mut g) = bars.bar.lock() {
        if let Some(b) = g.take() {
            b.finish_and_clear();
        }
    }
    Ok(())
}

/// Writes report file `path` atomically ([`rightmodel_core::fsutil::write_atomic`]), naming it in the
/// error.
fn write_report_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    rightmodel_core::fsutil::write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The files `eval classify` writes into its report directory.
const REPORT_FILES: [&str; 3] = ["report.md", "report.json", "confusion.png"];

/// Checks the report directory before the evaluation runs (minutes), so that a mistake does not cost the
/// result ([`super::check_report_dir`]): it can be written or created, none of [`REPORT_FILES`] in it is
/// one of `inputs`, and none exists unless `force`. Creates nothing. `given` tells whether `--out` named
/// it or it is the default (messages say so).
fn check_report_dir(out: &Path, inputs: &[(&str, &Path)], force: bool, given: bool) -> anyhow::Result<()> {
    if given {
        super::check_report_dir("--out", out, &REPORT_FILES, inputs, force)
    } else {
        super::check_default_report_dir("--out", out, &REPORT_FILES, inputs, force)
    }
}

/// The error for an unreadable `--ood` file. Only a text column that is not there gets the hint to name
/// it with `--ood-text-col`, and only when that flag was not given: a missing or empty file has
/// nothing to do with the column.
fn ood_error(e: rightmodel_tasks::TaskError, path: &Path, col: &str, col_flag_given: bool) -> anyhow::Error {
    let column_missing = matches!(e, rightmodel_tasks::TaskError::MissingColumn { .. });
    let context = if column_missing && !col_flag_given {
        format!("--ood {}: name its text column with --ood-text-col (looked for `{col}`)", path.display())
    } else {
        format!("--ood {}", path.display())
    };
    anyhow::Error::new(e).context(context)
}

/// Runs `eval classify`.
pub fn eval_classify(a: EvalClassifyArgs) -> anyhow::Result<()> {
    let mut inputs = vec![("--data", a.data.as_path())];
    if let Some(p) = &a.ood {
        inputs.push(("--ood", p.as_path()));
    }
    if let Some(p) = &a.out {
        check_report_dir(p, &inputs, a.force, true)?;
    }
    let dir = registry::resolve(&a.model)?;
    let clf = Classifier::load(&dir)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("rightmodel-eval-{}", clf.name())));
    if a.out.is_none() {
        check_report_dir(&out, &inputs, a.force, false)?;
    }
    let m = clf.manifest();
    let text_col = a.text_col.clone().unwrap_or_else(|| m.train_data.text_col.clone());
    let label_col = a.label_col.clone().unwrap_or_else(|| m.train_data.label_col.clone());
    let ds = data::load_labelled(&a.data, &text_col, &label_col)?;
    // Labels the classifier never saw are always scored wrong: all of them means the wrong column.
    let unknown: std::collections::BTreeSet<&str> =
        ds.labels.iter().map(String::as_str).filter(|l| !clf.labels().iter().any(|k| k == l)).collect();
    if unknown.len() == ds.label_set().len() {
        anyhow::bail!(
            "none of the labels in column `{label_col}` of {} is a label of `{}` ({}); is --label-col right?",
            a.data.display(),
            clf.name(),
            clf.labels().join(", ")
        );
    }
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
        eprintln!(
            "warning: {} label(s) in {} are not labels of `{}` and count as errors: {}{}",
            unknown.len(),
            a.data.display(),
            clf.name(),
            shown.join(", "),
            if unknown.len() > 5 { ", ..." } else { "" }
        );
    }
    let ood = match &a.ood {
        Some(p) => {
            let col = a.ood_text_col.clone().unwrap_or_else(|| text_col.clone());
            let texts = read_texts(p, &col).map_err(|e| ood_error(e, p, &col, a.ood_text_col.is_some()))?;
            Some((p.display().to_string(), texts))
        }
        None => None,
    };
    let (encoder, _) = load_encoder(&a.encoder)?;
    let bars = Bars::new();
    let opts = EvalOptions { batch: a.batch, latency_samples: a.latency_samples };
    let report =
        eval::evaluate(&clf, &encoder, &ds, ood.as_ref().map(|(n, t)| (n.as_str(), t.as_slice())), opts, &bars)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let md = report.to_markdown();
    write_report_file(&out.join("report.md"), md.as_bytes())?;
    write_report_file(&out.join("report.json"), &serde_json::to_vec_pretty(&report)?)?;
    let png = out.join("confusion.png");
    let title = format!("{} on {}", clf.name(), a.data.file_name().map(|f| f.to_string_lossy()).unwrap_or_default());
    if let Err(e) = plot::confusion_png(&report.metrics, &title, &png) {
        eprintln!("warning: {e}");
    }
    println!("{md}");
    eprintln!("report written to {}", out.display());
    Ok(())
}

/// Texts of column `col` of a data file, for out-of-domain scoring (labels not needed).
fn read_texts(path: &Path, col: &str) -> Result<Vec<String>, rightmodel_tasks::TaskError> {
    // Any column works as a stand-in label: only the texts are used.
    let ds = data::load_labelled(path, col, col)?;
    Ok(ds.texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `rightmodel train ...` as parsed from `args`.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TrainCmd,
    }

    fn classify_args(extra: &[&str]) -> TrainClassifyArgs {
        let base = ["x", "classify", "--data", "d.csv", "--text-col", "t", "--label-col", "l", "--name", "n"];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        let TrainCmd::Classify(a) = cli.cmd;
        a
    }

    #[test]
    fn dropout_is_a_finetune_flag_within_range() {
        check_train_flags(&classify_args(&["--mode", "finetune", "--dropout", "0"])).unwrap();
        check_train_flags(&classify_args(&["--mode", "finetune", "--dropout", "0.3"])).unwrap();
        let e = check_train_flags(&classify_args(&["--dropout", "0.1"])).unwrap_err().to_string();
        assert!(e.contains("--dropout only applies to --mode finetune"), "{e}");
        for bad in ["0.95", "-0.1", "NaN"] {
            let flag = format!("--dropout={bad}");
            let e = check_train_flags(&classify_args(&["--mode", "finetune", &flag])).unwrap_err();
            assert!(e.to_string().contains("--dropout must be a number from 0 to 0.9"), "{bad}: {e}");
        }
    }

    #[test]
    fn train_embeddings_is_a_finetune_flag() {
        check_train_flags(&classify_args(&["--mode", "finetune", "--train-embeddings"])).unwrap();
        let e = check_train_flags(&classify_args(&["--train-embeddings"])).unwrap_err().to_string();
        assert!(e.contains("--train-embeddings only applies to --mode finetune"), "{e}");
    }

    #[test]
    fn layer_decay_is_a_finetune_flag_in_range() {
        check_train_flags(&classify_args(&["--mode", "finetune", "--layer-decay", "0.8"])).unwrap();
        let e = check_train_flags(&classify_args(&["--layer-decay", "0.8"])).unwrap_err().to_string();
        assert!(e.contains("--layer-decay only applies to --mode finetune"), "{e}");
        for bad in ["0", "1.5", "-0.5", "NaN"] {
            let flag = format!("--layer-decay={bad}");
            let e = check_train_flags(&classify_args(&["--mode", "finetune", &flag])).unwrap_err();
            assert!(e.to_string().contains("--layer-decay must be a number above 0 and at most 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn ema_is_a_finetune_flag_below_one() {
        check_train_flags(&classify_args(&["--mode", "finetune", "--ema", "0.998"])).unwrap();
        let e = check_train_flags(&classify_args(&["--ema", "0.998"])).unwrap_err().to_string();
        assert!(e.contains("--ema only applies to --mode finetune"), "{e}");
        for bad in ["1", "-0.5", "NaN"] {
            let flag = format!("--ema={bad}");
            let e = check_train_flags(&classify_args(&["--mode", "finetune", &flag])).unwrap_err();
            assert!(e.to_string().contains("--ema must be a number from 0 to below 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn report_files_are_not_replaced_without_force() {
        let tmp = std::env::temp_dir().join(format!("rightmodel-eval-out-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        check_report_dir(&tmp, &[], false, true).unwrap();
        std::fs::write(tmp.join("report.md"), "MY OWN REPORT").unwrap();
        let err = format!("{:#}", check_report_dir(&tmp, &[], false, true).unwrap_err());
        assert!(err.contains("report.md") && err.contains("--force") && err.starts_with("--out "), "{err}");
        // The default folder is named as the default, with the flag that chooses another.
        let err = format!("{:#}", check_report_dir(&tmp, &[], false, false).unwrap_err());
        assert!(err.contains("the default report folder; --out chooses another"), "{err}");
        check_report_dir(&tmp, &[], true, true).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.join("report.md")).unwrap(), "MY OWN REPORT");
        // The --data file is never replaced, even with --force.
        let data = tmp.join("report.json");
        std::fs::write(&data, "text,label\n").unwrap();
        let err = format!("{:#}", check_report_dir(&tmp, &[("--data", &data)], true, true).unwrap_err());
        assert!(err.contains("--data input"), "{err}");
        // A missing directory under a writable one is fine, and is not created by the check.
        check_report_dir(&tmp.join("new").join("deeper"), &[], false, true).unwrap();
        assert!(!tmp.join("new").exists());
        // Under a file it cannot be created.
        let err = format!("{:#}", check_report_dir(&tmp.join("report.md").join("x"), &[], false, false).unwrap_err());
        assert!(err.contains("is a file, not a folder"), "{err}");
        // A file cannot be the folder.
        let err = format!("{:#}", check_report_dir(&tmp.join("report.md"), &[], false, true).unwrap_err());
        assert!(err.contains("is a file; give a folder"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn an_unwritable_out_is_found_before_evaluating() {
        // /proc refuses new files even for root.
        if Path::new("/proc/self").exists() {
            let err = format!("{:#}", check_report_dir(Path::new("/proc/nope"), &[], false, true).unwrap_err());
            assert!(err.contains("/proc/nope") && err.contains("cannot"), "{err}");
        }
    }

    #[test]
    fn the_ood_column_hint_is_only_for_a_missing_column() {
        let p = Path::new("ood.csv");
        let missing = || rightmodel_tasks::TaskError::MissingColumn {
            path: p.into(),
            missing: vec!["text".into()],
            found: "the header row has: `q`".into(),
        };
        let hinted = format!("{:#}", ood_error(missing(), p, "text", false));
        assert!(hinted.contains("--ood-text-col"), "{hinted}");
        assert!(!format!("{:#}", ood_error(missing(), p, "text", true)).contains("--ood-text-col"));
        let other = rightmodel_tasks::TaskError::Data("ood.csv: no such file".into());
        let plain = format!("{:#}", ood_error(other, p, "text", false));
        assert!(!plain.contains("--ood-text-col") && plain.contains("no such file"), "{plain}");
    }
}
