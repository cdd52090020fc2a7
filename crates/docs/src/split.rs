//! Cleaned text to passages and sentences, with byte ranges into the text.
//!
//! Passages follow paragraphs (blocks separated by blank lines): a short block (a heading) is joined to the
//! next one, a long block is cut between sentences. Sentences come from Unicode sentence boundaries
//! (UAX #29, `unicode-segmentation`) with two repairs UAX #29 does not do: no break after common
//! abbreviations and initials ("Dr.", "U.S.", "J."), and no break before a lower-case continuation (text
//! hard-wrapped at a line end).

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

/// Sizes of passages, in characters.
#[derive(Debug, Clone, Copy)]
pub struct SplitParams {
    /// Blocks shorter than this are joined to the following block (headings, list captions).
    pub min_chars: usize,
    /// Blocks longer than this are cut between sentences into pieces of at most this size.
    pub max_chars: usize,
}

impl Default for SplitParams {
    fn default() -> Self {
        // 2,000 characters is ~400 tokens: five passages fit a small model's context, and nearly every
        // encyclopedia paragraph stays whole.
        SplitParams { min_chars: 60, max_chars: 2000 }
    }
}

/// One passage: its byte range in the cleaned text and its sentences' byte ranges (absolute, in order,
/// trimmed of surrounding whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassageSpan {
    /// Byte range of the passage in the cleaned text.
    pub range: Range<usize>,
    /// Byte ranges of its sentences in the cleaned text.
    pub sentences: Vec<Range<usize>>,
}

/// Splits cleaned text into passages.
pub fn split_passages(text: &str, params: &SplitParams) -> Vec<PassageSpan> {
    let mut blocks = paragraph_blocks(text);
    blocks = join_short_blocks(text, blocks, params.min_chars);
    let mut out = Vec::new();
    for block in blocks {
        let sentences = split_sentences(text, block.clone());
        if char_len(&text[block.clone()]) <= params.max_chars {
            out.push(PassageSpan { range: block, sentences });
        } else {
            out.extend(pack_sentences(text, sentences, params.max_chars));
        }
    }
    out
}

/// Byte ranges of the non-blank paragraphs of `text` (maximal runs of non-blank lines, trimmed).
fn paragraph_blocks(text: &str) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                blocks.push(s..end);
            }
        } else {
            if start.is_none() {
                start = Some(line_start + (line.len() - line.trim_start().len()));
            }
            end = line_start + line.trim_end().len();
        }
    }
    if let Some(s) = start {
        blocks.push(s..end);
    }
    blocks
}

/// Joins each block shorter than `min_chars` to the block after it (the last one to the block before).
fn join_short_blocks(text: &str, blocks: Vec<Range<usize>>, min_chars: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::with_capacity(blocks.len());
    let mut pending: Option<Range<usize>> = None;
    for b in blocks {
        let start = pending.take().map_or(b.start, |p| p.start);
        if char_len(&text[start..b.end]) < min_chars {
            pending = Some(start..b.end);
        } else {
            out.push(start..b.end);
        }
    }
    if let Some(p) = pending {
        match out.last_mut() {
            Some(last) => last.end = p.end,
            None => out.push(p),
        }
    }
    out
}

/// Greedily packs consecutive sentences into passages of at most `max_chars`; a single longer sentence
/// is cut at whitespace.
fn pack_sentences(text: &str, sentences: Vec<Range<usize>>, max_chars: usize) -> Vec<PassageSpan> {
    let mut out = Vec::new();
    let mut cur: Vec<Range<usize>> = Vec::new();
    for s in sentences {
        let pieces = if char_len(&text[s.clone()]) > max_chars { hard_split(text, s, max_chars) } else { vec![s] };
        for p in pieces {
            if let Some(first) = cur.first() {
                if char_len(&text[first.start..p.end]) > max_chars {
                    out.push(PassageSpan {
                        range: first.start..cur[cur.len() - 1].end,
                        sentences: std::mem::take(&mut cur),
                    });
                }
            }
            cur.push(p);
        }
    }
    if let Some(first) = cur.first() {
        out.push(PassageSpan { range: first.start..cur[cur.len() - 1].end, sentences: cur });
    }
    out
}

/// Cuts an over-long range at the last whitespace before every `max_chars` characters.
fn hard_split(text: &str, range: Range<usize>, max_chars: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = range.start;
    while char_len(&text[start..range.end]) > max_chars {
        let window_end = text[start..range.end].char_indices().nth(max_chars).map_or(range.end, |(i, _)| start + i);
        let cut = text[start..window_end].rfind(char::is_whitespace).map(|i| start + i).filter(|&c| c > start);
        let cut = cut.unwrap_or(window_end);
        out.push(trim(text, start..cut));
        start = cut;
        start += text[start..range.end].len() - text[start..range.end].trim_start().len();
    }
    if start < range.end {
        out.push(trim(text, start..range.end));
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Sentences of `text[range]` as trimmed absolute byte ranges.
pub fn split_sentences(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let base = range.start;
    let raw: Vec<Range<usize>> = text[range.clone()]
        .split_sentence_bound_indices()
        .map(|(i, s)| trim(text, base + i..base + i + s.len()))
        .filter(|r| !r.is_empty())
        .collect();
    let mut out: Vec<Range<usize>> = Vec::with_capacity(raw.len());
    for r in raw {
        match out.last_mut() {
            Some(prev) if should_join(&text[prev.clone()], &text[r.clone()]) => prev.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// Abbreviations after which a full stop does not end a sentence (compared without the final dot,
/// lower-cased).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co", "corp", "no",
    "gen", "gov", "sen", "rep", "lt", "col", "capt", "sgt", "mt", "ft", "ave", "jan", "feb", "mar", "apr", "aug",
    "sep", "sept", "oct", "nov", "dec", "approx", "ca", "cf", "fig", "vol", "pp", "ed", "rev", "est",
];

/// Whether the break UAX #29 put between `prev` and `next` is a false one.
fn should_join(prev: &str, next: &str) -> bool {
    let first = next.trim_start_matches(['"', '\'', '(', '[', '“', '‘']).chars().next();
    if first.is_some_and(|c| c.is_lowercase()) {
        return true;
    }
    let Some(last_word) = prev.split_whitespace().next_back() else { return false };
    let Some(word) = last_word.strip_suffix('.') else { return false };
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let lower = word.to_lowercase();
    // An initial ("J.") or a dotted abbreviation ("U.S.", "e.g.").
    let initial = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
    initial || word.contains('.') || ABBREVIATIONS.contains(&lower.as_str())
}

/// `range` without leading and trailing whitespace.
fn trim(text: &str, range: Range<usize>) -> Range<usize> {
    let s = &text[range.clone()];
    let start = range.start + (s.len() - s.trim_start().len());
    let end = range.start + s.trim_end().len();
    start..end.max(start)
}

/// Number of characters of `s`.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Character offset of byte offset `byte` in `text` (a char boundary).
pub fn char_offset(text: &str, byte: usize) -> usize {
    char_len(&text[..byte])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(text: &'a str, rs: &[Range<usize>]) -> Vec<&'a str> {
        rs.iter().map(|r| &text[r.clone()]).collect()
    }

    #[test]
    fn sentences_respect_abbreviations_and_wrapping() {
        let t = "Dr. Smith moved to the U.S. Army in 1990. He left\nin 1995. J. R. R. Tolkien wrote it. Why? Yes!";
        let s = split_sentences(t, 0..t.len());
        assert_eq!(
            texts(t, &s),
            vec![
                "Dr. Smith moved to the U.S. Army in 1990.",
                "He left\nin 1995.",
                "J. R. R. Tolkien wrote it.",
                "Why?",
                "Yes!"
            ]
        );
    }

    #[test]
    fn paragraphs_become_passages_and_headings_join() {
        let t = "# Title\n\nFirst paragraph is long enough to stand on its own as a passage, surely.\n\n\n  Second paragraph, also long enough to be a passage by itself here.  \n";
        let p = split_passages(t, &SplitParams::default());
        assert_eq!(p.len(), 2);
        assert!(t[p[0].range.clone()].starts_with("# Title"));
        assert!(t[p[0].range.clone()].ends_with("surely."));
        assert_eq!(&t[p[1].range.clone()], "Second paragraph, also long enough to be a passage by itself here.");
    }

    #[test]
    fn long_blocks_are_cut_between_sentences() {
        let sentence = "This sentence has exactly some words in it. ";
        let t = sentence.repeat(100);
        let p = split_passages(&t, &SplitParams { min_chars: 10, max_chars: 200 });
        assert!(p.len() > 10);
        for ps in &p {
            assert!(char_len(&t[ps.range.clone()]) <= 200);
            assert!(t[ps.range.clone()].ends_with('.'));
        }
    }

    #[test]
    fn a_huge_sentence_is_cut_at_whitespace() {
        let t = "word ".repeat(1000);
        let p = split_passages(&t, &SplitParams { min_chars: 10, max_chars: 100 });
        assert!(p.len() >= 50);
        for ps in &p {
            assert!(char_len(&t[ps.range.clone()]) <= 100);
            assert!(t[ps.range.clone()].starts_with("word"));
        }
    }
}
