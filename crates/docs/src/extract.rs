//! A heuristic answer-span extractor inside the chosen sentence.
//!
//! No reading-comprehension model runs here (none is shipped), so the span comes from rules: the question
//! word gives an expected answer type (number, date, person, place, reason or other), the sentence is cut
//! into candidate spans (number/date runs, capitalised name runs, content-word chunks) that avoid words
//! of the question, and each candidate scores by type fit, closeness to the question's words in the
//! sentence and length. This recovers short factual answers; descriptive answers stay approximate.

use std::ops::Range;

use crate::terms::{is_stop_word, Terms};

/// The kind of answer a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerType {
    /// A count or quantity ("how many", "how much", "what percentage").
    Number,
    /// A time ("when", "what year", "what century").
    Date,
    /// A person or organisation ("who", "whose").
    Person,
    /// A place ("where", "what city").
    Location,
    /// A cause ("why").
    Reason,
    /// Anything else ("what", "which", "how").
    Other,
}

const NUMBER_WORDS: &[&str] = &[
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty",
    "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion",
    "trillion", "dozen", "dozens", "hundreds", "thousands", "millions", "billions", "half", "percent", "%",
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
];
const DATE_WORDS: &[&str] = &[
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "century", "centuries", "bc", "ad", "bce", "ce", "decade", "spring", "summer",
    "autumn", "fall", "winter", "early", "late", "mid",
];
/// Words that join the parts of a name ("University of Warsaw", "Leonardo da Vinci").
const NAME_JOINERS: &[&str] = &["of", "the", "de", "del", "da", "di", "von", "van", "der", "for", "and", "la", "le", "du", "al", "&"];
/// Capitalised only because they start a sentence.
const STARTERS: &[&str] = &[
    "however", "although", "though", "despite", "following", "today", "later", "earlier", "since", "because",
    "according", "unlike", "like", "among", "along", "around", "within", "without", "toward", "towards",
    "another", "every", "several", "many", "most", "some", "such", "these", "those", "this", "that", "there",
    "it", "its", "they", "their", "he", "she", "his", "her", "we", "our", "in", "on", "at", "by", "for",
    "from", "with", "as", "after", "before", "during", "while", "when", "where", "if", "the", "a", "an",
    "both", "each", "other", "under", "over", "also", "thus", "then", "now", "once", "initially", "finally",
];
const LOCATION_PREPOSITIONS: &[&str] = &["in", "at", "from", "near", "to", "into", "across", "throughout"];
const REASON_CUES: &[&str] = &["because", "due", "since", "so", "to", "for", "as"];

/// The expected answer type of `question`.
pub fn answer_type(question: &str) -> AnswerType {
    let q = format!(" {} ", question.to_lowercase().replace(['?', ',', '.'], " "));
    let has = |s: &str| q.contains(s);
    if has(" how many ") || has(" how much ") || has(" what percentage ") || has(" what percent ")
        || has(" how long ") || has(" how old ") || has(" how far ") || has(" how large ") || has(" how big ")
        || has(" how tall ") || has(" how high ") || has(" how often ") || has(" what number ")
        || has(" what amount ") || has(" how fast ")
    {
        return AnswerType::Number;
    }
    if has(" when ") || has(" what year ") || has(" which year ") || has(" what century ") || has(" what decade ")
        || has(" what date ") || has(" what day ") || has(" what month ") || has(" what time ") || has(" what period ")
        || has(" what era ") || has(" which century ") || has(" in what year ")
    {
        return AnswerType::Date;
    }
    if has(" who ") || has(" whom ") || has(" whose ") || has(" what person ") || has(" which person ") {
        return AnswerType::Person;
    }
    if has(" where ") || has(" what city ") || has(" which city ") || has(" what country ") || has(" which country ")
        || has(" what state ") || has(" which state ") || has(" what region ") || has(" what place ")
        || has(" what location ") || has(" what continent ") || has(" what river ")
    {
        return AnswerType::Location;
    }
    if has(" why ") {
        return AnswerType::Reason;
    }
    AnswerType::Other
}

/// Whether `sentence` holds, outside the question's own words, something of type `qtype`: a number, a
/// year, month or century, a capitalised name, or a cause cue ("because", "due to"). Always false for
/// [`AnswerType::Other`].
pub fn has_answer_type(qtype: AnswerType, sentence: &str, question_words: &[String]) -> bool {
    let words = sentence
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .enumerate()
        .filter(|(_, w)| !w.is_empty() && !question_words.iter().any(|q| q.eq_ignore_ascii_case(w)));
    let mut words = words;
    match qtype {
        AnswerType::Number => words.any(|(_, w)| w.chars().any(|c| c.is_ascii_digit()) || NUMBER_WORDS.contains(&w.to_lowercase().as_str())),
        AnswerType::Date => words.any(|(_, w)| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            digits >= 3 || DATE_WORDS[..15].contains(&w.to_lowercase().as_str())
        }),
        AnswerType::Person | AnswerType::Location => {
            words.any(|(i, w)| i > 0 && w.chars().next().is_some_and(char::is_uppercase) && !is_stop_word(w))
        }
        AnswerType::Reason => words.any(|(_, w)| matches!(w.to_lowercase().as_str(), "because" | "due" | "since" | "so" | "order" | "therefore")),
        AnswerType::Other => false,
    }
}

/// A word of the sentence.
struct Token<'a> {
    /// Byte range in the sentence (punctuation around the word excluded).
    range: Range<usize>,
    text: &'a str,
    lower: String,
    /// Followed directly by a comma, semicolon, colon, parenthesis or quote (a span should not cross it).
    breaks_after: bool,
    in_question: bool,
    stop: bool,
    capitalised: bool,
    numeric: bool,
    date_word: bool,
}

fn tokenize<'a>(sentence: &'a str, question_terms: &[String], question_words: &[String], analyzer: &mut Terms) -> Vec<Token<'a>> {
    let mut out = Vec::new();
    let mut pos = 0;
    for raw in sentence.split_inclusive(char::is_whitespace) {
        let start = pos;
        pos += raw.len();
        let word = raw.trim_end();
        let lead = word.len() - word.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '$').len();
        let core = word[lead..].trim_end_matches(|c: char| !c.is_alphanumeric() && c != '%');
        if core.is_empty() {
            if let Some(prev) = out.last_mut() {
                let prev: &mut Token = prev;
                prev.breaks_after = true;
            }
            continue;
        }
        let tail = &word[lead + core.len()..];
        let lower = core.to_lowercase();
        let stems = analyzer.terms(core);
        let in_question = question_words.contains(&lower) || (!stems.is_empty() && stems.iter().all(|s| question_terms.contains(s)));
        let first = core.chars().next().unwrap_or(' ');
        out.push(Token {
            range: start + lead..start + lead + core.len(),
            text: core,
            breaks_after: tail.chars().any(|c| matches!(c, ',' | ';' | ':' | ')' | '(' | '"' | '”' | '.' | '!' | '?')),
            in_question,
            stop: is_stop_word(&lower),
            capitalised: first.is_uppercase(),
            numeric: core.chars().any(|c| c.is_ascii_digit()) || NUMBER_WORDS.contains(&lower.as_str()) || core.starts_with('$'),
            date_word: DATE_WORDS.contains(&lower.as_str()),
            lower,
        });
    }
    if let Some(first) = out.first_mut() {
        if first.capitalised && (first.stop || STARTERS.contains(&first.lower.as_str())) {
            first.capitalised = false;
        }
    }
    out
}

/// A candidate span: token index range and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Name,
    Chunk,
    Clause,
}

/// The answer span inside `sentence` for `question`, as a byte range of `sentence`, or `None` when no
/// candidate stands out (callers then answer with the sentence).
pub fn extract(question: &str, sentence: &str, analyzer: &mut Terms) -> Option<Range<usize>> {
    let qtype = answer_type(question);
    let question_terms = analyzer.unique_terms(question);
    let question_words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !is_stop_word(w))
        .map(str::to_lowercase)
        .collect();
    let tokens = tokenize(sentence, &question_terms, &question_words, analyzer);
    if tokens.is_empty() {
        return None;
    }
    let anchors: Vec<usize> = tokens.iter().enumerate().filter(|(_, t)| t.in_question && !t.stop).map(|(i, _)| i).collect();
    let mut cands = candidates(&tokens, qtype);
    cands.retain(|(r, _)| !r.is_empty());
    let focus = focus_word(question, analyzer);
    let best = cands
        .iter()
        .map(|&(ref r, kind)| (r.clone(), score(&tokens, r.clone(), kind, qtype, &anchors, focus.as_deref(), analyzer)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.start.cmp(&a.0.start)))?;
    let r = best.0;
    Some(tokens[r.start].range.start..tokens[r.end - 1].range.end)
}

/// All candidate spans (token ranges) with their kind.
fn candidates(tokens: &[Token<'_>], qtype: AnswerType) -> Vec<(Range<usize>, Kind)> {
    let mut out = Vec::new();
    let free = |t: &Token<'_>| !t.in_question;
    // Number and date runs.
    let mut i = 0;
    while i < tokens.len() {
        if free(&tokens[i]) && (tokens[i].numeric || (tokens[i].date_word && qtype == AnswerType::Date)) {
            let start = i;
            while i + 1 < tokens.len()
                && !tokens[i].breaks_after_unless_year(&tokens[i + 1])
                && free(&tokens[i + 1])
                && (tokens[i + 1].numeric || tokens[i + 1].date_word)
            {
                i += 1;
            }
            // "300 people": take the unit word too.
            let mut end = i + 1;
            if end < tokens.len() && !tokens[i].breaks_after && free(&tokens[end]) && !tokens[end].stop && !tokens[end].capitalised && qtype == AnswerType::Number {
                end += 1;
            }
            out.push((start..i + 1, Kind::Numeric));
            if end > i + 1 {
                out.push((start..end, Kind::Numeric));
            }
        }
        i += 1;
    }
    // Capitalised runs, allowing joiners inside ("Bank of England").
    let mut i = 0;
    while i < tokens.len() {
        if free(&tokens[i]) && tokens[i].capitalised {
            let start = i;
            let mut end = i + 1;
            let mut j = i;
            while j + 1 < tokens.len() && !tokens[j].breaks_after {
                let n = &tokens[j + 1];
                if free(n) && n.capitalised {
                    j += 1;
                    end = j + 1;
                } else if NAME_JOINERS.contains(&n.lower.as_str()) && !n.breaks_after && j + 2 < tokens.len() && tokens[j + 2].capitalised && free(&tokens[j + 2]) {
                    j += 1;
                } else {
                    break;
                }
            }
            out.push((start..end, Kind::Name));
            i = end;
        } else {
            i += 1;
        }
    }
    // Content-word chunks.
    let mut i = 0;
    while i < tokens.len() {
        if free(&tokens[i]) && !tokens[i].stop {
            let start = i;
            while i + 1 < tokens.len() && !tokens[i].breaks_after && free(&tokens[i + 1]) && !tokens[i + 1].stop {
                i += 1;
            }
            out.push((start..i + 1, Kind::Chunk));
        }
        i += 1;
    }
    // Reasons: the clause after a cue word.
    if qtype == AnswerType::Reason {
        for (k, t) in tokens.iter().enumerate() {
            if REASON_CUES.contains(&t.lower.as_str()) && !t.in_question {
                let mut start = k + 1;
                if t.lower == "due" && tokens.get(start).is_some_and(|n| n.lower == "to") {
                    start += 1;
                }
                let mut end = start;
                while end < tokens.len() && end - start < 12 {
                    end += 1;
                    if tokens[end - 1].breaks_after {
                        break;
                    }
                }
                out.push((start..end, Kind::Clause));
            }
        }
    }
    out
}

impl Token<'_> {
    /// Whether the punctuation after this token ends a number run ("3, 1990" stays together).
    fn breaks_after_unless_year(&self, next: &Token<'_>) -> bool {
        self.breaks_after && !(next.text.len() == 4 && next.text.chars().all(|c| c.is_ascii_digit()))
    }
}

/// The noun right after "what"/"which" ("what cycle ..." gives "cycle"), stemmed.
fn focus_word(question: &str, analyzer: &mut Terms) -> Option<String> {
    let words: Vec<&str> = question.split_whitespace().collect();
    let at = words.iter().position(|w| matches!(w.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()), "what" | "which"))?;
    words[at + 1..].iter().take(3).find_map(|w| analyzer.terms(w).into_iter().next())
}

fn score(tokens: &[Token<'_>], r: Range<usize>, kind: Kind, qtype: AnswerType, anchors: &[usize], focus: Option<&str>, analyzer: &mut Terms) -> f32 {
    let span = &tokens[r.clone()];
    let has_digit = span.iter().any(|t| t.text.chars().any(|c| c.is_ascii_digit()));
    let year_like = span.iter().any(|t| t.text.len() == 4 && t.text.chars().all(|c| c.is_ascii_digit()) || t.date_word);
    let mut s = match (qtype, kind) {
        (AnswerType::Number, Kind::Numeric) => 3.0 + if has_digit { 0.5 } else { 0.0 } - if year_like && !has_digit { 1.0 } else { 0.0 },
        (AnswerType::Date, Kind::Numeric) => 2.0 + if year_like { 1.5 } else { 0.0 },
        (AnswerType::Person, Kind::Name) => 3.0 + if span.len() > 1 { 0.5 } else { 0.0 },
        (AnswerType::Location, Kind::Name) => {
            let prep = r.start > 0 && LOCATION_PREPOSITIONS.contains(&tokens[r.start - 1].lower.as_str());
            3.0 + if prep { 0.5 } else { 0.0 }
        }
        (AnswerType::Reason, Kind::Clause) => 3.0,
        (AnswerType::Other, Kind::Name) => 1.6,
        (AnswerType::Other, Kind::Numeric) => 1.2,
        (AnswerType::Other, Kind::Chunk) => 1.0,
        (_, Kind::Chunk) => 0.5,
        (_, Kind::Name) => 0.4,
        (_, _) => 0.2,
    };
    // Close to the question's words in the sentence.
    let dist = anchors
        .iter()
        .map(|&a| if a < r.start { r.start - a } else if a >= r.end { a + 1 - r.end } else { 0 })
        .min()
        .unwrap_or(4);
    s -= 0.15 * dist.min(10) as f32;
    // Next to the question's focus noun ("the Rankine cycle" for "what cycle").
    if let Some(f) = focus {
        let mut next_to = |i: usize| tokens.get(i).is_some_and(|t| analyzer.terms(t.text).iter().any(|x| x == f));
        if (r.start > 0 && next_to(r.start - 1)) || next_to(r.end) {
            s += 0.8;
        }
    }
    s -= 0.12 * span.len().saturating_sub(3) as f32;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(q: &str, s: &str) -> String {
        let mut a = Terms::default();
        extract(q, s, &mut a).map(|r| s[r].to_string()).unwrap_or_default()
    }

    #[test]
    fn types() {
        assert_eq!(answer_type("How many people live there?"), AnswerType::Number);
        assert_eq!(answer_type("In what year did it open?"), AnswerType::Date);
        assert_eq!(answer_type("Who founded the city?"), AnswerType::Person);
        assert_eq!(answer_type("Where is the museum?"), AnswerType::Location);
        assert_eq!(answer_type("What is the Rankine cycle?"), AnswerType::Other);
    }

    #[test]
    fn extracts_typed_spans() {
        assert_eq!(ext("When was the bridge opened?", "The bridge was opened in March 1932 by the mayor."), "March 1932");
        assert_eq!(ext("Who designed the bridge?", "The bridge was designed by John Bradfield in 1912."), "John Bradfield");
        assert_eq!(ext("How many people live in Warsaw?", "About 1,700,000 people live in Warsaw."), "1,700,000");
        assert_eq!(
            ext("What ideal thermodynamic cycle analyzes the process?", "The ideal thermodynamic cycle used to analyze this process is called the Rankine cycle."),
            "Rankine"
        );
        assert_eq!(ext("Where was Tesla born?", "Tesla was born in Smiljan, in the Austrian Empire."), "Smiljan");
    }
}
