//! From a file's bytes to its *cleaned text*: the text that is split into passages and that citation
//! offsets point into.
//!
//! - Plain text: the cleaned text is the file's contents unchanged (UTF-8; a leading byte-order mark
//!   reads as a space), so citation offsets are character offsets into the file itself.
//! - Markdown: the text a reader sees, as `pulldown-cmark` parses it: markup (`#`, `**`, link targets,
//!   table pipes and rules, front matter) dropped, one blank line between blocks, one line per list item
//!   and table row. Answers and citations then quote "Annual leave is 25 days", not "**Annual leave**".
//! - HTML: the visible text as rendered by `html2text` (scripts, styles and tags dropped, one blank line
//!   between blocks).
//!
//! For Markdown and HTML, offsets point into the cleaned text, which [`clean_file`] reproduces exactly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DocsError;

/// How a file is turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Plain UTF-8 text.
    Text,
    /// Markdown, converted to the text it renders to.
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
        Format::Text => match text.strip_prefix(BOM) {
            // A space in its place: it never reaches an answer or a citation, and character offsets
            // still count it as the file's first character, as a reader of the raw file does.
            Some(rest) => format!(" {rest}"),
            None => text.to_string(),
        },
        Format::Markdown => markdown_to_text(text.strip_prefix(BOM).unwrap_or(text)),
        Format::Html => html_to_text(text.strip_prefix(BOM).unwrap_or(text)),
    };
    if cleaned.trim().is_empty() {
        return Err(DocsError::EmptyFile { path: path.to_path_buf() });
    }
    Ok(cleaned)
}

/// Version of the cleaning of files in `format`, kept with each indexed file so that `docs add` cleans an
/// unchanged file again when its format's cleaning changed since it was indexed (Markdown was indexed as
/// written before version 1).
pub fn cleaning_version(format: Format) -> u32 {
    match format {
        Format::Markdown => 1,
        Format::Text | Format::Html => 0,
    }
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

/// The text a Markdown document renders to: one blank line between blocks (paragraphs, headings, code
/// blocks, quotes, tables), one line per list item and table row, table cells joined by " | ", inline
/// markup and link targets dropped, embedded HTML reduced to its visible text.
fn markdown_to_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut out = String::with_capacity(markdown.len());
    let mut html = String::new();
    let (mut in_metadata, mut in_html_block, mut first_cell) = (false, false, true);
    // Open lists: a list inside a list item continues on the next line, not after a blank one.
    let mut lists = 0usize;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Item | Tag::TableHead | Tag::TableRow => {
                    line_break(&mut out);
                    first_cell = true;
                }
                Tag::TableCell => {
                    if !first_cell {
                        out.push_str(" | ");
                    }
                    first_cell = false;
                }
                Tag::MetadataBlock(_) => in_metadata = true,
                Tag::HtmlBlock => {
                    block_break(&mut out);
                    in_html_block = true;
                }
                Tag::List(_) => {
                    if lists > 0 {
                        line_break(&mut out);
                    } else {
                        block_break(&mut out);
                    }
                    lists += 1;
                }
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::BlockQuote(_)
                | Tag::CodeBlock(_)
                | Tag::FootnoteDefinition(_)
                | Tag::Table(_)
                | Tag::DefinitionList
                | Tag::DefinitionListTitle
                | Tag::DefinitionListDefinition => block_break(&mut out),
                _ => {}
            },
            Event::End(TagEnd::MetadataBlock(_)) => in_metadata = false,
            Event::End(TagEnd::List(_)) => lists = lists.saturating_sub(1),
            Event::End(TagEnd::HtmlBlock) => {
                in_html_block = false;
                out.push_str(&html_to_text(&html));
                html.clear();
            }
            Event::Html(t) if in_html_block => html.push_str(&t),
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) if !in_metadata => {
                out.push_str(&t)
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::InlineHtml(t) if is_line_break_tag(&t) => out.push('\n'),
            Event::Rule => block_break(&mut out),
            // Other inline tags (`<b>`, `<span>`), footnote marks and task-list boxes show no text of their own.
            _ => {}
        }
    }
    let mut text = String::with_capacity(out.len());
    let mut blank_run = 0;
    for line in out.lines().map(str::trim_end) {
        blank_run = if line.is_empty() { blank_run + 1 } else { 0 };
        if blank_run < 2 {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.trim().to_string()
}

/// Whether an inline HTML tag is a line break (`<br>`, `<br/>`, `<BR />`).
fn is_line_break_tag(tag: &str) -> bool {
    let name = tag.trim_start_matches('<').trim_start();
    name.get(..2).is_some_and(|n| n.eq_ignore_ascii_case("br")) && name[2..].trim_start().starts_with(['>', '/'])
}

/// Ends the current line unless the text is empty or already at a line's start.
fn line_break(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Leaves one blank line after the text so far (none at the start).
fn block_break(out: &mut String) {
    if out.is_empty() {
        return;
    }
    line_break(out);
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
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
        let t = clean_bytes(bytes, Format::Text, Path::new("q.txt")).unwrap();
        assert_eq!(t, " Quokkas are found on Rottnest Island.\n");
        assert_eq!(t.chars().count(), std::str::from_utf8(bytes).unwrap().chars().count());
        let md = clean_bytes(bytes, Format::Markdown, Path::new("q.md")).unwrap();
        assert_eq!(md, "Quokkas are found on Rottnest Island.");
        let html = "\u{feff}<p>Quokkas.</p>";
        assert_eq!(clean_bytes(html.as_bytes(), Format::Html, Path::new("q.html")).unwrap(), "Quokkas.");
    }

    #[test]
    fn markdown_keeps_the_text_a_reader_sees() {
        let md = "---\ntitle: Handbook\n---\n\n# Leave policy\n\n**Annual leave** is 25 days a year, see\n\
                  [the form](https://example.com/form) and `leave.pdf`.\n\n\
                  - Sick leave: *unlimited*\n  - with a note after 3 days\n- [x] Parental leave\n\n\
                  | Kind | Days |\n|---|---:|\n| Annual | 25 |\n\n> Ask HR<br>first.\n\n***\n\n\
                  ```\nlet days = 25;\n```\n\n<div class=\"note\">\n<p>Carry-over &amp; more.</p>\n</div>\n";
        let t = clean_bytes(md.as_bytes(), Format::Markdown, Path::new("h.md")).unwrap();
        assert_eq!(
            t,
            "Leave policy\n\nAnnual leave is 25 days a year, see the form and leave.pdf.\n\n\
             Sick leave: unlimited\nwith a note after 3 days\nParental leave\n\n\
             Kind | Days\nAnnual | 25\n\nAsk HR\nfirst.\n\nlet days = 25;\n\nCarry-over & more."
        );
        for markup in ["#", "**", "](", "title:", "|---", "```", "<div", "[x]"] {
            assert!(!t.contains(markup), "{markup}: {t:?}");
        }
    }

    #[test]
    fn markdown_cleaning_is_versioned() {
        assert!(cleaning_version(Format::Markdown) > 0, "Markdown was indexed as written before version 1");
        assert_eq!(cleaning_version(Format::Text), 0);
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
