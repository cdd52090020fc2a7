//! BM25 over passages with tantivy: one document per passage, the passage's row number as a fast field.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::directory::{Directory, RamDirectory};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use crate::terms::INDEX_TOKENIZER;
use crate::DocsError;

const TEXT: &str = "text";
const ROW: &str = "row";
/// Indexing memory budget; tantivy needs at least 15 MB per thread.
const WRITER_MEMORY: usize = 50_000_000;

fn schema() -> Schema {
    let mut sb = Schema::builder();
    let indexing =
        TextFieldIndexing::default().set_tokenizer(INDEX_TOKENIZER).set_index_option(IndexRecordOption::WithFreqs);
    sb.add_text_field(TEXT, TextOptions::default().set_indexing_options(indexing));
    sb.add_u64_field(ROW, FAST);
    sb.build()
}

/// Builds a fresh index in the empty folder `dir` over `texts` (row `i` is `texts[i]`).
pub fn build<'a>(dir: &Path, texts: impl Iterator<Item = &'a str>) -> Result<(), DocsError> {
    let schema = schema();
    let text = schema.get_field(TEXT)?;
    let row = schema.get_field(ROW)?;
    let index = Index::create_in_dir(dir, schema)?;
    let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
    for (i, t) in texts.enumerate() {
        writer.add_document(doc!(text => t, row => i as u64))?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    // The writer's lock files stay behind empty; a finished generation has no use for them.
    for entry in std::fs::read_dir(dir).map_err(|e| DocsError::io(dir, e))?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".lock") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// An open BM25 index.
pub struct LexicalIndex {
    reader: IndexReader,
    text: Field,
}

impl LexicalIndex {
    /// Opens the index built by [`build`] in `dir`, read into memory. A generation never changes once
    /// written, and an index opened in place makes tantivy create a lock file inside it: that fails on
    /// read-only storage and races with the removal of old generations.
    pub fn open(dir: &Path) -> Result<Self, DocsError> {
        let ram = RamDirectory::create();
        for entry in std::fs::read_dir(dir).map_err(|e| DocsError::io(dir, e))? {
            let entry = entry.map_err(|e| DocsError::io(dir, e))?;
            let name = entry.file_name();
            let is_lock = name.to_string_lossy().ends_with(".lock");
            if is_lock || !entry.file_type().map_err(|e| DocsError::io(entry.path(), e))?.is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| DocsError::io(entry.path(), e))?;
            ram.atomic_write(Path::new(&name), &bytes).map_err(|e| DocsError::io(entry.path(), e))?;
        }
        let index = Index::open(ram)?;
        let text = index.schema().get_field(TEXT)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(LexicalIndex { reader, text })
    }

    /// A searcher for a batch of calls (cheap).
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// BM25 top `limit` rows for the (already analysed, distinct) query `terms`, best first.
    pub fn search(&self, searcher: &Searcher, terms: &[String], limit: usize) -> Result<Vec<(usize, f32)>, DocsError> {
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let q = TermQuery::new(Term::from_field_text(self.text, t), IndexRecordOption::WithFreqs);
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect();
        let hits = searcher.search(&BooleanQuery::new(clauses), &TopDocs::with_limit(limit))?;
        let mut out = Vec::with_capacity(hits.len());
        for (score, addr) in hits {
            let rows = searcher.segment_reader(addr.segment_ord).fast_fields().u64(ROW)?;
            if let Some(r) = rows.first(addr.doc_id) {
                out.push((r as usize, score));
            }
        }
        Ok(out)
    }

    /// Inverse document frequency of each term (BM25's formula), for weighting word overlap.
    pub fn idf(&self, searcher: &Searcher, terms: &[String]) -> Result<Vec<f32>, DocsError> {
        let n = searcher.num_docs() as f32;
        terms
            .iter()
            .map(|t| {
                let df = searcher.doc_freq(&Term::from_field_text(self.text, t))? as f32;
                Ok((1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect()
    }
}
