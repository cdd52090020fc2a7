//! The request log: one SQLite row per request, written off the request path.
//!
//! Handlers hand a [`LogRow`] to a channel; one writer thread drains it and commits in batches inside
//! transactions (WAL, `synchronous=FULL`), so the request path never waits on disk and a crash loses no
//! committed row. On shutdown the writer drains the channel before it exits.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::Serialize;

/// Why the log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// SQLite failed.
    #[error("request log {path}: {source}")]
    Sqlite {
        /// Database file.
        path: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The file exists but is not a log `rightmodel serve` writes (another SQLite database, or not
    /// SQLite at all); readers say so instead of SQLite's "no such table", and leave it untouched.
    #[error("{path} is not a rightmodel request log ({reason}); give the database file `rightmodel serve` writes (its config's `server.log_path`)")]
    NotARequestLog {
        /// Database file.
        path: String,
        /// What it is instead.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// Directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One request, as logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogRow {
    /// Request id (also returned in `x-request-id`).
    pub id: String,
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    /// Name of the API key (never the key).
    pub key_name: Option<String>,
    /// Endpoint path.
    pub endpoint: String,
    /// `model` as requested.
    pub requested_model: String,
    /// Model that answered (empty when none did).
    pub served_model: String,
    /// Route decision reason code.
    pub reason: Option<String>,
    /// Full decision as JSON.
    pub decision: Option<String>,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Dollars.
    pub cost_usd: f64,
    /// Whole-request latency.
    pub latency_ms: f64,
    /// Time to first token (streams and local generation).
    pub ttft_ms: Option<f64>,
    /// HTTP status.
    pub status: u16,
    /// Error message, if any.
    pub error: Option<String>,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Of `input_tokens`, those the model served from its prompt cache (billed at the cached price;
    /// local prefix reuse or an upstream's `prompt_tokens_details.cached_tokens`). Last, so CSV
    /// exports keep their earlier column order.
    pub cached_tokens: u64,
}

/// The columns of [`SCHEMA`]'s `requests` table that an existing log must have: [`RequestLog::open`]
/// adds the newer `cached_tokens` to an older log, not these (`serve --check` looks for them).
pub const BASE_COLUMNS: [&str; 16] = [
    "id",
    "ts_ms",
    "key_name",
    "endpoint",
    "requested_model",
    "served_model",
    "reason",
    "decision",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "stream",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    key_name TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    reason TEXT,
    decision TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    status INTEGER NOT NULL,
    error TEXT,
    stream INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts_ms);
";

fn open(path: &Path) -> Result<Connection, LogError> {
    let sql = |source| LogError::Sqlite { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LogError::Io { path: dir.display().to_string(), source })?;
    }
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    add_missing_columns(&conn).map_err(sql)?;
    Ok(conn)
}

/// The SQL for the cached-token count of a row: the column, or 0 in a log written by an older version
/// that no new server has opened yet (readers open it read-only and cannot add the column).
fn cached_tokens_sql(conn: &Connection) -> &'static str {
    if has_cached_tokens(conn).unwrap_or(false) {
        "cached_tokens"
    } else {
        "0"
    }
}

/// Whether the log's table has the `cached_tokens` column (logs of older versions lack it).
fn has_cached_tokens(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare("SELECT 1 FROM pragma_table_info('requests') WHERE name = 'cached_tokens'")?.exists([])
}

/// Brings a log written by an older version up to the current columns (`CREATE TABLE IF NOT EXISTS`
/// leaves an existing table as it is). Old rows read 0 for the added counts.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    if !has_cached_tokens(conn)? {
        match conn.execute_batch("ALTER TABLE requests ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0") {
            // Another process (a `logs` reader never alters; a second server) added it in between.
            Err(e) if e.to_string().contains("duplicate column") => {}
            other => other?,
        }
    }
    Ok(())
}

/// Handle to the writer thread; cloneable sender side.
pub struct RequestLog {
    tx: Option<Sender<LogRow>>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
    stats: Arc<LogStats>,
}

/// How the writer is doing, for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Rows waiting for the database (queued behind a lock or a full disk).
    pub pending: AtomicU64,
    /// Rows given up on since the start.
    pub dropped: AtomicU64,
    /// Since when (Unix ms) the database has refused every write, 0 while writes succeed: a log
    /// locked or on a full disk for a while is a readiness concern before rows are dropped.
    pub failing_since_ms: AtomicI64,
}

impl RequestLog {
    /// Opens (creating if needed) the database and starts the writer.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_with_retention(path, None)
    }

    /// Like [`RequestLog::open`]; with `keep_days`, rows older than that are deleted at start and hourly
    /// (a busy gateway writes gigabytes a month otherwise).
    pub fn open_with_retention(path: &Path, keep_days: Option<u32>) -> Result<Self, LogError> {
        let conn = open(path)?;
        let (tx, rx) = channel();
        let p = path.to_path_buf();
        let stats = Arc::new(LogStats::default());
        let st = stats.clone();
        let writer = std::thread::Builder::new()
            .name("rightmodel-log".into())
            .spawn(move || write_loop(conn, rx, &p, &st, keep_days))
            .map_err(|source| LogError::Io { path: path.display().to_string(), source })?;
        Ok(RequestLog { tx: Some(tx), writer: Some(writer), path: path.to_path_buf(), stats })
    }

    /// Whether the writer thread still runs: once it has ended (a panic), every row is lost.
    pub fn writer_running(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// The writer's counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// Queues a row; never blocks.
    pub fn record(&self, row: LogRow) {
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(row) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("request log writer has stopped; row {} was not written", e.0.id);
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dollars spent by requests that finished since `since_ms`, in total and per key name (to restore
    /// budgets after a restart: a live server charges a request when it finishes).
    pub fn spend_since(path: &Path, since_ms: i64) -> Result<(f64, Vec<(String, f64)>), LogError> {
        let sql = |source| LogError::Sqlite { path: path.display().to_string(), source };
        let conn = open(path)?;
        let total: f64 = conn
            .query_row(
                &format!("SELECT COALESCE(SUM(cost_usd),0) FROM requests WHERE {FINISHED_SINCE}"),
                [since_ms],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key_name, SUM(cost_usd) FROM requests WHERE {FINISHED_SINCE} AND key_name IS NOT NULL GROUP BY key_name"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map([since_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok((total, rows))
    }

    /// Opens the log at `path` for reading, checked once to be a request log ([`check_request_log`]):
    /// `logs` and `logs --follow` read through one [`LogReader`] instead of re-checking the file per read.
    pub fn reader(path: &Path) -> Result<LogReader, LogError> {
        LogReader::open(path)
    }
}

/// A request log opened read-only: reads never create a table or write to the file, and wait for a
/// writer's lock (e.g. a checkpoint while the server stops) instead of failing at once. Each read is
/// its own read transaction, so a reader kept open sees the rows committed since its last read.
pub struct LogReader {
    path: PathBuf,
    conn: Connection,
    /// `cached_tokens`, or `0` for logs of versions without the column (read once at open).
    cached_tokens: &'static str,
}

impl LogReader {
    /// Checks that `path` is a request log and opens it read-only.
    fn open(path: &Path) -> Result<Self, LogError> {
        check_request_log(path)?;
        let sql = |source| LogError::Sqlite { path: path.display().to_string(), source };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        let cached_tokens = cached_tokens_sql(&conn);
        Ok(LogReader { path: path.to_path_buf(), conn, cached_tokens })
    }

    fn sql_error(&self, source: rusqlite::Error) -> LogError {
        LogError::Sqlite { path: self.path.display().to_string(), source }
    }

    /// Rows at or after `since_ms`, oldest first, at most `limit` (the newest ones; `usize::MAX`: all).
    pub fn read(&self, since_ms: i64, limit: usize) -> Result<Vec<LogRow>, LogError> {
        let sql = |source| self.sql_error(source);
        let conn = &self.conn;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, ts_ms, key_name, endpoint, requested_model, served_model, reason, decision, input_tokens,
                        output_tokens, cost_usd, latency_ms, ttft_ms, status, error, stream, {}
                 FROM (SELECT rowid AS r, * FROM requests WHERE ts_ms >= ?1 ORDER BY ts_ms DESC, r DESC LIMIT ?2)
                 ORDER BY ts_ms ASC, r ASC",
                self.cached_tokens
            ))
            .map_err(sql)?;
        let rows = stmt
            // `usize::MAX` (every row) cast to i64 is -1, which SQLite reads as no limit only by
            // convention: clamp instead of relying on the wrap.
            .query_map(params![since_ms, i64::try_from(limit).unwrap_or(i64::MAX)], row_from)
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok(rows)
    }

    /// Rows committed after the row with SQLite rowid `after`, in commit order, with the last rowid read
    /// (`after` when none). `logs --follow` polls this: rows are written when requests *finish*, so a long
    /// stream's row lands after shorter requests that arrived later, and polling by arrival time would skip it.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<(Vec<LogRow>, i64), LogError> {
        let sql = |source| self.sql_error(source);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, ts_ms, key_name, endpoint, requested_model, served_model, reason, decision, input_tokens,
                        output_tokens, cost_usd, latency_ms, ttft_ms, status, error, stream, {}, rowid
                 FROM requests WHERE rowid > ?1 ORDER BY rowid ASC LIMIT ?2",
                self.cached_tokens
            ))
            .map_err(sql)?;
        let mut last = after;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| Ok((row_from(r)?, r.get::<_, i64>(17)?)))
            .map_err(sql)?
            .map(|x| {
                x.map(|(row, id)| {
                    last = last.max(id);
                    row
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok((rows, last))
    }

    /// The rowid of the last committed row (0 for an empty log).
    pub fn last_rowid(&self) -> Result<i64, LogError> {
        self.conn
            .query_row("SELECT coalesce(max(rowid), 0) FROM requests", [], |r| r.get(0))
            .map_err(|e| self.sql_error(e))
    }
}

/// Rows of requests that finished at or after `?1` (rows are stamped when requests arrive); the first
/// term keeps the timestamp index usable (no request runs for a day).
const FINISHED_SINCE: &str = "ts_ms >= ?1 - 86400000 AND ts_ms + latency_ms >= ?1";

/// Fails with [`LogError::NotARequestLog`] unless the existing file at `path` is an SQLite database
/// whose `requests` table has every column of [`BASE_COLUMNS`]. Reads the header, then the table's
/// columns with an immutable read-only connection (see `config::log_columns`), so nothing is written
/// to the file or next to it, whatever it turns out to be.
pub fn check_request_log(path: &Path) -> Result<(), LogError> {
    let not_log = |reason: String| LogError::NotARequestLog { path: path.display().to_string(), reason };
    if !crate::config::has_sqlite_header(path)
        .map_err(|source| LogError::Read { path: path.display().to_string(), source })?
    {
        return Err(not_log("not an SQLite database".into()));
    }
    let columns = crate::config::log_columns(path).map_err(|why| not_log(format!("it {why}")))?;
    if columns.is_empty() {
        return Err(not_log("an SQLite database without a `requests` table".into()));
    }
    let missing: Vec<&str> = BASE_COLUMNS.iter().copied().filter(|c| !columns.iter().any(|have| have == c)).collect();
    if !missing.is_empty() {
        return Err(not_log(format!("its `requests` table lacks {}", missing.join(", "))));
    }
    Ok(())
}

/// One served model's totals in a [`LogSummary`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ModelTotals {
    /// The model that answered (`-` for requests no model answered: refusals, bad input).
    pub served_model: String,
    /// Requests.
    pub requests: u64,
    /// Of them, answered with an error status (>= 400).
    pub errors: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Of them, served from a cache.
    pub cached_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Dollars billed for this model's own calls: a cascade that escalated bills its small attempt to
    /// the small model, though the request counts for the model that answered.
    pub cost_usd: f64,
    /// Median whole-request latency.
    pub p50_ms: f64,
    /// 95th percentile latency.
    pub p95_ms: f64,
}

/// What the gateway did over a period: per served model totals, and what `auto` cost against what
/// the largest candidate would have cost for the same answers (see [`LogSummary::auto_cost_if_largest_usd`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LogSummary {
    /// Start of the period (Unix milliseconds).
    pub since_ms: i64,
    /// All requests.
    pub requests: u64,
    /// Dollars billed in all.
    pub cost_usd: f64,
    /// Requests for `model: "auto"`.
    pub auto_requests: u64,
    /// Of them, answered with an error status (>= 400): left out of the comparison, which has no
    /// answer to price on either side.
    pub auto_failed: u64,
    /// What the `auto` requests that succeeded were billed.
    pub auto_cost_usd: f64,
    /// What the same successful requests would have been billed on the largest candidate, on the
    /// scale of the bills (not the router's pre-call estimates, which assume a typical answer length
    /// and run several times the bills): each served call's bill times the router's ratio of the
    /// largest candidate's estimate to the served model's, so an answer by the largest candidate
    /// saves nothing and an escalated cascade costs its first attempt; for a served model the
    /// router priced at nothing (free, or a fallback it did not price), the largest candidate's
    /// estimate times [`LogSummary::auto_estimate_scale`]; a request with no readable decision
    /// counts as billed (no saving claimed).
    pub auto_cost_if_largest_usd: f64,
    /// Successful `auto` requests priced from the router's estimate alone (served at no estimated
    /// price), scaled by `auto_estimate_scale`.
    pub auto_from_estimate: u64,
    /// Bills over the router's estimates for the served calls it priced this period, used to bring
    /// the estimates of `auto_from_estimate` requests to the bills' scale; `None` when it priced none
    /// (those estimates are then used as they are).
    pub auto_estimate_scale: Option<f64>,
    /// Per served model, most requests first.
    pub models: Vec<ModelTotals>,
}

/// `auto`'s side of a [`LogSummary`], from [`auto_savings`].
#[derive(Debug, Clone, Default, PartialEq)]
struct AutoSavings {
    requests: u64,
    failed: u64,
    billed: f64,
    if_largest: f64,
    from_estimate: u64,
    scale: Option<f64>,
}

/// One successful `auto` request, as [`AutoSavings::price`] prices it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct AutoRow {
    /// The whole row's bill (an escalated cascade's both calls).
    billed: f64,
    /// Of it, an escalated cascade's first attempt.
    first_attempt: f64,
    /// The router's estimate for the largest candidate (`cost_if_largest_usd`).
    largest_estimate: Option<f64>,
    /// The router's estimate for the model that served (its entry in `candidates`).
    served_estimate: Option<f64>,
}

impl AutoSavings {
    /// Totals of `rows` (the successful `auto` requests) against the largest candidate, on the bills'
    /// scale (see [`LogSummary::auto_cost_if_largest_usd`]).
    fn price(requests: u64, failed: u64, rows: &[AutoRow]) -> AutoSavings {
        let served_bill = |r: &AutoRow| (r.billed - r.first_attempt).max(0.0);
        let priced = rows.iter().filter(|r| r.largest_estimate.is_some() && r.served_estimate.is_some_and(|e| e > 0.0));
        let (bills, estimates) =
            priced.fold((0.0, 0.0), |(b, e), r| (b + served_bill(r), e + r.served_estimate.unwrap_or(0.0)));
        let scale = (estimates > 0.0).then(|| bills / estimates);
        let mut out = AutoSavings { requests, failed, scale, ..Default::default() };
        for r in rows {
            out.billed += r.billed;
            out.if_largest += match (r.largest_estimate, r.served_estimate) {
                (None, _) => r.billed,
                (Some(largest), Some(served)) if served > 0.0 => served_bill(r) * largest / served,
                (Some(largest), _) => {
                    out.from_estimate += 1;
                    largest * scale.unwrap_or(1.0)
                }
            };
        }
        out.billed = plus_zero(out.billed);
        out.if_largest = plus_zero(out.if_largest);
        out
    }
}

/// What `auto` requests since `since_ms` were billed and would have been billed on the largest
/// candidate (see [`LogSummary::auto_cost_if_largest_usd`]). A decision that cannot be read prices
/// nothing (json_valid guards json_extract and json_each).
fn auto_savings(conn: &Connection, since_ms: i64) -> rusqlite::Result<AutoSavings> {
    let (requests, failed): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(status >= 400), 0) FROM requests WHERE ts_ms >= ?1 AND requested_model = 'auto'",
        params![since_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt = conn.prepare(
        "SELECT cost_usd,
                CASE WHEN json_valid(decision) AND json_extract(decision, '$.cascade.escalated')
                          AND json_type(decision, '$.cascade.first_cost_usd') IN ('real', 'integer')
                     THEN json_extract(decision, '$.cascade.first_cost_usd') ELSE 0 END,
                CASE WHEN json_valid(decision)
                          AND json_type(decision, '$.cost_if_largest_usd') IN ('real', 'integer')
                     THEN json_extract(decision, '$.cost_if_largest_usd') END,
                CASE WHEN json_valid(decision) AND json_type(decision, '$.candidates') = 'array'
                     THEN (SELECT json_extract(c.value, '$.cost_usd') FROM json_each(decision, '$.candidates') c
                           WHERE json_extract(c.value, '$.name') = served_model
                                 AND json_type(c.value, '$.cost_usd') IN ('real', 'integer') LIMIT 1) END
         FROM requests WHERE ts_ms >= ?1 AND requested_model = 'auto' AND status < 400",
    )?;
    let rows = stmt
        .query_map(params![since_ms], |r| {
            Ok(AutoRow {
                billed: r.get(0)?,
                first_attempt: r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                largest_estimate: r.get(2)?,
                served_estimate: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let count = |v: i64| v.max(0) as u64;
    Ok(AutoSavings::price(count(requests), count(failed), &rows))
}

impl LogReader {
    /// Totals of the rows at or after `since_ms` (see [`LogSummary`]). Reads every latency of the
    /// period for the percentiles (8 bytes a row).
    pub fn summarize(&self, since_ms: i64) -> Result<LogSummary, LogError> {
        let sql = |source| self.sql_error(source);
        // One read transaction: every query sees the same rows while a server keeps writing.
        let conn = self.conn.unchecked_transaction().map_err(sql)?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT CASE WHEN served_model = '' THEN '-' ELSE served_model END AS m, count(*),
                        sum(status >= 400), sum(input_tokens), sum({}), sum(output_tokens), sum(cost_usd)
                 FROM requests WHERE ts_ms >= ?1 GROUP BY m ORDER BY count(*) DESC, m",
                self.cached_tokens
            ))
            .map_err(sql)?;
        let count = |v: i64| v.max(0) as u64;
        let mut models = stmt
            .query_map(params![since_ms], |r| {
                Ok(ModelTotals {
                    served_model: r.get(0)?,
                    requests: count(r.get(1)?),
                    errors: count(r.get(2)?),
                    input_tokens: count(r.get(3)?),
                    cached_tokens: count(r.get(4)?),
                    output_tokens: count(r.get(5)?),
                    cost_usd: r.get(6)?,
                    ..Default::default()
                })
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        // One pass over the period's latencies, grouped by model and sorted within each.
        let mut lat = conn
            .prepare(
                "SELECT CASE WHEN served_model = '' THEN '-' ELSE served_model END AS m, latency_ms FROM requests
                 WHERE ts_ms >= ?1 ORDER BY m, latency_ms",
            )
            .map_err(sql)?;
        let mut by_model: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
        let pairs =
            lat.query_map(params![since_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))).map_err(sql)?;
        for pair in pairs {
            let (m, v) = pair.map_err(sql)?;
            by_model.entry(m).or_default().push(v);
        }
        move_cascade_costs(&conn, since_ms, &mut models).map_err(sql)?;
        for m in &mut models {
            let v = by_model.remove(&m.served_model).unwrap_or_default();
            m.p50_ms = rightmodel_router::metrics::nearest_rank(&v, 0.5);
            m.p95_ms = rightmodel_router::metrics::nearest_rank(&v, 0.95);
        }
        let auto = auto_savings(&conn, since_ms).map_err(sql)?;
        Ok(LogSummary {
            since_ms,
            requests: models.iter().map(|m| m.requests).sum(),
            // An empty period sums to -0.0 (the float sum starts there): a total reads $0.000000.
            cost_usd: plus_zero(models.iter().map(|m| m.cost_usd).sum()),
            auto_requests: auto.requests,
            auto_failed: auto.failed,
            auto_cost_usd: auto.billed,
            auto_cost_if_largest_usd: auto.if_largest,
            auto_from_estimate: auto.from_estimate,
            auto_estimate_scale: auto.scale,
            models,
        })
    }
}

/// Moves what escalated cascades paid and used for their small attempt (`cascade.first_cost_usd` and,
/// where recorded, `cascade.first_input_tokens` / `first_cached_tokens` / `first_output_tokens` of the
/// decision) from the model that answered to the small model, which may have served no request itself:
/// the row sums both calls, and /metrics counts each model's own.
fn move_cascade_costs(
    conn: &rusqlite::Connection,
    since_ms: i64,
    models: &mut Vec<ModelTotals>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT json_extract(decision, '$.cascade.first'),
                CASE WHEN served_model = '' THEN '-' ELSE served_model END,
                sum(coalesce(json_extract(decision, '$.cascade.first_cost_usd'), 0)),
                sum(coalesce(json_extract(decision, '$.cascade.first_input_tokens'), 0)),
                sum(coalesce(json_extract(decision, '$.cascade.first_cached_tokens'), 0)),
                sum(coalesce(json_extract(decision, '$.cascade.first_output_tokens'), 0))
         FROM requests
         WHERE ts_ms >= ?1 AND json_valid(decision)
               AND json_type(decision, '$.cascade.first') = 'text'
               AND json_type(decision, '$.cascade.first_cost_usd') IN ('real', 'integer')
         GROUP BY 1, 2",
    )?;
    let count = |v: f64| if v.is_finite() && v > 0.0 { v as u64 } else { 0 };
    let moves = stmt
        .query_map(params![since_ms], |r| {
            let first = ModelTotals {
                served_model: r.get(0)?,
                cost_usd: r.get(2)?,
                input_tokens: count(r.get(3)?),
                cached_tokens: count(r.get(4)?),
                output_tokens: count(r.get(5)?),
                ..Default::default()
            };
            Ok((first, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (first, served) in moves {
        let nothing = first.cost_usd == 0.0 && first.input_tokens == 0 && first.output_tokens == 0;
        if first.served_model == served || nothing {
            continue;
        }
        if let Some(m) = models.iter_mut().find(|m| m.served_model == served) {
            m.cost_usd = plus_zero(m.cost_usd - first.cost_usd);
            m.input_tokens = m.input_tokens.saturating_sub(first.input_tokens);
            m.cached_tokens = m.cached_tokens.saturating_sub(first.cached_tokens);
            m.output_tokens = m.output_tokens.saturating_sub(first.output_tokens);
        }
        match models.iter_mut().find(|m| m.served_model == first.served_model) {
            Some(m) => {
                m.cost_usd += first.cost_usd;
                m.input_tokens += first.input_tokens;
                m.cached_tokens += first.cached_tokens;
                m.output_tokens += first.output_tokens;
            }
            None => models.push(first),
        }
    }
    Ok(())
}

/// `x` with the noise of float subtraction (and a negative zero) read as zero: a total that moved
/// money out must not print as "$-0.000000".
fn plus_zero(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        0.0
    } else {
        x
    }
}

impl ModelTotals {
    /// Column names of a [`ModelTotals`] serialised as a CSV row, in field order.
    pub const CSV_HEADER: [&'static str; 9] = [
        "served_model",
        "requests",
        "errors",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "cost_usd",
        "p50_ms",
        "p95_ms",
    ];
}

impl LogSummary {
    /// The summary as Markdown: a table per served model and a line on what routing saved.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::from(
            "| served by | requests | share | errors | input tokens (cached) | output tokens | cost (USD) | p50 ms | p95 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for m in &self.models {
            let share = if self.requests == 0 { 0.0 } else { 100.0 * m.requests as f64 / self.requests as f64 };
            let _ = writeln!(
                s,
                "| {} | {} | {share:.1}% | {} | {} ({}) | {} | {:.6} | {:.0} | {:.0} |",
                rightmodel_core::markdown::cell(&m.served_model),
                m.requests,
                m.errors,
                m.input_tokens,
                m.cached_tokens,
                m.output_tokens,
                m.cost_usd,
                m.p50_ms,
                m.p95_ms
            );
        }
        let _ = writeln!(s, "\n{} requests, ${:.6} billed.", self.requests, self.cost_usd);
        if self.auto_requests > 0 {
            let _ = writeln!(s, "{}", self.auto_line());
        }
        s
    }
}

impl LogSummary {
    /// The summary's line on `auto`: what its successful requests were billed against what the
    /// largest candidate would have billed for them, and on what basis.
    fn auto_line(&self) -> String {
        let ok = self.auto_requests.saturating_sub(self.auto_failed);
        let mut s = format!("`auto`: {} requests", self.auto_requests);
        if self.auto_failed > 0 {
            s += &format!(" ({} failed, left out)", self.auto_failed);
        }
        if ok == 0 {
            return s + "; none succeeded, so there is nothing to compare.";
        }
        let saved = plus_zero(self.auto_cost_if_largest_usd - self.auto_cost_usd);
        let pct = if self.auto_cost_if_largest_usd > 0.0 { 100.0 * saved / self.auto_cost_if_largest_usd } else { 0.0 };
        let verdict = if saved >= 0.0 {
            format!("${saved:.6} saved ({pct:.0}%)")
        } else {
            format!("${:.6} more ({:.0}%)", -saved, -pct)
        };
        s += &format!(
            "; the {ok} that succeeded billed ${:.6}, and would have billed about ${:.6} on the largest candidate: {verdict}. \
             (Each served call's bill scaled by the router's cost ratio of the largest candidate to the served model: \
             answers by the largest save nothing.",
            self.auto_cost_usd, self.auto_cost_if_largest_usd
        );
        if self.auto_from_estimate > 0 {
            s += &match self.auto_estimate_scale {
                Some(k) => format!(
                    " {} served at no estimated price are counted at the router's estimate for the largest \
                     candidate times {k:.2}, this period's ratio of bills to estimates.",
                    self.auto_from_estimate
                ),
                None => format!(
                    " {} served at no estimated price are counted at the router's estimate for the largest \
                     candidate, unscaled: no priced call this period to scale it by.",
                    self.auto_from_estimate
                ),
            };
        }
        s + ")"
    }
}

/// A `requests` row from the first 17 columns of a query, in table order.
fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        id: r.get(0)?,
        ts_ms: r.get(1)?,
        key_name: r.get(2)?,
        endpoint: r.get(3)?,
        requested_model: r.get(4)?,
        served_model: r.get(5)?,
        reason: r.get(6)?,
        decision: r.get(7)?,
        input_tokens: r.get::<_, i64>(8)? as u64,
        output_tokens: r.get::<_, i64>(9)? as u64,
        cost_usd: r.get(10)?,
        latency_ms: r.get(11)?,
        ttft_ms: r.get(12)?,
        status: r.get::<_, i64>(13)? as u16,
        error: r.get(14)?,
        stream: r.get::<_, i64>(15)? != 0,
        cached_tokens: r.get::<_, i64>(16)?.max(0) as u64,
    })
}

impl Drop for RequestLog {
    /// Closes the channel and waits until every queued row is committed.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Rows kept in memory while the database cannot take them (locked, disk full); beyond it the oldest
/// are dropped and counted.
const PENDING_MAX: usize = 100_000;

/// How often rows past the retention period are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes rows older than `days` (a failure is logged and tried again at the next round).
fn prune(conn: &Connection, days: u32, path: &Path) {
    let cutoff = chrono::Utc::now().timestamp_millis() - i64::from(days) * 86_400_000;
    match conn.execute("DELETE FROM requests WHERE ts_ms < ?1", [cutoff]) {
        Ok(0) => {}
        Ok(n) => tracing::info!("request log {}: deleted {n} rows older than {days} days", path.display()),
        Err(e) => tracing::warn!("request log {}: could not delete old rows: {e}", path.display()),
    }
}

/// Rows per transaction.
const BATCH_MAX: usize = 512;

/// Longest wait between retries of rows the database refused.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Writes queued rows in batches. Rows the database refuses (it is locked by another process, the disk
/// is full) stay queued and are retried with growing pauses until they are written, so an operator's
/// long transaction or a full disk loses nothing once it is over; only beyond [`PENDING_MAX`] rows are
/// the oldest dropped (counted in [`LogStats::dropped`] and logged). A row that fails alone while the
/// others of its batch are written is bad in itself (it is logged and dropped, not retried forever).
fn write_loop(mut conn: Connection, rx: Receiver<LogRow>, path: &Path, stats: &LogStats, keep_days: Option<u32>) {
    let mut pending: VecDeque<LogRow> = VecDeque::new();
    let mut pause = Duration::from_millis(100);
    let mut open = true;
    let mut pruned: Option<std::time::Instant> = None;
    while open || !pending.is_empty() {
        if let Some(days) = keep_days {
            if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                prune(&conn, days, path);
                pruned = Some(std::time::Instant::now());
            }
        }
        // Wait for rows; while some are waiting to be retried, wake up to retry them, and with a
        // retention period, to prune an idle log too.
        let wait = if !pending.is_empty() {
            Some(pause)
        } else if keep_days.is_some() {
            Some(pruned.map_or(Duration::ZERO, |t| PRUNE_EVERY.saturating_sub(t.elapsed())))
        } else {
            None
        };
        let next = match wait {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(w) => rx.recv_timeout(w),
        };
        match next {
            Ok(r) => pending.push_back(r),
            Err(RecvTimeoutError::Disconnected) if pending.is_empty() => break,
            Err(RecvTimeoutError::Disconnected) => open = false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        loop {
            match rx.try_recv() {
                Ok(r) => pending.push_back(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        while pending.len() > PENDING_MAX {
            if let Some(r) = pending.pop_front() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("request log {}: {PENDING_MAX} rows waiting; dropped row {}", path.display(), r.id);
            }
        }
        let ok = flush(&mut conn, &mut pending, path, stats);
        stats.pending.store(pending.len() as u64, Ordering::Relaxed);
        if ok {
            stats.failing_since_ms.store(0, Ordering::Relaxed);
        } else if stats.failing_since_ms.load(Ordering::Relaxed) == 0 {
            stats.failing_since_ms.store(chrono::Utc::now().timestamp_millis().max(1), Ordering::Relaxed);
        }
        if ok {
            pause = Duration::from_millis(100);
        } else if !open {
            // Shutting down: a few more short tries (a service manager will not wait long), then say
            // which rows are lost.
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(500));
                if flush(&mut conn, &mut pending, path, stats) {
                    break;
                }
            }
            if !pending.is_empty() {
                let ids: Vec<&str> = pending.iter().map(|r| r.id.as_str()).collect();
                tracing::error!("request log {}: rows not written at shutdown: {}", path.display(), ids.join(", "));
                stats.dropped.fetch_add(pending.len() as u64, Ordering::Relaxed);
                pending.clear();
            }
        } else {
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}

/// Writes the waiting rows, a batch at a time; true when none is left. A failing batch is retried row
/// by row: rows that go in are done, and if some did, the ones that did not are bad rows (dropped);
/// if none did, the database is unavailable and every row stays for the next try.
fn flush(conn: &mut Connection, pending: &mut VecDeque<LogRow>, path: &Path, stats: &LogStats) -> bool {
    while !pending.is_empty() {
        let n = pending.len().min(BATCH_MAX);
        let batch = &pending.make_contiguous()[..n];
        match insert(conn, batch) {
            Ok(()) => {
                pending.drain(..n);
            }
            Err(e) => {
                // A locked database or a full disk refuses every row alike (and each try may wait out the
                // busy timeout): wait for the next round instead of trying row by row.
                if unavailable(&e) {
                    tracing::warn!("request log {}: {e}; {} rows wait for a retry", path.display(), pending.len());
                    return false;
                }
                let results: Vec<bool> = batch.iter().map(|r| insert(conn, std::slice::from_ref(r)).is_ok()).collect();
                if !results.iter().any(|&ok| ok) {
                    tracing::warn!("request log {}: {e}; {} rows wait for a retry", path.display(), pending.len());
                    return false;
                }
                let mut i = 0;
                pending.retain(|r| {
                    let keep = i >= n;
                    if !keep && !results[i] {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("request log {}: row {} cannot be written: {e}", path.display(), r.id);
                    }
                    i += 1;
                    keep
                });
            }
        }
    }
    true
}

/// Whether `e` says the database as a whole cannot take writes now (as opposed to one bad row).
fn unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen | ReadOnly | OutOfMemory)
    )
}

fn insert(conn: &mut Connection, rows: &[LogRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO requests (id, ts_ms, key_name, endpoint, requested_model, served_model, reason,
             decision, input_tokens, output_tokens, cost_usd, latency_ms, ttft_ms, status, error, stream, cached_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.id,
                r.ts_ms,
                r.key_name,
                r.endpoint,
                r.requested_model,
                r.served_model,
                r.reason,
                r.decision,
                r.input_tokens as i64,
                r.output_tokens as i64,
                // A non-finite cost would bind as NULL and fail the NOT NULL column.
                if r.cost_usd.is_finite() { r.cost_usd } else { 0.0 },
                r.latency_ms,
                r.ttft_ms,
                r.status as i64,
                r.error,
                r.stream as i64,
                r.cached_tokens as i64,
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of every file in `dir`, by name: what a reader must leave as it was.
    fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_foreign_file_is_named_as_not_a_request_log_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.sqlite");
        {
            let conn = Connection::open(&other).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');").unwrap();
        }
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all\n").unwrap();
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        let requests = dir.path().join("requests.db");
        Connection::open(&requests).unwrap().execute_batch("CREATE TABLE requests (id TEXT)").unwrap();
        let before = snapshot(dir.path());
        for (path, why) in [
            (&other, "without a `requests` table"),
            (&text, "not an SQLite database"),
            (&empty, "not an SQLite database"),
            (&requests, "lacks ts_ms"),
        ] {
            let e = RequestLog::reader(path).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("is not a rightmodel request log") && e.contains(why), "{e}");
            assert!(e.contains(&path.display().to_string()) && !e.contains("no such table"), "{e}");
        }
        assert_eq!(snapshot(dir.path()), before, "a reader wrote to or next to a foreign file");
        // A real log still reads.
        let log = dir.path().join("log.db");
        drop(RequestLog::open(&log).unwrap());
        assert!(RequestLog::reader(&log).unwrap().read(0, 10).unwrap().is_empty());
    }

    #[test]
    fn the_base_columns_are_the_schemas() {
        for c in BASE_COLUMNS {
            assert!(SCHEMA.contains(&format!("\n    {c} ")), "{c} is not in the schema");
        }
    }

    #[test]
    fn summary_totals_per_served_model_and_what_auto_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            let log = RequestLog::open(&path).unwrap();
            let row = |id: &str, requested: &str, served: &str, cost: f64, ms: f64, status: u16| LogRow {
                id: id.into(),
                ts_ms: 10,
                requested_model: requested.into(),
                served_model: served.into(),
                input_tokens: 100,
                cached_tokens: 40,
                output_tokens: 10,
                cost_usd: cost,
                latency_ms: ms,
                status,
                ..Default::default()
            };
            log.record(LogRow {
                decision: Some(r#"{"cost_if_largest_usd":0.01}"#.into()),
                ..row("a", "auto", "small", 0.0, 10.0, 200)
            });
            log.record(LogRow {
                decision: Some(r#"{"cost_if_largest_usd":0.01}"#.into()),
                ..row("b", "auto", "large", 0.01, 300.0, 200)
            });
            log.record(LogRow { decision: Some("not json".into()), ..row("c", "auto", "small", 0.0, 30.0, 200) });
            log.record(row("d", "small", "small", 0.0, 20.0, 200));
            log.record(LogRow {
                input_tokens: 0,
                cached_tokens: 0,
                output_tokens: 0,
                ..row("e", "nope", "", 0.0, 1.0, 404)
            });
            log.record(LogRow { ts_ms: 1, ..row("old", "small", "small", 0.0, 1.0, 200) });
        }
        let s = RequestLog::reader(&path).unwrap().summarize(5).unwrap();
        {
            // An escalated cascade: its small attempt is billed to the small model (served nothing).
            let log = RequestLog::open(&path).unwrap();
            log.record(LogRow {
                id: "f".into(),
                ts_ms: 10,
                requested_model: "auto".into(),
                served_model: "large".into(),
                cost_usd: 0.011,
                decision: Some(r#"{"cascade":{"first":"mini","first_cost_usd":0.001,"escalated":true}}"#.into()),
                ..Default::default()
            });
        }
        let c = RequestLog::reader(&path).unwrap().summarize(5).unwrap();
        let cost = |name: &str| c.models.iter().find(|m| m.served_model == name).map(|m| (m.requests, m.cost_usd));
        let (large, mini) = (cost("large").unwrap(), cost("mini").unwrap());
        assert!(large.0 == 2 && (large.1 - 0.02).abs() < 1e-12, "{large:?}");
        assert!(mini.0 == 0 && (mini.1 - 0.001).abs() < 1e-12, "{mini:?}");
        assert!((c.cost_usd - 0.021).abs() < 1e-12);
        assert_eq!(s.requests, 5);
        assert_eq!(
            s.models.iter().map(|m| (m.served_model.as_str(), m.requests)).collect::<Vec<_>>(),
            [("small", 3), ("-", 1), ("large", 1)]
        );
        let small = &s.models[0];
        assert_eq!((small.input_tokens, small.cached_tokens, small.output_tokens), (300, 120, 30));
        assert_eq!((small.p50_ms, small.p95_ms), (20.0, 30.0));
        assert_eq!(s.models[1].errors, 1);
        assert_eq!(s.auto_requests, 3);
        assert!((s.auto_cost_usd - 0.01).abs() < 1e-12 && (s.auto_cost_if_largest_usd - 0.02).abs() < 1e-12);
        let md = s.to_markdown();
        assert!(md.contains("| small | 3 | 60.0% | 0 | 300 (120) | 30 |") && md.contains("saved (50%)"), "{md}");
    }

    #[test]
    fn auto_savings_compare_bills_with_bills_not_with_the_routers_estimates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        // The router estimates a typical answer: three times what the calls were billed.
        let decision = |extra: &str| {
            format!(
                r#"{{"cost_if_largest_usd":0.0006,"candidates":[{{"name":"local","cost_usd":0.0}},
                    {{"name":"small","cost_usd":0.00006}},{{"name":"large","cost_usd":0.0006}}]{extra}}}"#
            )
        };
        {
            let log = RequestLog::open(&path).unwrap();
            let row = |id: &str, served: &str, cost: f64, status: u16, extra: &str| LogRow {
                id: id.into(),
                ts_ms: 10,
                requested_model: "auto".into(),
                served_model: served.into(),
                cost_usd: cost,
                status,
                decision: Some(decision(extra)),
                ..Default::default()
            };
            log.record(row("small", "small", 0.00002, 200, ""));
            // Served by the largest: nothing saved, whatever the estimate said.
            log.record(row("large", "large", 0.0002, 200, ""));
            // Failed: no answer to price on either side.
            log.record(row("failed", "", 0.0, 502, ""));
            // Escalated: the small attempt was paid on top of the largest's answer.
            let cascade = r#","cascade":{"first":"small","first_cost_usd":0.00002,"escalated":true}"#;
            log.record(row("cascade", "large", 0.00022, 200, cascade));
            // Free: the largest's estimate at the period's bills-to-estimates ratio (1/3).
            log.record(row("local", "local", 0.0, 200, ""));
        }
        let s = RequestLog::reader(&path).unwrap().summarize(5).unwrap();
        assert_eq!((s.auto_requests, s.auto_failed, s.auto_from_estimate), (5, 1, 1));
        assert!((s.auto_estimate_scale.unwrap() - 1.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert!((s.auto_cost_usd - 0.00044).abs() < 1e-12, "{s:?}");
        assert!((s.auto_cost_if_largest_usd - 0.0008).abs() < 1e-12, "{s:?}");
        let md = s.to_markdown();
        assert!(md.contains("(1 failed, left out)") && md.contains("$0.000360 saved (45%)"), "{md}");

        // Nothing priced to scale by: the estimate is used as it is, and the summary says so.
        let free = AutoRow { largest_estimate: Some(0.5), served_estimate: Some(0.0), ..Default::default() };
        let unreadable = AutoRow { billed: 0.2, ..Default::default() };
        let a = AutoSavings::price(3, 1, &[free, unreadable]);
        assert_eq!((a.scale, a.from_estimate), (None, 1));
        assert!((a.if_largest - 0.7).abs() < 1e-12 && (a.billed - 0.2).abs() < 1e-12, "{a:?}");
        let line = LogSummary {
            auto_requests: 3,
            auto_failed: 1,
            auto_cost_usd: a.billed,
            auto_cost_if_largest_usd: a.if_largest,
            auto_from_estimate: 1,
            ..Default::default()
        }
        .auto_line();
        assert!(line.contains("unscaled"), "{line}");
        let none = LogSummary { auto_requests: 2, auto_failed: 2, ..Default::default() }.auto_line();
        assert!(none.contains("none succeeded") && !none.contains("saved"), "{none}");
    }

    #[test]
    fn an_escalated_cascade_counts_its_first_attempts_tokens_for_the_small_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            let log = RequestLog::open(&path).unwrap();
            // The row sums both calls: the small model's 100 prompt tokens (90 from its KV cache) and 20
            // answer tokens, and the large model's 30 and 5.
            log.record(LogRow {
                id: "g".into(),
                ts_ms: 10,
                requested_model: "auto".into(),
                served_model: "large".into(),
                input_tokens: 130,
                cached_tokens: 90,
                output_tokens: 25,
                cost_usd: 0.011,
                decision: Some(
                    r#"{"cascade":{"first":"mini","first_cost_usd":0.001,"first_input_tokens":100,
                        "first_cached_tokens":90,"first_output_tokens":20,"escalated":true}}"#
                        .into(),
                ),
                ..Default::default()
            });
        }
        let s = RequestLog::reader(&path).unwrap().summarize(5).unwrap();
        let m = |name: &str| s.models.iter().find(|m| m.served_model == name).cloned().unwrap();
        let (large, mini) = (m("large"), m("mini"));
        assert_eq!((large.requests, large.input_tokens, large.cached_tokens, large.output_tokens), (1, 30, 0, 5));
        assert_eq!((mini.requests, mini.input_tokens, mini.cached_tokens, mini.output_tokens), (0, 100, 90, 20));
        assert!((large.cost_usd - 0.01).abs() < 1e-12 && (mini.cost_usd - 0.001).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn an_empty_period_bills_plus_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            let log = RequestLog::open(&path).unwrap();
            log.record(LogRow {
                id: "a".into(),
                ts_ms: 10,
                served_model: "m".into(),
                cost_usd: 0.5,
                ..Default::default()
            });
        }
        let s = RequestLog::reader(&path).unwrap().summarize(i64::MAX).unwrap();
        assert_eq!(s.requests, 0);
        assert!(s.cost_usd == 0.0 && s.cost_usd.is_sign_positive(), "{}", s.cost_usd);
        let md = s.to_markdown();
        assert!(md.contains("0 requests, $0.000000 billed.") && !md.contains("-0"), "{md}");
        assert_eq!(plus_zero(-0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(plus_zero(0.011 - 0.001 - 0.01).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn a_pipe_in_a_model_name_does_not_break_the_summary_table() {
        let s = LogSummary {
            requests: 1,
            models: vec![ModelTotals { served_model: "a|b".into(), requests: 1, ..Default::default() }],
            ..Default::default()
        };
        let md = s.to_markdown();
        assert!(md.contains("\n| a\\|b | 1 | 100.0% |"), "{md}");
    }

    #[test]
    fn the_csv_header_names_the_fields_in_order() {
        let json = serde_json::to_string(&ModelTotals::default()).unwrap();
        let at: Vec<usize> = ModelTotals::CSV_HEADER.iter().map(|h| json.find(&format!("\"{h}\":")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(json.matches("\":").count(), ModelTotals::CSV_HEADER.len());
    }

    #[test]
    fn a_log_from_an_older_version_gains_the_cached_tokens_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&SCHEMA.replace(",\n    cached_tokens INTEGER NOT NULL DEFAULT 0", "")).unwrap();
            old.execute_batch(
                "INSERT INTO requests (id, ts_ms, endpoint, requested_model, served_model, input_tokens, output_tokens,
                 cost_usd, latency_ms, status, stream) VALUES ('old', 1, '/v1/x', 'm', 'm', 10, 2, 0.5, 3.0, 200, 0)",
            )
            .unwrap();
        }
        // `rightmodel logs` (read-only) before a new server has opened the old log.
        assert_eq!(RequestLog::reader(&path).unwrap().read(0, 10).unwrap()[0].cached_tokens, 0);
        assert_eq!(RequestLog::reader(&path).unwrap().read_after(0, 10).unwrap().0.len(), 1);
        assert_eq!(RequestLog::reader(&path).unwrap().summarize(0).unwrap().models[0].cached_tokens, 0);
        {
            let log = RequestLog::open(&path).unwrap();
            log.record(LogRow { id: "new".into(), ts_ms: 2, input_tokens: 10, cached_tokens: 8, ..Default::default() });
        }
        let rows = RequestLog::reader(&path).unwrap().read(0, 10).unwrap();
        assert_eq!(rows.iter().map(|r| (r.id.as_str(), r.cached_tokens)).collect::<Vec<_>>(), [("old", 0), ("new", 8)]);
        assert_eq!(rows[0].cost_usd, 0.5);
        let (after, _) = RequestLog::reader(&path).unwrap().read_after(0, 10).unwrap();
        assert_eq!(after.len(), 2);
        // Opening again (the column is there now) changes nothing.
        drop(RequestLog::open(&path).unwrap());
    }

    #[test]
    fn rows_refused_while_another_process_holds_the_lock_are_written_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let log = RequestLog::open(&path).unwrap();
        let row = |i: i64| LogRow { id: format!("r{i}"), ts_ms: i, endpoint: "/v1/x".into(), ..Default::default() };
        // Another connection (an operator pruning by hand) holds the write lock for longer than the
        // writer's busy timeout.
        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..5 {
            log.record(row(i));
        }
        std::thread::sleep(std::time::Duration::from_millis(6500));
        assert!(log.stats().pending.load(Ordering::Relaxed) >= 1, "rows wait while the lock is held");
        assert!(RequestLog::reader(&path).unwrap().read(0, 100).unwrap().is_empty());
        blocker.execute_batch("COMMIT").unwrap();
        drop(log);
        assert_eq!(
            RequestLog::reader(&path).unwrap().read(0, 100).unwrap().len(),
            5,
            "every row written once the lock ended"
        );
    }

    #[test]
    fn rows_past_the_retention_period_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let now = chrono::Utc::now().timestamp_millis();
        {
            let log = RequestLog::open(&path).unwrap();
            for (i, age_days) in [40, 10, 0].into_iter().enumerate() {
                log.record(LogRow { id: format!("r{i}"), ts_ms: now - age_days * 86_400_000, ..Default::default() });
            }
        }
        drop(RequestLog::open_with_retention(&path, Some(30)).unwrap());
        let ids: Vec<String> =
            RequestLog::reader(&path).unwrap().read(0, 10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r1", "r2"]);
    }

    #[test]
    fn rows_survive_drop_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            let log = RequestLog::open(&path).unwrap();
            for i in 0..100 {
                log.record(LogRow {
                    id: format!("r{i}"),
                    ts_ms: 1000 + i,
                    endpoint: "/v1/x".into(),
                    cost_usd: 0.5,
                    status: 200,
                    ..Default::default()
                });
            }
        }
        let rows = RequestLog::reader(&path).unwrap().read(0, 10).unwrap();
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[0].id, "r90");
        assert_eq!(rows[9].id, "r99");
        let (total, _) = RequestLog::spend_since(&path, 1050).unwrap();
        assert!((total - 25.0).abs() < 1e-9);
    }

    #[test]
    fn following_sees_rows_in_commit_order_and_a_bad_row_sinks_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let row = |id: &str, ts_ms: i64, cost_usd: f64| LogRow {
            id: id.into(),
            ts_ms,
            endpoint: "/v1/x".into(),
            cost_usd,
            status: 200,
            ..Default::default()
        };
        {
            let log = RequestLog::open(&path).unwrap();
            log.record(row("short", 2000, 0.1));
        }
        // One reader kept open across the writes, as `logs --follow` keeps it: each read sees the rows
        // committed since.
        let reader = RequestLog::reader(&path).unwrap();
        let last = reader.last_rowid().unwrap();
        {
            // A long stream that arrived before `short` finishes after it; a NaN cost is stored as 0; a row
            // SQLite refuses (NULL latency) fails alone, not with the rows of its batch.
            let log = RequestLog::open(&path).unwrap();
            log.record(row("long", 1000, 0.2));
            log.record(LogRow { latency_ms: f64::NAN, ..row("refused", 2500, 0.1) });
            log.record(row("nan", 3000, f64::NAN));
        }
        let (rows, next) = reader.read_after(last, 100).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["long", "nan"]);
        assert_eq!(rows[1].cost_usd, 0.0);
        assert!(next > last);
        assert!(reader.read_after(next, 100).unwrap().0.is_empty());
    }
}
