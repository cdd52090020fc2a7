//! `rightmodel eval route`: small vs large vs routed on your own prompts, through a running gateway.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rightmodel_router::compare::{self, Scoring};
use rightmodel_server::compare_client::{self, CompareConfig};

use super::router::in_range;

/// `eval route` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Data: JSON lines {\"prompt\": \"...\", \"answer\": \"...\"} (or \"messages\": [...], and \"answer\" as a list of accepted answers), or a CSV with prompt and answer columns (accepted answers separated by |).\n",
        "\n",
        "Examples:\n",
        "  rightmodel serve --config rightmodel.toml &\n",
        "  rightmodel eval route --data my_prompts.jsonl \\\n",
        "      --models small,large,auto --out compare/\n",
        "  # time to first token too\n",
        "  rightmodel eval route --data my_prompts.jsonl \\\n",
        "      --models small,large,auto --stream\n",
        "  rightmodel eval route --data quiz.csv --models small,large,auto \\\n",
        "      --scoring choice --limit 200 \\\n",
        "      --system \"Answer with the letter of the right option only.\"",
    )
)]
pub struct EvalRouteArgs {
    /// Test cases: JSON lines with `prompt` (or `messages`) and `answer`, or a CSV with `prompt` and
    /// `answer` columns.
    #[arg(long)]
    pub data: PathBuf,
    /// Models to compare, comma-separated, as the gateway names them (`auto` lets it route).
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// The gateway's API root.
    #[arg(long, default_value = "http://127.0.0.1:8080/v1")]
    pub base_url: String,
    /// Environment variable holding the gateway's API key (none sent when unset).
    #[arg(long, default_value = "RIGHTMODEL_API_KEY")]
    pub api_key_env: String,
    /// How an answer is scored: contains (an expected answer appears in it, as whole words; an echo of
    /// the prompt earns nothing: copies of the prompt at the answer's start, and any stretch of 20+
    /// characters copied from the prompt, are left out before looking), exact, f1 (token overlap) or
    /// choice (the option letter it picks).
    #[arg(long, default_value = "contains")]
    pub scoring: Scoring,
    /// A system message put before every prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Answer length cap in tokens.
    #[arg(long, default_value_t = 64, value_parser = in_range::<1, 32768>)]
    pub max_tokens: usize,
    /// Requests in flight at once (1: latency without queueing).
    #[arg(long, default_value_t = 1, value_parser = in_range::<1, 256>)]
    pub concurrency: usize,
    /// Per-request time limit in seconds.
    #[arg(long, default_value_t = 120, value_parser = in_range::<1, 3600>)]
    pub timeout_s: usize,
    /// Use only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Folder for compare.md, compare.svg/png, compare.json and answers.jsonl; checked before any
    /// request is sent. Stopped with Ctrl-C, the run sends nothing more, reports the prompts every
    /// model answered so far (marked as partial) and exits with status 130.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace report files already in --out; without it the command refuses before asking. The
    /// --data file is never written over.
    #[arg(long)]
    pub force: bool,
    /// Stream every answer and report the time to its first token too (as a chat client sees it).
    #[arg(long)]
    pub stream: bool,
    /// Print one JSON object (the per-model summaries) as the last line.
    #[arg(long)]
    pub json: bool,
}

/// The files `eval route --out DIR` writes into DIR (see `compare::write_report`).
const REPORT_FILES: [&str; 5] = ["compare.json", "answers.jsonl", "compare.md", "compare.svg", "compare.png"];

/// Checks what can be checked before any request is spent: the gateway URL parses, and the report
/// folder can be written without replacing the --data input (never) or earlier reports (only with
/// --force).
fn check_args(a: &EvalRouteArgs) -> anyhow::Result<()> {
    rightmodel_server::config::parse_http_url(&a.base_url)
        .map_err(|why| anyhow::anyhow!("--base-url `{}` {why} (e.g. http://127.0.0.1:8080/v1)", a.base_url))?;
    if let Some(out) = &a.out {
        super::check_report_dir("--out", out, &REPORT_FILES, &[("--data", a.data.as_path())], a.force)?;
    }
    Ok(())
}

/// Runs `eval route`.
pub fn eval_route(a: EvalRouteArgs) -> anyhow::Result<()> {
    check_args(&a)?;
    let mut cases = compare::read_cases(&a.data)?;
    if let Some(n) = a.limit {
        anyhow::ensure!(n > 0, "--limit must be at least 1");
        cases.truncate(n);
    }
    compare::check_expected(&a.data, &cases, a.scoring)?;
    let mut models: Vec<String> = Vec::new();
    for m in a.models.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !models.iter().any(|x| x == m) {
            models.push(m.to_string());
        }
    }
    anyhow::ensure!(!models.is_empty(), "--models names no model");
    let cfg = CompareConfig {
        base_url: a.base_url.clone(),
        api_key: std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty()),
        models: models.clone(),
        max_tokens: u32::try_from(a.max_tokens)?,
        concurrency: a.concurrency,
        timeout: Duration::from_secs(a.timeout_s as u64),
        scoring: a.scoring,
        system: a.system.clone(),
        stream: a.stream,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(compare_client::check_models(&cfg))?;
    let pb = super::progress::bar((cases.len() * models.len()) as u64, "asking");
    let tick = pb.clone();
    let answers = rt.block_on(compare_client::run(&cases, &cfg, move || tick.inc(1), super::interrupt_signal()))?;
    pb.finish_and_clear();
    let (outcomes, partial) = keep_answered(answers, models.len(), cases.len());
    if partial.is_some_and(|p| p.answered == 0) {
        return Err(super::Interrupted(format!(
            "no prompt of {} was answered by every model before the interrupt; no report written",
            cases.len()
        ))
        .into());
    }
    let summaries = compare::summarize(&models, &outcomes);
    let notes = format!(
        "- data: `{}` ({} cases), scoring: {}\n- gateway: {}, {} request(s) at a time, max_tokens {}{}\n- cost: what the gateway billed (`x-rightmodel-cost-usd`, or a stream's `rightmodel.cost_usd`; n/a when the server does not say); latency: as the client saw it, over the requests that succeeded (n/a when none did){}",
        a.data.display(),
        cases.len(),
        a.scoring,
        a.base_url,
        a.concurrency,
        a.max_tokens,
        a.system.as_deref().map(|s| format!(", system message: \"{s}\"")).unwrap_or_default(),
        if a.stream { "; answers streamed, first token: when the first text arrived" } else { "" }
    );
    // Written before anything is printed: the report must not depend on stdout being open.
    let written = match &a.out {
        Some(out) => compare::write_report(out, &summaries, &outcomes, a.scoring, &notes, partial)?,
        None => Vec::new(),
    };
    print!("{}", compare::markdown(&summaries, a.scoring, "", None, partial));
    let failed: usize = summaries.iter().map(|s| s.errors).sum();
    if failed > 0 {
        let first = outcomes.iter().find_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.model)));
        eprintln!("{failed} request(s) failed; they score 0 (first: {})", first.unwrap_or_default());
    }
    let unpriced: Vec<&str> = summaries.iter().filter(|s| s.cost_usd.is_none()).map(|s| s.model.as_str()).collect();
    if !unpriced.is_empty() {
        eprintln!(
            "the server did not say what {} cost (no x-rightmodel-cost-usd header: not a rightmodel gateway?); cost shows n/a",
            unpriced.join(", ")
        );
    }
    if !written.is_empty() {
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!("\nwrote {}", names.join(", "));
    }
    if a.json {
        let mut line = serde_json::json!({ "models": summaries });
        if let Some(p) = partial {
            line["partial"] = serde_json::json!(p);
        }
        println!("{line}");
    }
    if let Some(p) = partial {
        let report = if written.is_empty() { "the table above".to_string() } else { "the report".to_string() };
        return Err(super::Interrupted(format!(
            "stopped after {} of {} prompts; {report} covers those only, marked as partial",
            p.answered, p.total
        ))
        .into());
    }
    check_some_answered(&summaries, &outcomes)
}

/// The outcomes to report, and how partial they are: all of a finished run; of an interrupted one,
/// those of the prompts every model answered (the models are compared on the same prompts), saying
/// on stderr how many answers to the other prompts are left out.
fn keep_answered(
    answers: compare_client::Answers,
    models: usize,
    total: usize,
) -> (Vec<compare::Outcome>, Option<compare::Partial>) {
    if !answers.interrupted {
        return (answers.outcomes, None);
    }
    let (kept, answered) = compare::complete_cases(&answers.outcomes, models);
    let left_out = answers.outcomes.len() - kept.len();
    if left_out > 0 {
        eprintln!("{left_out} answer(s) to prompts not every model had answered are left out of the report");
    }
    (kept, Some(compare::Partial { answered, total }))
}

/// Fails, naming them and the first error of each, when some model answered none of its requests: its
/// row is no measurement (a dead upstream, a wrong name), so the run must not pass for a good one in a
/// script. Called after the report is written and printed.
fn check_some_answered(summaries: &[compare::ModelSummary], outcomes: &[compare::Outcome]) -> anyhow::Result<()> {
    let dead: Vec<String> = summaries
        .iter()
        .filter(|s| s.all_failed())
        .map(|s| {
            let first = outcomes.iter().find(|o| o.model == s.model).and_then(|o| o.error.as_deref());
            format!("`{}` ({})", s.model, first.unwrap_or("no error recorded"))
        })
        .collect();
    anyhow::ensure!(
        dead.is_empty(),
        "every request failed for {}: the comparison does not measure {}",
        dead.join(", "),
        if dead.len() == 1 { "it" } else { "them" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: EvalRouteArgs,
    }

    fn args(extra: &[&str]) -> EvalRouteArgs {
        let base = ["x", "--models", "small"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().a
    }

    #[test]
    fn a_model_that_answered_nothing_fails_the_run() {
        let out = |model: &str, error: Option<&str>| compare::Outcome {
            case: 0,
            model: model.into(),
            served: None,
            answer: String::new(),
            quality: 0.0,
            latency_ms: 1.0,
            ttft_ms: None,
            cost_usd: None,
            error: error.map(str::to_string),
        };
        let models = vec!["dead".to_string(), "ok".to_string()];
        let outcomes = [out("dead", Some("HTTP 502: upstream down")), out("ok", None), out("ok", Some("timeout"))];
        let e = check_some_answered(&compare::summarize(&models, &outcomes), &outcomes).unwrap_err().to_string();
        assert!(e.contains("`dead` (HTTP 502: upstream down)") && !e.contains("`ok`"), "{e}");
        check_some_answered(&compare::summarize(&models[1..], &outcomes[1..]), &outcomes[1..]).unwrap();
    }

    #[test]
    fn a_bad_gateway_url_is_called_invalid() {
        let e = check_args(&args(&["--data", "d.jsonl", "--base-url", "notaurl"])).unwrap_err().to_string();
        assert!(e.contains("--base-url `notaurl`") && e.contains("http://"), "{e}");
        let e = check_args(&args(&["--data", "d.jsonl", "--base-url", "http://exa mple/v1"])).unwrap_err().to_string();
        assert!(e.contains("not a valid URL") && !e.contains("gateway running"), "{e}");
        check_args(&args(&["--data", "d.jsonl"])).unwrap();
    }

    #[test]
    fn the_report_never_replaces_the_data_and_earlier_reports_need_force() {
        let dir = std::env::temp_dir().join(format!("rightmodel-eval-route-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("answers.jsonl");
        std::fs::write(&data, "{\"prompt\": \"2+2?\", \"answer\": \"4\"}\n").unwrap();
        let (d, o) = (data.to_str().unwrap(), dir.to_str().unwrap());
        for force in [false, true] {
            let mut a = args(&["--data", d, "--out", o]);
            a.force = force;
            let e = check_args(&a).unwrap_err().to_string();
            assert!(e.contains("--data input") && e.contains("answers.jsonl"), "{e}");
        }
        let other = dir.join("cases.jsonl");
        std::fs::rename(&data, &other).unwrap();
        std::fs::write(dir.join("compare.md"), "an earlier report").unwrap();
        let e = check_args(&args(&["--data", other.to_str().unwrap(), "--out", o])).unwrap_err().to_string();
        assert!(e.contains("already holds compare.md") && e.contains("--force"), "{e}");
        check_args(&args(&["--data", other.to_str().unwrap(), "--out", o, "--force"])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
