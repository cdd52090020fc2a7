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
    /// A missing file or a folder is reported as such first: either is the more useful message than
    /// its extension.
    pub fn from_path(path: &Path) -> Result<Self, TaskError> {
        check_data_file(path)?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Ok(DataFormat::Csv),
            "tsv" | "tab" => Ok(DataFormat::Tsv),
            "jsonl" | "ndjson" | "json" => Ok(DataFormat::Jsonl),
            "" => Err(TaskError::Data(format!(
                "{}: no file extension, so the data format is unknown; use a {DATA_EXTENSIONS} file",
                path.display()
            ))),
            _ => Err(TaskError::Data(format!(
                "{}: unknown data format `.{ext}`; use a {DATA_EXTENSIONS} file",
                path.display()
            ))),
        }
    }
}

/// The data file extensions, as messages name them.
const DATA_EXTENSIONS: &str = ".csv, .tsv or .jsonl";

/// Fails with a clear message when `path` is not an existing file: missing, a folder, or unreadable
/// metadata (named with the system's reason).
fn check_data_file(path: &Path) -> Result<(), TaskError> {
    use rightmodel_core::fsutil::{check_input_file, NotAFile};
    match check_input_file(path) {
        Ok(()) => Ok(()),
        Err(NotAFile::Folder) => Err(TaskError::Data(format!(
            "{}: is a folder, not a data file; give a {DATA_EXTENSIONS} file",
            path.display()
        ))),
        Err(NotAFile::Missing) => Err(TaskError::Data(format!("{}: no such file", path.display()))),
        Err(NotAFile::Other(e)) => Err(TaskError::io(path, e)),
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

/// Reads CSV (`quoting`) or TSV rows, taking texts from `text_col` and labels from `label_col`.
fn parse_delimited(
    path: &Path,
    text: &str,
    delimiter: u8,
    quoting: bool,
    text_col: &str,
    label_col: &str,
) -> Result<Dataset, TaskError> {
    if quoting {
        if let Some(line) = unterminated_quote(text, delimiter) {
            return Err(TaskError::Data(format!(
                "{}: line {line}: a quoted field starts here and its closing `\"` is missing, so the rest of the \
                 file would be read as that one field; close the quote (a `\"` inside a quoted field is written `\"\"`)",
                path.display()
            )));
        }
    }
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
    let names: Vec<&str> = headers.iter().map(str::trim).collect();
    let (ti, li) = (column_index(path, &names, text_col, label_col)?, column_index(path, &names, label_col, text_col)?);
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

/// The 0-based position of column `col` in the header `names`. Fails when it is missing (naming `other`,
/// the other column asked for, too when it is missing as well) or when the header has it more than once:
/// which one was meant cannot be guessed, and taking the first could silently use the wrong data.
fn column_index(path: &Path, names: &[&str], col: &str, other: &str) -> Result<usize, TaskError> {
    let at: Vec<usize> = names.iter().enumerate().filter(|(_, h)| **h == col).map(|(i, _)| i).collect();
    match at.as_slice() {
        [i] => Ok(*i),
        [] => {
            let mut missing = vec![col.to_string()];
            if other != col && !names.contains(&other) {
                missing.push(other.to_string());
            }
            let found = format!(
                "the header row has: {}",
                names.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            );
            Err(TaskError::MissingColumn { path: path.to_path_buf(), missing, found })
        }
        many => Err(TaskError::Data(format!(
            "{}: line 1: column `{col}` appears {} times in the header row (columns {}); rename or remove the \
             extra one(s) so it is clear which one to use",
            path.display(),
            many.len(),
            many.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The line on which a CSV quoted field opens that never closes, if one does. Follows the csv crate's
/// reading: a `"` opens a quoted field only at the start of a field, `""` inside one is a literal quote,
/// and a `"` in the middle of an unquoted field is an ordinary character.
fn unterminated_quote(text: &str, delimiter: u8) -> Option<usize> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut opened_at = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let ends_field = b == delimiter || b == b'\n' || b == b'\r';
        state = match state {
            State::FieldStart if b == b'"' => {
                opened_at = i;
                State::Quoted
            }
            State::FieldStart | State::Unquoted | State::QuoteInQuoted if ends_field => State::FieldStart,
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            // `""` inside a quoted field.
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            State::FieldStart | State::Unquoted | State::QuoteInQuoted => State::Unquoted,
        };
    }
    (state == State::Quoted).then(|| text.as_bytes()[..opened_at].iter().filter(|&&b| b == b'\n').count() + 1)
}

/// Largest integer an `f64` holds exactly (2^53).
const F64_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A JSON scalar as label text: strings as they are, booleans printed, numbers printed with whole
/// numbers as integers (`1.0` and `1e0` become `1`), so that a file whose writer emits floats for some
/// rows (pandas does, next to missing values) does not split one class into `1` and `1.0`.
fn json_label(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(number_label(n)),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON number as label text, whole numbers without a fraction (see [`json_label`]).
fn number_label(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() <= F64_EXACT_INT => {
            // In range, so the cast is exact (and -0.0 becomes 0).
            (f as i64).to_string()
        }
        _ => n.to_string(),
    }
}

/// A JSON object read from one line, with the keys it has more than once (a plain map keeps the last
/// value of a repeated key without a word).
struct JsonLine {
    /// The fields (the last value of a repeated key).
    map: serde_json::Map<String, serde_json::Value>,
    /// Keys that occur more than once.
    repeated: Vec<String>,
}

impl<'de> serde::Deserialize<'de> for JsonLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonLine;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<JsonLine, A::Error> {
                let mut line = JsonLine { map: serde_json::Map::new(), repeated: Vec::new() };
                while let Some((k, v)) = access.next_entry::<String, serde_json::Value>()? {
                    if line.map.contains_key(&k) && !line.repeated.contains(&k) {
                        line.repeated.push(k.clone());
                    }
                    line.map.insert(k, v);
                }
                Ok(line)
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl JsonLine {
    /// Parses one line as a JSON object.
    fn parse(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw)
    }

    /// The value of `key`, or a problem when the object has it more than once.
    fn field(&self, key: &str) -> Result<Option<&serde_json::Value>, String> {
        if self.repeated.iter().any(|k| k == key) {
            return Err(format!("field `{key}` appears more than once; keep one"));
        }
        Ok(self.map.get(key))
    }
}

/// Reads JSON lines, taking texts from field `text_col` and labels from field `label_col`.
fn parse_jsonl(path: &Path, text: &str, text_col: &str, label_col: &str) -> Result<Dataset, TaskError> {
    let mut ds = Dataset { path: path.to_path_buf(), ..Default::default() };
    let mut problems = Problems::new(path);
    // Fields seen in any object, and the keys of the first one (to suggest a field name).
    let (mut seen_text, mut seen_label, mut first_keys) = (false, false, None);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let obj = match JsonLine::parse(raw) {
            Ok(o) => o,
            Err(e) => {
                problems.push(line, format!("not a JSON object: {e}"));
                continue;
            }
        };
        first_keys.get_or_insert_with(|| obj.map.keys().cloned().collect::<Vec<_>>());
        seen_text |= obj.map.contains_key(text_col);
        seen_label |= obj.map.contains_key(label_col);
        match json_example(&obj, text_col, label_col) {
            Ok((t, l)) => push_example(&mut ds, &mut problems, line, t, &l, (text_col, label_col)),
            Err(what) => problems.push(line, what),
        }
    }
    // A field that no line has is a wrong field name, not a file full of bad rows.
    if let Some(keys) = first_keys.filter(|_| !(seen_text && seen_label)) {
        let mut missing: Vec<String> = Vec::new();
        for (col, seen) in [(text_col, seen_text), (label_col, seen_label)] {
            if !seen && !missing.iter().any(|m| m == col) {
                missing.push(col.to_string());
            }
        }
        let found = format!(
            "no line has {}; the first object has: {}",
            if missing.len() == 1 { "it" } else { "them" },
            keys.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        );
        return Err(TaskError::MissingColumn { path: path.to_path_buf(), missing, found });
    }
    problems.into_result()?;
    Ok(ds)
}

/// The text and label of one JSON line, or what is wrong with them.
fn json_example<'a>(obj: &'a JsonLine, text_col: &str, label_col: &str) -> Result<(&'a str, String), String> {
    let t = match obj.field(text_col)? {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("field `{text_col}` is not a string")),
        None => return Err(format!("missing field `{text_col}`")),
    };
    let l = match obj.field(label_col)?.map(json_label) {
        Some(Some(l)) => l,
        Some(None) => return Err(format!("field `{label_col}` is not a string, number or boolean")),
        None => return Err(format!("missing field `{label_col}`")),
    };
    Ok((t, l))
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

/// How the lines of a `classify` input are read, decided once per input by [`input_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Every line is a text, whatever it looks like.
    PlainText,
    /// Every line is a JSON object with a `text` field (and an optional `id`).
    JsonLines,
}

/// The format of a whole input: JSON lines when its first non-blank line parses as a JSON object, or
/// looks like one (`{...}`: a typo there must be reported, not turn every line into text); plain text
/// otherwise. Deciding once (not line by line) lets plain text
/// contain lines that start with `{` (code, templates, logs), while a bad line in a JSON-lines input is
/// still an error, not a text.
pub fn input_format(text: &str) -> InputFormat {
    // A JSON object on one line (trimmed) is exactly what starts with `{` and ends with `}`.
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(first) if first.starts_with('{') && first.ends_with('}') => InputFormat::JsonLines,
        _ => InputFormat::PlainText,
    }
}

/// Reads texts to classify: one per line, or JSON lines with a `text` field (and an optional `id` that is
/// echoed back), as [`input_format`] decides for the whole input. Blank lines are skipped.
pub fn read_inputs(source_name: &str, bytes: &[u8]) -> Result<Vec<InputText>, TaskError> {
    let text = check_utf8(Path::new(source_name), bytes)?;
    let format = input_format(text);
    let mut out = Vec::new();
    let mut problems = Problems::new(Path::new(source_name));
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        match format {
            InputFormat::PlainText => out.push(InputText { line, id: None, text: raw.to_string() }),
            InputFormat::JsonLines => match json_input(trimmed) {
                Ok((id, text)) => out.push(InputText { line, id, text }),
                Err(what) => problems.push(line, what),
            },
        }
    }
    problems.into_result()?;
    Ok(out)
}

/// The `id` and `text` of one line of a JSON-lines input, or what is wrong with it.
fn json_input(line: &str) -> Result<(Option<serde_json::Value>, String), String> {
    let obj = JsonLine::parse(line).map_err(|e| {
        format!("not a JSON object: {e} (the input is read as JSON lines because its first line is one)")
    })?;
    let id = obj.field("id")?.cloned();
    match obj.field("text")? {
        Some(serde_json::Value::String(t)) if !t.trim().is_empty() => Ok((id, t.clone())),
        Some(serde_json::Value::String(_)) => Err("empty `text`".into()),
        _ => Err("JSON line without a string `text` field".into()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_or_a_missing_file_is_named_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["data", "data.csv"] {
            let path = tmp.path().join(dir);
            std::fs::create_dir(&path).unwrap();
            let e = load_labelled(&path, "text", "label").unwrap_err().to_string();
            assert!(e.contains("is a folder, not a data file") && e.contains(".csv, .tsv or .jsonl"), "{e}");
            assert!(!e.contains("unknown data format"), "{e}");
        }
        let e = load_labelled(&tmp.path().join("gone.csv"), "text", "label").unwrap_err().to_string();
        assert!(e.ends_with("gone.csv: no such file"), "{e}");
        let bare = tmp.path().join("data-without-extension");
        std::fs::write(&bare, "text,label\n").unwrap();
        let e = load_labelled(&bare, "text", "label").unwrap_err().to_string();
        assert!(e.contains("no file extension") && !e.contains("`.`"), "{e}");
    }
}
