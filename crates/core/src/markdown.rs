//! Markdown table cells, as every report writes them.
//!
//! A table row is split on `|` and ends at a line break, so a cell holding either (a model named
//! `a|b`, a class label or a file name with a line break) would shift or cut every column after it.
//! Every cell a report fills from data goes through [`cell`] (or [`row`]), so the rule lives in one place.

use std::borrow::Cow;

/// `text` made safe for one Markdown table cell: `|` becomes `\|` (GitHub-flavoured Markdown shows it
/// as a plain `|`), and each line break (`\r\n`, `\n` or `\r`) becomes a space (a table row cannot span
/// lines). Borrowed when there is nothing to escape.
pub fn cell(text: &str) -> Cow<'_, str> {
    if !text.contains(['|', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push(' ');
            }
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One table row, `| a | b |`, each of `cells` escaped with [`cell`].
pub fn row<I, S>(cells: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::from("|");
    for c in cells {
        out.push(' ');
        out.push_str(&cell(c.as_ref()));
        out.push_str(" |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_line_breaks_cannot_break_a_row() {
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(cell("two\nlines\r\nand\rmore"), "two lines and more");
        assert!(matches!(cell("plain"), Cow::Borrowed("plain")));
        assert_eq!(row(["a|b", "1", ""]), "| a\\|b | 1 |  |");
        // Once escaped, the row has exactly its columns' separators.
        let line = row(["x|y|z", "w"]);
        assert_eq!(line.matches('|').count() - line.matches("\\|").count(), 3, "{line}");
    }
}
