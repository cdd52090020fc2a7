//! Labelled text data from CSV, TSV and JSON-lines files, validated with line numbers.
//!
//! Everything a user can get wrong in a data file is reported here, before any minutes are spent
//! embedding or training: unreadable bytes, missing columns, empty texts or labels, ragged rows and
//! classes too small to learn from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::TaskError;

/// Problems listed in one error message before the rest are summarised as "and N more".
const MAX_LISTED: usize = 5;

/// The layout of a data file, chosen from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row; quotes are ordinary characters.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl DataFormat {
    /// The format implied by `path`'s extension (`.csv`, `.tsv`/`.tab`, `.jsonl`/`.ndjson`/`.json`).
    pub fn from_path(path: &Path) -> Result<Self, TaskError> {
        // A missing file is the more useful message than its extension.
        if !path.exists() {
            return Err(TaskError::Data(format!("{}: no such file", path.display())));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(DataFormat::Csv),
            "tsv" | "tab" => Ok(DataFormat::Tsv),
            "jsonl" | "ndjson" | "json" => Ok(DataFormat::Jsonl),
            _ => Err(TaskError::Data(format!(
                "{}: unknown data format `.{ext}`; use a .csv, .tsv or .jsonl file",
                path.display()
            ))),
        }
    }
}

/// Labelled examples read from one file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Where the examples came from (for messages).
    pub path: PathBuf,
    /// The texts.
    pub texts: Vec<String>,
    /// The label of each text.
    pub labels: Vec<String>,
    /// The 1-based line on which each example starts, for error messages.
    pub lines: Vec<usize>,
    /// SHA-256 of the file's bytes, recorded in trained models so a result can be traced to its data.
    pub sha256: String,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The distinct labels, sorted.
    pub fn label_set(&self) -> Vec<String> {
        let mut l: Vec<String> = self.labels.clone();
        l.sort();
        l.dedup();
        l
    }

    /// The examples at `idx`, in that order (hash and path kept).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset {
            path: self.path.clone(),
            texts: idx.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i].clone()).collect(),
            lines: idx.iter().map(|&i| self.lines[i]).collect(),
            sha256: self.sha256.clone(),
        }
    }

    /// Checks that a classifier can learn from this data: at least two classes and at least two examples
    /// of every class (one to learn from and one to check).
    pub fn check_trainable(&self) -> Result<(), TaskError> {
        let mut first_line: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (label, &line) in self.labels.iter().zip(&self.lines) {
            first_line.entry(label.as_str()).or_insert((0, line)).0 += 1;
        }
        if first_line.len() < 2 {
            return Err(TaskError::Data(format!(
                "{}: found {} distinct label(s); a classifier needs at least two classes",
                self.path.display(),
                first_line.len()
            )));
        }
        let singles: Vec<String> = first_line
            .iter()
            .filter(|(_, (n, _))| *n < 2)
            .map(|(l, (_, line))| format!("line {line}: label `{l}` has only one example"))
            .collect();
        if !singles.is_empty() {
            return Err(TaskError::Data(format!(
                "{}: every label needs at least two examples:\n{}",
                self.path.display(),
                list_problems(&singles)
            )));
        }
        Ok(())
    }
}

/// Reads a labelled data file (format from its extension), taking texts from `text_col` and labels from
/// `label_col` (column names for CSV/TSV, field names for JSON lines).
pub fn load_labelled(path: &Path, text_col: &str, label_col: &str) -> Result<Dataset, TaskError> {
    let format = DataFormat::from_path(path)?;
    let bytes = std::fs::read(path).map_err(|e| TaskError::io(path, e))?;
    let text = check_utf8(path, &bytes)?;
    if text.trim().is_empty() {
        return Err(TaskError::Data(format!("{}: the file is empty (no header row, no examples)", path.display())));
    }
    let mut ds = match format {
        DataFormat::Csv => parse_delimited(path, text, b',', true, text_col, label_col)?,
        DataFormat::Tsv => parse_delimited(path, text, b'\t', false, text_col, label_col)?,
        DataFormat::Jsonl => parse_jsonl(path, text, text_col, label_col)?,
    };
    if ds.is_empty() {
        return Err(TaskError::Data(format!("{}: no examples found", path.display())));
    }
    ds.sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(ds)
}

/// The file as text (without a leading byte-order mark, which Notepad and PowerShell write), or an error
/// naming the first line with bytes that are not UTF-8.
fn check_utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, TaskError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        TaskError::Data(format!(
            "{}: line {line}: bytes that are not valid UTF-8; re-save the file as UTF-8",
            path.display()
        ))
    })
}

/// Joins problem lines, listing the first few.
fn list_problems(problems: &[String]) -> String {
    let mut s: Vec<String> = problems.iter().take(MAX_LISTED).map(|p| format!("  {p}")).collect();
    if problems.len() > MAX_LISTED {
        s.push(format!("  ... and {} more", problems.len() - MAX_LISTED));
    }
    s.join("\n")
}

/// Collects per-row problems and turns them into one error.
struct Problems {
    path: PathBuf,
    list: Vec<String>,
}

impl Problems {
    fn new(path: &Path) -> Self {
        Problems { path: path.to_path_buf(), list: Vec::new() }
    }
    fn push(&mut self, line: usize, what: String) {
        self.list.push(format!("line {line}: {what}"));
    }
    fn into_result(self) -> Result<(), TaskError> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(TaskError::Data(format!("{}: bad rows:\n{}", self.path.display(), list_problems(&self.list))))
        }
    }
}

/// Adds one example after checking that neither field is blank.
fn push_example(ds: &mut Dataset, problems: &mut Problems, line: usize, text: &str, label: &str, cols: (&str, &str)) {
    if text.trim().is_empty() {
        problems.push(line, format!("empty text in `{}`", cols.0));
    } else if label.trim().is_empty() {
        problems.push(line, format!("empty label in `{}`", cols.1));
    } else {
        ds.texts.push(text.to_string());
        ds.labels.push(label.trim().to_string());
        ds.lines.push(line);
    }
}

fn parse_delimited(
    path: &Path,
    text: &str,
    delimiter: u8,
    quoting: bool,
    text_col: &str,
    label_col: &str,
) -> Result<Dataset, TaskError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| TaskError::Data(format!("{}: line 1: cannot read the header row: {e}", path.display())))?
        .clone();
    let find = |name: &str| headers.iter().position(|h| h.trim() == name);
    let mut missing: Vec<&str> = [text_col, label_col].into_iter().filter(|c| find(c).is_none()).collect();
    // The same column asked for twice (texts only, as for out-of-domain data) is missing once.
    missing.dedup();
    if !missing.is_empty() {
        let have: Vec<&str> = headers.iter().collect();
        return Err(TaskError::Data(format!(
            "{}: missing column(s) {}; the header row has: {}",
            path.display(),
            missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            have.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    let (ti, li) = (find(text_col).unwrap_or(0), find(label_col).unwrap_or(0));
    let mut ds = Dataset { path: path.to_path_buf(), ..Default::default() };
    let mut problems = Problems::new(path);
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                let what = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("{len} fields where the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                problems.push(line, what);
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let (t, l) = (rec.get(ti).unwrap_or(""), rec.get(li).unwrap_or(""));
        push_example(&mut ds, &mut problems, line, t, l, (text_col, label_col));
    }
    problems.into_result()?;
    Ok(ds)
}

/// A JSON scalar as label text (strings as they are, numbers and booleans printed).
fn json_label(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_jsonl(path: &Path, text: &str, text_col: &str, label_col: &str) -> Result<Dataset, TaskError> {
    let mut ds = Dataset { path: path.to_path_buf(), ..Default::default() };
    let mut problems = Problems::new(path);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(raw) {
            Ok(o) => o,
            Err(e) => {
                problems.push(line, format!("not a JSON object: {e}"));
                continue;
            }
        };
        let t = match obj.get(text_col) {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(_) => {
                problems.push(line, format!("field `{text_col}` is not a string"));
                continue;
            }
            None => {
                problems.push(line, format!("missing field `{text_col}`"));
                continue;
            }
        };
        let l = match obj.get(label_col).map(json_label) {
            Some(Some(l)) => l,
            Some(None) => {
                problems.push(line, format!("field `{label_col}` is not a string, number or boolean"));
                continue;
            }
            None => {
                problems.push(line, format!("missing field `{label_col}`"));
                continue;
            }
        };
        push_example(&mut ds, &mut problems, line, t, &l, (text_col, label_col));
    }
    problems.into_result()?;
    Ok(ds)
}

/// Splits example indices into (train, validation) with about `fraction` of every class in validation,
/// always leaving at least one example of each class for training. Deterministic for a given `seed`.
pub fn stratified_split(labels: &[String], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut by_class: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_class.entry(l.as_str()).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (_, mut idx) in by_class {
        idx.shuffle(&mut rng);
        let n = idx.len();
        let k = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
        // Classes with a couple of examples still get one validation example when a split is asked for.
        let k = if k == 0 && fraction > 0.0 && n >= 2 { 1 } else { k };
        valid.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// Checks that every validation label occurs in the training labels.
pub fn check_valid_labels(train: &Dataset, valid: &Dataset) -> Result<(), TaskError> {
    let known: HashMap<&str, ()> = train.labels.iter().map(|l| (l.as_str(), ())).collect();
    let unknown: Vec<String> = valid
        .labels
        .iter()
        .zip(&valid.lines)
        .filter(|(l, _)| !known.contains_key(l.as_str()))
        .map(|(l, line)| format!("line {line}: label `{l}` does not occur in the training data"))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(TaskError::Data(format!("{}: unknown labels:\n{}", valid.path.display(), list_problems(&unknown))))
    }
}

/// Reads texts to classify: one per line, or JSON lines with a `text` field (and an optional `id` that is
/// echoed back). Blank lines are skipped. Returns (line, id, text) triples.
pub fn read_inputs(source_name: &str, bytes: &[u8]) -> Result<Vec<InputText>, TaskError> {
    let text = check_utf8(Path::new(source_name), bytes)?;
    let mut out = Vec::new();
    let mut problems = Problems::new(Path::new(source_name));
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('{') {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(trimmed) {
                Ok(obj) => match obj.get("text") {
                    Some(serde_json::Value::String(t)) if !t.trim().is_empty() => {
                        out.push(InputText { line, id: obj.get("id").cloned(), text: t.clone() })
                    }
                    Some(serde_json::Value::String(_)) => problems.push(line, "empty `text`".into()),
                    _ => problems.push(line, "JSON line without a string `text` field".into()),
                },
                Err(e) => problems.push(line, format!("looks like JSON but does not parse: {e}")),
            }
        } else {
            out.push(InputText { line, id: None, text: raw.to_string() });
        }
    }
    problems.into_result()?;
    Ok(out)
}

/// One text to classify, with where it came from.
#[derive(Debug, Clone)]
pub struct InputText {
    /// 1-based input line.
    pub line: usize,
    /// The `id` field of a JSON input line, echoed in the output.
    pub id: Option<serde_json::Value>,
    /// The text.
    pub text: String,
}
