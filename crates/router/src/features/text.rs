//! Cheap text features of a conversation: length, digits, math, code, question structure, turns.
//!
//! Every feature is a plain function of the text, computed in one or two passes with no allocation
//! beyond the line split, so it costs microseconds next to the embedding. Counts are log-scaled
//! (`ln(1+x)`) and ratios are per character, so that the standardised linear model sees comparable
//! magnitudes. The order of [`NAMES`] is part of the weights format: append, never reorder.

use crate::conversation::Conversation;

/// Names of the features, in the order [`text_features`] returns them.
pub const NAMES: &[&str] = &[
    "log_chars",
    "log_words",
    "log_tokens_est",
    "log_lines",
    "mean_word_len",
    "long_word_ratio",
    "digit_ratio",
    "log_numbers",
    "math_symbol_ratio",
    "latex_markers",
    "code_markers",
    "upper_ratio",
    "punct_ratio",
    "question_marks",
    "starts_with_wh",
    "imperative_task",
    "negation",
    "choice_lines",
    "numeric_choices",
    "log_mean_choice_len",
    "log_context_chars",
    "log_turns",
    "log_history_chars",
    "has_system",
    "code_or_tool_in_history",
    "last_turn_share",
];

/// Number of text features.
pub const COUNT: usize = 26;

const WH_WORDS: &[&str] =
    &["what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "does", "do", "can"];
const TASK_VERBS: &[&str] = &[
    "write",
    "explain",
    "prove",
    "derive",
    "solve",
    "calculate",
    "compute",
    "implement",
    "design",
    "analyze",
    "analyse",
    "compare",
    "evaluate",
    "find",
    "determine",
    "show",
    "summarize",
    "summarise",
    "translate",
];
const NEGATIONS: &[&str] = &["not", "except", "least", "false", "incorrect", "never", "cannot"];

fn ln1p(x: usize) -> f32 {
    (x as f32).ln_1p()
}

/// A line that starts a multiple-choice option: `A.`, `B)`, `(c)`, `1.` ... followed by text.
fn choice_body(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix('(').unwrap_or(t);
    let mut chars = t.char_indices();
    let (_, c) = chars.next()?;
    if !(c.is_ascii_uppercase() && c <= 'H' || c.is_ascii_lowercase() && c <= 'h' || c.is_ascii_digit()) {
        return None;
    }
    let (i, sep) = chars.next()?;
    if sep == '.' || sep == ')' || sep == ':' {
        let rest = &t[i + 1..];
        if rest.starts_with(' ') || rest.is_empty() {
            return Some(rest.trim());
        }
    }
    None
}

fn looks_numeric(s: &str) -> bool {
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    digits > 0 && digits * 2 >= s.chars().filter(|c| !c.is_whitespace()).count()
}

fn code_marker_count(text: &str) -> usize {
    const MARKERS: &[&str] = &[
        "```",
        "def ",
        "return ",
        "#include",
        "function ",
        "=>",
        "::",
        "();",
        "{\n",
        "}\n",
        "import ",
        "class ",
        "for (",
        "while (",
        "print(",
        "console.",
        "SELECT ",
        "</",
        "==",
        "!=",
        "&&",
        "||",
    ];
    MARKERS.iter().map(|m| text.matches(m).count()).sum()
}

fn has_code_or_tool(conv: &Conversation) -> bool {
    conv.history().any(|m| m.role == "tool" || m.role == "function" || m.content.contains("```"))
}

/// Features of the first word of `text`, lowercased: (is a wh-/yes-no question word, is a task verb).
fn first_word_kind(text: &str) -> (bool, bool) {
    let w: String = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    (WH_WORDS.contains(&w.as_str()), TASK_VERBS.contains(&w.as_str()))
}

/// The cheap features of `conv`, in the order of [`NAMES`]. Text features describe the last user
/// turn; the last five describe the conversation around it.
pub fn text_features(conv: &Conversation) -> [f32; COUNT] {
    let text = conv.last_user();
    let mut chars = 0usize;
    let (mut digits, mut math, mut upper, mut punct, mut qmarks) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut numbers = 0usize;
    let mut in_number = false;
    for c in text.chars() {
        chars += 1;
        if c.is_ascii_digit() {
            digits += 1;
            if !in_number {
                numbers += 1;
            }
            in_number = true;
            continue;
        }
        in_number = false;
        if c.is_uppercase() {
            upper += 1;
        }
        if matches!(
            c,
            '+' | '-'
                | '*'
                | '/'
                | '='
                | '^'
                | '<'
                | '>'
                | '%'
                | '|'
                | '√'
                | '∑'
                | '∫'
                | 'π'
                | '≤'
                | '≥'
                | '×'
                | '÷'
                | '∞'
        ) {
            math += 1;
        }
        if c == '?' {
            qmarks += 1;
        }
        if c.is_ascii_punctuation() {
            punct += 1;
        }
    }
    let nchars = chars.max(1) as f32;

    let mut words = 0usize;
    let mut word_chars = 0usize;
    let mut long_words = 0usize;
    let mut tokens_est = 0usize;
    let mut negation = 0usize;
    for w in text.split_whitespace() {
        words += 1;
        let alpha = w.chars().filter(|c| c.is_alphanumeric()).count();
        word_chars += alpha;
        if alpha >= 9 {
            long_words += 1;
        }
        // Word-piece estimate: one token per 4 letters of a word, plus each punctuation mark.
        tokens_est += alpha.div_ceil(4).max(1) + (w.chars().count() - alpha);
        let lw = w.trim_matches(|c: char| !c.is_alphabetic()).to_ascii_lowercase();
        if NEGATIONS.contains(&lw.as_str()) {
            negation += 1;
        }
    }

    let mut lines = 0usize;
    let mut choice_lines = 0usize;
    let mut numeric_choices = 0usize;
    let mut choice_chars = 0usize;
    let mut first_choice_byte = None;
    let mut offset = 0usize;
    for line in text.split('\n') {
        lines += 1;
        if let Some(body) = choice_body(line) {
            choice_lines += 1;
            choice_chars += body.chars().count();
            if looks_numeric(body) {
                numeric_choices += 1;
            }
            first_choice_byte.get_or_insert(offset);
        }
        offset += line.len() + 1;
    }
    // Context before the question: text before the last sentence that ends with '?' or before the
    // options, whichever comes first; long passages make reading-comprehension questions.
    let stem_end = first_choice_byte.unwrap_or(text.len()).min(text.len());
    let stem = &text[..stem_end];
    let context_end = stem.trim_end().rfind(['.', '\n']).unwrap_or(0);
    let context_chars = stem[..context_end].chars().count();

    let (wh, task) = first_word_kind(text);
    let latex = text.matches('\\').count() + text.matches('$').count();
    let turns = conv.messages.len();
    let history_chars = conv.history_chars();
    let total = (history_chars + chars).max(1) as f32;

    [
        ln1p(chars),
        ln1p(words),
        ln1p(tokens_est),
        ln1p(lines),
        word_chars as f32 / words.max(1) as f32,
        long_words as f32 / words.max(1) as f32,
        digits as f32 / nchars,
        ln1p(numbers),
        math as f32 / nchars,
        ln1p(latex),
        ln1p(code_marker_count(text)),
        upper as f32 / nchars,
        punct as f32 / nchars,
        ln1p(qmarks),
        f32::from(u8::from(wh)),
        f32::from(u8::from(task)),
        ln1p(negation),
        ln1p(choice_lines),
        numeric_choices as f32 / choice_lines.max(1) as f32,
        ln1p(choice_chars / choice_lines.max(1)),
        ln1p(context_chars),
        ln1p(turns),
        ln1p(history_chars),
        f32::from(u8::from(conv.messages.iter().any(|m| m.role == "system" || m.role == "developer"))),
        f32::from(u8::from(has_code_or_tool(conv))),
        chars as f32 / total,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Message;

    fn feat(conv: &Conversation, name: &str) -> f32 {
        let i = NAMES.iter().position(|n| *n == name).unwrap();
        text_features(conv)[i]
    }

    #[test]
    fn names_match_count() {
        assert_eq!(NAMES.len(), COUNT);
    }

    #[test]
    fn multiple_choice_is_detected() {
        let c = Conversation::from_prompt("What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:");
        assert_eq!(feat(&c, "choice_lines"), 4f32.ln_1p());
        assert_eq!(feat(&c, "numeric_choices"), 1.0);
        assert_eq!(feat(&c, "starts_with_wh"), 1.0);
        assert!(feat(&c, "digit_ratio") > 0.1);
    }

    #[test]
    fn code_and_history_features() {
        let c = Conversation {
            messages: vec![
                Message { role: "system".into(), content: "You are a coder.".into() },
                Message { role: "user".into(), content: "```py\ndef f(x):\n    return x\n```".into() },
                Message { role: "tool".into(), content: "{\"ok\": true}".into() },
                Message { role: "user".into(), content: "Explain the output".into() },
            ],
        };
        assert_eq!(feat(&c, "has_system"), 1.0);
        assert_eq!(feat(&c, "code_or_tool_in_history"), 1.0);
        assert_eq!(feat(&c, "log_turns"), 4f32.ln_1p());
        assert_eq!(feat(&c, "imperative_task"), 1.0);
        assert!(feat(&c, "last_turn_share") < 0.5);
        let code = Conversation::from_prompt("def f(x):\n    return x == 1\n");
        assert!(feat(&code, "code_markers") > 0.0);
    }

    #[test]
    fn empty_and_odd_input_does_not_panic() {
        for t in ["", "?", "A.", "\n\n\n", "ü€😀", "(a) x\n(b)"] {
            let f = text_features(&Conversation::from_prompt(t));
            assert!(f.iter().all(|x| x.is_finite()), "{t:?}");
        }
        let f = text_features(&Conversation::default());
        assert!(f.iter().all(|x| x.is_finite()));
    }
}
