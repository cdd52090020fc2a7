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

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>, RouterError> {
    csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| RouterError::data(path.display(), e))
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

fn parse_score(cell: &str, path: &Path, line: u64, col: &str) -> Result<f64, RouterError> {
    let t = cell.trim();
    let v = match t.to_ascii_lowercase().as_str() {
        "true" => Ok(1.0),
        "false" => Ok(0.0),
        _ => t.parse::<f64>(),
    };
    match v {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(RouterError::data(
            format!("{}:{line}", path.display()),
            format!("column `{col}`: `{t}` is not a number"),
        )),
    }
}

/// Reads an outcome CSV. Fails on a missing column or a non-numeric score, naming the line.
pub fn read_outcomes(path: &Path, cols: &Columns) -> Result<Vec<LabelledPrompt>, RouterError> {
    let mut rdr = open_csv(path)?;
    let headers = rdr.headers().map_err(|e| RouterError::data(path.display(), e))?.clone();
    let p = column(&headers, &cols.prompt, path, OUTCOME_COLUMNS_HINT)?;
    let w = column(&headers, &cols.weak, path, OUTCOME_COLUMNS_HINT)?;
    let s = column(&headers, &cols.strong, path, OUTCOME_COLUMNS_HINT)?;
    let g = if cols.require_group {
        Some(column(&headers, &cols.group, path, GROUP_COLUMN_HINT)?)
    } else {
        headers.iter().position(|h| h.trim() == cols.group)
    };
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| RouterError::data(path.display(), e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let prompt = rec.get(p).unwrap_or("");
        rows.push(LabelledPrompt {
            group: g.and_then(|g| rec.get(g)).map(str::to_string),
            conversation: Conversation::parse_cell(prompt),
            outcome: Outcome {
                weak: parse_score(rec.get(w).unwrap_or(""), path, line, &cols.weak)?,
                strong: parse_score(rec.get(s).unwrap_or(""), path, line, &cols.strong)?,
            },
        });
    }
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

/// Reads the prompts of a file for calibration: JSON lines (`.jsonl`, see [`parse_prompt_line`]) or
/// a CSV with a `prompt` column (outcome columns, if any, are ignored).
pub fn read_prompts(path: &Path, prompt_col: &str) -> Result<Vec<Conversation>, RouterError> {
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut rdr = open_csv(path)?;
        let headers = rdr.headers().map_err(|e| RouterError::data(path.display(), e))?.clone();
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
        assert!(e.contains(":2") && e.contains("maybe"), "{e}");
        assert!(read_outcomes(&dir.path().join("missing.csv"), &Columns::default()).is_err());
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
