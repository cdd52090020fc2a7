//! Scoring a model's answer against expected answers: SQuAD's normalisation, exact match, token F1,
//! "contains the answer", and the letter of a multiple-choice answer. Document QA's evaluation and the
//! model comparison (`rightmodel eval route`) score the same way.

use std::collections::HashMap;

/// SQuAD's answer normalisation: lower case, no ASCII punctuation, no articles, single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    no_punct.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Exact match of `prediction` with any of `golds` after normalisation (1.0 or 0.0).
pub fn exact_match(prediction: &str, golds: &[String]) -> f32 {
    let p = normalize_answer(prediction);
    if golds.iter().any(|g| normalize_answer(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// Best token F1 of `prediction` against `golds`.
pub fn f1(prediction: &str, golds: &[String]) -> f32 {
    golds.iter().map(|g| f1_one(prediction, g)).fold(0.0, f32::max)
}

fn f1_one(prediction: &str, gold: &str) -> f32 {
    let (p, g) = (normalize_answer(prediction), normalize_answer(gold));
    let (pt, gt): (Vec<&str>, Vec<&str>) = (p.split_whitespace().collect(), g.split_whitespace().collect());
    token_f1(&pt, &gt)
}

/// Token F1 of two already normalised word lists (1 for two empty ones), for callers that compare the
/// same answers many times and normalise each once.
pub fn token_f1<S: AsRef<str>>(prediction: &[S], gold: &[S]) -> f32 {
    if prediction.is_empty() || gold.is_empty() {
        return if prediction.is_empty() && gold.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for t in gold {
        *counts.entry(t.as_ref()).or_default() += 1;
    }
    let mut same = 0;
    for t in prediction {
        if let Some(c) = counts.get_mut(t.as_ref()) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f32 / prediction.len() as f32;
    let recall = same as f32 / gold.len() as f32;
    2.0 * precision * recall / (precision + recall)
}

/// Whether `text` contains one of `golds` as whole words after normalisation.
pub fn contains_answer(text: &str, golds: &[String]) -> bool {
    let t = format!(" {} ", normalize_answer(text));
    golds.iter().map(|g| normalize_answer(g)).any(|g| !g.is_empty() && t.contains(&format!(" {g} ")))
}

/// The option letter a multiple-choice answer picks (`A`-`H`), upper-cased, or `None` when it names
/// none. In order: the letter after the word "answer" ("The answer is C", "Answer: (c)"; a lowercase
/// "a" there only when marked or last, so "the answer is a bit..." is no answer); a first line that is
/// a letter alone ("B", "(b)", "C."); a first word marked as an option ("b)", "D."), or a capital other
/// than "A" ("B because..."); the first capital standing alone later ("so C"); a leading capital "A"
/// ("A because..."), which may also be the article.
pub fn choice_letter(answer: &str) -> Option<char> {
    let words: Vec<&str> = answer.split_whitespace().collect();
    // (letter, whether punctuation marked it as an option)
    let letter = |w: &str| -> Option<(char, bool)> {
        let t = w.trim_matches(|c: char| matches!(c, '(' | ')' | '[' | ']' | '.' | ',' | ':' | ';' | '*' | '"' | '\''));
        let mut cs = t.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) if ('A'..='H').contains(&c.to_ascii_uppercase()) => Some((c, t.len() != w.len())),
            _ => None,
        }
    };
    for (i, w) in words.iter().enumerate() {
        if !w.to_lowercase().starts_with("answer") {
            continue;
        }
        for (j, next) in words.iter().enumerate().skip(i + 1).take(2) {
            if let Some((c, marked)) = letter(next) {
                if c.is_ascii_uppercase() || marked || j + 1 == words.len() {
                    return Some(c.to_ascii_uppercase());
                }
            }
        }
    }
    let first_line = answer.trim().lines().next().unwrap_or("").trim();
    if !first_line.contains(char::is_whitespace) {
        if let Some((c, _)) = letter(first_line) {
            return Some(c.to_ascii_uppercase());
        }
    }
    let first = words.first().and_then(|w| letter(w));
    if let Some((c, marked)) = first {
        if marked || (c.is_ascii_uppercase() && c != 'A') {
            return Some(c.to_ascii_uppercase());
        }
    }
    let later = words.iter().skip(1).find_map(|w| letter(w).filter(|(c, _)| c.is_ascii_uppercase()).map(|(c, _)| c));
    later.or(first.filter(|(c, _)| *c == 'A').map(|(c, _)| c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_metrics() {
        let golds = vec!["the Rankine cycle".to_string(), "Rankine".to_string()];
        assert_eq!(exact_match("Rankine cycle.", &golds), 1.0);
        assert_eq!(exact_match("cycle", &golds), 0.0);
        assert!((f1("the cycle of Rankine", &golds) - 0.8).abs() < 1e-6);
        assert!(contains_answer("It is called the Rankine cycle.", &golds));
        assert!(!contains_answer("Rankines are here.", &["Rankine".to_string()]));
    }

    #[test]
    fn choice_letters() {
        let cases = [
            ("C", Some('C')),
            ("(b) because it is", Some('B')),
            ("The answer is D.", Some('D')),
            ("The answer is: (C)", Some('C')),
            ("Answer: a", Some('A')),
            ("The answer is a bit tricky, but C", Some('C')),
            ("I think it is a trick, so B", Some('B')),
            ("I'd say B", Some('B')),
            ("A cat, so C", Some('C')),
            ("a) Paris", Some('A')),
            ("A. Paris", Some('A')),
            ("A because it is the largest", Some('A')),
            ("A\nParis is the capital", Some('A')),
            ("A\n\nB is wrong since", Some('A')),
            ("B because A is wrong", Some('B')),
            ("A good answer would be B", Some('B')),
            ("Answer: none", None),
            ("Paris is the capital", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(choice_letter(text), want, "{text:?}");
        }
    }
}
