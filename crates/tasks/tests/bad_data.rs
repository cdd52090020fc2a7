//! Every kind of bad data gets a clear error with the line, and training writes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::{spec, HashEmbedder};
use rightmodel_tasks::data::{self, load_labelled, read_inputs};
use rightmodel_tasks::train::train_classifier;
use rightmodel_tasks::{NoProgress, TaskError};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Training on `bytes` fails with a message containing all of `needles`, and leaves no directory.
fn train_fails(name: &str, bytes: &[u8], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), name, bytes);
    let dest = tmp.path().join("out").join("model");
    let err =
        train_classifier(&spec(data, "text", dest.clone()), &HashEmbedder::new(), &NoProgress).unwrap_err().to_string();
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
    assert!(!dest.exists(), "a model directory was written despite the error");
    assert!(!tmp.path().join("out").exists() || std::fs::read_dir(tmp.path().join("out")).unwrap().next().is_none());
}

const GOOD_ROWS: &str = "good film,pos\nbad film,neg\ngreat plot,pos\nawful plot,neg\n";

#[test]
fn missing_column_lists_the_header() {
    train_fails("d.csv", b"sentence,label\nhello,pos\n", &["missing column", "`text`", "`sentence`"]);
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "d.csv", format!("text,label\n{GOOD_ROWS}").as_bytes());
    let err = load_labelled(&p, "text", "category").unwrap_err().to_string();
    assert!(err.contains("`category`"), "{err}");
}

#[test]
fn a_column_asked_for_twice_is_missing_once() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "d.csv", format!("sentence,label\n{GOOD_ROWS}").as_bytes());
    let err = load_labelled(&p, "text", "text").unwrap_err().to_string();
    assert_eq!(err.matches("`text`").count(), 1, "{err}");
}

#[test]
fn an_empty_file_says_it_is_empty() {
    for name in ["e.csv", "e.tsv", "e.jsonl"] {
        train_fails(name, b"", &["the file is empty"]);
        train_fails(name, b"\n  \n", &["the file is empty"]);
    }
}

#[test]
fn empty_text_names_the_line() {
    train_fails("d.csv", format!("text,label\n{GOOD_ROWS}  ,pos\n").as_bytes(), &["line 6", "empty text"]);
    train_fails("d.tsv", b"text\tlabel\ngood\tpos\n\tneg\nbad\tneg\nfine\tpos\n", &["line 3", "empty text"]);
}

#[test]
fn empty_label_names_the_line() {
    train_fails("d.csv", format!("text,label\n{GOOD_ROWS}nice,\n").as_bytes(), &["line 6", "empty label"]);
}

#[test]
fn label_with_one_example_is_refused() {
    train_fails(
        "d.csv",
        format!("text,label\n{GOOD_ROWS}so-so film,meh\n").as_bytes(),
        &["label `meh` has only one example", "line 6"],
    );
}

#[test]
fn single_class_is_refused() {
    train_fails("d.csv", b"text,label\na,x\nb,x\nc,x\n", &["at least two classes"]);
}

#[test]
fn non_utf8_bytes_name_the_line() {
    let mut bytes = format!("text,label\n{GOOD_ROWS}").into_bytes();
    bytes.extend_from_slice(b"caf\xe9 au lait,pos\n");
    train_fails("d.csv", &bytes, &["line 6", "not valid UTF-8"]);
    assert!(read_inputs("input.txt", b"fine\n\xff\xfe\n").unwrap_err().to_string().contains("line 2"));
}

#[test]
fn ragged_rows_name_the_line() {
    train_fails("d.csv", format!("text,label\n{GOOD_ROWS}one,two,three\n").as_bytes(), &["line 6", "3 fields"]);
}

#[test]
fn bad_json_lines_name_the_line() {
    let ok = "{\"text\":\"good\",\"label\":\"pos\"}\n{\"text\":\"bad\",\"label\":\"neg\"}\n";
    train_fails("d.jsonl", format!("{ok}{{\"text\": \"x\"\n").as_bytes(), &["line 3", "not a JSON object"]);
    train_fails("d.jsonl", format!("{ok}{{\"label\": \"pos\"}}\n").as_bytes(), &["line 3", "missing field `text`"]);
    train_fails(
        "d.jsonl",
        format!("{ok}{{\"text\": 5, \"label\": \"pos\"}}\n").as_bytes(),
        &["line 3", "not a string"],
    );
}

#[test]
fn unknown_extension_and_missing_file_are_clear() {
    train_fails("d.xlsx", b"whatever", &["unknown data format", ".csv, .tsv or .jsonl"]);
    let err = load_labelled(Path::new("/nonexistent/dir/data.csv"), "text", "label").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/dir/data.csv"), "{err}");
}

#[test]
fn many_problems_are_summarised() {
    let mut s = String::from("text,label\n");
    for _ in 0..12 {
        s.push_str(",pos\n");
    }
    train_fails("d.csv", s.as_bytes(), &["line 2", "and 7 more"]);
}

#[test]
fn validation_labels_must_be_known() {
    let tmp = tempfile::tempdir().unwrap();
    let train = write(tmp.path(), "t.csv", format!("text,label\n{GOOD_ROWS}").as_bytes());
    let valid = write(tmp.path(), "v.csv", b"text,label\nnice,pos\nodd,weird\n");
    let mut s = spec(train, "text", tmp.path().join("m"));
    s.valid_path = Some(valid);
    let err = train_classifier(&s, &HashEmbedder::new(), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("`weird`"), "{err}");
    assert!(!tmp.path().join("m").exists());
}

#[test]
fn classify_input_accepts_plain_and_json_lines() {
    let inp = read_inputs("in", b"plain text here\n\nmore plain text\n").unwrap();
    assert_eq!(inp.len(), 2);
    assert_eq!(inp[0].text, "plain text here");
    assert_eq!((inp[1].text.as_str(), inp[1].line), ("more plain text", 3));
    let inp = read_inputs("in", b"{\"text\": \"first\"}\n\n{\"text\": \"json text\", \"id\": 7}\n").unwrap();
    assert_eq!(inp.len(), 2);
    assert_eq!(inp[1].text, "json text");
    assert_eq!(inp[1].id, Some(serde_json::json!(7)));
    assert_eq!(inp[1].line, 3);
    let err = read_inputs("in", b"{\"txt\": \"x\"}\n").unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("`text`"), "{err}");
    // A byte-order mark (Notepad, PowerShell) is not part of the first line.
    let inp = read_inputs("in", b"\xef\xbb\xbf{\"id\": 1, \"text\": \"great\"}\n").unwrap();
    assert_eq!((inp[0].text.as_str(), inp[0].id.clone()), ("great", Some(serde_json::json!(1))));
}

#[test]
fn a_column_named_twice_in_the_header_is_refused() {
    train_fails(
        "d.csv",
        format!("text,label,label\n{}", GOOD_ROWS.replace(",pos", ",junk,pos").replace(",neg", ",junk,neg")).as_bytes(),
        &["column `label` appears 2 times", "columns 2, 3", "line 1"],
    );
    train_fails("d.tsv", b"text\tlabel\ttext\na\tpos\tb\n", &["column `text` appears 2 times", "columns 1, 3"]);
    // Surrounding spaces do not make a different name.
    train_fails("d.csv", b"text, label ,label\na,pos,neg\n", &["column `label` appears 2 times"]);
    // Repeated columns that are not used do not matter.
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "d.csv", format!("text,label,note\n{}", GOOD_ROWS.replace('\n', ",x\n")).as_bytes());
    assert_eq!(load_labelled(&p, "text", "label").unwrap().len(), 4);
    let p = write(tmp.path(), "e.csv", b"text,label,n,n\na,pos,1,2\nb,neg,1,2\n");
    assert_eq!(load_labelled(&p, "text", "label").unwrap().labels, vec!["pos", "neg"]);
}

#[test]
fn a_json_field_given_twice_on_a_line_is_refused() {
    train_fails(
        "d.jsonl",
        b"{\"text\":\"good\",\"label\":\"pos\"}\n{\"text\":\"bad\",\"label\":\"x\",\"label\":\"neg\"}\n",
        &["line 2", "field `label` appears more than once"],
    );
    let err = read_inputs("in", b"{\"text\":\"a\",\"text\":\"b\"}\n").unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("`text` appears more than once"), "{err}");
}

#[test]
fn a_field_no_json_line_has_is_a_missing_column() {
    let tmp = tempfile::tempdir().unwrap();
    let p =
        write(tmp.path(), "d.jsonl", b"{\"question\":\"a\",\"label\":\"x\"}\n{\"question\":\"b\",\"label\":\"y\"}\n");
    let err = load_labelled(&p, "text", "label").unwrap_err();
    assert!(matches!(err, TaskError::MissingColumn { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("missing column(s) `text`") && msg.contains("`question`"), "{msg}");
    let err = load_labelled(&p, "text", "text").unwrap_err().to_string();
    assert_eq!(err.matches("`text`").count(), 1, "{err}");
    // In a CSV file too, so callers can tell it from other data problems.
    let p = write(tmp.path(), "d.csv", b"question,label\na,x\n");
    assert!(matches!(load_labelled(&p, "text", "label").unwrap_err(), TaskError::MissingColumn { .. }));
}

#[test]
fn whole_json_numbers_are_one_label_however_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = String::from("\u{feff}");
    for (i, label) in ["1", "1.0", "1e0", "0", "-0.0", "0.0", "2.5", "\"1.0\"", "true"].iter().enumerate() {
        s.push_str(&format!("{{\"text\":\"t{i}\",\"label\":{label}}}\r\n"));
    }
    let p = write(tmp.path(), "d.jsonl", s.as_bytes());
    let ds = load_labelled(&p, "text", "label").unwrap();
    // String labels are kept as written.
    assert_eq!(ds.labels, vec!["1", "1", "1", "0", "0", "0", "2.5", "1.0", "true"]);
}

#[test]
fn an_unterminated_csv_quote_names_the_line_where_it_opens() {
    let rows = "great movie,pos\nwonderful,pos\nterrible,neg\nboring,neg\n";
    train_fails(
        "d.csv",
        format!("text,label\n{rows}\"unterminated quote,pos\nmore text,neg\n").as_bytes(),
        &["line 6", "closing `\"` is missing"],
    );
    // Quotes the csv reader takes literally, or escaped, are fine.
    let tmp = tempfile::tempdir().unwrap();
    let ok = "text,label\n5\" screen,pos\n\"say \"\"hi\"\", then\nbye\",neg\n\"a\"b,pos\n";
    let p = write(tmp.path(), "d.csv", ok.as_bytes());
    let ds = load_labelled(&p, "text", "label").unwrap();
    assert_eq!(ds.texts, vec!["5\" screen", "say \"hi\", then\nbye", "ab"]);
    // In TSV quotes are ordinary characters.
    let p = write(tmp.path(), "d.tsv", b"text\tlabel\n\"open\tpos\nx\tneg\n");
    assert_eq!(load_labelled(&p, "text", "label").unwrap().texts, vec!["\"open", "x"]);
}

#[test]
fn classify_input_format_is_decided_by_the_first_line() {
    // Plain text: a later line that starts with `{` is just text, JSON or not.
    let inp =
        read_inputs("in", b"great movie\n\n{\"text\":\"awful film\",\"id\":7}\n{curly} braces are fun\n").unwrap();
    let texts: Vec<&str> = inp.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, vec!["great movie", "{\"text\":\"awful film\",\"id\":7}", "{curly} braces are fun"]);
    assert!(inp.iter().all(|t| t.id.is_none()));
    assert_eq!(data::input_format("{curly} first\n{\"text\":\"x\"}\n"), data::InputFormat::PlainText);
    // JSON lines: a later line that is not a JSON object is an error with its line number.
    assert_eq!(data::input_format("\n  {\"text\":\"x\"}\nplain\n"), data::InputFormat::JsonLines);
    let err = read_inputs("in", b"{\"text\":\"ok\"}\nplain words\n{broken\n").unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("line 3") && err.contains("not a JSON object"), "{err}");
    // A typo in a first line that is meant as JSON is reported, not read as text with every other line.
    let err = read_inputs("in", b"{\"text\":\"a\",\"id\":1,}\n{\"text\":\"b\"}\n").unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}
