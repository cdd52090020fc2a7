//! `rightmodel`: the right model for each request.
//!
//! The binary only parses arguments and wires the library crates together; every piece of logic a test
//! needs lives in a library crate.

mod cmd;
mod home;

use clap::{Parser, Subcommand};

/// rightmodel serves an OpenAI-compatible API and picks, per request, the smallest model that will do
/// the job: small models in-process on the CPU, large ones behind any OpenAI-compatible upstream.
#[derive(Parser)]
#[command(name = "rightmodel", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  rightmodel serve\n  rightmodel pull all\n  rightmodel generate \"The capital of France is\"\n  rightmodel router eval --data routing.csv"
)]
struct Cli {
    /// Log filter (e.g. `info`, `rightmodel=debug`). Without it: RIGHTMODEL_LOG, else RUST_LOG, else
    /// `warn`.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the default models into the local store.
    Pull(cmd::models::PullArgs),
    /// List the models in the local store.
    Models(cmd::models::ModelsArgs),
    /// Generate a completion for one prompt with a local GGUF model, streamed to stdout.
    Generate(cmd::generate::GenerateArgs),
    /// Chat interactively with a local GGUF model in the terminal.
    Chat(cmd::generate::ChatArgs),
    /// Print sentence embeddings of texts as JSON lines.
    Embed(cmd::embed::EmbedArgs),
    /// Measure local inference speed (prompt processing, generation, TTFT, embeddings, RSS).
    Bench(cmd::bench::BenchArgs),
    /// Serve the OpenAI-compatible HTTP API.
    Serve(cmd::serve::ServeArgs),
    /// Read the request log.
    Logs(cmd::serve::LogsArgs),
    /// Train, score, evaluate and calibrate the difficulty router.
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  rightmodel router eval --data ../shared/data/routing/mmlu.csv \\\n",
            "      --out router-eval\n",
            "  rightmodel router train --data outcomes.csv\n",
            "  echo '{\"prompt\": \"Prove that the square root of 2 is irrational\"}' \\\n",
            "      | rightmodel router score",
        )
    )]
    Router(cmd::router::RouterCmd),
    /// Train task models on your own data.
    #[command(
        subcommand,
        after_help = concat!(
            "Example:\n",
            "  rightmodel train classify --data reviews.csv --text-col text \\\n",
            "      --label-col label --name reviews",
        )
    )]
    Train(cmd::tasks::TrainCmd),
    /// Classify texts with a trained classifier.
    Classify(cmd::tasks::ClassifyArgs),
    /// Manage document collections and ask them questions.
    #[command(
        subcommand,
        after_help = "Examples:\n  rightmodel docs add handbook ./handbook\n  rightmodel docs ask handbook \"How many vacation days do I get?\"\n  rightmodel docs list"
    )]
    Docs(cmd::docs::DocsCmd),
    /// Evaluate task models, document QA, and small vs large vs routed on your own prompts.
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  rightmodel eval classify --model trec \\\n",
            "      --data ../shared/data/classify/trec/test.tsv\n",
            "  rightmodel eval docs --squad ../shared/data/docqa/squad_dev_half.json \\\n",
            "      --limit 1000\n",
            "  rightmodel eval route --data my_prompts.jsonl \\\n",
            "      --models small,large,auto --out compare/",
        )
    )]
    Eval(cmd::EvalCmd),
}

fn main() {
    #[cfg(unix)]
    reexec_with_short_openmp_spin();
    let cli = Cli::parse();
    init_tracing(&log_filter(cli.log.as_deref(), std::env::var("RIGHTMODEL_LOG").ok(), std::env::var("RUST_LOG").ok()));
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve(_)) {
        die_quietly_on_closed_pipe();
    }
    // Every command keeps or reads state below the home folder; without one, say so before anything
    // runs (the library's fallback is a path nothing can be created under).
    if let Err(e) = rightmodel_models::home::try_rightmodel_home() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Pull(a) => cmd::models::pull(a),
        Command::Models(a) => cmd::models::list(a),
        Command::Generate(a) => cmd::generate::generate(a),
        Command::Chat(a) => cmd::generate::chat(a),
        Command::Embed(a) => cmd::embed::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Serve(a) => cmd::serve::serve(a),
        Command::Logs(a) => cmd::serve::logs(a),
        Command::Router(c) => cmd::router::run(c),
        Command::Train(c) => cmd::tasks::train(c),
        Command::Classify(a) => cmd::tasks::classify(a),
        Command::Docs(c) => cmd::docs::run(c),
        Command::Eval(c) => cmd::eval(c),
    };
    if let Err(e) = result {
        // The reader went away (`| head`): nothing more to say, as for any Unix filter.
        let closed = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
        if closed {
            std::process::exit(0);
        }
        if let Some(stopped) = e.downcast_ref::<cmd::Interrupted>() {
            eprintln!("interrupted: {stopped}");
            std::process::exit(130);
        }
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message before it already
/// shows: library errors often print their source inline ("path: No such file") *and* expose it as the
/// source, and `{:#}` would repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Spins an idle OpenMP thread makes before it sleeps (libgomp's default is 300,000).
const OPENMP_SPIN_COUNT: &str = "1000";

/// Re-executes the binary once with `GOMP_SPINCOUNT` set to [`OPENMP_SPIN_COUNT`], unless the user set
/// it or `OMP_WAIT_POLICY`.
///
/// llama.cpp runs on OpenMP, and libgomp reads its settings once, when it is loaded, before `main`
/// runs, so the only way to change them from inside is to start again with them in the environment.
/// Its default keeps idle threads spinning for a long while after every decode step, which starves the
/// encoder's threads and every other process. Measured on 2 cores with two other busy processes:
/// prompt processing 190-285 -> 478-497 tok/s, generation 15-17 -> 36-38 tok/s, chat TTFT 83-101 ->
/// 58-67 ms; on an idle machine no change (85 tok/s either way), whereas not spinning at all
/// (`OMP_WAIT_POLICY=passive`) halves idle generation.
#[cfg(unix)]
fn reexec_with_short_openmp_spin() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GOMP_SPINCOUNT").is_some() || std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
        .exec();
    // `exec` returns only on failure: carry on with OpenMP's defaults.
    eprintln!("warning: could not restart with GOMP_SPINCOUNT={OPENMP_SPIN_COUNT} ({err}); continuing without it");
}

/// Restores the default SIGPIPE action, so that a command whose output is piped into `head` ends
/// quietly when the reader closes the pipe, like any Unix filter. Rust ignores SIGPIPE at start-up,
/// turning the closed pipe into an error from every write, and `println!` panics on it. Not for `serve`:
/// a gateway must survive clients that hang up (its socket writes do not raise SIGPIPE on Linux, but
/// nothing is gained by risking it).
#[cfg(unix)]
fn die_quietly_on_closed_pipe() {
    // SAFETY: called once on the main thread before any other thread is started; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Log filter used when neither `--log` nor an environment variable names one.
const DEFAULT_LOG_FILTER: &str = "warn";

/// The log filter to use: an explicit `--log` wins (a flag typed on the command line is the most
/// specific wish), then `RIGHTMODEL_LOG`, then `RUST_LOG`, then [`DEFAULT_LOG_FILTER`]. Blank values
/// count as unset.
fn log_filter(flag: Option<&str>, rightmodel_log: Option<String>, rust_log: Option<String>) -> String {
    let set = |v: &str| !v.trim().is_empty();
    flag.filter(|v| set(v))
        .map(str::to_string)
        .or(rightmodel_log.filter(|v| set(v)))
        .or(rust_log.filter(|v| set(v)))
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_string())
}

/// Sends logs to stderr, filtered by `filter`, in colour only when stderr is a terminal (a log file or
/// a pipe would otherwise be full of escape codes). An unparsable filter is reported and the default
/// used, rather than silently logging nothing.
fn init_tracing(filter: &str) {
    use std::io::IsTerminal;
    let env_filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter `{filter}` ({e}); using `{DEFAULT_LOG_FILTER}`");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_log_flag_wins_over_the_environment() {
        let env = |v: &str| Some(v.to_string());
        assert_eq!(log_filter(Some("info"), env("debug"), env("error")), "info");
        assert_eq!(log_filter(None, env("debug"), env("error")), "debug");
        assert_eq!(log_filter(None, None, env("error")), "error");
        assert_eq!(log_filter(None, env(" "), None), DEFAULT_LOG_FILTER);
        assert_eq!(log_filter(None, None, None), DEFAULT_LOG_FILTER);
    }

    /// Terminal width the help examples must fit without clap wrapping them.
    const HELP_WIDTH: usize = 80;

    /// The command path and long help, rendered `width` columns wide, of `cmd` and all its subcommands.
    fn long_helps(cmd: &clap::Command, path: &str, width: usize, out: &mut Vec<(String, String)>) {
        let mut this = cmd.clone().term_width(width);
        out.push((path.to_string(), this.render_long_help().to_string()));
        for sub in cmd.get_subcommands() {
            long_helps(sub, &format!("{path} {}", sub.get_name()), width, out);
        }
    }

    /// Every command's long help at `width` columns (0: never wrapped).
    fn all_long_helps(width: usize) -> Vec<(String, String)> {
        use clap::CommandFactory;
        let mut root = Cli::command();
        root.build();
        let mut out = Vec::new();
        long_helps(&root, "rightmodel", width, &mut out);
        out
    }

    /// The lines of a help text's "Example:"/"Examples:" section, up to the first blank line.
    fn example_lines(help: &str) -> Vec<&str> {
        help.lines()
            .skip_while(|l| !matches!(l.trim_end(), "Example:" | "Examples:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect()
    }

    /// What is wrong with an examples section, line by line: a line wider than [`HELP_WIDTH`], or one
    /// not laid out as a command (2 spaces, then a `#` comment or a command line) or, after a line
    /// ending in `\`, as its continuation (6 spaces); and a command (its first line with those
    /// continuing it) that does not run `rightmodel`. A line clap wrapped fails these checks.
    fn example_problems(lines: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut command = String::new();
        for (i, line) in lines.iter().enumerate() {
            let continued = i > 0 && lines[i - 1].ends_with('\\');
            let indent = line.len() - line.trim_start().len();
            if line.chars().count() > HELP_WIDTH {
                problems.push(format!("wider than {HELP_WIDTH} columns: {line:?}"));
            }
            if continued && indent != 6 {
                problems.push(format!("continues the line above but is not indented by 6 spaces: {line:?}"));
            }
            if !continued && indent != 2 {
                problems.push(format!("not indented by 2 spaces: {line:?}"));
            }
            command.push_str(line);
            if !line.ends_with('\\') {
                let text = command.trim_start();
                if !text.starts_with('#') && !text.contains("rightmodel") {
                    problems.push(format!("neither a `rightmodel` command nor a `#` comment (wrapped?): {text:?}"));
                }
                command.clear();
            }
        }
        problems
    }

    #[test]
    fn help_examples_fit_80_columns_unwrapped() {
        let narrow = all_long_helps(HELP_WIDTH);
        let wide = all_long_helps(0);
        let mut problems = Vec::new();
        let mut with_examples = 0;
        for ((path, help), (_, unwrapped)) in narrow.iter().zip(&wide) {
            let lines = example_lines(help);
            with_examples += usize::from(!lines.is_empty());
            if lines != example_lines(unwrapped) {
                problems.push(format!("`{path} --help`: clap wraps the examples at {HELP_WIDTH} columns"));
            }
            problems.extend(example_problems(&lines).into_iter().map(|p| format!("`{path} --help`: {p}")));
        }
        assert!(with_examples >= 20, "only {with_examples} commands have examples: is the walk broken?");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_example_check_catches_wrapped_lines() {
        assert!(example_problems(&["  rightmodel eval classify --model trec \\", "      --data x.tsv"]).is_empty());
        assert!(example_problems(&["  # a comment", "  echo x \\", "      | rightmodel router score"]).is_empty());
        // What clap makes of a long line: the rest at the same indentation.
        assert_eq!(example_problems(&["  rightmodel eval classify --model trec --data", "  ../x/test.tsv"]).len(), 1);
        assert_eq!(example_problems(&["  rightmodel x \\", "  --data x.tsv"]).len(), 1);
        assert_eq!(example_problems(&[&format!("  rightmodel {}", "x".repeat(80))]).len(), 1);
        assert_eq!(example_lines("Usage: x\n\nExamples:\n  a\n  b\n\nNote: c\n"), ["  a", "  b"]);
    }
}
