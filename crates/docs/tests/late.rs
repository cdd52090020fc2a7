//! Token vectors for late interaction: kept with the collection, computed for collections indexed
//! without them, kept aligned through updates, and used to answer.

mod common;

use common::{fixture_copy, HashEmbedder};
use rightmodel_core::{EmbedError, Embedder, WithTokens};
use rightmodel_docs::Collection;

/// [`HashEmbedder`] with token vectors: one hashed one-hot row per word of three letters or more.
struct TokenEmbedder(HashEmbedder);

impl Embedder for TokenEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.0.embed(texts)
    }
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<WithTokens, EmbedError> {
        let dim = self.0.dim;
        let tokens = texts
            .iter()
            .map(|t| {
                let words: Vec<&str> = t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2).collect();
                let mut rows = vec![0.0f32; words.len() * dim];
                for (i, w) in words.iter().enumerate() {
                    // The one-hot position of the word in the sentence embedding.
                    let v = self.0.embed(&[w])?.remove(0);
                    rows[i * dim..(i + 1) * dim].copy_from_slice(&v);
                }
                Ok(rows)
            })
            .collect::<Result<Vec<_>, EmbedError>>()?;
        Ok((self.embed(texts)?, Some(tokens)))
    }
    fn has_token_vectors(&self) -> bool {
        true
    }
    fn dim(&self) -> usize {
        self.0.dim
    }
    fn model_id(&self) -> &str {
        &self.0.id
    }
}

#[test]
fn token_vectors_are_kept_and_answer_questions() {
    let tmp = fixture_copy();
    let e = TokenEmbedder(HashEmbedder::default());
    let dir = tmp.path().join("coll");
    let mut c = Collection::create(&dir).unwrap();
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    assert!(c.has_token_vectors());
    let c = Collection::open(&dir).unwrap();
    assert!(c.has_token_vectors(), "token vectors are stored, not only held in memory");
    let a = c.ask(&e, "Who designed the Harbour Bridge?", 3).unwrap();
    assert_eq!(a.answer, "John Bradfield");
    assert!(a.evidence.late > 0.5 && a.evidence.passage_late >= a.evidence.late, "{:?}", a.evidence);
    // An embedder without token vectors still answers (the ranker without late interaction).
    let a = c.ask(&HashEmbedder::default(), "Who designed the Harbour Bridge?", 3).unwrap();
    assert_eq!((a.answer.as_str(), a.evidence.late), ("John Bradfield", 0.0));
}

#[test]
fn a_collection_without_token_vectors_gets_them_at_the_next_add_and_keeps_them_aligned() {
    let tmp = fixture_copy();
    let dir = tmp.path().join("coll");
    let docs = tmp.path().join("docs");
    let mut c = Collection::create(&dir).unwrap();
    let first = c.add_paths(&HashEmbedder::default(), &[&docs]).unwrap();
    assert!(!c.has_token_vectors());

    // Nothing changed on disk, but the encoder now gives token vectors: they are computed, the
    // passages (and their ids) stay.
    let e = TokenEmbedder(HashEmbedder::default());
    let again = c.add_paths(&e, &[&docs]).unwrap();
    assert_eq!((again.passages_added, again.passages_removed), (0, 0));
    assert_eq!(again.passages_upgraded, first.passages_total);
    assert_eq!(again.passages_total, first.passages_total);
    assert!(Collection::open(&dir).unwrap().has_token_vectors());
    // Once there, an add with nothing changed writes nothing.
    let gen = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    c.add_paths(&e, &[&docs]).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("CURRENT")).unwrap(), gen);

    // A changed file replaces its passages; every other sentence keeps its own token vectors.
    let museum = docs.join("museum.txt");
    std::fs::write(
        &museum,
        "The museum was founded in 1901 by the city council.\n\nIt has a garden with a fountain.\n",
    )
    .unwrap();
    let upd = c.add_paths(&e, &[&docs]).unwrap();
    assert_eq!((upd.updated.len(), upd.passages_upgraded), (1, 0));
    let c = Collection::open(&dir).unwrap();
    assert!(c.has_token_vectors());
    assert_eq!(c.ask(&e, "When was the museum founded?", 5).unwrap().answer, "1901");
    let a = c.ask(&e, "Who designed the Harbour Bridge?", 3).unwrap();
    assert_eq!(a.answer, "John Bradfield");
    assert!(a.evidence.late > 0.5, "{:?}", a.evidence);
}
