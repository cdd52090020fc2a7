//! `rightmodel serve` and `rightmodel logs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rightmodel_server::reqlog::{LogRow, RequestLog};
use rightmodel_server::Config;

use super::terminal::{printable, printable_lines};

/// `serve` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  # local defaults on 127.0.0.1:8080\n",
        "  rightmodel serve\n",
        "  rightmodel serve --config rightmodel.toml --port 9000\n",
        "  # print the sha256 to put in [[key]]\n",
        "  rightmodel serve --hash-key sk-my-secret",
    )
)]
pub struct ServeArgs {
    /// TOML configuration (see rightmodel.example.toml); without it the local default models are served.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address (overrides the config).
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port (overrides the config; 0 picks a free port, printed on stderr).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print the sha256 of an API key for the config's `[[key]] sha256`, and exit.
    #[arg(long, value_name = "KEY")]
    pub hash_key: Option<String>,
    /// Check the configuration and exit: its keys and values, that upstream key variables are set,
    /// that model files resolve (catalog models not yet pulled are noted) and chat models are GGUF
    /// files, that the request log can be opened or created (read-only: nothing is created or
    /// migrated) and routed classifiers load;
    /// warns about collections not added yet, an open non-loopback gateway with paid upstreams, and no
    /// chat model.
    #[arg(long)]
    pub check: bool,
}

/// Runs `serve`.
pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if let Some(k) = a.hash_key {
        let key = key_to_hash(&k)?;
        println!("{}", rightmodel_server::auth::hash_key(key));
        return Ok(());
    }
    let mut config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default_local(),
    };
    if let Some(h) = a.host {
        // The config's own host is checked when it loads; this one replaces it.
        rightmodel_server::config::check_host(&h).map_err(|why| anyhow::anyhow!("--host: {why}"))?;
        config.server.host = h;
    }
    if let Some(p) = a.port {
        config.server.port = p;
    }
    if a.check {
        return check_config(&config);
    }
    rightmodel_infer::threads::configure_candle_threads(rightmodel_infer::threads::available_cores());
    let state = rightmodel_server::build_state(config)?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(rightmodel_server::serve(Arc::new(state)))?;
    Ok(())
}

/// The key `--hash-key` hashes: the value without surrounding whitespace, since the gateway reads a
/// client's `Authorization: Bearer` token trimmed (a pasted newline would otherwise give a hash no
/// client can ever match; stderr says so when it happens). An empty value is refused: its hash in a
/// `[[key]]` would admit a client that sends an empty token.
fn key_to_hash(key: &str) -> anyhow::Result<&str> {
    let trimmed = key.trim();
    anyhow::ensure!(
        !trimmed.is_empty(),
        "--hash-key: the key is empty; give the API key clients will send (e.g. --hash-key sk-my-secret)"
    );
    if trimmed.len() != key.len() {
        eprintln!("note: --hash-key: whitespace around the key left out (clients' keys are read without it)");
    }
    Ok(trimmed)
}

/// `serve --check`: finds what `serve` would refuse (and warns about what it would serve badly)
/// without starting listeners or loading chat models.
fn check_config(config: &Config) -> anyhow::Result<()> {
    for d in &config.docs {
        let dir = match &d.path {
            Some(p) => p.clone(),
            None => rightmodel_docs::collection_dir(&rightmodel_docs::collections_root(), &d.name)?,
        };
        if !rightmodel_docs::store::exists(&dir) {
            eprintln!(
                "warning: docs `{}`: no collection at {} yet (`docs:{}` answers 404 until one is added)",
                d.name,
                dir.display(),
                d.name
            );
        } else if let Err(e) = rightmodel_docs::Collection::open(&dir) {
            // `serve` starts without it (a collection can be re-added while it runs), but every
            // question to it fails until then.
            eprintln!("warning: docs `{}`: {e} (`docs:{}` answers with an error until it is re-added)", d.name, d.name);
        }
    }
    // Weights the config names must load at start: find out now, not when `serve` refuses to start.
    if let Some(dir) = &config.route.router_dir {
        let weights = rightmodel_router::scorer::RouterWeights::load(dir)
            .map_err(|e| anyhow::anyhow!("route.router_dir: router weights in {}: {e}", dir.display()))?;
        let store = rightmodel_models::Store::new(&rightmodel_models::home::rightmodel_home());
        if let Some(e) = &config.embedding {
            if let Ok(enc) = store.resolve_encoder(&e.model) {
                // Contextual weights read the encoder itself: load it, as `serve` does.
                let contextual = if weights.uses_static_embeddings() {
                    None
                } else {
                    let m = rightmodel_infer::MiniLm::load(&enc)
                        .map_err(|err| anyhow::anyhow!("embedding model `{}`: {err}", e.name))?;
                    Some(Arc::new(m) as Arc<dyn rightmodel_core::Embedder>)
                };
                rightmodel_router::scorer::DifficultyScorer::with_encoder_dir(weights, &enc, contextual).map_err(
                    |err| {
                        anyhow::anyhow!(
                            "route.router_dir: router weights in {} do not fit `{}`: {err}",
                            dir.display(),
                            e.name
                        )
                    },
                )?;
            }
        }
    }
    for c in &config.classifiers {
        let dir = match &c.path {
            Some(p) => p.clone(),
            None => {
                rightmodel_tasks::registry::classifiers_root(&rightmodel_models::home::rightmodel_home()).join(&c.name)
            }
        };
        if let Err(e) = rightmodel_tasks::Classifier::load(&dir) {
            let what = if c.route { "error" } else { "warning" };
            eprintln!("{what}: classifier `{}`: {e}", c.name);
            anyhow::ensure!(!c.route, "classifier `{}` has route = true but cannot be loaded", c.name);
        }
    }
    check_model_files(config)?;
    check_request_log(config)?;
    // The client `serve` builds, so its checks (the key's variable) are the same.
    for u in &config.upstreams {
        rightmodel_server::upstream::Upstream::new(u.clone())
            .map_err(|e| anyhow::anyhow!("upstream `{}`: {e}", u.name))?;
    }
    let loopback = matches!(config.server.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if !loopback && config.keys.is_empty() && config.upstreams.iter().any(|u| !u.price().is_free()) {
        eprintln!(
            "warning: listening on {} with paid upstreams and no [[key]]: anyone who can reach it spends your budget",
            config.server.host
        );
    }
    if config.chat_models().is_empty() {
        eprintln!("warning: no chat model is configured: chat and text completions answer 404");
    }
    eprintln!("configuration is valid: {} chat model(s)", config.chat_models().len());
    Ok(())
}

/// Model files and names, without pulling (a catalog model not pulled yet is pulled at start): every
/// model resolves, and a local chat model's file has a GGUF header `serve` can read (read without
/// loading the weights, as the engine does first).
fn check_model_files(config: &Config) -> anyhow::Result<()> {
    let store = rightmodel_models::Store::new(&rightmodel_models::home::rightmodel_home());
    let specs = config
        .locals
        .iter()
        .map(|m| (&m.name, &m.model, Some(m.ctx_per_slot)))
        .chain(config.embedding.iter().map(|m| (&m.name, &m.model, None)));
    for (name, spec, ctx_per_slot) in specs {
        let encoder = ctx_per_slot.is_none();
        let found = if encoder { store.resolve_encoder(spec) } else { store.resolve_gguf(spec) };
        match found {
            Ok(path) => {
                if let Some(ctx) = ctx_per_slot {
                    let info =
                        rightmodel_models::GgufInfo::read(&path).map_err(|e| anyhow::anyhow!("model `{name}`: {e}"))?;
                    check_ctx_per_slot(name, ctx, info.context_length)?;
                }
            }
            Err(e) => match rightmodel_models::catalog::find(spec) {
                // A default model of the other kind: `serve` would refuse it after pulling it.
                Some(m) if !catalog_kind_fits(m, encoder) => anyhow::bail!(
                    "model `{name}`: `{spec}` is {}, not {}",
                    if encoder { "a language model" } else { "a sentence encoder" },
                    if encoder { "a sentence encoder ([embedding] needs one)" } else { "a GGUF chat model" }
                ),
                Some(m) if !store.is_present(m) => {
                    eprintln!("note: `{name}`: {spec} is not pulled yet; `serve` pulls it at start")
                }
                _ => anyhow::bail!("model `{name}`: {e}"),
            },
        }
    }
    Ok(())
}

/// Whether the default model `m` is of the kind asked for: a sentence encoder, or a GGUF chat model.
fn catalog_kind_fits(m: &rightmodel_models::catalog::DefaultModel, encoder: bool) -> bool {
    m.files.iter().any(|f| if encoder { f.name == "model.safetensors" } else { f.name.ends_with(".gguf") })
}

/// The engine's `ctx_per_slot` rule ([`rightmodel_infer::llm::check_context`]), naming the entry.
fn check_ctx_per_slot(name: &str, ctx_per_slot: u32, trained: Option<u64>) -> anyhow::Result<()> {
    rightmodel_infer::llm::check_context(ctx_per_slot, trained)
        .map_err(|why| anyhow::anyhow!("[[local]] `{name}`: {why}"))
}

/// The request log `serve` opens (or creates): checked read-only, creating and migrating nothing.
fn check_request_log(config: &Config) -> anyhow::Result<()> {
    let path = rightmodel_server::log_path(config);
    let key = if config.server.log_path.is_some() { "server.log_path" } else { "the request log" };
    match rightmodel_server::config::check_log_file(&path) {
        Ok(None) => Ok(()),
        Ok(Some(note)) => {
            eprintln!("note: {key} {} {note}", path.display());
            Ok(())
        }
        Err(why) => anyhow::bail!("{key} {}: {why}", path.display()),
    }
}

/// Output format of `logs`.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Aligned columns.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// One JSON object per line.
    Json,
}

/// `logs` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel logs --tail 50\n",
        "  # every row of the last hour (--since alone has no row limit)\n",
        "  rightmodel logs --since 1h --format csv > today.csv\n",
        "  # every row since midnight UTC of a day\n",
        "  rightmodel logs --since 2026-12-01\n",
        "  rightmodel logs --follow\n",
        "  # per model totals, and what auto saved\n",
        "  rightmodel logs --summary --since 1d",
    )
)]
pub struct LogsArgs {
    /// Show the last N rows (default: every row with --since, else the last 20).
    #[arg(long)]
    pub tail: Option<usize>,
    /// Only rows newer than this: a duration (`90s`, `15m`, `2h`, `1d`), a date (`2026-12-01`, from
    /// midnight UTC) or an RFC 3339 time (`2026-12-01T09:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: LogFormat,
    /// Keep printing new rows as they arrive.
    #[arg(long, short)]
    pub follow: bool,
    /// Request log database (default: the one `serve` writes, or the config's `server.log_path`).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Configuration whose `server.log_path` to read.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Totals instead of rows: per served model requests, errors, tokens, cost and latency, and what
    /// `auto` saved against the largest candidate (Markdown; one JSON object with --format json, the
    /// per model rows with --format csv).
    #[arg(long, conflicts_with_all = ["follow", "tail"])]
    pub summary: bool,
}

/// What `--since` accepts, for its error messages.
const SINCE_FORMATS: &str = "use a number with a unit, s, m, h or d (e.g. 90s, 15m, 2h, 1d), a date (e.g. 2024-05-01, from midnight UTC) or an RFC 3339 time (e.g. 2024-05-01T09:00:00Z)";

/// The `--since` value as milliseconds since the epoch: a duration back from now, a date (`YYYY-MM-DD`,
/// its midnight UTC) or an RFC 3339 time. Errors say which formats are accepted (not the number
/// parser's own wording).
fn parse_since(s: &str) -> anyhow::Result<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Some(ms) = date_at_midnight_utc(s) {
        return Ok(ms);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| {
        let why = if num.is_empty() { "" } else { "the number is too large; " };
        anyhow::anyhow!("invalid --since `{s}`: {why}{SINCE_FORMATS}")
    })?;
    let ms = match unit {
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("invalid --since `{s}`: {SINCE_FORMATS}"),
    };
    n.checked_mul(ms)
        .and_then(|back| now.checked_sub(back))
        .with_context(|| format!("invalid --since `{s}`: too far back"))
}

/// A bare date `YYYY-MM-DD` as the milliseconds since the epoch of its midnight UTC; `None` for
/// anything else (a time of day belongs in an RFC 3339 value).
fn date_at_midnight_utc(s: &str) -> Option<i64> {
    let is_date_shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !is_date_shape {
        return None;
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Fails with a clear message, before SQLite is asked (it says only "disk I/O error" for a folder, and
/// would create an empty database for a missing file), when `path` is not an existing file: missing,
/// or a folder.
fn check_log_path(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => anyhow::bail!(
            "{} is a folder, not a request log; give the database file `rightmodel serve` writes (its config's `server.log_path`)",
            path.display()
        ),
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            anyhow::bail!("no request log at {} (it is created by `rightmodel serve`)", path.display())
        }
        Err(e) => anyhow::bail!("cannot read the request log {}: {e}", path.display()),
    }
}

/// Runs `logs`.
pub fn logs(a: LogsArgs) -> anyhow::Result<()> {
    let path = match (&a.db, &a.config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => rightmodel_server::log_path(&Config::load(c)?),
        (None, None) => rightmodel_server::log_path(&Config::default_local()),
    };
    check_log_path(&path)?;
    let since = a.since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
    let log = RequestLog::reader(&path)?;
    if a.summary {
        let summary = log.summarize(since)?;
        match a.format {
            LogFormat::Json => println!("{}", serde_json::to_string(&summary)?),
            LogFormat::Csv => {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                if summary.models.is_empty() {
                    // The header alone: serialising writes it with the first row only.
                    w.write_record(rightmodel_server::reqlog::ModelTotals::CSV_HEADER)?;
                }
                for m in &summary.models {
                    w.serialize(m)?;
                }
                w.flush()?;
            }
            LogFormat::Table => print!("{}", printable_lines(&summary.to_markdown())),
        }
        return Ok(());
    }
    // Where following picks up: rows committed after this point, in commit order.
    let mut last = log.last_rowid()?;
    let rows = log.read(since, rows_to_show(a.tail, a.since.is_some()))?;
    let mut out = std::io::stdout().lock();
    let mut csv_header = true;
    print_rows(&mut out, &rows, a.format, &mut csv_header)?;
    if !a.follow {
        return Ok(());
    }
    // A row committed between reading the cursor and the rows above is in both: print it once.
    let mut printed: std::collections::HashSet<String> = rows.into_iter().map(|r| r.id).collect();
    // A read that fails (the server checkpointing or restarting, the file briefly locked or replaced)
    // is retried on the next poll through a reader opened afresh: following outlives a server
    // restart. Only a long run of failures ends it.
    let mut failures = 0u32;
    let mut reader = Some(log);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let read = match reader.take() {
            Some(r) => Ok(r),
            None => RequestLog::reader(&path),
        }
        .and_then(|r| {
            let rows = r.read_after(last, 10_000)?;
            reader = Some(r);
            Ok(rows)
        });
        let (rows, next) = match read {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) if failures < FOLLOW_RETRIES => {
                failures += 1;
                if failures == 1 {
                    eprintln!("warning: {e}; retrying");
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        last = next;
        let rows: Vec<LogRow> = rows.into_iter().filter(|r| !printed.remove(&r.id)).collect();
        print_rows(&mut out, &rows, a.format, &mut csv_header)?;
    }
}

/// Rows `logs` shows when `--tail` is not given and neither is `--since`.
const DEFAULT_TAIL: usize = 20;

/// How many of the newest rows `logs` prints: `--tail` when given; otherwise all of a `--since`
/// period (an export such as `--since 1h --format csv` must not stop at a screenful), else
/// [`DEFAULT_TAIL`].
fn rows_to_show(tail: Option<usize>, since: bool) -> usize {
    match (tail, since) {
        (Some(n), _) => n,
        (None, true) => usize::MAX,
        (None, false) => DEFAULT_TAIL,
    }
}

/// Failed polls in a row (half a second apart) after which `logs --follow` gives up.
const FOLLOW_RETRIES: u32 = 120;

fn print_rows(
    out: &mut impl std::io::Write,
    rows: &[LogRow],
    format: LogFormat,
    csv_header: &mut bool,
) -> anyhow::Result<()> {
    match format {
        LogFormat::Json => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        LogFormat::Csv => {
            let mut w = csv::WriterBuilder::new().has_headers(*csv_header).from_writer(Vec::new());
            for r in rows {
                w.serialize(r)?;
            }
            if !rows.is_empty() {
                *csv_header = false;
            }
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
        LogFormat::Table => {
            if *csv_header {
                writeln!(
                    out,
                    "{:<24} {:<20} {:<14} {:<16} {:<16} {:>6} {:>6} {:>10} {:>9} {:>4}  reason",
                    "time", "endpoint", "key", "requested", "served", "in", "out", "cost $", "ms", "st"
                )?;
                *csv_header = false;
            }
            for r in rows {
                let t = chrono::DateTime::from_timestamp_millis(r.ts_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<24} {:<20} {:<14} {:<16} {:<16} {:>6} {:>6} {:>10.6} {:>9.1} {:>4}  {}{}",
                    t,
                    printable(&r.endpoint),
                    printable(r.key_name.as_deref().unwrap_or("-")),
                    printable(&r.requested_model),
                    printable(if r.served_model.is_empty() { "-" } else { &r.served_model }),
                    r.input_tokens,
                    r.output_tokens,
                    r.cost_usd,
                    r.latency_ms,
                    r.status,
                    printable(r.reason.as_deref().unwrap_or("")),
                    r.error.as_deref().map(|e| format!(" error: {}", printable(e))).unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_without_tail_shows_every_row_of_the_period() {
        assert_eq!(rows_to_show(None, true), usize::MAX);
        assert_eq!(rows_to_show(None, false), 20);
        assert_eq!(rows_to_show(Some(5), true), 5);
        assert_eq!(rows_to_show(Some(5), false), 5);
        let dir = std::env::temp_dir().join(format!("rightmodel-logs-since-{}", std::process::id()));
        let path = dir.join("log.db");
        {
            let log = RequestLog::open(&path).unwrap();
            for i in 0..30 {
                log.record(LogRow { id: format!("r{i}"), ts_ms: 1000 + i, ..Default::default() });
            }
        }
        assert_eq!(RequestLog::reader(&path).unwrap().read(0, rows_to_show(None, true)).unwrap().len(), 30);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_key_is_not_hashed() {
        for k in ["", "  ", "\n"] {
            let e = key_to_hash(k).unwrap_err().to_string();
            assert!(e.contains("--hash-key") && e.contains("empty"), "{e}");
        }
        assert_eq!(key_to_hash("sk-my-secret").unwrap(), "sk-my-secret");
    }

    #[test]
    fn a_context_beyond_the_models_is_refused_naming_the_setting() {
        let e = check_ctx_per_slot("small", 10_000_000, Some(32768)).unwrap_err().to_string();
        assert!(e.contains("`small`") && e.contains("ctx_per_slot") && e.contains("32768"), "{e}");
        check_ctx_per_slot("small", 32768, Some(32768)).unwrap();
        check_ctx_per_slot("small", 4096, None).unwrap();
    }

    #[test]
    fn the_key_is_hashed_as_clients_send_it() {
        // A pasted newline or stray spaces: the gateway trims the bearer token, so the hash must too.
        for k in ["sk-a\n", " sk-a ", "\tsk-a\r\n"] {
            assert_eq!(key_to_hash(k).unwrap(), "sk-a");
        }
    }

    #[test]
    fn a_folder_or_a_missing_file_is_not_read_as_a_request_log() {
        let dir = std::env::temp_dir().join(format!("rightmodel-logs-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = check_log_path(&dir).unwrap_err().to_string();
        assert!(e.contains("is a folder, not a request log"), "{e}");
        let missing = dir.join("none.db");
        let e = check_log_path(&missing).unwrap_err().to_string();
        assert!(e.contains("no request log at") && e.contains("none.db"), "{e}");
        assert!(!missing.exists(), "a read must not create the database");
        std::fs::write(&missing, "").unwrap();
        check_log_path(&missing).unwrap();
        let e = check_log_path(&missing.join("below")).unwrap_err().to_string();
        assert!(e.contains("no request log at"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn since_errors_say_what_is_accepted() {
        for bad in ["yesterday", "", "5w", "99999999999999999999s", "2026-13-01", "2026-12-1"] {
            let e = format!("{:#}", parse_since(bad).unwrap_err());
            assert!(e.contains("15m") && e.contains("RFC 3339"), "{bad}: {e}");
            assert!(!e.contains("cannot parse integer"), "{bad}: {e}");
        }
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - 90_000 - parse_since("90s").unwrap()).abs() < 5_000);
        assert_eq!(parse_since("2024-05-01T00:00:00Z").unwrap(), 1_714_521_600_000);
    }

    #[test]
    fn a_bare_date_is_its_midnight_utc() {
        assert_eq!(parse_since("2024-05-01").unwrap(), 1_714_521_600_000);
        assert_eq!(parse_since("2024-05-01").unwrap(), parse_since("2024-05-01T00:00:00Z").unwrap());
        assert_eq!(parse_since("2024-02-29").unwrap() - parse_since("2024-02-28").unwrap(), 86_400_000);
        let e = format!("{:#}", parse_since("2023-02-29").unwrap_err());
        assert!(e.contains("a date (e.g. 2024-05-01"), "{e}");
    }
}
