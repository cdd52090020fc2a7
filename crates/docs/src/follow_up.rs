//! Follow-up questions in a conversation. "How long is it?" after "Who designed the Harbour Bridge?" names
//! its subject only in the earlier turn, and retrieval and span extraction read one question; so a
//! follow-up is completed from the user's previous question before it is asked.
//!
//! Written by hand: rewriting a follow-up into a standalone question is usually a large model's call; a
//! rule that needs no model keeps document chat local and instant. The rule errs towards leaving a
//! question alone: only a short turn that refers back (a pronoun, or a leading "and" / "what about") is
//! completed; a self-contained question, or a new request such as "List the holidays", never is.

use crate::ask::MAX_QUESTION_CHARS;
use crate::terms::is_stop_word;

/// The question a conversation asks, as the collection should read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextualQuestion {
    /// The text to retrieve and answer with: the last turn, completed from the previous one when it is a
    /// follow-up.
    pub text: String,
    /// Whether the previous question was drawn in.
    pub follow_up: bool,
    /// The last turn as the user wrote it (trimmed): with `follow_up`, the other reading worth trying.
    pub turn: String,
}

/// Most content words a follow-up has; a longer turn names its own subject.
const MAX_FOLLOW_UP_CONTENT_WORDS: usize = 4;

/// Words that point back at something said before.
const REFERRING: &[&str] = &[
    "it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those", "he", "him", "his", "she", "her",
    "hers", "there", "same",
];

/// Openings of a turn that continue the previous question.
const CONTINUING: &[&[&str]] = &[
    &["and"],
    &["or"],
    &["but"],
    &["also"],
    &["then"],
    &["so"],
    &["what", "about"],
    &["how", "about"],
    &["what", "of"],
];

/// Words that make a turn a question of its own type (what it asks for).
const QUESTION_WORDS: &[&str] = &["who", "whom", "whose", "what", "when", "where", "which", "why", "how"];

/// The question `user_turns` (the user's messages, oldest first) ask: the last one, completed with the
/// previous non-empty one when the last is a follow-up. A follow-up with its own question word ("Who was
/// its first director?") keeps it and gains the earlier question's content words; one without ("And
/// part-time staff?") is read after the earlier question, whose question word then says what is asked.
/// A blank last turn is returned as it is (blank), for the caller to refuse.
pub fn contextual_question(user_turns: &[&str]) -> ContextualQuestion {
    let mut turns = user_turns.iter().map(|t| t.trim()).rev();
    let last = turns.next().unwrap_or_default();
    let mut turns = turns.filter(|t| !t.is_empty());
    let alone = ContextualQuestion { text: last.to_string(), follow_up: false, turn: last.to_string() };
    let Some(previous) = turns.next() else { return alone };
    let words = words(last);
    let content = words.iter().filter(|w| !is_stop_word(w)).count();
    if words.is_empty() || content > MAX_FOLLOW_UP_CONTENT_WORDS {
        return alone;
    }
    // The words after a continuing opening ("what about" asks nothing of its own).
    let opening = CONTINUING
        .iter()
        .find(|o| o.len() <= words.len() && o.iter().zip(&words).all(|(a, b)| *a == b.as_str()))
        .map_or(0, |o| o.len());
    let continues = opening > 0;
    let refers = words.iter().any(|w| REFERRING.contains(&w.as_str()));
    let asks = words[opening..].iter().any(|w| QUESTION_WORDS.contains(&w.as_str()));
    if !(continues || refers) {
        return alone;
    }
    let text = if asks {
        let known: Vec<String> = words.iter().filter(|w| !is_stop_word(w)).cloned().collect();
        let mut added: Vec<&str> = Vec::new();
        for w in previous.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\'')).filter(|w| !w.is_empty()) {
            let lower = w.to_lowercase();
            if !is_stop_word(&lower) && !known.contains(&lower) && !added.iter().any(|a| a.eq_ignore_ascii_case(w)) {
                added.push(w);
            }
        }
        if added.is_empty() {
            return alone;
        }
        format!("{last} ({})", added.join(" "))
    } else {
        format!("{previous} {last}")
    };
    // Completing a question must not make it one too long to answer.
    if text.chars().count() > MAX_QUESTION_CHARS {
        return alone;
    }
    ContextualQuestion { text, follow_up: true, turn: last.to_string() }
}

/// Lower-cased words of `text` (letters, digits, inner hyphens and apostrophes kept).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\''))
        .map(|w| w.trim_matches(|c| c == '-' || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(turns: &[&str]) -> ContextualQuestion {
        contextual_question(turns)
    }

    #[test]
    fn a_single_question_is_asked_as_it_is() {
        let q = ask(&["  When was the museum founded?  "]);
        let museum = "When was the museum founded?";
        assert_eq!(q, ContextualQuestion { text: museum.into(), follow_up: false, turn: museum.into() });
        assert_eq!(ask(&[]).text, "");
    }

    #[test]
    fn a_pronoun_draws_in_the_previous_subject() {
        let q = ask(&["Who designed the Harbour Bridge?", "How long is it?"]);
        assert!(q.follow_up);
        assert_eq!(q.text, "How long is it? (designed Harbour Bridge)");
        assert_eq!(q.turn, "How long is it?");
        let q = ask(&["When was the museum founded?", "Who was its first director?"]);
        assert_eq!(q.text, "Who was its first director? (museum founded)");
    }

    #[test]
    fn a_turn_without_a_question_word_is_read_after_the_previous_question() {
        let q = ask(&["How many vacation days do full-time employees get?", "And part-time employees?"]);
        assert!(q.follow_up);
        assert_eq!(q.text, "How many vacation days do full-time employees get? And part-time employees?");
        let q = ask(&["When did the railway open?", "What about the tramway?"]);
        assert_eq!(q.text, "When did the railway open? What about the tramway?");
        // With its own question word, the turn asks what it asks, about the earlier subject.
        let q = ask(&["When did the railway open?", "And when was it electrified?"]);
        assert_eq!(q.text, "And when was it electrified? (railway open)");
    }

    #[test]
    fn a_self_contained_question_stays_alone() {
        for last in [
            "When was the first railway in the region opened?",
            "Who designed the Harbour Bridge?",
            "What is the name of the bridge that crosses the harbour to the north shore?",
        ] {
            let q = ask(&["When was the museum founded?", last]);
            assert_eq!(q, ContextualQuestion { text: last.into(), follow_up: false, turn: last.into() }, "{last}");
        }
    }

    #[test]
    fn a_new_request_is_not_a_follow_up() {
        for last in ["Parking rules", "List the holidays", "Thanks", "Opening hours?"] {
            let q = ask(&["When was the museum founded?", last]);
            assert_eq!(q, ContextualQuestion { text: last.into(), follow_up: false, turn: last.into() }, "{last}");
        }
    }

    #[test]
    fn empty_turns_are_skipped_but_a_blank_last_turn_stays_blank() {
        let q = ask(&["Who designed the Harbour Bridge?", "  ", "How tall is it?"]);
        assert_eq!(q.text, "How tall is it? (designed Harbour Bridge)");
        assert_eq!(ask(&["Who designed the Harbour Bridge?", " "]).text, "");
        // The previous question adds nothing new: the turn is asked alone.
        let q = ask(&["How tall is it?", "How tall is it?"]);
        assert!(!q.follow_up);
    }
}
