//! Embedding input given as token ids, read as OpenAI's `cl100k_base` tokens.
//!
//! OpenAI's embeddings API takes token ids besides text, and clients use that: LangChain's
//! `OpenAIEmbeddings` tokenises every text with tiktoken (`cl100k_base` for any model name it does not
//! know) and sends the ids. Those ids mean nothing to the local encoder's own vocabulary, so they are
//! turned back into the text they encode (tokenisation is lossless) and embedded as text. The
//! `cl100k_base` table comes from `tiktoken-rs`, built on first use (a few hundred milliseconds).

use std::sync::OnceLock;

use rightmodel_core::ApiError;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Most token ids accepted in one input (OpenAI's embedding models take 8,191).
pub const MAX_TOKENS_PER_INPUT: usize = 8192;

static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn cl100k() -> Result<&'static CoreBPE, ApiError> {
    CL100K
        .get_or_init(|| match tiktoken_rs::cl100k_base() {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!("cannot build the cl100k_base token table: {e}");
                None
            }
        })
        .as_ref()
        .ok_or_else(|| ApiError::internal("the cl100k_base token table is unavailable"))
}

/// The texts that `input` (one list of token ids, or a list of such lists) encodes. Blocking: the
/// first call builds the token table.
pub fn cl100k_texts(input: &[Value]) -> Result<Vec<String>, ApiError> {
    // A list of texts with something else in it is not token ids: name the item that is not a text.
    if input.iter().any(Value::is_string) {
        let i = input.iter().position(|v| !v.is_string()).unwrap_or(0);
        return Err(ApiError::invalid("input", format!("input[{i}]: a list of texts must hold only strings")));
    }
    let lists: Vec<&[Value]> = if input.iter().all(Value::is_array) {
        input.iter().filter_map(|v| v.as_array().map(Vec::as_slice)).collect()
    } else {
        vec![input]
    };
    let bpe = cl100k()?;
    lists
        .into_iter()
        .enumerate()
        .map(|(i, ids)| {
            let bad = |m: String| ApiError::invalid("input", format!("input[{i}]: {m}"));
            if ids.is_empty() {
                return Err(bad("an empty list of token ids".into()));
            }
            if ids.len() > MAX_TOKENS_PER_INPUT {
                return Err(bad(format!("{} token ids; at most {MAX_TOKENS_PER_INPUT} per input", ids.len())));
            }
            let ids = ids
                .iter()
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| bad("token ids must be whole numbers from 0 (or the input a string)".into()))?;
            let bytes =
                bpe.decode_bytes(&ids).map_err(|e| bad(format!("{} is not a cl100k_base token id", e.token)))?;
            // A list cut at a token limit may end inside a character: that piece is dropped, not an error.
            Ok(String::from_utf8_lossy(&bytes).trim_end_matches('\u{FFFD}').to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_ids_turn_back_into_their_text() {
        let bpe = cl100k().expect("table");
        let texts = ["Hello world", "Ünïcödé — 東京 🚀", "  two  spaces\nand a line"];
        let lists: Vec<Value> = texts.iter().map(|t| json!(bpe.encode_ordinary(t))).collect();
        assert_eq!(cl100k_texts(&lists).expect("decodes"), texts);
        assert_eq!(cl100k_texts(json!([9906, 1917]).as_array().expect("list")).expect("one"), ["Hello world"]);
    }

    #[test]
    fn bad_token_lists_name_the_input() {
        for (input, says) in [
            (json!([[]]), "input[0]: an empty list"),
            (json!([[1, 2], [-1]]), "input[1]: token ids must be whole numbers"),
            (json!(["a", 1]), "input[1]: a list of texts must hold only strings"),
            (json!([1.5]), "whole numbers"),
            (json!([200000]), "200000 is not a cl100k_base token id"),
            (json!([vec![1; MAX_TOKENS_PER_INPUT + 1]]), "at most 8192"),
        ] {
            let e = cl100k_texts(input.as_array().expect("list")).expect_err("refused");
            assert!(e.message.contains(says) && e.param.as_deref() == Some("input"), "{}", e.message);
        }
    }

    #[test]
    fn a_list_cut_inside_a_character_drops_the_piece() {
        let bpe = cl100k().expect("table");
        let ids = bpe.encode_ordinary("ok 🚀");
        let cut = &ids[..ids.len() - 1];
        let t = cl100k_texts(&[json!(cut)]).expect("decodes");
        assert!(t[0].starts_with("ok") && !t[0].contains('\u{FFFD}'), "{:?}", t[0]);
    }
}
