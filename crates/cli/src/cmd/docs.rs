//! `rightmodel docs add|ask|list|remove` and `rightmodel eval docs`: thin wrappers over `rightmodel-docs`
//! that load the local encoder, draw progress bars and print results.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use rightmodel_docs::eval::{
    build_corpus, lm_grid, question_vectors, span_groups, spread, summarize, write_articles, write_dump, EvalCorpus,
    EvalSet, Metrics, QuestionScore, QuestionVectors, TOP_K,
};
use rightmodel_docs::learn::{fit_listwise, fit_logistic};
use rightmodel_docs::report::{markdown, write_report, Report, ReportRow};
use rightmodel_docs::{
    collection_dir, collections_root, list_collections, remove_collection, AddProgress, Answer, AskParams, Collection,
    ReadCandidate, ReadWeights, LOW_CONFIDENCE,
};
use rightmodel_infer::llm::LmReader;
use rightmodel_infer::threads::available_cores;
use rightmodel_infer::MiniLm;
use rightmodel_models::{home::rightmodel_home, Store};

/// Document collection commands.
#[derive(Subcommand)]
pub enum DocsCmd {
    /// Index text, Markdown and HTML files (folders recursively) into a collection, creating it if
    /// needed. Changed files replace their old passages; unchanged files are skipped; a folder added
    /// again drops the files that are gone from it. PDF, Word, OpenDocument and EPUB files are not
    /// text: named, they are refused (convert them first); in a folder, skipped with a warning.
    #[command(after_help = "Example:\n  rightmodel docs add handbook ./handbook README.md")]
    Add(AddArgs),
    /// Ask a collection a question: an extracted answer with its sentence, citations and confidence.
    #[command(
        after_help = concat!(
            "Examples:\n",
            "  rightmodel docs ask handbook \"How many vacation days do I get?\" --json\n",
            "  # adds a cited answer written by the local model\n",
            "  rightmodel docs ask handbook \"How many vacation days do I get?\" \\\n",
            "      --generate\n",
            "  # the local model re-orders the first passages and reads the answer\n",
            "  rightmodel docs ask handbook \"Who approves expenses?\" \\\n",
            "      --rerank-lm --read-lm",
        )
    )]
    Ask(AskArgs),
    /// List the collections.
    #[command(after_help = "Example:\n  rightmodel docs list")]
    List(ListArgs),
    /// Delete a collection (the indexed copies only; source files are untouched).
    #[command(after_help = "Example:\n  rightmodel docs remove handbook")]
    Remove(RemoveArgs),
}

/// `docs add` arguments.
#[derive(Args)]
pub struct AddArgs {
    /// Collection name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Files and folders to index.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `docs ask` arguments.
#[derive(Args)]
pub struct AskArgs {
    /// Collection name.
    pub name: String,
    /// The question.
    pub question: String,
    /// Passages to return: from 1 up to the number of candidate passages a search considers (a larger
    /// value is refused, not silently cut).
    #[arg(long, short, default_value_t = 5, value_parser = passage_count)]
    pub k: usize,
    /// Print the whole answer (citations, passages, scores) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the prompt a language model would get to write a cited answer from the passages.
    #[arg(long)]
    pub show_prompt: bool,
    /// Also write an answer with the local language model from the top passages; it cites them as
    /// `[n]` (a passage is cited for it when it cites none).
    #[arg(long)]
    pub generate: bool,
    /// Language model for --generate: a pulled name or a GGUF path.
    #[arg(long, default_value = "gemma3-270m")]
    pub model: String,
    /// Longest generated answer, in tokens.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Sentence encoder: a pulled model name or a model folder (must be the one the collection was
    /// built with).
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    #[command(flatten)]
    pub lm: LmArgs,
}

/// Parses `docs ask -k`: a whole number from 1 to [`AskParams::candidates`] (the default parameters'
/// value, which `docs ask` uses), since a search never returns more passages than it takes candidates.
fn passage_count(s: &str) -> Result<usize, String> {
    let k = super::at_least_one(s)?;
    let max = AskParams::default().candidates;
    if k > max {
        return Err(format!("at most {max} passages can be returned"));
    }
    Ok(k)
}

/// `docs list` arguments.
#[derive(Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `docs remove` arguments.
#[derive(Args)]
pub struct RemoveArgs {
    /// Collection name.
    pub name: String,
}

/// `rightmodel eval docs` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel eval docs --squad ../shared/data/docqa/squad_dev_half.json \\\n",
        "      --limit 1000 --out reports/\n",
        "  rightmodel eval docs --squad ../shared/data/docqa/squad_dev_half.json \\\n",
        "      --limit 500 --rerank-lm --read-lm",
    )
)]
pub struct EvalDocsArgs {
    /// SQuAD-format JSON file: its articles are indexed, its questions asked.
    #[arg(long)]
    pub squad: PathBuf,
    /// Ask only this many questions, spread evenly over the file.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Write docs_eval.md, docs_eval.svg and docs_eval.png into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print a summary; the last line is one JSON object with the metrics.
    #[arg(long)]
    pub json: bool,
    /// Keep the article files and the collection in this folder and reuse them on the next run
    /// (default: a temporary folder, deleted afterwards).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// The first N articles are the tuning split; metrics are also reported on the other articles.
    #[arg(long, default_value_t = 6)]
    pub tune_articles: usize,
    /// Search the first-stage weights (coordinate ascent) on the tuning split and print the best.
    #[arg(long)]
    pub tune: bool,
    /// Fit the sentence ranker on the tuning split and print its weights.
    #[arg(long)]
    pub fit_ranker: bool,
    /// Fit the answer-span extractor on the tuning split and print its weights.
    #[arg(long)]
    pub fit_extractor: bool,
    /// Fit the confidence model on the tuning split and print its weights.
    #[arg(long)]
    pub fit_confidence: bool,
    /// Write every question's answer and scores to this file as JSON lines (error analysis); with
    /// --rerank-lm or --read-lm, the language model's answers to FILE.lm.jsonl too.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Write the sentence ranker's candidates of every question (features, passage, labels) to this
    /// file as JSON lines, for fitting rankers outside rightmodel.
    #[arg(long, value_name = "FILE")]
    pub dump_ranker: Option<PathBuf>,
    /// Replace report files already in --out and --dump files that exist; without it the command
    /// refuses before indexing. The --squad file itself is never written over.
    #[arg(long)]
    pub force: bool,
    /// Sentence encoder: a pulled model name or a model folder.
    #[arg(long, default_value = "minilm-l6")]
    pub encoder: String,
    #[command(flatten)]
    pub lm: LmArgs,
    /// Replay language-model re-ranking at several depths and ranker weights on the tuning split and
    /// print hit@1 for each (the defaults in `rightmodel-docs` come from this run).
    #[arg(long)]
    pub fit_lm: bool,
    /// Let the language model read the candidate sentences of every tuning question (re-ranked as with
    /// --rerank-lm) and print F1 for a grid of weights that choose among the readings (the defaults in
    /// `rightmodel-docs` come from this run); with --dump FILE, the readings go to FILE.read.jsonl.
    #[arg(long)]
    pub fit_read: bool,
}

/// Options of the language model reading passages, shared by `docs ask` and `eval docs`.
#[derive(Args)]
pub struct LmArgs {
    /// Re-order the first passages by how likely the local language model finds the question after each
    /// (slower: a forward pass over those passages per question; more often the right passage first).
    #[arg(long)]
    pub rerank_lm: bool,
    /// Let the local language model read the answer off the answer sentence (a short generation per
    /// question, mapped back onto the sentence's words; a better answer span than the span scorer's).
    #[arg(long)]
    pub read_lm: bool,
    /// Best sentences of the first passage --read-lm reads; the reading the model is surest of (with
    /// the ranker's score) gives the answer sentence and span.
    #[arg(long, default_value_t = rightmodel_docs::params::LM_READ_SENTENCES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4))]
    pub read_sentences: usize,
    /// Passages whose sentences --read-lm reads: the first passage's --read-sentences best and the best
    /// one of each further passage (1: the first passage only).
    #[arg(long, default_value_t = rightmodel_docs::params::LM_READ_PASSAGES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=3))]
    pub read_passages: usize,
    /// Language model for --rerank-lm and --read-lm: a pulled name or a GGUF path.
    #[arg(long, default_value = "gemma3-270m")]
    pub rerank_model: String,
    /// Passages the language model re-orders.
    #[arg(long, default_value_t = rightmodel_docs::params::LM_DEPTH,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=8))]
    pub lm_depth: usize,
}

impl LmArgs {
    /// Whether the language model is asked to do anything.
    fn used(&self) -> bool {
        self.rerank_lm || self.read_lm
    }

    /// Starts the reader when --rerank-lm or --read-lm asks for it (or `force`), able to score `depth`
    /// passages per call.
    fn scorer(&self, force: bool, depth: usize) -> anyhow::Result<Option<LmReader>> {
        if !self.used() && !force {
            return Ok(None);
        }
        let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
        let path = super::resolve_gguf(&store, &self.rerank_model)
            .with_context(|| format!("language model `{}` for --rerank-lm/--read-lm", self.rerank_model))?;
        let scorer = LmReader::start(&path, &self.rerank_model, depth.max(self.lm_depth), available_cores())
            .with_context(|| format!("loading {}", path.display()))?;
        Ok(Some(scorer))
    }

    /// Ask parameters for what the flags ask of the language model.
    fn params(&self) -> AskParams {
        AskParams {
            lm_depth: if self.rerank_lm { self.lm_depth } else { 0 },
            lm_read: self.read_lm,
            lm_read_sentences: self.read_sentences,
            lm_read_passages: self.read_passages,
            ..AskParams::default()
        }
    }

    /// How the language model is used, for report rows.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.rerank_lm {
            parts.push(format!("re-ranking the top {}", self.lm_depth));
        }
        if self.read_lm {
            parts.push(format!(
                "reading the answer from {} sentence(s) of the first passage and {} more passage(s)",
                self.read_sentences,
                self.read_passages - 1
            ));
        }
        format!("hybrid + {} {}", self.rerank_model, parts.join(" and "))
    }
}

/// Runs a docs command.
pub fn run(c: DocsCmd) -> anyhow::Result<()> {
    match c {
        DocsCmd::Add(a) => add(a),
        DocsCmd::Ask(a) => ask(a),
        DocsCmd::List(a) => list(a),
        DocsCmd::Remove(a) => {
            remove_collection(&collections_root(), &a.name)?;
            println!("removed collection `{}`", a.name);
            Ok(())
        }
    }
}

/// Loads the sentence encoder `spec` from the model store.
fn load_encoder(spec: &str) -> anyhow::Result<MiniLm> {
    rightmodel_infer::threads::configure_candle_threads(available_cores());
    let dir = super::resolve_encoder(&Store::new(&rightmodel_home()), spec)?;
    MiniLm::load(&dir).with_context(|| format!("loading the sentence encoder from {}", dir.display()))
}

use super::progress::bar;

/// Adds `paths` to the collection in `dir` with a progress bar per stage (reading files, embedding
/// passages). Until the files are counted (folders walked, the collection's lock taken) a spinner says
/// so; each bar appears with its real length, so none shows `0/0`.
fn add_with_bar(
    coll: &mut Collection,
    encoder: &MiniLm,
    paths: &[PathBuf],
) -> anyhow::Result<rightmodel_docs::AddReport> {
    let finding = indicatif::ProgressBar::new_spinner();
    finding.set_message("finding files");
    finding.enable_steady_tick(std::time::Duration::from_millis(120));
    // The current stage's bar, with its label.
    let mut stage_bar: Option<(&str, indicatif::ProgressBar)> = None;
    let report = coll.add_paths_with_progress(encoder, paths, &mut |p| {
        let (stage, done, total) = match p {
            AddProgress::Reading { done, total } => ("reading", done, total),
            AddProgress::Embedding { done, total } => ("embedding", done, total),
            AddProgress::Writing => {
                match &stage_bar {
                    Some((_, pb)) => pb.set_message("writing"),
                    None => finding.set_message("writing"),
                }
                return;
            }
        };
        // Nothing to count (no files found, nothing to embed): the spinner or the last bar stays.
        if total == 0 {
            return;
        }
        if stage_bar.as_ref().is_none_or(|(s, _)| *s != stage) {
            finding.finish_and_clear();
            if let Some((_, old)) = stage_bar.take() {
                old.finish_and_clear();
            }
            stage_bar = Some((stage, bar(total as u64, stage)));
        }
        if let Some((_, pb)) = &stage_bar {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    });
    finding.finish_and_clear();
    if let Some((_, pb)) = stage_bar {
        pb.finish_and_clear();
    }
    Ok(report?)
}

/// Watches for Ctrl-C and SIGTERM while `docs add` fills the collection it just created: stopped before
/// anything was written, the collection would stay behind empty (listed, and failing every question), so
/// it is removed and the process exits with 130. Once files are committed the collection is kept as it is
/// (every commit is a whole generation).
fn remove_if_interrupted(dir: PathBuf) {
    super::on_interrupt("docs-add-signals", move || {
        // The add holds the collection's write lock, so it cannot be taken here; the generation decides.
        let empty = rightmodel_docs::store::current_generation(&dir)
            .and_then(|g| rightmodel_docs::store::load(&g))
            .is_ok_and(|snap| snap.passages.is_empty());
        match (empty, empty && std::fs::remove_dir_all(&dir).is_ok()) {
            (true, true) => eprintln!("interrupted: the new collection was empty and is removed"),
            (true, false) => eprintln!("interrupted: the new, empty collection could not be removed"),
            (false, _) => eprintln!("interrupted"),
        }
    });
}

fn add(a: AddArgs) -> anyhow::Result<()> {
    let dir = collection_dir(&collections_root(), &a.name)?;
    let encoder = load_encoder(&a.encoder)?;
    // A collection this call creates is removed again when nothing could be added to it.
    let created = !rightmodel_docs::store::exists(&dir);
    let mut coll = Collection::open_or_create(&dir)?;
    if created {
        remove_if_interrupted(dir.clone());
    }
    let report = add_with_bar(&mut coll, &encoder, &a.paths);
    let nothing_added = report.as_ref().map_or(true, |r| r.passages_total == 0);
    if created && nothing_added {
        drop(coll);
        // Another `docs add` of the same name may have filled it meanwhile (this one then failed on its lock):
        // remove it only while it is still empty, through the locked removal.
        let _ = rightmodel_docs::catalog::remove_collection_if_empty(&collections_root(), &a.name);
    }
    let report = report?;
    if created && nothing_added {
        for s in &report.skipped {
            eprintln!("warning: skipped {}", s.reason);
        }
        anyhow::bail!(
            "no document could be added, so collection `{}` was not created: {}",
            a.name,
            why_nothing_added(&report)
        );
    }
    for s in &report.skipped {
        eprintln!("warning: skipped {}", s.reason);
    }
    for r in &report.removals {
        eprintln!("removed {r}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if report.passages_upgraded > 0 {
        eprintln!(
            "computed token vectors for the {} passages kept (the collection was indexed by an earlier version)",
            report.passages_upgraded
        );
    }
    println!(
        "collection `{}`: {} added, {} updated, {} removed, {} unchanged file(s); {} passages (+{} / -{}){}",
        a.name,
        report.added.len(),
        report.updated.len(),
        report.removed.len(),
        report.unchanged.len(),
        report.passages_total,
        report.passages_added,
        report.passages_removed,
        if report.ignored > 0 {
            format!("; {} file(s) of other types ignored ({})", report.ignored, count_by_type(&report.ignored_files))
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Ignored files named in a message before the rest are counted.
const IGNORED_LISTED: usize = 5;

/// Why an add found nothing to index, from its report: the files passed over for their type (the first
/// few named, with the extensions that are indexed), the ones that could not be read (each already
/// warned about), or that the paths hold no files at all.
fn why_nothing_added(report: &rightmodel_docs::AddReport) -> String {
    let mut why = Vec::new();
    if !report.ignored_files.is_empty() {
        let files = &report.ignored_files;
        let mut named = files.iter().take(IGNORED_LISTED).cloned().collect::<Vec<_>>().join(", ");
        if files.len() > IGNORED_LISTED {
            named.push_str(&format!(" and {} more", files.len() - IGNORED_LISTED));
        }
        why.push(format!(
            "{} file(s) skipped for their type ({named}): only text, Markdown and HTML files are indexed ({})",
            files.len(),
            rightmodel_docs::clean::supported_extensions()
        ));
    }
    if !report.skipped.is_empty() {
        why.push(format!("{} file(s) could not be indexed (see the warnings above)", report.skipped.len()));
    }
    if why.is_empty() {
        return "the paths given hold no files".to_string();
    }
    why.join("; ")
}

/// Files counted by extension, most common first: `.pdf: 2, .docx: 1, no extension: 1`.
fn count_by_type(files: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for f in files {
        let ext = std::path::Path::new(f).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        *counts.entry(ext.map_or_else(|| "no extension".to_string(), |e| format!(".{e}"))).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.iter().map(|(ext, n)| format!("{ext}: {n}")).collect::<Vec<_>>().join(", ")
}

fn open_named(name: &str) -> anyhow::Result<Collection> {
    let dir = collection_dir(&collections_root(), name)?;
    if !rightmodel_docs::store::exists(&dir) {
        anyhow::bail!("no collection `{name}`; create it with `rightmodel docs add {name} PATH...`");
    }
    Ok(Collection::open(&dir)?)
}

fn ask(a: AskArgs) -> anyhow::Result<()> {
    let coll = open_named(&a.name)?;
    let encoder = load_encoder(&a.encoder)?;
    let answer = match a.lm.scorer(false, 0)? {
        Some(s) => coll.ask_with_reader(&encoder, &a.question, a.k, &a.lm.params(), &s)?,
        None => coll.ask(&encoder, &a.question, a.k)?,
    };
    let generated = if a.generate && !answer.passages.is_empty() { Some(generate_answer(&a, &answer)?) } else { None };
    if a.json {
        let mut v = serde_json::to_value(&answer)?;
        if let Some(g) = &generated {
            v["generated"] = serde_json::to_value(g)?;
        }
        // With --json, stdout holds one JSON document: the prompt goes inside it.
        if a.show_prompt {
            v["prompt"] = serde_json::Value::String(answer.context_prompt(&a.question));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_answer(&answer);
        if let Some(g) = &generated {
            println!("\nGenerated ({}, support {:.2}): {}", g.model, g.support, g.text);
            for (n, c) in g.cited.iter().zip(&g.citations) {
                println!("  [{n}] {} characters {}-{}", c.file, c.start, c.end);
            }
        }
    }
    if a.show_prompt && !a.json {
        println!("\n--- prompt ---\n{}", answer.context_prompt(&a.question));
    }
    Ok(())
}

/// Writes a cited answer with the local language model from the top passages.
fn generate_answer(a: &AskArgs, answer: &Answer) -> anyhow::Result<rightmodel_docs::GeneratedAnswer> {
    use rightmodel_infer::llm::{GenRequest, Prompt, SamplingParams};
    let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
    let path = super::resolve_gguf(&store, &a.model)?;
    let mut cfg = rightmodel_infer::EngineConfig::new(path);
    cfg.slots = 1;
    cfg.ctx_per_slot = 4096;
    let engine = rightmodel_infer::Engine::start(cfg)?;
    let params = SamplingParams {
        max_tokens: a.max_tokens,
        temperature: 0.0,
        // A small base model loops on digits and phrases under greedy decoding; penalise repeats.
        repeat_penalty: 1.3,
        stop: rightmodel_docs::generated::STOP_MARKERS.iter().map(|s| s.to_string()).collect(),
        ..SamplingParams::default()
    };
    let prompt = rightmodel_docs::small_model_prompt(&a.question, &answer.passages);
    let out = engine.generate(GenRequest { prompt: Prompt::Text(prompt), params })?;
    Ok(rightmodel_docs::cite_generated(&out.text, answer, &a.model))
}

fn print_answer(a: &Answer) {
    print!("{}", answer_text(a));
}

/// The text form of an answer. A low-confidence answer is not presented as the answer: the span the
/// extractor found in the closest sentence of an unrelated passage ("Unused" for "What is the capital
/// of Peru?") read as a claim, while it is only the nearest thing the documents hold; it is shown as a
/// guess under a line that says the documents do not seem to answer.
fn answer_text(a: &Answer) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let low = a.is_low_confidence();
    let found = if a.answer.is_empty() { "(nothing found)" } else { &a.answer };
    if low {
        let _ = writeln!(out, "Answer: (the documents do not seem to answer this)");
        if !a.answer.is_empty() {
            let _ = writeln!(out, "Best guess: {found}");
        }
        let _ = writeln!(out, "Confidence: {:.2} (low)", a.confidence);
    } else {
        let _ = writeln!(out, "Answer: {found}");
        let _ = writeln!(out, "Confidence: {:.2}", a.confidence);
    }
    if let Some(c) = a.citations.first() {
        let _ = writeln!(out, "{}: {}", if low { "Closest sentence" } else { "Sentence" }, a.sentence);
        let _ = writeln!(out, "{}", source_line(c, &a.passages));
    }
    if !a.passages.is_empty() {
        let _ = writeln!(out, "\nPassages:");
    }
    for (i, p) in a.passages.iter().enumerate() {
        let snippet: String = p.text.chars().take(160).collect();
        let more = if p.text.chars().count() > 160 { "..." } else { "" };
        let _ =
            writeln!(out, "[{}] {}  {}-{}\n    {}{more}", i + 1, p.file, p.start, p.end, snippet.replace('\n', " "));
    }
    out
}

/// The `Source:` line of the text answer: the cited file and characters, and the cited passage's number
/// in the `Passages:` list below it (`[1]` is the first listed), so the two agree; the collection's
/// internal passage id means nothing to a reader.
fn source_line(c: &rightmodel_docs::Citation, passages: &[rightmodel_docs::ScoredPassage]) -> String {
    let listed = passages.iter().position(|p| p.passage_id == c.passage_id);
    let place = listed.map(|i| format!(" (passage [{}] below)", i + 1)).unwrap_or_default();
    format!("Source: {} characters {}-{}{place}", c.file, c.start, c.end)
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let all = list_collections(&collections_root())?;
    if a.json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no collections (add one with `rightmodel docs add NAME PATH...`)");
    }
    for c in all {
        match &c.error {
            Some(e) => println!("{:<20} unreadable: {e}", c.name),
            None => println!("{:<20} {:>6} files {:>8} passages  {}", c.name, c.files, c.passages, c.dir),
        }
    }
    Ok(())
}

/// A working folder removed on drop unless it was given by the user.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The files `--dump FILE` makes `eval docs` write: FILE, the language model's answers
/// (FILE.lm.jsonl, with --rerank-lm or --read-lm) and its readings (FILE.read.jsonl, with --fit-read).
fn dump_files(a: &EvalDocsArgs) -> Vec<PathBuf> {
    let Some(dump) = &a.dump else { return Vec::new() };
    let mut files = vec![dump.clone()];
    if a.lm.used() {
        files.push(dump.with_extension("lm.jsonl"));
    }
    if a.fit_read {
        files.push(dump.with_extension("read.jsonl"));
    }
    files
}

/// Checks every output of `eval docs` before anything is indexed (minutes of work): the report folder
/// and the dump files can be written, none of them is the --squad input, and none exists unless
/// --force.
fn check_eval_outputs(a: &EvalDocsArgs) -> anyhow::Result<()> {
    let inputs = [("--squad", a.squad.as_path())];
    for p in dump_files(a) {
        super::check_new_file("--dump", &p, &inputs, a.force)?;
    }
    if let Some(p) = &a.dump_ranker {
        super::check_new_file("--dump-ranker", p, &inputs, a.force)?;
    }
    if let Some(out) = &a.out {
        super::check_report_dir("--out", out, &rightmodel_docs::report::REPORT_FILES, &inputs, a.force)?;
    }
    Ok(())
}

/// Runs `eval docs`.
pub fn eval_docs(a: EvalDocsArgs) -> anyhow::Result<()> {
    check_eval_outputs(&a)?;
    let squad = rightmodel_docs::squad::read_squad(&a.squad)?;
    let corpus = build_corpus(&squad);
    if corpus.unanswerable > 0 {
        eprintln!(
            "note: {} questions have no gold answer (SQuAD 2.0's unanswerable ones) and are left out: every \
             metric here scores an answer against gold ones",
            corpus.unanswerable
        );
    }
    anyhow::ensure!(!corpus.questions.is_empty(), "{}: no question has a gold answer to score", a.squad.display());
    let work = match &a.keep {
        Some(p) => WorkDir { path: p.clone(), remove: false },
        None => WorkDir {
            // Process id and time: a folder left by an interrupted run is never mistaken for this one's.
            path: std::env::temp_dir().join(format!(
                "rightmodel-eval-docs-{}-{}",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
            )),
            remove: true,
        },
    };
    let encoder = load_encoder(&a.encoder)?;

    // Index the articles (reused when --keep points at an earlier run of the same file). A kept index
    // that holds other files (an earlier run on another SQuAD file) is rebuilt: its articles would stay in
    // the index and skew every number.
    let paths = write_articles(&corpus, &work.path.join("articles"))?;
    let coll_dir = work.path.join("collection");
    let mut coll = Collection::open_or_create(&coll_dir)?;
    let wanted: HashSet<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if coll.files().iter().any(|f| !wanted.contains(&f.path)) {
        eprintln!("note: {} holds another corpus; rebuilding its index", coll_dir.display());
        drop(coll);
        std::fs::remove_dir_all(&coll_dir).with_context(|| format!("cannot remove {}", coll_dir.display()))?;
        coll = Collection::open_or_create(&coll_dir)?;
    }
    let t = Instant::now();
    let added = add_with_bar(&mut coll, &encoder, &paths)?;
    let index_secs = (added.passages_added > 0).then(|| t.elapsed().as_secs_f32());
    let set = EvalSet {
        collection: &coll,
        corpus: &corpus,
        article_paths: paths.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
    };

    let which = spread(corpus.questions.len(), a.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)));
    let pb = bar(which.len() as u64, "questions");
    let q_vecs = question_vectors(&encoder, &corpus, &which, &mut |d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let (tune_q, held_q): (Vec<usize>, Vec<usize>) =
        which.iter().partition(|&&i| corpus.questions[i].article < a.tune_articles);
    fit_models(&a, &set, &tune_q, &q_vecs)?;
    if let Some(path) = &a.dump_ranker {
        let pb = bar(which.len() as u64, "ranker candidates");
        let params = AskParams::default();
        set.write_ranker_dump(path, &which, &q_vecs, &params, a.tune_articles, &mut |d| pb.set_position(d as u64))?;
        pb.finish_and_clear();
    }

    // Headline: default parameters, timed end to end (question embedding included).
    let pb = bar(which.len() as u64, "asking");
    let answers =
        set.run(&which, Some(&encoder), None, &AskParams::default(), None, &mut |d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    if let Some(path) = &a.dump {
        write_dump(path, &corpus, &which, &answers)?;
    }
    let scores: Vec<QuestionScore> = answers.iter().map(|r| r.0).collect();
    let held_set: HashSet<usize> = held_q.iter().copied().collect();
    let held_scores = held_out(&which, &scores, &held_set);
    let overall = summarize(&scores);
    let held = summarize(&held_scores);

    let pb = bar(held_q.len() as u64, "out of scope");
    let oos = set.out_of_scope(&held_q, &q_vecs, &mut |d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let low_share = |v: &mut dyn Iterator<Item = f32>| {
        let (low, n) = v.fold((0usize, 0usize), |(l, n), c| (l + (c < LOW_CONFIDENCE) as usize, n + 1));
        low as f32 / n.max(1) as f32
    };
    let scope = Scope {
        asked: oos.len(),
        out_mean: oos.iter().sum::<f32>() / oos.len().max(1) as f32,
        out_low: low_share(&mut oos.iter().copied()),
        in_low: low_share(&mut held_scores.iter().map(|s| s.confidence)),
    };

    let mut rows = vec![ReportRow { name: "hybrid (default), all questions".into(), metrics: overall.clone() }];
    // With no article past the tuning ones there is nothing held out: no row of zeros.
    if held.questions > 0 {
        rows.push(ReportRow {
            name: format!("hybrid (default), held-out articles {}+", a.tune_articles + 1),
            metrics: held.clone(),
        });
    } else {
        eprintln!(
            "note: every question is from the first {} articles (--tune-articles), so none is held out",
            a.tune_articles
        );
    }
    for (name, params) in [
        ("hybrid, not re-ranked", AskParams::without_rerank()),
        ("BM25 only, overlap sentence", AskParams::lexical_baseline()),
        ("dense only, re-ranked", AskParams::dense_only()),
    ] {
        let pb = bar(which.len() as u64, name);
        let r = set.run(&which, None, Some(&q_vecs), &params, None, &mut |d| pb.set_position(d as u64))?;
        pb.finish_and_clear();
        let mut m = summarize(&r.into_iter().map(|x| x.0).collect::<Vec<_>>());
        // Without question embedding the latency is not comparable with the headline row.
        m.p50_ms = f32::NAN;
        m.p99_ms = f32::NAN;
        rows.push(ReportRow { name: name.to_string(), metrics: m });
    }

    let scorer = a.lm.scorer(a.fit_lm || a.fit_read, TOP_K)?;
    if let (true, Some(s)) = (a.fit_lm, &scorer) {
        fit_lm(&set, &tune_q, &q_vecs, s)?;
    }
    if let (true, Some(s)) = (a.fit_read, &scorer) {
        fit_read(&set, &tune_q, &q_vecs, s, &a.lm, a.dump.as_ref().map(|p| p.with_extension("read.jsonl")).as_deref())?;
    }
    let mut lm_metrics = None;
    if let (true, Some(s)) = (a.lm.used(), &scorer) {
        // Timed end to end like the headline row: question embedding, retrieval and the language model.
        let name = a.lm.describe();
        let pb = bar(which.len() as u64, "language model");
        let r = set.run(&which, Some(&encoder), None, &a.lm.params(), Some(s), &mut |d| pb.set_position(d as u64))?;
        pb.finish_and_clear();
        if let Some(path) = &a.dump {
            let lm_path = path.with_extension("lm.jsonl");
            write_dump(&lm_path, &corpus, &which, &r)?;
            eprintln!("wrote the language model's answers to {}", lm_path.display());
        }
        let all: Vec<QuestionScore> = r.iter().map(|x| x.0).collect();
        let held_lm = held_out(&which, &all, &held_set);
        let m = summarize(&all);
        rows.push(ReportRow { name: name.clone(), metrics: m.clone() });
        if !held_lm.is_empty() {
            rows.push(ReportRow {
                name: format!("{name}, held-out articles {}+", a.tune_articles + 1),
                metrics: summarize(&held_lm),
            });
        }
        lm_metrics = Some(m);
    }

    let right = scores.iter().filter(|s| s.in_sentence).count();
    let counts = Counts { asked: which.len(), held: held.questions, right, wrong: scores.len() - right };
    let notes = report_notes(&a, &corpus, &coll, &counts, index_secs, &overall, &scope);
    let goals = [Some(0.88), Some(0.97), Some(0.80), None, Some(0.60)];
    let report = Report { data: a.squad.display().to_string(), rows, notes, goals };
    if let Some(out) = &a.out {
        let written = write_report(out, &report)?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        eprintln!("wrote {}", names.join(", "));
    }
    // The chart is linked only when one was drawn, by the path it was written to.
    let picture = a.out.as_ref().map(|o| o.join(rightmodel_docs::report::REPORT_FILES[1]).display().to_string());
    print!("{}", markdown(&report, picture.as_deref()));
    if a.json {
        println!(
            "{}",
            json_line(&overall, &held, index_secs, &scope, lm_metrics.as_ref().map(|m| (m, a.lm.params())))?
        );
    }
    drop(work);
    Ok(())
}

/// Prints hit@1 on the tuning split for language-model re-ranking at each depth and ranker weight
/// (`--fit-lm`), from one pass that scores the first five passages of every question.
fn fit_lm(set: &EvalSet<'_>, tune_q: &[usize], q_vecs: &QuestionVectors, scorer: &LmReader) -> anyhow::Result<()> {
    let params = AskParams { lm_depth: TOP_K, ..AskParams::default() };
    let pb = bar(tune_q.len() as u64, "scoring passages");
    let answers = set.run(tune_q, None, Some(q_vecs), &params, Some(scorer), &mut |d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let replay: Vec<(usize, Answer)> = tune_q.iter().copied().zip(answers.into_iter().map(|a| a.1)).collect();
    let mut combos: Vec<(f32, f32)> = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|&w| (w, 0.0)).collect();
    combos.extend([0.25, 0.5, 1.0, 2.0, 4.0].iter().map(|&p| (0.0, p)));
    let rows = lm_grid(&replay, set.corpus, &set.article_paths, &[1, 2, 3, 4, 5], &combos);
    println!("language-model re-ranking on the tuning split ({} questions):", replay.len());
    println!("| depth | ranker weight | rank penalty | hit@1 |\n|---:|---:|---:|---:|");
    for (d, w, p, h) in rows {
        println!("| {d} | {w} | {p} | {h:.4} |");
    }
    Ok(())
}

/// Reads the candidate sentences of the tuning questions and prints F1 over a grid of
/// [`ReadWeights`] (`--fit-read`), writing every reading to `dump` when given.
fn fit_read(
    set: &EvalSet<'_>,
    tune_q: &[usize],
    q_vecs: &QuestionVectors,
    reader: &LmReader,
    lm: &LmArgs,
    dump: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let params = AskParams {
        lm_depth: lm.lm_depth,
        lm_read: true,
        lm_read_sentences: lm.read_sentences,
        lm_read_passages: lm.read_passages,
        ..AskParams::default()
    };
    let mut out = match dump {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let pb = bar(tune_q.len() as u64, "reading candidates");
    // Per question: each candidate and the F1 of its span against the gold answers.
    let mut groups: Vec<Vec<(ReadCandidate, f32)>> = Vec::with_capacity(tune_q.len());
    for (done, &i) in tune_q.iter().enumerate() {
        let q = &set.corpus.questions[i];
        let read = set.collection.read_candidates(&q.question, q_vecs.row(i), &params, reader)?;
        let scored: Vec<(ReadCandidate, f32)> = read
            .into_iter()
            .map(|c| {
                // The answer path takes the span scorer's span where the reading matched nothing.
                let span = c.span.as_deref().or(c.extracted.as_deref());
                let f1 = span.map_or(0.0, |s| rightmodel_docs::squad::f1(s, &q.golds));
                (c, f1)
            })
            .collect();
        if let Some(out) = out.as_mut() {
            for (c, f1) in &scored {
                writeln!(out, "{}", serde_json::json!({"q": i, "article": q.article, "span_f1": f1, "candidate": c}))?;
            }
        }
        groups.push(scored);
        pb.set_position(done as u64 + 1);
    }
    pb.finish_and_clear();
    if let (Some(out), Some(p)) = (out.as_mut(), dump) {
        out.flush()?;
        eprintln!("wrote the readings to {}", p.display());
    }
    // Mean F1 of the chosen spans (a sentence whose reading matched none of its words competes with a
    // match of 0 and answers with the span scorer's span, as on the answer path). Candidates are
    // compared in the order the answer path reads them (highest bound first), so ties go the same way.
    let f1_with = |w: &ReadWeights, first_only: bool| {
        let total: f32 = groups
            .iter()
            .map(|g| {
                let mut read: Vec<&(ReadCandidate, f32)> =
                    g.iter().filter(|(c, _)| !first_only || (c.passage_place, c.sentence_place) == (0, 0)).collect();
                read.sort_by(|a, b| {
                    w.upper_bound(b.0.logit, b.0.passage_place).total_cmp(&w.upper_bound(a.0.logit, a.0.passage_place))
                });
                read.iter()
                    .map(|(c, f1)| (w.key(c.logit, c.passage_place, &c.reading, c.match_f1), *f1))
                    .fold((f32::NEG_INFINITY, 0.0), |best, x| if x.0 > best.0 { x } else { best })
                    .1
            })
            .sum();
        total / groups.len().max(1) as f32
    };
    let mut rows = Vec::new();
    for mean_log_prob in [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] {
        for match_f1 in [0.0, 1.0, 2.0, 4.0] {
            for passage_place in [0.0, 1.0, 2.0, 4.0] {
                let w = ReadWeights { mean_log_prob, match_f1, passage_place };
                rows.push((f1_with(&w, false), w));
            }
        }
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "choosing among readings on the tuning split ({} questions; {} sentence(s) of the first passage, {} passage(s)):",
        groups.len(),
        params.lm_read_sentences,
        params.lm_read_passages
    );
    println!("reading the best sentence only: F1 {:.4}", f1_with(&ReadWeights::default(), true));
    println!("| mean log-prob | match F1 | passage place | F1 |\n|---:|---:|---:|---:|");
    for (f1, w) in rows.iter().take(10) {
        println!("| {} | {} | {} | {f1:.4} |", w.mean_log_prob, w.match_f1, w.passage_place);
    }
    println!("defaults: F1 {:.4}", f1_with(&ReadWeights::default(), false));
    Ok(())
}

/// The scores of the held-out questions among `which` (scores in the same order).
fn held_out(which: &[usize], scores: &[QuestionScore], held: &HashSet<usize>) -> Vec<QuestionScore> {
    which.iter().zip(scores).filter(|(i, _)| held.contains(i)).map(|(_, s)| *s).collect()
}

/// Confidence on out-of-scope questions (their article excluded) and in-scope ones.
struct Scope {
    /// Out-of-scope questions asked (the held-out ones; none when nothing is held out).
    asked: usize,
    /// Mean confidence out of scope.
    out_mean: f32,
    /// Share of out-of-scope answers below [`LOW_CONFIDENCE`].
    out_low: f32,
    /// Share of in-scope (held-out) answers below it.
    in_low: f32,
}

/// The development options: tune the first-stage weights, fit the extractor, ranker and confidence
/// model on the tuning split, and print what they find (the constants in `rightmodel-docs` come from
/// these runs).
fn fit_models(a: &EvalDocsArgs, set: &EvalSet<'_>, tune_q: &[usize], q_vecs: &QuestionVectors) -> anyhow::Result<()> {
    if a.tune {
        let pb = bar(0, "tuning");
        let (best, tried) = set.tune(tune_q, q_vecs, &mut |d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64);
        })?;
        pb.finish_and_clear();
        for (p, m) in &tried {
            eprintln!(
                "{} -> hit@1 {:.3} hit@5 {:.3} sentence {:.3}",
                serde_json::to_string(p)?,
                m.hit_at_1,
                m.hit_at_5,
                m.answer_in_sentence
            );
        }
        println!("best on the tuning split: {}", serde_json::to_string(&best)?);
    }
    if a.fit_ranker {
        let groups = set.ranker_groups(tune_q, q_vecs, &AskParams::default())?;
        let w = fit_listwise(&groups, 2000);
        println!("ranker fitted on {} questions: WEIGHTS = {w:?}", groups.len());
    }
    if a.fit_extractor {
        let groups = span_groups(set.corpus, tune_q);
        let w = fit_listwise(&groups, 1000);
        println!("extractor fitted on {} sentences: SPAN_WEIGHTS = {w:?}", groups.len());
    }
    if a.fit_confidence {
        let rows = set.confidence_rows(tune_q, q_vecs)?;
        let w = fit_logistic(&rows, 3000);
        println!("confidence fitted on {} answers: CONF_WEIGHTS = {w:?}", rows.len());
    }
    Ok(())
}

/// How many questions an `eval docs` run asked, held out, and answered with a sentence that holds the
/// answer (`right`) or not (`wrong`): the notes say n/a for figures over an empty set.
struct Counts {
    asked: usize,
    held: usize,
    right: usize,
    wrong: usize,
}

fn report_notes(
    a: &EvalDocsArgs,
    corpus: &EvalCorpus,
    coll: &Collection,
    counts: &Counts,
    index_secs: Option<f32>,
    overall: &Metrics,
    scope: &Scope,
) -> Vec<String> {
    vec![
        format!(
            "{} articles, {} passages, {} sentences; {} of {} questions asked (spread evenly).",
            corpus.articles.len(),
            coll.passage_count(),
            coll.sentence_count(),
            counts.asked,
            corpus.questions.len()
        ),
        match index_secs {
            Some(s) => format!("Indexing (clean, split, embed sentences, BM25): {s:.1} s on {} core(s).", available_cores()),
            None => "Index reused from --keep (indexing time not measured).".to_string(),
        },
        split_note(a.tune_articles, counts.held),
        "Latency: one question end to end (embedding, BM25, dense scan, sentence evidence, extraction); the other rows reuse cached question vectors, so their latency is not shown.".into(),
        confidence_note(overall, counts.right, counts.wrong),
        scope_note(scope),
        "Goals: hit@1 >= 0.88, hit@5 >= 0.97, answer in sentence >= 0.80, F1 >= 0.60, p50 <= 30 ms, indexing <= 60 s.".into(),
    ]
}

/// Where the fitted weights come from, and whether a held-out row exists to judge them by.
fn split_note(tune_articles: usize, held: usize) -> String {
    let first = format!(
        "Ranker, extractor and confidence weights were fitted on the questions of the first {tune_articles} articles"
    );
    if held > 0 {
        format!("{first}; the held-out row excludes them.")
    } else {
        format!("{first}; every question asked is from those articles, so none is held out.")
    }
}

/// Mean confidence of answers whose sentence holds the answer (`right` of them) and of the others
/// (`wrong`), and the AUC between them; n/a for an empty side (a mean of nothing is not 0, and the AUC
/// needs both).
fn confidence_note(m: &Metrics, right: usize, wrong: usize) -> String {
    let mean = |n: usize, v: f32| if n > 0 { format!("{v:.2}") } else { "n/a".to_string() };
    let auc = if right > 0 && wrong > 0 { format!("{:.3}", m.confidence_auc) } else { "n/a".to_string() };
    format!(
        "Confidence: mean {} when the sentence holds the answer ({right} answers), {} when it does not ({wrong}); AUC {auc}.",
        mean(right, m.confidence_right),
        mean(wrong, m.confidence_wrong)
    )
}

/// Confidence out of scope against in scope; n/a when no held-out question could be asked that way.
fn scope_note(scope: &Scope) -> String {
    if scope.asked == 0 {
        return "Out of scope: n/a (no held-out question to ask with its own article excluded).".into();
    }
    format!(
        "Out of scope ({} held-out questions asked with their own article excluded): mean confidence {:.2}, {:.0}% below the low-confidence threshold {LOW_CONFIDENCE}; in scope: {:.0}% below it.",
        scope.asked,
        scope.out_mean,
        scope.out_low * 100.0,
        scope.in_low * 100.0
    )
}

/// The `--json` line: the headline metrics plus held-out, indexing and confidence figures.
fn json_line(
    m: &Metrics,
    held: &Metrics,
    index_secs: Option<f32>,
    scope: &Scope,
    lm: Option<(&Metrics, AskParams)>,
) -> anyhow::Result<String> {
    let mut v = serde_json::json!({
        "hit_at_1": m.hit_at_1,
        "hit_at_5": m.hit_at_5,
        "answer_in_sentence": m.answer_in_sentence,
        "em": m.em,
        "f1": m.f1,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "questions": m.questions,
        "index_s": index_secs,
        "confidence_auc": m.confidence_auc,
        "out_of_scope_confidence": (held.questions > 0).then_some(scope.out_mean),
        "out_of_scope_low_share": (held.questions > 0).then_some(scope.out_low),
        "heldout": if held.questions == 0 { serde_json::Value::Null } else { serde_json::json!({
            "questions": held.questions,
            "hit_at_1": held.hit_at_1,
            "hit_at_5": held.hit_at_5,
            "answer_in_sentence": held.answer_in_sentence,
            "em": held.em,
            "f1": held.f1,
        })},
    });
    if let Some((lm, p)) = lm {
        v["lm"] = serde_json::json!({
            "rerank_depth": p.lm_depth,
            "read": p.lm_read,
            "hit_at_1": lm.hit_at_1,
            "hit_at_5": lm.hit_at_5,
            "answer_in_sentence": lm.answer_in_sentence,
            "em": lm.em,
            "f1": lm.f1,
            "p50_ms": lm.p50_ms,
            "p99_ms": lm.p99_ms,
        });
    }
    Ok(serde_json::to_string(&v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(id: u64) -> rightmodel_docs::ScoredPassage {
        rightmodel_docs::ScoredPassage {
            passage_id: id,
            file: "a.md".into(),
            start: 0,
            end: 10,
            text: "text".into(),
            score: 1.0,
            lexical: 0.0,
            dense: 0.0,
            rerank_score: None,
            question_log_likelihood: None,
        }
    }

    fn answer(confidence: f32) -> Answer {
        let cite =
            rightmodel_docs::Citation { file: "a.md".into(), passage_id: 7, start: 0, end: 4, text: "text".into() };
        Answer {
            question: "q?".into(),
            answer: "Unused".into(),
            sentence: "Unused days expire.".into(),
            span: Some(cite.clone()),
            confidence,
            evidence: Default::default(),
            score: 0.0,
            margin: 0.0,
            citations: vec![cite],
            passages: vec![passage(7)],
            read_by: None,
        }
    }

    #[test]
    fn a_low_confidence_answer_reads_as_a_guess_not_an_answer() {
        let sure = answer_text(&answer(0.9));
        assert!(sure.starts_with("Answer: Unused\nConfidence: 0.90\nSentence: Unused days expire.\n"), "{sure}");
        assert!(sure.contains("Source: a.md characters 0-4 (passage [1] below)"), "{sure}");
        let low = answer_text(&answer(0.1));
        assert!(
            low.starts_with(
                "Answer: (the documents do not seem to answer this)\nBest guess: Unused\nConfidence: 0.10 (low)\n\
                 Closest sentence: Unused days expire.\n"
            ),
            "{low}"
        );
        assert!(low.contains("\nPassages:\n[1] a.md  0-10\n    text\n"), "{low}");
    }

    #[test]
    fn an_add_that_found_nothing_says_why() {
        let mut report = rightmodel_docs::AddReport::default();
        assert_eq!(why_nothing_added(&report), "the paths given hold no files");
        report.ignored_files =
            ["d/a.pdf", "d/b.PDF", "d/c.docx", "d/README", "d/e.pdf", "d/f.pdf", "d/g.pdf"].map(String::from).to_vec();
        report.ignored = report.ignored_files.len();
        let why = why_nothing_added(&report);
        assert!(
            why.starts_with(
                "7 file(s) skipped for their type (d/a.pdf, d/b.PDF, d/c.docx, d/README, d/e.pdf and 2 more)"
            ),
            "{why}"
        );
        assert!(why.contains("only text, Markdown and HTML files are indexed (.txt, ") && why.contains(".md"), "{why}");
        report.skipped.push(rightmodel_docs::SkippedFile { path: "d/x.txt".into(), reason: "d/x.txt: binary".into() });
        assert!(why_nothing_added(&report).ends_with("; 1 file(s) could not be indexed (see the warnings above)"));
        assert_eq!(count_by_type(&report.ignored_files), ".pdf: 5, .docx: 1, no extension: 1");
    }

    #[test]
    fn the_source_line_names_the_listed_passage_number() {
        let c = rightmodel_docs::Citation { file: "a.md".into(), passage_id: 2, start: 3, end: 9, text: "x".into() };
        let line = source_line(&c, &[passage(2), passage(0)]);
        assert_eq!(line, "Source: a.md characters 3-9 (passage [1] below)");
        assert_eq!(source_line(&c, &[passage(0), passage(2)]), "Source: a.md characters 3-9 (passage [2] below)");
        assert_eq!(source_line(&c, &[passage(7)]), "Source: a.md characters 3-9");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        a: EvalDocsArgs,
    }

    #[test]
    fn outputs_are_checked_before_indexing_and_never_replace_the_input() {
        use clap::Parser;
        let dir = std::env::temp_dir().join(format!("rightmodel-eval-docs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, "{}").unwrap();
            p.to_string_lossy().into_owned()
        };
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let check = |args: &[&str]| {
            let a = Cli::try_parse_from(["x"].iter().chain(args)).unwrap().a;
            check_eval_outputs(&a).map_err(|e| format!("{e:#}"))
        };
        let squad = file("squad.json");
        for force in [&[][..], &["--force"][..]] {
            let e = check(&[&["--squad", &squad, "--dump", &squad][..], force].concat()).unwrap_err();
            assert!(e.contains("--squad input"), "{e}");
        }
        // Its companion files are outputs too: FILE.read.jsonl here is the input.
        let read = file("s.read.jsonl");
        let e = check(&["--squad", &read, "--dump", &path("s.jsonl"), "--fit-read", "--force"]).unwrap_err();
        assert!(e.contains("--squad input"), "{e}");
        let dump = file("dump.jsonl");
        let e = check(&["--squad", &squad, "--dump", &dump]).unwrap_err();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        check(&["--squad", &squad, "--dump", &dump, "--force"]).unwrap();
        let e = check(&["--squad", &squad, "--dump-ranker", &dump]).unwrap_err();
        assert!(e.contains("--dump-ranker") && e.contains("already exists"), "{e}");
        let e = check(&["--squad", &squad, "--dump-ranker", &squad, "--force"]).unwrap_err();
        assert!(e.contains("--squad input"), "{e}");
        file("new.lm.jsonl");
        check(&["--squad", &squad, "--dump", &path("new.jsonl")]).unwrap();
        let e = check(&["--squad", &squad, "--dump", &path("new.jsonl"), "--read-lm"]).unwrap_err();
        assert!(e.contains("new.lm.jsonl") && e.contains("--force"), "{e}");
        let out = path("report");
        check(&["--squad", &squad, "--out", &out]).unwrap();
        assert!(!dir.join("report").exists(), "the check creates nothing");
        std::fs::create_dir(dir.join("report")).unwrap();
        file("report/docs_eval.md");
        let e = check(&["--squad", &squad, "--out", &out]).unwrap_err();
        assert!(e.contains("docs_eval.md") && e.contains("--force"), "{e}");
        check(&["--squad", &squad, "--out", &out, "--force"]).unwrap();
        let e = check(&["--squad", &squad, "--out", &path("squad.json/x")]).unwrap_err();
        assert!(e.contains("is a file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_sets_print_not_applicable_instead_of_zeros() {
        let m = Metrics { confidence_right: 0.8, confidence_auc: 0.5, ..Metrics::default() };
        let note = confidence_note(&m, 3, 0);
        assert!(
            note.contains("mean 0.80") && note.contains("n/a when it does not") && note.contains("AUC n/a"),
            "{note}"
        );
        let both = confidence_note(&Metrics { confidence_auc: 0.75, ..m }, 3, 2);
        assert!(both.contains("AUC 0.750") && !both.contains("n/a"), "{both}");
        let none = Scope { asked: 0, out_mean: -0.0, out_low: 0.0, in_low: 0.0 };
        let note = scope_note(&none);
        assert!(note.contains("n/a") && !note.contains("-0.00") && !note.contains('%'), "{note}");
        assert!(split_note(6, 0).contains("none is held out") && !split_note(6, 0).contains("held-out row"));
        assert!(split_note(6, 4).contains("held-out row"));
    }
}
