//! The answer span inside the chosen sentence: a learned linear scorer over candidate spans.
//!
//! No reading-comprehension model is shipped, so spans are scored from surface features: the question
//! word gives an expected answer type (number, date, person, place, reason or other), crossed with what
//! the span looks like (digits, a year, a month, capitalised words); plus whether the span repeats the
//! question, how close it is to the question's words in the sentence, its length, and its boundaries
//! (after a preposition, before a comma, a whole name or number run). Candidates are all spans of up to
//! [`MAX_SPAN`] words that neither start nor end with a stop-word. The weights are fitted with
//! `rightmodel eval docs --fit-extractor` (listwise, on the tuning articles: positives are spans equal to
//! a gold answer after SQuAD normalisation). Short factual answers come out well; descriptive answers
//! ("why", "how") stay approximate.

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
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "trillion",
    "dozen",
    "dozens",
    "hundreds",
    "thousands",
    "millions",
    "billions",
    "half",
    "percent",
    "%",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
];
const DATE_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "century",
    "centuries",
    "bc",
    "ad",
    "bce",
    "ce",
    "decade",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "early",
    "late",
    "mid",
];
/// Words that join the parts of a name ("University of Warsaw", "Leonardo da Vinci").
const NAME_JOINERS: &[&str] =
    &["of", "the", "de", "del", "da", "di", "von", "van", "der", "for", "and", "la", "le", "du", "al", "&"];
/// Capitalised only because they start a sentence.
const STARTERS: &[&str] = &[
    "however",
    "although",
    "though",
    "despite",
    "following",
    "today",
    "later",
    "earlier",
    "since",
    "because",
    "according",
    "unlike",
    "like",
    "among",
    "along",
    "around",
    "within",
    "without",
    "toward",
    "towards",
    "another",
    "every",
    "several",
    "many",
    "most",
    "some",
    "such",
    "these",
    "those",
    "this",
    "that",
    "there",
    "it",
    "its",
    "they",
    "their",
    "he",
    "she",
    "his",
    "her",
    "we",
    "our",
    "in",
    "on",
    "at",
    "by",
    "for",
    "from",
    "with",
    "as",
    "after",
    "before",
    "during",
    "while",
    "when",
    "where",
    "if",
    "the",
    "a",
    "an",
    "both",
    "each",
    "other",
    "under",
    "over",
    "also",
    "thus",
    "then",
    "now",
    "once",
    "initially",
    "finally",
];
const PREPOSITIONS: &[&str] = &[
    "in",
    "at",
    "from",
    "near",
    "to",
    "into",
    "across",
    "throughout",
    "on",
    "by",
    "of",
    "for",
    "with",
    "as",
    "than",
    "about",
    "over",
    "after",
    "before",
    "since",
    "during",
];
const REASON_CUES: &[&str] = &["because", "due", "since", "so", "to", "for", "as", "order"];

/// The expected answer type of `question`.
pub fn answer_type(question: &str) -> AnswerType {
    let q = format!(" {} ", question.to_lowercase().replace(['?', ',', '.'], " "));
    let has = |s: &str| q.contains(s);
    if has(" how many ")
        || has(" how much ")
        || has(" percentage ")
        || has(" percent ")
        || has(" how long ")
        || has(" how old ")
        || has(" how far ")
        || has(" how large ")
        || has(" how big ")
        || has(" how tall ")
        || has(" how high ")
        || has(" how often ")
        || has(" what number ")
        || has(" what amount ")
        || has(" how fast ")
    {
        return AnswerType::Number;
    }
    if has(" when ")
        || has(" what year ")
        || has(" which year ")
        || has(" what century ")
        || has(" what decade ")
        || has(" what date ")
        || has(" what day ")
        || has(" what month ")
        || has(" what time ")
        || has(" what period ")
        || has(" what era ")
        || has(" which century ")
        || has(" in what year ")
    {
        return AnswerType::Date;
    }
    if has(" who ") || has(" whom ") || has(" whose ") || has(" what person ") || has(" which person ") {
        return AnswerType::Person;
    }
    if has(" where ")
        || has(" what city ")
        || has(" which city ")
        || has(" what country ")
        || has(" which country ")
        || has(" what state ")
        || has(" which state ")
        || has(" what region ")
        || has(" what place ")
        || has(" what location ")
        || has(" what continent ")
        || has(" what river ")
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
    let mut words = sentence
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .enumerate()
        .filter(|(_, w)| !w.is_empty() && !question_words.iter().any(|q| q.eq_ignore_ascii_case(w)));
    match qtype {
        AnswerType::Number => words
            .any(|(_, w)| w.chars().any(|c| c.is_ascii_digit()) || NUMBER_WORDS.contains(&w.to_lowercase().as_str())),
        AnswerType::Date => words.any(|(_, w)| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            // Months, "century", "centuries", "BC": the first 15 date words.
            digits >= 3 || DATE_WORDS[..15].contains(&w.to_lowercase().as_str())
        }),
        AnswerType::Person | AnswerType::Location => {
            words.any(|(i, w)| i > 0 && w.chars().next().is_some_and(char::is_uppercase) && !is_stop_word(w))
        }
        AnswerType::Reason => words.any(|(_, w)| {
            matches!(w.to_lowercase().as_str(), "because" | "due" | "since" | "so" | "order" | "therefore")
        }),
        AnswerType::Other => false,
    }
}

/// Longest candidate span, in words.
pub const MAX_SPAN: usize = 7;
/// Number of span features.
pub const N_SPAN: usize = 6 * 7 + 22;

/// Span-scorer weights in `span_features` order: answer type x span property (6 x 7), then the
/// generic features.
pub const SPAN_WEIGHTS: [f32; N_SPAN] = [
    3.5809214,
    -2.9520462,
    -2.3269422,
    1.4071983,
    -3.1740258,
    1.6914408,
    0.85119885,
    0.08889597,
    3.1918995,
    1.4817389,
    1.3277717,
    -1.8469293,
    0.084172845,
    -0.50037533,
    -0.09595594,
    -0.39297757,
    -3.6327438,
    1.8776107,
    1.2468024,
    -1.7105769,
    0.31072992,
    0.32496434,
    -1.1973866,
    -7.771877,
    2.691063,
    -0.5767963,
    -4.1532383,
    -0.5390082,
    -4.1210413,
    -4.1210413,
    -4.8497963,
    -3.114006,
    -4.8723845,
    -5.886591,
    -0.5637545,
    -0.33848545,
    -1.8553252,
    -2.899345,
    0.8506725,
    0.318632,
    -1.1679919,
    0.028774941,
    -1.1591041,
    -1.0366813,
    -3.151886,
    -0.20747542,
    0.069758505,
    0.63800466,
    0.0124329915,
    0.6724782,
    0.45814425,
    -0.5654438,
    0.7300875,
    0.9981892,
    1.0053908,
    0.379117,
    1.2163674,
    1.3706592,
    2.5557544,
    0.5010773,
    -0.615899,
    -0.63982195,
    0.22546998,
    -0.4151371,
];

/// A word of the sentence.
struct Token<'a> {
    /// Byte range in the sentence (punctuation around the word excluded).
    range: Range<usize>,
    text: &'a str,
    lower: String,
    /// Followed directly by a comma, semicolon, colon, bracket, quote or full stop.
    breaks_after: bool,
    in_question: bool,
    stop: bool,
    capitalised: bool,
    digit: bool,
    number_word: bool,
    year: bool,
    date_word: bool,
}

fn tokenize<'a>(sentence: &'a str, question: &QuestionWords, analyzer: &mut Terms) -> Vec<Token<'a>> {
    let mut out: Vec<Token<'a>> = Vec::new();
    let mut pos = 0;
    for raw in sentence.split_inclusive(char::is_whitespace) {
        let start = pos;
        pos += raw.len();
        let word = raw.trim_end();
        // A currency sign belongs to the amount it leads ("€5", not "5").
        let lead = word.len()
            - word
                .trim_start_matches(|c: char| !c.is_alphanumeric() && !matches!(c, '$' | '€' | '£' | '¥' | '₹'))
                .len();
        let core = word[lead..].trim_end_matches(|c: char| !c.is_alphanumeric() && c != '%');
        if core.is_empty() {
            if let Some(prev) = out.last_mut() {
                prev.breaks_after = true;
            }
            continue;
        }
        let tail = &word[lead + core.len()..];
        if lead > 0 && word[..lead].chars().any(|c| matches!(c, '(' | '"' | '“' | '[')) {
            if let Some(prev) = out.last_mut() {
                prev.breaks_after = true;
            }
        }
        let lower = core.to_lowercase();
        let stems = analyzer.terms(core);
        let in_question =
            question.words.contains(&lower) || (!stems.is_empty() && stems.iter().all(|s| question.terms.contains(s)));
        let digits = core.chars().filter(char::is_ascii_digit).count();
        out.push(Token {
            range: start + lead..start + lead + core.len(),
            text: core,
            breaks_after: tail
                .chars()
                .any(|c| matches!(c, ',' | ';' | ':' | ')' | '(' | '"' | '”' | '.' | '!' | '?' | ']')),
            in_question,
            stop: is_stop_word(&lower),
            capitalised: core.chars().next().is_some_and(char::is_uppercase),
            digit: digits > 0 || core.starts_with(['$', '€', '£', '¥', '₹']),
            number_word: NUMBER_WORDS.contains(&lower.as_str()),
            year: digits == 4 && core.len() <= 5 && core.chars().all(|c| c.is_ascii_digit() || c == 's'),
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

/// The question's words and terms, for telling which sentence words repeat it.
struct QuestionWords {
    words: Vec<String>,
    terms: Vec<String>,
    focus: Option<String>,
    qtype: AnswerType,
}

impl QuestionWords {
    fn new(question: &str, analyzer: &mut Terms) -> Self {
        QuestionWords {
            words: question
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty() && !is_stop_word(w))
                .map(str::to_lowercase)
                .collect(),
            terms: analyzer.unique_terms(question),
            focus: focus_word(question, analyzer),
            qtype: answer_type(question),
        }
    }
}

/// A candidate answer span and its features.
#[derive(Debug, Clone)]
pub struct SpanCandidate {
    /// Byte range in the sentence.
    pub range: Range<usize>,
    /// Features in [`SPAN_WEIGHTS`] order.
    pub features: [f32; N_SPAN],
}

/// All candidate spans of `sentence` for `question` with their features.
pub fn span_candidates(question: &str, sentence: &str, analyzer: &mut Terms) -> Vec<SpanCandidate> {
    let q = QuestionWords::new(question, analyzer);
    let tokens = tokenize(sentence, &q, analyzer);
    let anchors: Vec<usize> =
        tokens.iter().enumerate().filter(|(_, t)| t.in_question && !t.stop).map(|(i, _)| i).collect();
    let focus_at: Vec<usize> = match &q.focus {
        Some(f) => tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| analyzer.terms(t.text).iter().any(|x| x == f))
            .map(|(i, _)| i)
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for start in 0..tokens.len() {
        if tokens[start].stop {
            continue;
        }
        for end in start + 1..=(start + MAX_SPAN).min(tokens.len()) {
            if end > start + 1 && tokens[end - 2].breaks_after && !joins_number(&tokens[end - 2], &tokens[end - 1]) {
                break;
            }
            let last = &tokens[end - 1];
            if last.stop {
                continue;
            }
            let span = &tokens[start..end];
            if span.iter().all(|t| t.in_question) {
                continue;
            }
            out.push(SpanCandidate {
                range: tokens[start].range.start..last.range.end,
                features: span_features(&tokens, start..end, &q, &anchors, &focus_at),
            });
        }
    }
    out
}

/// "3, 1990": a comma inside a date does not end a span.
fn joins_number(a: &Token<'_>, b: &Token<'_>) -> bool {
    a.digit && b.year
}

fn span_features(
    tokens: &[Token<'_>],
    r: Range<usize>,
    q: &QuestionWords,
    anchors: &[usize],
    focus_at: &[usize],
) -> [f32; N_SPAN] {
    let span = &tokens[r.clone()];
    let n = span.len();
    let f = |b: bool| if b { 1.0 } else { 0.0 };
    let props = [
        f(span.iter().any(|t| t.digit)),
        f(span.iter().any(|t| t.year)),
        f(span.iter().any(|t| t.date_word)),
        f(span.iter().all(|t| t.capitalised || NAME_JOINERS.contains(&t.lower.as_str()))),
        f(span[0].capitalised),
        f(span.iter().any(|t| t.number_word)),
        f(span.iter().all(|t| !t.capitalised && !t.digit)),
    ];
    let qi = match q.qtype {
        AnswerType::Number => 0,
        AnswerType::Date => 1,
        AnswerType::Person => 2,
        AnswerType::Location => 3,
        AnswerType::Reason => 4,
        AnswerType::Other => 5,
    };
    let mut x = [0.0f32; N_SPAN];
    x[qi * 7..qi * 7 + 7].copy_from_slice(&props);
    let in_q = span.iter().filter(|t| t.in_question).count() as f32 / n as f32;
    let dist = anchors
        .iter()
        .map(|&a| {
            if a < r.start {
                r.start - a
            } else if a >= r.end {
                a + 1 - r.end
            } else {
                0
            }
        })
        .min()
        .unwrap_or(10);
    let before = r.start.checked_sub(1).map(|i| &tokens[i]);
    let after = tokens.get(r.end);
    let maximal = |ok: &dyn Fn(&Token<'_>) -> bool| {
        span.iter().all(ok)
            && before.is_none_or(|b| !ok(b) || b.breaks_after)
            && after.is_none_or(|a| !ok(a) || span[n - 1].breaks_after)
    };
    let g = [
        in_q,
        f(in_q > 0.0),
        (dist.min(10) as f32) / 10.0,
        f(r.start > 0 && anchors.contains(&(r.start - 1))),
        f(anchors.contains(&r.end)),
        f(anchors.first().is_some_and(|&a| a < r.start)),
        f(n == 1),
        f(n == 2),
        f(n == 3),
        f(n >= 4),
        f(before.is_some_and(|b| PREPOSITIONS.contains(&b.lower.as_str()))),
        f(before.is_some_and(|b| matches!(b.lower.as_str(), "the" | "a" | "an"))),
        f(span[n - 1].breaks_after || after.is_none()),
        f(before.is_none_or(|b| b.breaks_after)),
        f(focus_at.iter().any(|&i| i + 1 == r.start || i == r.end)),
        f(maximal(&|t| t.capitalised || NAME_JOINERS.contains(&t.lower.as_str()))),
        f(maximal(&|t| t.digit || t.number_word || t.date_word)),
        f(maximal(&|t| !t.stop)),
        f(span[..n - 1].iter().any(|t| t.breaks_after)),
        r.start as f32 / tokens.len() as f32,
        f(span.iter().any(|t| t.lower == "and")),
        f(before.is_some_and(|b| REASON_CUES.contains(&b.lower.as_str()))),
    ];
    x[42..].copy_from_slice(&g);
    x
}

/// Candidates weighed against each other when choosing the answer span (the most probable ones; the
/// rest carry almost no probability).
const MBR_CANDIDATES: usize = 24;

/// The answer span inside `sentence` for `question`, as a byte range of `sentence`, or `None` when the
/// sentence has no candidate (callers then answer with the sentence).
///
/// The span scorer is a softmax over the candidates (fitted listwise), so its scores give each span a
/// probability of being the answer. Rather than the single most probable span, the answer is the span
/// with the highest expected token F1 against that distribution (minimum Bayes risk): when the mass is
/// split between "Rankine" and "the Rankine cycle", the span that overlaps most of it wins. Answers are
/// judged by overlap, and the most probable span alone was systematically too short (1.7 words
/// against 2.1 for the reference answers on SQuAD).
pub fn extract(question: &str, sentence: &str, analyzer: &mut Terms) -> Option<Range<usize>> {
    use rightmodel_core::answer::{normalize_answer, token_f1};
    let mut scored = scored_spans(question, sentence, analyzer);
    scored.truncate(MBR_CANDIDATES);
    let top = scored.first()?.1;
    let weights: Vec<f32> = scored.iter().map(|(_, s)| (s - top).exp()).collect();
    let words: Vec<Vec<String>> = scored
        .iter()
        .map(|(r, _)| normalize_answer(&sentence[r.clone()]).split_whitespace().map(str::to_string).collect())
        .collect();
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, a) in words.iter().enumerate() {
        let gain: f32 = words.iter().zip(&weights).map(|(b, w)| w * token_f1(a, b)).sum();
        // Strictly better only: ties keep the more probable span.
        if gain > best.1 + 1e-6 {
            best = (i, gain);
        }
    }
    Some(scored[best.0].0.clone())
}

/// The span scorer's single most probable span (see [`extract`]). Document QA with a language model
/// reading the answer uses it where the model's answer matched none of the sentence's words: there the
/// expected-F1 choice read worse (SQuAD dev half, 500 questions spread evenly, `--rerank-lm --read-lm`:
/// F1 0.612 against 0.616 with this span), while it reads better without the model (0.399 against 0.384).
pub fn most_probable(question: &str, sentence: &str, analyzer: &mut Terms) -> Option<Range<usize>> {
    scored_spans(question, sentence, analyzer).into_iter().next().map(|(r, _)| r)
}

/// Every candidate span with its score, best first (among equals the earlier span).
fn scored_spans(question: &str, sentence: &str, analyzer: &mut Terms) -> Vec<(Range<usize>, f32)> {
    let mut scored: Vec<(Range<usize>, f32)> = span_candidates(question, sentence, analyzer)
        .into_iter()
        .map(|c| {
            let s: f32 = SPAN_WEIGHTS.iter().zip(&c.features).map(|(w, x)| w * x).sum();
            (c.range, s)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.start.cmp(&b.0.start)));
    scored
}

/// The noun right after "what"/"which" ("what cycle ..." gives "cycle"), stemmed.
fn focus_word(question: &str, analyzer: &mut Terms) -> Option<String> {
    let words: Vec<&str> = question.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| matches!(w.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()), "what" | "which"))?;
    words[at + 1..].iter().take(3).find_map(|w| analyzer.terms(w).into_iter().next())
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
    fn token_f1_is_squads() {
        use rightmodel_core::answer::token_f1;
        let w = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(token_f1(&w("rankine cycle"), &w("rankine cycle")), 1.0);
        assert!((token_f1(&w("rankine"), &w("rankine cycle")) - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(token_f1(&w("steam"), &w("rankine cycle")), 0.0);
        // Repeated words count as often as both sides have them.
        assert!((token_f1(&w("a a b"), &w("a b b")) - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(token_f1::<String>(&[], &[]), 1.0);
    }

    #[test]
    fn extracts_typed_spans() {
        assert_eq!(
            ext("When was the bridge opened?", "The bridge was opened in March 1932 by the mayor."),
            "March 1932"
        );
        assert_eq!(
            ext("Who designed the bridge?", "The bridge was designed by John Bradfield in 1912."),
            "John Bradfield"
        );
        assert_eq!(ext("How many people live in Warsaw?", "About 1,700,000 people live in Warsaw."), "1,700,000");
        assert_eq!(
            ext(
                "What ideal thermodynamic cycle analyzes the process?",
                "The ideal thermodynamic cycle used to analyze this process is called the Rankine cycle."
            ),
            // The scorer's single best span is "Rankine"; "Rankine cycle" overlaps more of what it finds
            // probable (and is SQuAD's answer).
            "Rankine cycle"
        );
        let (q, s) = (
            "What ideal thermodynamic cycle analyzes the process?",
            "The ideal thermodynamic cycle used to analyze this process is called the Rankine cycle.",
        );
        assert_eq!(most_probable(q, s, &mut Terms::default()).map(|r| &s[r]), Some("Rankine"));
        assert_eq!(ext("Where was Tesla born?", "Tesla was born in Smiljan, in the Austrian Empire."), "Smiljan");
        // A currency sign stays with its amount.
        assert_eq!(ext("How much are the vouchers worth?", "Each of the vouchers is worth €5 at the café."), "€5");
    }
}
