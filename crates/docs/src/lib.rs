//! Document collections answered with citations.
//!
//! `rightmodel docs add NAME PATH...` builds a [`Collection`] under `$RIGHTMODEL_HOME/docs/NAME`
//! ([`collections_root`]); `docs ask` and the server's `model: "docs:NAME"` call [`Collection::ask`].
//!
//! Indexing ([`Collection::add_paths`]): text, Markdown and HTML files are cleaned ([`clean`]), split into
//! passages on paragraph and sentence boundaries with character offsets ([`split`]), indexed for BM25
//! with tantivy ([`lexical`]) and embedded with the caller's encoder: one vector per passage and one per
//! sentence ([`embed`]). Everything is written as a new generation that replaces the old one atomically
//! ([`store`]).
//!
//! Answering ([`Collection::ask`], [`ask`]): BM25 and dense scores are fused per passage ([`rank`]);
//! every sentence of the top passages gets evidence features ([`features`]: cosine, term and phrase
//! overlap, answer-type cues, passage scores) and a score from a linear sentence ranker
//! ([`ranker`]); passages are re-ranked by their best sentence and the best sentence is the answer
//! sentence; a learned span scorer picks the answer inside it ([`extract`]); a logistic model over
//! absolute evidence gives the confidence ([`confidence`]). The models are fitted by [`learn`].
//! Optionally a language model ([`rightmodel_core::PassageReader`]) re-orders the first passages by
//! `log P(question | passage)` and reads the best few sentences of the first passages; its surest
//! reading ([`ReadWeights`]) gives the answer sentence and the answer, mapped back onto the sentence's
//! words ([`read`]); see [`Collection::ask_with_reader`].
//! [`Answer::context_prompt`] builds the prompt for a generative answer that cites the passages.
//!
//! Citation offsets are character offsets into each file's cleaned text: the file itself for plain text,
//! the rendered text (markup dropped) for Markdown, the extracted visible text for HTML.
//!
//! [`eval`] runs the SQuAD evaluation (`rightmodel eval docs`) and [`report`] writes its Markdown and SVG.

pub mod answer;
pub mod ask;
pub mod catalog;
pub mod clean;
pub mod collection;
pub mod confidence;
pub mod dense;
pub mod embed;
pub mod error;
pub mod eval;
pub mod extract;
pub mod features;
pub mod follow_up;
pub mod generated;
pub mod ingest;
pub mod late;
pub mod learn;
pub mod lexical;
pub mod params;
pub mod rank;
pub mod ranker;
pub mod read;
pub mod report;
pub mod split;
pub mod squad;
pub mod store;
pub mod terms;

pub use answer::{Answer, Citation, ScoredPassage, LOW_CONFIDENCE};
pub use ask::{ReadCandidate, SentenceCandidate, MAX_QUESTION_CHARS};
pub use catalog::{
    collection_dir, collections_root, list_collections, remove_collection, validate_name, CollectionInfo,
};
pub use collection::{AddProgress, AddReport, Collection, RemovedFile, SkippedFile};
pub use error::DocsError;
pub use follow_up::{contextual_question, ContextualQuestion};
pub use generated::{cite_generated, small_model_prompt, GeneratedAnswer};
pub use params::{AskParams, ReadWeights, RetrievalMode};
