//! Text that came from clients, made safe to print on an operator's terminal.
//!
//! The request log stores what clients sent (the model they asked for, upstream error messages) as
//! is, which is right for CSV and JSON output (their quoting keeps it intact). Printed raw in a table,
//! a newline forges a row and an escape sequence reaches the operator's terminal (colours, cursor
//! moves, a changed window title). Written by hand: a dozen lines, no crate does only this.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character (C0, DEL, C1) and every bidirectional-text control escaped as
/// `\n`, `\t`, `\r` or `\u{..}`, so it prints as one line that shows what was sent; borrowed when there
/// is nothing to escape (the common case).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` with each of its lines made [`printable`]: for multi-line output (a Markdown table) whose
/// cells may hold client text.
pub fn printable_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&printable(body));
        out.push_str(newline);
    }
    out
}

/// Control characters, and the bidirectional overrides and isolates that reorder what follows them
/// on screen (U+202A..U+202E, U+2066..U+2069).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["gpt-4o-mini", "modèle 日本語 🙂", ""] {
            assert!(matches!(printable(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn control_characters_are_escaped_on_one_line() {
        let s = "evil\nmodel\u{1b}[31mRED\t,\r\u{7f}\u{9b}x\u{202e}y";
        let p = printable(s);
        assert_eq!(p, "evil\\nmodel\\u{1b}[31mRED\\t,\\r\\u{7f}\\u{9b}x\\u{202e}y");
        assert!(!p.chars().any(needs_escape));
    }

    #[test]
    fn lines_keep_their_breaks_and_lose_their_escapes() {
        assert_eq!(printable_lines("| a\u{1b}[2J |\n\n| b\tc |\n"), "| a\\u{1b}[2J |\n\n| b\\tc |\n");
        assert_eq!(printable_lines("no newline"), "no newline");
    }
}
