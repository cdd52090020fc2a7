//! From a file's bytes to its *cleaned text*: the text that is split into passages and that citation
//! offsets point into.
//!
//! - Plain text and Markdown: the cleaned text is the file's contents unchanged (UTF-8; a leading
//!   byte-order mark reads as a space), so citation offsets are character offsets into the file itself.
//! - HTML: the visible text as rendered by `html2text` (scripts, styles and tags dropped, one blank line
//!   between blocks); offsets point into that text, which [`clean_file`] reproduces exactly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DocsError;

/// How a file is turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Plain UTF-8 text.
    Text,
    /// Markdown, indexed as written (markup characters are few and harmless for retrieval).
    Markdown,
    /// HTML, converted to its visible text.
    Html,
}

/// The extensions a folder walk indexes (lower case, without the dot), with the format of each.
pub const EXTENSIONS: [(&str, Format); 12] = [
    ("txt", Format::Text),
    ("text", Format::Text),
    ("rst", Format::Text),
    ("adoc", Format::Text),
    ("org", Format::Text),
    ("md", Format::Markdown),
    ("markdown", Format::Markdown),
    ("mdown", Format::Markdown),
    ("mkd", Format::Markdown),
    ("html", Format::Html),
    ("htm", Format::Html),
    ("xhtml", Format::Html),
];

/// [`EXTENSIONS`] for messages: `.txt, .text, ..., .xhtml`.
pub fn supported_extensions() -> String {
    EXTENSIONS.iter().map(|(ext, _)| format!(".{ext}")).collect::<Vec<_>>().join(", ")
}

impl Format {
    /// The format of a file by its extension (see [`EXTENSIONS`]), or `None` for files a folder walk
    /// should skip.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        EXTENSIONS.iter().find(|(e, _)| *e == ext).map(|(_, format)| *format)
    }

    /// The format of a file named explicitly: by extension, plain text when the extension is unknown.
    pub fn for_explicit(path: &Path) -> Format {
        Format::from_extension(path).unwrap_or(Format::Text)
    }
}

/// Reads `path` and returns its cleaned text.
///
/// Errors: [`DocsError::EmptyFile`] when there is no text, [`DocsError::BinaryFile`] when the bytes are
/// not UTF-8 text.
pub fn clean_file(path: &Path, format: Format) -> Result<String, DocsError> {
    let bytes = std::fs::read(path).map_err(|e| DocsError::io(path, e))?;
    clean_bytes(&bytes, format, path)
}

/// Cleans already-read bytes of the file `path` (used for error messages only).
pub fn clean_bytes(bytes: &[u8], format: Format, path: &Path) -> Result<String, DocsError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DocsError::EmptyFile { path: path.to_path_buf() });
    }
    let text = decode_text(bytes).map_err(|reason| DocsError::BinaryFile { path: path.to_path_buf(), reason })?;
    let cleaned = match format {
        Format::Text | Format::Markdown => match text.strip_prefix(BOM) {
            // A space in its place: it never reaches an answer or a citation, and character offsets
            // still count it as the file's first character, as a reader of the raw file does.
            Some(rest) => format!(" {rest}"),
            None => text.to_string(),
        },
        Format::Html => html_to_text(text.strip_prefix(BOM).unwrap_or(text)),
    };
    if cleaned.trim().is_empty() {
        return Err(DocsError::EmptyFile { path: path.to_path_buf() });
    }
    Ok(cleaned)
}

/// The byte-order mark some editors put at the start of UTF-8 files (U+FEFF).
const BOM: char = '\u{feff}';

/// Checks that `bytes` are UTF-8 text; returns the reason when they look binary.
fn decode_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.contains(&0) {
        return Err("it contains NUL bytes".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    // Control characters other than tab, newline, carriage return and form feed are rare in text and common
    // in binary formats that happen to avoid NUL.
    let controls = text.chars().filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}')).count();
    if controls * 100 > text.chars().count().max(1) {
        return Err("it is full of control characters".into());
    }
    Ok(text)
}

/// Visible text of an HTML document, one blank line between blocks.
fn html_to_text(html: &str) -> String {
    // Lines are never wrapped (a very wide width), so a paragraph stays one line and sentences are not
    // broken by the renderer; raw mode renders table cells as plain lines.
    const WIDTH: usize = 1 << 20;
    let rendered = html2text::config::plain_no_decorate()
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), WIDTH);
    match rendered {
        Ok(t) => t.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string(),
        // html2text only fails on I/O from the reader (none for a byte slice) or on impossible widths.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_extensions_are_the_indexed_ones() {
        let listed = supported_extensions();
        assert!(listed.starts_with(".txt, ") && listed.ends_with(", .xhtml"), "{listed}");
        for (ext, format) in EXTENSIONS {
            assert_eq!(Format::from_extension(Path::new(&format!("a.{}", ext.to_uppercase()))), Some(format));
        }
        assert_eq!(Format::from_extension(Path::new("a.pdf")), None);
        assert_eq!(Format::from_extension(Path::new("README")), None);
    }

    #[test]
    fn a_byte_order_mark_is_not_text_but_still_counts_for_offsets() {
        let bytes = "\u{feff}Quokkas are found on Rottnest Island.\n".as_bytes();
        for format in [Format::Text, Format::Markdown] {
            let t = clean_bytes(bytes, format, Path::new("q.txt")).unwrap();
            assert_eq!(t, " Quokkas are found on Rottnest Island.\n");
            assert_eq!(t.chars().count(), std::str::from_utf8(bytes).unwrap().chars().count());
        }
        let html = "\u{feff}<p>Quokkas.</p>";
        assert_eq!(clean_bytes(html.as_bytes(), Format::Html, Path::new("q.html")).unwrap(), "Quokkas.");
    }

    #[test]
    fn html_keeps_visible_text_only() {
        let html = "<html><head><title>T</title><style>p{color:red}</style><script>var x=1;</script></head>\
                    <body><h1>Heading</h1><p>First paragraph &amp; more.</p><p>Second one.</p></body></html>";
        let t = clean_bytes(html.as_bytes(), Format::Html, Path::new("a.html")).unwrap();
        assert!(t.contains("Heading"));
        assert!(t.contains("First paragraph & more."));
        assert!(t.contains("\n\nSecond one."), "{t:?}");
        assert!(!t.contains("color"));
        assert!(!t.contains("var x"));
    }

    #[test]
    fn binary_and_empty_are_errors() {
        let e = clean_bytes(b"  \n\t ", Format::Text, Path::new("e.txt")).unwrap_err();
        assert!(matches!(e, DocsError::EmptyFile { .. }));
        let e = clean_bytes(&[0x89, b'P', b'N', b'G', 0, 0, 1], Format::Text, Path::new("b.png")).unwrap_err();
        assert!(matches!(e, DocsError::BinaryFile { .. }));
        let e = clean_bytes(&[0xff, 0xfe, 0x41], Format::Text, Path::new("c.txt")).unwrap_err();
        assert!(matches!(e, DocsError::BinaryFile { .. }));
        let e = clean_bytes(b"<html><script>x</script></html>", Format::Html, Path::new("d.html")).unwrap_err();
        assert!(matches!(e, DocsError::EmptyFile { .. }));
    }

    #[test]
    fn text_is_unchanged() {
        let t = clean_bytes("Héllo\r\nworld".as_bytes(), Format::Text, Path::new("a.txt")).unwrap();
        assert_eq!(t, "Héllo\r\nworld");
    }
}
