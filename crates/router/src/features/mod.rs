//! The feature vector of a conversation: a sentence embedding of the conversation (last user turn
//! weighted over the history) followed by the cheap text features of [`text`].

pub mod cache;
pub mod static_embed;
pub mod text;

use rightmodel_core::Embedder;
use serde::{Deserialize, Serialize};

use crate::conversation::Conversation;
use crate::error::RouterError;
use crate::matrix::Matrix;

/// How a conversation is turned into embedding inputs; stored with the weights so scoring uses
/// exactly what training used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmbedSpec {
    /// Longer turns are embedded as their first and last `clip_chars` characters: the question and
    /// its options carry the signal, and the encoder's cost grows with length.
    pub clip_chars: usize,
    /// Weight of the last user turn in the conversation vector; the history gets `1 - weight`.
    pub last_turn_weight: f32,
    /// The history is embedded as its last `history_chars` characters (the most recent context).
    pub history_chars: usize,
}

impl Default for EmbedSpec {
    fn default() -> Self {
        // Sized for the static encoder (cost ~1 us per token): whole prompts up to 4000 characters.
        // A contextual encoder (~0.5 ms per token on two cores) wants a few hundred at most.
        EmbedSpec { clip_chars: 2000, last_turn_weight: 0.75, history_chars: 2000 }
    }
}

impl EmbedSpec {
    /// A recipe for the contextual MiniLM: shorter clips, since its cost grows with every token.
    pub fn contextual() -> Self {
        EmbedSpec { clip_chars: 320, last_turn_weight: 0.75, history_chars: 600 }
    }
}

/// `text` cut to its first and last `n` characters around an ellipsis when longer than `2n`.
pub fn clip_head_tail(text: &str, n: usize) -> std::borrow::Cow<'_, str> {
    let count = text.chars().count();
    if count <= 2 * n {
        return std::borrow::Cow::Borrowed(text);
    }
    let head_end = text.char_indices().nth(n).map(|(i, _)| i).unwrap_or(text.len());
    let tail_start = text.char_indices().nth(count - n).map(|(i, _)| i).unwrap_or(text.len());
    std::borrow::Cow::Owned(format!("{} ... {}", &text[..head_end], &text[tail_start..]))
}

/// The last `n` characters of `text`.
fn tail_chars(text: &str, n: usize) -> &str {
    let count = text.chars().count();
    if count <= n {
        return text;
    }
    let start = text.char_indices().nth(count - n).map(|(i, _)| i).unwrap_or(0);
    &text[start..]
}

/// The texts to embed for `conv`: the clipped last user turn and, when there is one, the recent
/// history as `role: content` lines.
pub fn embedding_inputs(conv: &Conversation, spec: &EmbedSpec) -> (String, Option<String>) {
    let last = clip_head_tail(conv.last_user(), spec.clip_chars).into_owned();
    let mut hist = String::new();
    for m in conv.history() {
        if m.content.trim().is_empty() {
            continue;
        }
        hist.push_str(&m.role);
        hist.push_str(": ");
        hist.push_str(&m.content);
        hist.push('\n');
    }
    let hist = (!hist.trim().is_empty()).then(|| tail_chars(&hist, spec.history_chars).to_string());
    (last, hist)
}

/// The conversation vector: `w * last + (1 - w) * history`, renormalised to unit length; the last
/// turn alone when there is no history.
pub fn combine(last: &[f32], history: Option<&[f32]>, w: f32) -> Vec<f32> {
    let Some(h) = history else { return last.to_vec() };
    let mut v: Vec<f32> = last.iter().zip(h).map(|(a, b)| w * a + (1.0 - w) * b).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Embeds `convs` (one encoder call for all their texts) and returns their conversation vectors.
pub fn embed_conversations(
    embedder: &dyn Embedder,
    convs: &[Conversation],
    spec: &EmbedSpec,
) -> Result<Vec<Vec<f32>>, RouterError> {
    let inputs: Vec<(String, Option<String>)> = convs.iter().map(|c| embedding_inputs(c, spec)).collect();
    let mut texts: Vec<&str> = Vec::with_capacity(inputs.len() * 2);
    for (last, hist) in &inputs {
        texts.push(last);
        if let Some(h) = hist {
            texts.push(h);
        }
    }
    let vecs = embedder.embed(&texts)?;
    let mut it = vecs.into_iter();
    let mut out = Vec::with_capacity(convs.len());
    for (_, hist) in &inputs {
        let last = it.next().ok_or_else(|| rightmodel_core::EmbedError("encoder returned too few vectors".into()))?;
        let h = if hist.is_some() { it.next() } else { None };
        out.push(combine(&last, h.as_deref(), spec.last_turn_weight));
    }
    Ok(out)
}

/// One feature row: the conversation vector followed by the text features of `conv`.
pub fn feature_row(embedding: &[f32], conv: &Conversation) -> Vec<f32> {
    let mut row = Vec::with_capacity(embedding.len() + text::COUNT);
    row.extend_from_slice(embedding);
    row.extend_from_slice(&text::text_features(conv));
    row
}

/// Feature matrix of `convs` given their conversation vectors (same order).
pub fn feature_matrix(embeddings: &[Vec<f32>], convs: &[Conversation]) -> Matrix {
    let cols = embeddings.first().map(|e| e.len()).unwrap_or(0) + text::COUNT;
    let mut m = Matrix::with_capacity(convs.len(), cols);
    for (e, c) in embeddings.iter().zip(convs) {
        m.push_row(&feature_row(e, c));
    }
    m
}

/// Names of the columns of a feature row for an encoder of `dim` dimensions.
pub fn feature_names(dim: usize) -> Vec<String> {
    (0..dim).map(|i| format!("emb{i}")).chain(text::NAMES.iter().map(|s| s.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_char_boundaries() {
        assert_eq!(clip_head_tail("abc", 2), "abc");
        let s = "é".repeat(10);
        let c = clip_head_tail(&s, 2);
        assert_eq!(c, "éé ... éé");
    }

    #[test]
    fn combine_weights_and_normalises() {
        let v = combine(&[1.0, 0.0], Some(&[0.0, 1.0]), 0.75);
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        assert!(v[0] > v[1]);
        assert_eq!(combine(&[0.6, 0.8], None, 0.75), vec![0.6, 0.8]);
    }

    #[test]
    fn history_is_the_recent_context() {
        let conv = Conversation::parse_cell(
            r#"[{"role":"user","content":"first"},{"role":"assistant","content":"reply"},{"role":"user","content":"second"}]"#,
        );
        let (last, hist) = embedding_inputs(&conv, &EmbedSpec { history_chars: 10, ..Default::default() });
        assert_eq!(last, "second");
        let h = hist.unwrap();
        assert_eq!(h.chars().count(), 10);
        assert!(h.ends_with("reply\n"));
    }
}
