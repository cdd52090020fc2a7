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

/// Document formats that are not text, by extension (lower case, without the dot), with what each is
/// called in messages. Their bytes can pass for UTF-8 (a PDF of plain streams often does), so the
/// extension alone refuses them, whether the file is named directly or found in a folder.
pub const BINARY_DOCUMENTS: [(&str, &str); 16] = [
    ("pdf", "a PDF document"),
    ("doc", "a Word document"),
    ("docx", "a Word document"),
    ("docm", "a Word document"),
    ("dot", "a Word template"),
    ("dotx", "a Word template"),
    ("odt", "an OpenDocument text"),
    ("ods", "an OpenDocument spreadsheet"),
    ("odp", "an OpenDocument presentation"),
    ("epub", "an EPUB book"),
    ("xls", "an Excel workbook"),
    ("xlsx", "an Excel workbook"),
    ("ppt", "a PowerPoint presentation"),
    ("pptx", "a PowerPoint presentation"),
    ("pages", "a Pages document"),
    ("zip", "a ZIP archive"),
];

/// First bytes of binary document formats, with what each is called in messages. Office Open XML
/// (.docx, .xlsx, .pptx), OpenDocument and EPUB files are all ZIP archives.
const BINARY_MAGIC: [(&[u8], &str); 3] = [
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (the container of .docx, .odt and .epub documents)"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "an old-style Office document (.doc, .xls or .ppt)"),
];

/// What binary document format the file `path` with contents `bytes` is in, if it is one of
/// [`BINARY_MAGIC`] (by its first bytes, whatever its name) or [`BINARY_DOCUMENTS`] (by its extension).
pub fn binary_document_kind(path: &Path, bytes: &[u8]) -> Option<&'static str> {
    if let Some((_, kind)) = BINARY_MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(*kind);
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    BINARY_DOCUMENTS.iter().find(|(e, _)| *e == ext).map(|(_, kind)| *kind)
}

/// Reads `path` and returns its cleaned text.
///
/// Errors: [`DocsError::EmptyFile`] when there is no text, [`DocsError::BinaryFile`] when the bytes are
/// not UTF-8 text, [`DocsError::UnsupportedDocument`] for a PDF, Word, OpenDocument or EPUB file.
pub fn clean_file(path: &Path, format: Format) -> Result<String, DocsError> {
    let bytes = std::fs::read(path).map_err(|e| DocsError::io(path, e))?;
    clean_bytes(&bytes, format, path)
}

/// Cleans already-read bytes of the file `path` (used for error messages, and to tell a binary
/// document format by its extension; see [`binary_document_kind`]).
pub fn clean_bytes(bytes: &[u8], format: Format, path: &Path) -> Result<String, DocsError> {
    if let Some(kind) = binary_document_kind(path, bytes) {
        return Err(DocsError::UnsupportedDocument { path: path.to_path_buf(), kind });
    }
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
    fn binary_document_formats_are_refused_even_when_their_bytes_are_utf8() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nBT (The office opens at nine.) Tj ET\n%%EOF\n";
        let zip = b"PKwhat follows the local header: word/document.xml <w:t>The office opens</w:t>";
        let mut docx = b"PK\x03\x04".to_vec();
        docx.extend_from_slice(&zip[2..]);
        for (bytes, name, kind) in [
            (&pdf[..], "handbook.pdf", "a PDF document"),
            (&pdf[..], "handbook.txt", "a PDF document"),
            (&docx[..], "handbook.docx", "a ZIP archive"),
            (&docx[..], "handbook.md", "a ZIP archive"),
            (&b"The office opens at nine."[..], "handbook.PDF", "a PDF document"),
            (&b"The office opens at nine."[..], "handbook.odt", "an OpenDocument text"),
            (&b"The office opens at nine."[..], "handbook.epub", "an EPUB book"),
        ] {
            assert!(std::str::from_utf8(bytes).is_ok(), "{name}: the case is UTF-8");
            let e = clean_bytes(bytes, Format::for_explicit(Path::new(name)), Path::new(name)).unwrap_err();
            assert!(matches!(e, DocsError::UnsupportedDocument { .. }), "{name}: {e}");
            let e = e.to_string();
            assert!(e.starts_with(&format!("{name}: {kind}")), "{e}");
            assert!(e.contains("only UTF-8 text, Markdown and HTML") && e.contains(".txt, "), "{e}");
        }
        // Text that merely mentions the formats is text.
        let text = "Save it as %PDF- or PK files.";
        assert_eq!(clean_bytes(text.as_bytes(), Format::Text, Path::new("notes.txt")).unwrap(), text);
        // The refused extensions are not indexed ones.
        for (ext, _) in BINARY_DOCUMENTS {
            assert_eq!(Format::from_extension(Path::new(&format!("a.{ext}"))), None, "{ext}");
        }
    }

    #[test]
    fn text_is_unchanged() {
        let t = clean_bytes("Héllo\r\nworld".as_bytes(), Format::Text, Path::new("a.txt")).unwrap();
        assert_eq!(t, "Héllo\r\nworld");
    }
}
