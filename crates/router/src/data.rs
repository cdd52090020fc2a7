//! Reading routing data: outcome CSVs for training and evaluation, prompt files for scoring and
//! calibration.
//!
//! Outcome CSV: a header row, a prompt column and the quality of each of the two models per row,
//! either as 0/1 correctness (`prompt,weak_correct,strong_correct`) or as any numeric per-model score
//! (name the columns with [`Columns`]). An optional group column (`subject` by default) is used for
//! grouped cross-validation. A prompt cell that holds a JSON array of `{role, content}` messages is
//! read as a whole conversation.

use std::path::Path;

use crate::conversation::Conversation;
use crate::error::RouterError;

/// Quality of the weak and the strong model on one prompt (0/1 correctness or any score).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Quality of the weak (cheap) model.
    pub weak: f64,
    /// Quality of the strong (expensive) model.
    pub strong: f64,
}

/// One labelled row.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPrompt {
    /// Group for cross-validation (e.g. the MMLU subject); `None` without a group column.
    pub group: Option<String>,
    /// The conversation.
    pub conversation: Conversation,
    /// The two models' quality on it.
    pub outcome: Outcome,
}

/// Which CSV columns hold what.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// Prompt column.
    pub prompt: String,
    /// Weak model's correctness or score.
    pub weak: String,
    /// Strong model's correctness or score.
    pub strong: String,
    /// Group column; used when present.
    pub group: String,
    /// Whether a missing group column is an error (the user named it) rather than "no groups" (the
    /// default name, absent from data that has no groups).
    pub require_group: bool,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            prompt: "prompt".into(),
            weak: "weak_correct".into(),
            strong: "strong_correct".into(),
            group: "subject".into(),
            require_group: false,
        }
    }
}

/// Fails with a clear message when `path` is not an existing file: missing, or a folder (`expected`
/// says what to give instead, e.g. "a .csv file"). Other metadata errors are left to the read, which
/// names them.
pub fn check_input_file(path: &Path, expected: &str) -> Result<(), RouterError> {
    use rightmodel_core::fsutil::NotAFile;
    match rightmodel_core::fsutil::check_input_file(path) {
        Err(NotAFile::Folder) => {
            Err(RouterError::data(path.display(), format!("is a folder, not a file; give {expected}")))
        }
        Err(NotAFile::Missing) => Err(RouterError::data(path.display(), "no such file")),
        Ok(()) | Err(NotAFile::Other(_)) => Ok(()),
    }
}

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>, RouterError> {
    csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| RouterError::data(path.display(), e))
}

/// The header row of `rdr`; an empty file (no header row at all) says so, instead of a "no column `prompt`
/// (columns: )" that reads like a wrong flag.
fn read_headers(rdr: &mut csv::Reader<std::fs::File>, path: &Path) -> Result<csv::StringRecord, RouterError> {
    let headers = rdr.headers().map_err(|e| RouterError::data(path.display(), e))?.clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(RouterError::data(path.display(), "the file is empty (no header row)"));
    }
    Ok(headers)
}

/// Most bad lines one error lists; the rest are counted.
pub const MAX_LISTED: usize = 20;

/// Problems with single lines of an input, collected so that one error lists every bad line (up to
/// [`MAX_LISTED`]) instead of making the user fix and rerun once per line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BadLines {
    list: Vec<(u64, String)>,
    /// Place in `list` of each line.
    index: std::collections::HashMap<u64, usize>,
}

impl BadLines {
    /// Records that line `line` (from 1) is bad, and why; a line with several problems is listed once,
    /// with all of them.
    pub fn push(&mut self, line: u64, why: impl std::fmt::Display) {
        match self.index.get(&line) {
            Some(&i) => {
                self.list[i].1.push_str("; ");
                self.list[i].1.push_str(&why.to_string());
            }
            None => {
                self.index.insert(line, self.list.len());
                self.list.push((line, why.to_string()));
            }
        }
    }

    /// Whether no line was bad.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of bad lines recorded.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The bad lines as one indented list, the first [`MAX_LISTED`] in full, then "... and N more".
    pub fn listing(&self) -> String {
        // Checks that run in passes report lines out of order: list them in file order.
        let mut sorted: Vec<&(u64, String)> = self.list.iter().collect();
        sorted.sort_by_key(|(line, _)| *line);
        let mut s: Vec<String> =
            sorted.iter().take(MAX_LISTED).map(|(line, why)| format!("  line {line}: {why}")).collect();
        if self.list.len() > MAX_LISTED {
            s.push(format!("  ... and {} more", self.list.len() - MAX_LISTED));
        }
        s.join("\n")
    }

    /// `Ok` when no line was bad, else [`BadLines::into_error`].
    pub fn into_result(self, source: impl std::fmt::Display) -> Result<(), RouterError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error(source))
        }
    }

    /// One [`RouterError::Data`] for `source` (a file name, `stdin`): `source: line N: why` for a single
    /// bad line, else `source: K bad lines:` and the [`BadLines::listing`].
    pub fn into_error(self, source: impl std::fmt::Display) -> RouterError {
        match self.list.as_slice() {
            [(line, why)] => RouterError::data(source, format!("line {line}: {why}")),
            _ => RouterError::data(source, format!("{} bad lines:\n{}", self.len(), self.listing())),
        }
    }
}

/// Why `conv` cannot be scored, if it cannot: the request being routed (its last user turn) has no
/// text. An empty prompt would still get a score - a meaningless one - so it is refused like a
/// malformed line.
pub fn check_prompt(conv: &Conversation) -> Result<(), String> {
    if conv.messages.is_empty() {
        return Err("no messages".into());
    }
    if conv.last_user().trim().is_empty() {
        return Err("the prompt is empty".into());
    }
    Ok(())
}

/// How to name the columns of an outcome file (`router train` and `router eval` have these flags).
const OUTCOME_COLUMNS_HINT: &str =
    "name the prompt and the two models' columns with --prompt-col, --weak-col and --strong-col";

/// How to name the prompt column of a prompts CSV (`router calibrate` has only this flag).
const PROMPT_COLUMN_HINT: &str = "name the prompt column with --prompt-col";

/// How to name the group column (`router train` and `router eval`).
const GROUP_COLUMN_HINT: &str = "give --group-col one of these columns, or leave the flag out";

/// The position of column `name`, or an error listing the file's columns and `hint`: how to name the
/// column with the flags of the command that reads the file.
fn column(headers: &csv::StringRecord, name: &str, path: &Path, hint: &str) -> Result<usize, RouterError> {
    headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
        let have: Vec<&str> = headers.iter().collect();
        RouterError::data(path.display(), format!("no column `{name}` (columns: {}); {hint}", have.join(", ")))
    })
}

/// A score cell as a number (`true`/`false` count as 1/0), or why it is not one.
fn parse_score(cell: &str, col: &str) -> Result<f64, String> {
    let t = cell.trim();
    let v = match t.to_ascii_lowercase().as_str() {
        "true" => Ok(1.0),
        "false" => Ok(0.0),
        _ => t.parse::<f64>(),
    };
    match v {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("column `{col}`: `{t}` is not a number")),
    }
}

/// Share of the outcome values that must be exactly 0 or 1 for the two columns to be read as 0/1
/// correctness. A value outside `[0, 1]` in such columns is a typo, not a score: scores are rescaled
/// by their span, so one `5` among 0/1 values would silently squash every other label into `[0, 0.2]`.
/// Values inside `[0, 1]` (partial credit) are kept.
pub const BINARY_SHARE: f64 = 0.9;

/// Records as bad every value outside `[0, 1]` when the two outcome columns otherwise hold 0/1
/// correctness (see [`BINARY_SHARE`]). `rows` are the read rows with their line numbers.
fn check_binary_columns(rows: &[(u64, Outcome)], cols: &Columns, bad: &mut BadLines) {
    let values = 2 * rows.len();
    let binary = rows.iter().flat_map(|(_, o)| [o.weak, o.strong]).filter(|v| *v == 0.0 || *v == 1.0).count();
    let share = binary as f64 / values.max(1) as f64;
    if share < BINARY_SHARE {
        return;
    }
    for (line, o) in rows {
        for (v, col) in [(o.weak, &cols.weak), (o.strong, &cols.strong)] {
            if !(0.0..=1.0).contains(&v) {
                bad.push(
                    *line,
                    format!(
                        "column `{col}`: `{v}` is not 0 or 1, while {:.1}% of the outcome values are (a typo would rescale every label)",
                        100.0 * share
                    ),
                );
            }
        }
    }
}

/// Reads an outcome CSV. Fails on a missing column; every row with a non-numeric score, an empty
/// prompt, or a value outside `[0, 1]` in 0/1 correctness columns (see [`BINARY_SHARE`]) is listed in
/// one error, by line.
pub fn read_outcomes(path: &Path, cols: &Columns) -> Result<Vec<LabelledPrompt>, RouterError> {
    check_input_file(path, "an outcome .csv file")?;
    let mut rdr = open_csv(path)?;
    let headers = read_headers(&mut rdr, path)?;
    let p = column(&headers, &cols.prompt, path, OUTCOME_COLUMNS_HINT)?;
    let w = column(&headers, &cols.weak, path, OUTCOME_COLUMNS_HINT)?;
    let s = column(&headers, &cols.strong, path, OUTCOME_COLUMNS_HINT)?;
    let g = if cols.require_group {
        Some(column(&headers, &cols.group, path, GROUP_COLUMN_HINT)?)
    } else {
        headers.iter().position(|h| h.trim() == cols.group)
    };
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    let mut bad = BadLines::default();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| RouterError::data(path.display(), e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let conversation = Conversation::parse_cell(rec.get(p).unwrap_or(""));
        let prompt = check_prompt(&conversation).map_err(|e| format!("column `{}`: {e}", cols.prompt));
        let weak = parse_score(rec.get(w).unwrap_or(""), &cols.weak);
        let strong = parse_score(rec.get(s).unwrap_or(""), &cols.strong);
        match (prompt, weak, strong) {
            (Ok(()), Ok(weak), Ok(strong)) => {
                let outcome = Outcome { weak, strong };
                lines.push((line, outcome));
                let group = g.and_then(|g| rec.get(g)).map(str::to_string);
                rows.push(LabelledPrompt { group, conversation, outcome });
            }
            (p, w, s) => [p.err(), w.err(), s.err()].into_iter().flatten().for_each(|why| bad.push(line, why)),
        }
    }
    check_binary_columns(&lines, cols, &mut bad);
    bad.into_result(path.display())?;
    if rows.is_empty() {
        return Err(RouterError::data(path.display(), "no data rows"));
    }
    Ok(rows)
}

/// Parses one JSON line of a prompts file: `{"prompt": "..."}` or `{"messages": [...]}` in OpenAI's chat
/// format (content parts, tool calls and tool messages included, as the server accepts them). A leading
/// byte-order mark is ignored.
pub fn parse_prompt_line(line: &str) -> Result<Conversation, String> {
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(p) = v.get("prompt").and_then(|p| p.as_str()) {
        return Ok(Conversation::from_prompt(p));
    }
    if let Some(m) = v.get("messages") {
        let messages: Vec<rightmodel_core::wire::ChatMessage> =
            serde_json::from_value(m.clone()).map_err(|e| format!("bad `messages`: {e}"))?;
        return Ok(Conversation::from_chat(&messages));
    }
    Err("expected an object with a string `prompt` or a `messages` array".into())
}

/// Parses the prompt lines of `input` (the whole of `router score`'s stdin): one conversation per line,
/// in order, so that scores can be written one per line. Every line must be a prompt (see
/// [`parse_prompt_line`] and [`check_prompt`]): a blank line, bytes that are not UTF-8 or an empty
/// prompt are bad lines too, since skipping one would shift every later score onto the wrong input
/// line. All bad lines are returned, so that nothing is scored or written unless every line is good.
/// A leading byte-order mark and CRLF line ends are accepted; no input gives no prompts.
pub fn parse_prompt_lines(input: &[u8]) -> Result<Vec<Conversation>, BadLines> {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    let mut out = Vec::new();
    let mut bad = BadLines::default();
    if input.is_empty() {
        return Ok(out);
    }
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    for (i, raw) in input.split(|b| *b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "bytes that are not valid UTF-8".to_string())
            .and_then(|line| {
                if line.trim().is_empty() {
                    Err("blank line; every line must be a prompt (one score is written per line)".into())
                } else {
                    parse_prompt_line(line)
                }
            })
            .and_then(|conv| check_prompt(&conv).map(|()| conv));
        match parsed {
            Ok(conv) => out.push(conv),
            Err(why) => bad.push(line_no, why),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(bad)
    }
}

/// Reads the prompts of a file for calibration: JSON lines (`.jsonl`, see [`parse_prompt_line`]) or
/// a CSV with a `prompt` column (outcome columns, if any, are ignored).
pub fn read_prompts(path: &Path, prompt_col: &str) -> Result<Vec<Conversation>, RouterError> {
    check_input_file(path, "a .jsonl or .csv file of prompts")?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut rdr = open_csv(path)?;
        let headers = read_headers(&mut rdr, path)?;
        let p = column(&headers, prompt_col, path, PROMPT_COLUMN_HINT)?;
        let mut out = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| RouterError::data(path.display(), e))?;
            out.push(Conversation::parse_cell(rec.get(p).unwrap_or("")));
        }
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).map_err(|e| RouterError::data(path.display(), e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_prompt_line(line).map_err(|e| RouterError::data(format!("{}:{}", path.display(), i + 1), e))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_folder_or_a_missing_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("outcomes.csv");
        std::fs::create_dir(&folder).unwrap();
        let missing = dir.path().join("gone.csv");
        let outcomes = |p: &Path| read_outcomes(p, &Columns::default()).unwrap_err().to_string();
        let prompts = |p: &Path| read_prompts(p, "prompt").unwrap_err().to_string();
        let cases = |p: &Path| crate::compare::read_cases(p).unwrap_err().to_string();
        for e in [outcomes(&folder), prompts(&folder), cases(&folder), prompts(dir.path())] {
            assert!(e.contains("is a folder, not a file; give a") && !e.contains("os error"), "{e}");
        }
        for e in [outcomes(&missing), prompts(&missing), cases(&missing)] {
            assert!(e.ends_with("gone.csv: no such file"), "{e}");
        }
    }

    #[test]
    fn reads_correctness_and_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            write(&dir, "a.csv", "subject,prompt,weak_correct,strong_correct\nmath,\"2+2?\nA. 4\",1,True\nlaw,x,0,1\n");
        let rows = read_outcomes(&p, &Columns::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].group.as_deref(), Some("math"));
        assert_eq!(rows[0].outcome, Outcome { weak: 1.0, strong: 1.0 });
        assert_eq!(rows[0].conversation.last_user(), "2+2?\nA. 4");

        let p = write(&dir, "b.csv", "prompt,mixtral,gpt4\nhello,3.5,9\n");
        let cols = Columns { weak: "mixtral".into(), strong: "gpt4".into(), ..Default::default() };
        let rows = read_outcomes(&p, &cols).unwrap();
        assert_eq!(rows[0].outcome, Outcome { weak: 3.5, strong: 9.0 });
        assert_eq!(rows[0].group, None);
    }

    #[test]
    fn clear_errors_for_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "c.csv", "prompt,a,b\nx,1,1\n");
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("weak_correct") && e.contains("--weak-col"), "{e}");
        let p = write(&dir, "d.csv", "prompt,weak_correct,strong_correct\nx,1,maybe\n");
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
        assert!(read_outcomes(&dir.path().join("missing.csv"), &Columns::default()).is_err());
    }

    #[test]
    fn a_line_with_two_problems_is_one_bad_line() {
        let mut bad = BadLines::default();
        bad.push(3, "empty prompt");
        bad.push(2, "not a number");
        bad.push(3, "`7` is not 0 or 1");
        assert_eq!(bad.len(), 2);
        assert_eq!(bad.listing(), "  line 2: not a number\n  line 3: empty prompt; `7` is not 0 or 1");
    }

    #[test]
    fn an_empty_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "empty.csv", "");
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("empty.csv") && e.contains("the file is empty"), "{e}");
        let e = read_prompts(&p, "prompt").unwrap_err().to_string();
        assert!(e.contains("the file is empty"), "{e}");
        let p = write(&dir, "hdr.csv", "prompt,weak_correct,strong_correct\n");
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
    }

    #[test]
    fn every_bad_row_is_listed_and_empty_prompts_are_bad() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "e.csv",
            "prompt,weak_correct,strong_correct\nok,1,0\n,1,1\n   ,0,1\nfine,x,1\n\"[{\"\"role\"\":\"\"user\"\"}]\",0,1\n",
        );
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("4 bad lines"), "{e}");
        for l in ["line 3: column `prompt`: the prompt is empty", "line 4:", "line 5: column `weak_correct`", "line 6:"]
        {
            assert!(e.contains(l), "{l} in {e}");
        }
        assert!(!e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_value_outside_0_1_in_correctness_columns_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("prompt,weak_correct,strong_correct\n");
        for i in 0..40 {
            text.push_str(&format!("q{i},{},1\n", i % 2));
        }
        text.push_str("typo,1,5\n");
        let p = write(&dir, "typo.csv", &text);
        let e = read_outcomes(&p, &Columns::default()).unwrap_err().to_string();
        assert!(e.contains("line 42") && e.contains("`strong_correct`") && e.contains("`5`"), "{e}");
        // Partial credit inside [0, 1] is kept.
        let p = write(&dir, "half.csv", &text.replace("typo,1,5", "half,0.5,1"));
        assert_eq!(read_outcomes(&p, &Columns::default()).unwrap()[40].outcome.weak, 0.5);
        // Scores on another scale, and -1/1, are scores: rescaled, not refused.
        let p = write(&dir, "s.csv", "prompt,weak_correct,strong_correct\na,70,90\nb,1,0\nc,0,10\n");
        assert_eq!(read_outcomes(&p, &Columns::default()).unwrap().len(), 3);
        let p = write(&dir, "neg.csv", "prompt,weak_correct,strong_correct\na,-1,1\nb,-1,1\n");
        assert_eq!(read_outcomes(&p, &Columns::default()).unwrap().len(), 2);
    }

    #[test]
    fn prompt_lines_keep_one_line_per_prompt_and_list_every_bad_line() {
        let ok = parse_prompt_lines(
            b"\xef\xbb\xbf{\"prompt\":\"a\"}\r\n{\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
        )
        .unwrap();
        assert_eq!(ok.iter().map(Conversation::last_user).collect::<Vec<_>>(), ["a", "b"]);
        assert!(parse_prompt_lines(b"").unwrap().is_empty());
        let bad = parse_prompt_lines(
            b"{\"prompt\":\"a\"}\n\n  \n{\"prompt\":\"\"}\n{\"messages\":[]}\n{\"messages\":[{\"role\":\"user\"}]}\n\xff\n{broken\n",
        )
        .unwrap_err();
        let e = bad.clone().into_result("stdin").unwrap_err().to_string();
        assert_eq!(bad.len(), 7, "{e}");
        for l in ["line 2: blank line", "line 3: blank line", "line 4: the prompt is empty", "line 5: no messages"] {
            assert!(e.contains(l), "{l} in {e}");
        }
        assert!(
            e.contains("line 6: the prompt is empty") && e.contains("line 7: bytes that are not valid UTF-8"),
            "{e}"
        );
        assert!(e.contains("line 8: not JSON"), "{e}");
        // A lone newline is one blank line, not "no input".
        assert_eq!(parse_prompt_lines(b"\n").unwrap_err().len(), 1);
        let one = parse_prompt_lines(b"{\"prompt\":\"a\"}\n{x\n").unwrap_err().into_result("stdin").unwrap_err();
        assert!(one.to_string().starts_with("stdin: line 2: not JSON"), "{one}");
    }

    #[test]
    fn bad_line_listings_are_capped() {
        let mut bad = BadLines::default();
        for i in 1..=25 {
            bad.push(i, "nope");
        }
        let e = bad.into_result("f.jsonl").unwrap_err().to_string();
        assert!(e.contains("25 bad lines") && e.contains("line 20: nope") && !e.contains("line 21:"), "{e}");
        assert!(e.ends_with("... and 5 more"), "{e}");
    }

    #[test]
    fn a_group_column_the_user_named_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "g.csv", "subject,prompt,weak_correct,strong_correct\nmath,x,0,1\n");
        let named = |group: &str| Columns { group: group.into(), require_group: true, ..Columns::default() };
        let e = read_outcomes(&p, &named("subjct")).unwrap_err().to_string();
        assert!(e.contains("`subjct`") && e.contains("subject, prompt") && e.contains("--group-col"), "{e}");
        assert_eq!(read_outcomes(&p, &named("subject")).unwrap()[0].group.as_deref(), Some("math"));
        // The default name, absent: no groups, no error.
        let p = write(&dir, "n.csv", "prompt,weak_correct,strong_correct\nx,0,1\n");
        assert_eq!(read_outcomes(&p, &Columns::default()).unwrap()[0].group, None);
    }

    #[test]
    fn a_missing_prompt_column_names_only_the_flags_of_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "p.csv", "text\nhello\n");
        let e = read_prompts(&p, "prompt").unwrap_err().to_string();
        assert!(e.contains("--prompt-col") && !e.contains("--weak-col") && !e.contains("--strong-col"), "{e}");
    }

    #[test]
    fn prompt_lines() {
        assert_eq!(parse_prompt_line(r#"{"prompt":"hi"}"#).unwrap().last_user(), "hi");
        let c = parse_prompt_line(r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#)
            .unwrap();
        assert_eq!(c.messages.len(), 2);
        // OpenAI's full message shapes: null content with tool calls, tool results, content parts; a BOM.
        let c = parse_prompt_line(concat!(
            "\u{feff}",
            r#"{"messages":[{"role":"user","content":"weather?"},"#,
            r#"{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"w","arguments":"{}"}}]},"#,
            r#"{"role":"tool","tool_call_id":"c","content":"sunny"},"#,
            r#"{"role":"user","content":[{"type":"text","text":"and tomorrow?"}]}]}"#
        ))
        .unwrap();
        assert_eq!(c.messages.len(), 4);
        assert_eq!(c.last_user(), "and tomorrow?");
        assert!(parse_prompt_line("{}").is_err());
        assert!(parse_prompt_line("nope").is_err());
    }
}
