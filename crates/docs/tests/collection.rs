//! End-to-end behaviour of collections on small fixture documents, with a hashed bag-of-words embedder.

mod common;

use std::path::Path;

use common::{fixture_copy, HashEmbedder};
use rightmodel_core::Reading;
use rightmodel_docs::clean::{clean_file, Format};
use rightmodel_docs::{list_collections, remove_collection, Citation, Collection, DocsError, LOW_CONFIDENCE};

/// The cited characters of the file's cleaned text.
fn cited(c: &Citation) -> String {
    let path = Path::new(&c.file);
    let format = Format::for_explicit(path);
    let text = clean_file(path, format).unwrap();
    text.chars().skip(c.start).take(c.end - c.start).collect()
}

fn new_collection(tmp: &tempfile::TempDir) -> Collection {
    Collection::create(&tmp.path().join("coll")).unwrap()
}

#[test]
fn indexes_a_folder_and_cites_exact_offsets() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    let report = c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    assert_eq!(report.added.len(), 3, "{report:?}");
    assert_eq!(report.ignored, 1, "logo.png is ignored");
    assert!(report.ignored_files.len() == 1 && report.ignored_files[0].ends_with("logo.png"), "{report:?}");
    assert!(report.passages_total >= 5);

    let a = c.ask(&e, "Who designed the Harbour Bridge?", 3).unwrap();
    assert_eq!(a.answer, "John Bradfield");
    let cite = &a.citations[0];
    assert!(cite.file.ends_with("bridges.md"));
    assert_eq!(cite.text, "The Harbour Bridge was designed by John Bradfield.");
    assert_eq!(cited(cite), cite.text);
    let span = a.span.as_ref().unwrap();
    assert_eq!(cited(span), "John Bradfield");
    // Markdown: offsets into the text the file renders to, where `**` and link targets are gone.
    let raw = std::fs::read_to_string(&cite.file).unwrap();
    assert!(raw.contains("**John Bradfield**"), "the fixture has markup");
    let p = a.passages.iter().find(|p| p.text.contains("pedestrian traffic")).unwrap();
    assert!(p.text.starts_with("Bridges of the city\n\nThe Harbour Bridge"), "{}", p.text);
    assert!(p.text.contains("by John Bradfield. It") && p.text.contains("across the harbour."), "{}", p.text);
    let p =
        Citation { file: p.file.clone(), passage_id: p.passage_id, start: p.start, end: p.end, text: p.text.clone() };
    assert_eq!(cited(&p), p.text);

    // HTML: offsets into the extracted text.
    let a = c.ask(&e, "When was the main line electrified?", 3).unwrap();
    assert!(a.citations[0].file.ends_with("trains.html"));
    assert_eq!(cited(&a.citations[0]), a.citations[0].text);
    assert!(a.sentence.contains("electrified in 1979"), "{}", a.sentence);
    assert_eq!(a.answer, "1979");
    for p in &a.passages {
        assert_eq!(
            cited(&Citation {
                file: p.file.clone(),
                passage_id: p.passage_id,
                start: p.start,
                end: p.end,
                text: String::new()
            }),
            p.text
        );
    }

    // The prompt for a generative answer numbers the passages.
    let prompt = a.context_prompt("When was the main line electrified?");
    assert!(prompt.contains("[1] (trains.html"));
    assert!(prompt.ends_with("Answer:"));
}

#[test]
fn changed_files_replace_their_passages() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let dir = tmp.path().join("coll");
    let mut c = Collection::create(&dir).unwrap();
    let museum = tmp.path().join("docs/museum.txt");
    let first = c.add_paths(&e, &[&museum]).unwrap();
    let old_ids: Vec<u64> = (0..first.passages_added as u64).collect();

    // Unchanged: nothing to do.
    let again = c.add_paths(&e, &[&museum]).unwrap();
    assert_eq!(again.unchanged.len(), 1);
    assert_eq!(again.passages_added, 0);

    std::fs::write(&museum, "The museum was founded in 1901 by the city council.\n\nIt has a garden with a fountain and a cafe that opens at nine.\n").unwrap();
    let upd = c.add_paths(&e, &[&museum]).unwrap();
    assert_eq!(upd.updated.len(), 1);
    assert_eq!(upd.passages_removed, first.passages_added);
    assert_eq!(c.passage_count(), upd.passages_added);
    for id in &old_ids {
        assert!(c.passage(*id).is_none(), "old passage {id} is gone");
    }

    // The update is on disk: a fresh open sees only the new text.
    let c2 = Collection::open(&dir).unwrap();
    assert_eq!(c2.files().len(), 1);
    let a = c2.ask(&e, "When was the museum founded?", 5).unwrap();
    assert_eq!(a.answer, "1901");
    assert!(a.passages.iter().all(|p| !p.text.contains("1852")));
    assert_eq!(cited(&a.citations[0]), a.citations[0].text);
}

#[test]
fn markdown_indexed_as_written_by_an_older_version_is_cleaned_again() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let dir = tmp.path().join("coll");
    let mut c = Collection::create(&dir).unwrap();
    let bridges = tmp.path().join("docs/bridges.md");
    c.add_paths(&e, &[&bridges]).unwrap();
    assert_eq!(c.add_paths(&e, &[&bridges]).unwrap().unchanged.len(), 1);

    // A collection written before the cleaning version was kept: its entries lack the field.
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    let manifest = dir.join(current.trim()).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        assert!(f.as_object_mut().unwrap().remove("cleaning").is_some(), "{f}");
    }
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();

    let mut old = Collection::open(&dir).unwrap();
    let report = old.add_paths(&e, &[&bridges]).unwrap();
    assert_eq!(report.updated.len(), 1, "{report:?}");
    assert_eq!(old.add_paths(&e, &[&bridges]).unwrap().unchanged.len(), 1);
}

#[test]
fn unanswerable_questions_get_low_confidence() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    let good = c.ask(&e, "How long is the Harbour Bridge?", 3).unwrap();
    let bad = c.ask(&e, "What is the boiling point of liquid nitrogen in kelvin?", 3).unwrap();
    assert!(bad.confidence < LOW_CONFIDENCE, "unanswerable: {}", bad.confidence);
    assert!(bad.is_low_confidence());
    assert!(
        good.confidence > bad.confidence + 0.2,
        "answerable {} vs unanswerable {}",
        good.confidence,
        bad.confidence
    );
    assert!((0.0..=1.0).contains(&good.confidence));
}

#[test]
fn empty_and_binary_files_are_clear_errors() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut c = new_collection(&tmp);

    let err = c.add_paths(&e, &[fixtures.join("empty.txt")]).unwrap_err();
    assert!(matches!(err, DocsError::EmptyFile { .. }), "{err}");
    assert!(err.to_string().contains("empty.txt") && err.to_string().contains("empty"), "{err}");

    let err = c.add_paths(&e, &[fixtures.join("binary.txt")]).unwrap_err();
    assert!(matches!(err, DocsError::BinaryFile { .. }), "{err}");
    assert!(err.to_string().contains("binary.txt") && err.to_string().contains("not a text file"), "{err}");

    // A failing call writes nothing, even when other files in it were fine.
    let err = c.add_paths(&e, &[tmp.path().join("docs/museum.txt"), fixtures.join("empty.txt")]).unwrap_err();
    assert!(matches!(err, DocsError::EmptyFile { .. }));
    assert_eq!(c.passage_count(), 0);
    assert_eq!(Collection::open(c.dir()).unwrap().passage_count(), 0);

    let err = c.add_paths(&e, &[tmp.path().join("no-such-file.txt")]).unwrap_err();
    assert!(matches!(err, DocsError::NotFound { .. }), "{err}");

    // Inside a folder, bad files are skipped and reported.
    std::fs::write(tmp.path().join("docs/blank.md"), "   \n").unwrap();
    std::fs::write(tmp.path().join("docs/odd.txt"), [0u8, 159, 146, 150]).unwrap();
    let report = c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    assert_eq!(report.added.len(), 3);
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(report.skipped.iter().any(|s| s.path.ends_with("blank.md") && s.reason.contains("empty")));

    // Asking an empty collection or an empty question is an error too.
    let empty = Collection::create(&tmp.path().join("empty-coll")).unwrap();
    assert!(matches!(empty.ask(&e, "anything?", 3), Err(DocsError::EmptyCollection)));
    assert!(matches!(c.ask(&e, "  ", 3), Err(DocsError::EmptyQuestion)));
}

#[test]
fn another_embedder_is_refused() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs/museum.txt")]).unwrap();
    let other = HashEmbedder { dim: 128, id: "other".into() };
    assert!(matches!(c.ask(&other, "When was it founded?", 3), Err(DocsError::EmbedderMismatch { .. })));
    assert!(matches!(
        c.add_paths(&other, &[tmp.path().join("docs/bridges.md")]),
        Err(DocsError::EmbedderMismatch { .. })
    ));
}

#[test]
fn collections_are_listed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("docs-root");
    assert!(list_collections(&root).unwrap().is_empty());
    let fixtures = fixture_copy();
    let e = HashEmbedder::default();
    let mut a = Collection::create(&rightmodel_docs::collection_dir(&root, "alpha").unwrap()).unwrap();
    a.add_paths(&e, &[fixtures.path().join("docs")]).unwrap();
    Collection::create(&rightmodel_docs::collection_dir(&root, "beta").unwrap()).unwrap();
    assert!(matches!(Collection::create(&root.join("beta")), Err(DocsError::AlreadyExists { .. })));
    std::fs::create_dir_all(root.join("not-a-collection")).unwrap();

    let list = list_collections(&root).unwrap();
    assert_eq!(list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["alpha", "beta"]);
    assert_eq!(list[0].files, 3);
    assert_eq!(list[0].embedder.as_deref(), Some("hash-test"));
    assert_eq!(list[1].passages, 0);
    assert!(list.iter().all(|c| c.error.is_none()));
    // A damaged stored file shows in the list, not first at a question.
    let alpha = root.join("alpha");
    let gen = std::fs::read_dir(&alpha)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("passages.json").exists())
        .expect("a generation with passages.json");
    let passages = gen.join("passages.json");
    let bytes = std::fs::read(&passages).unwrap();
    std::fs::write(&passages, &bytes[..bytes.len() / 2]).unwrap();
    let list = list_collections(&root).unwrap();
    let err = list[0].error.as_deref().expect("the damage is reported");
    assert!(err.contains("passages.json"), "{err}");
    assert_eq!(list[0].files, 3, "the counts still come from the manifest");
    std::fs::write(&passages, &bytes).unwrap();

    remove_collection(&root, "alpha").unwrap();
    assert_eq!(list_collections(&root).unwrap().len(), 1);
    assert!(matches!(remove_collection(&root, "alpha"), Err(DocsError::NotACollection { .. })));
    assert!(matches!(rightmodel_docs::collection_dir(&root, "../x"), Err(DocsError::InvalidName(_))));
    assert!(matches!(Collection::open(&root.join("alpha")), Err(DocsError::NotACollection { .. })));
}

#[test]
fn a_collection_can_be_shared_by_server_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Collection>();
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    let c = std::sync::Arc::new(c);
    let handles: Vec<_> = ["Who designed the Harbour Bridge?", "When was the museum founded?"]
        .into_iter()
        .map(|q| {
            let (c, e) = (c.clone(), HashEmbedder::default());
            std::thread::spawn(move || c.ask(&e, q, 3).map(|a| a.answer))
        })
        .collect();
    let answers: Vec<String> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    assert_eq!(answers, vec!["John Bradfield", "1852"]);
}

#[test]
fn a_folder_added_again_drops_deleted_and_renamed_files() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    let docs = tmp.path().join("docs");
    c.add_paths(&e, &[&docs]).unwrap();
    let museum = docs.join("museum.txt");
    let before = c.passage_count();
    // Rename one file and change it; delete another.
    let renamed = docs.join("museum-2.txt");
    std::fs::rename(&museum, &renamed).unwrap();
    std::fs::write(&renamed, "The museum was founded in 1901 by the city council.\n").unwrap();
    std::fs::remove_file(docs.join("bridges.md")).unwrap();
    let r = c.add_paths(&e, &[&docs]).unwrap();
    assert_eq!(r.removed.len(), 2, "{r:?}");
    assert_eq!(r.added.len(), 1, "{r:?}");
    let files: Vec<String> = c.files().iter().map(|f| f.path.clone()).collect();
    assert!(files.iter().all(|f| !f.ends_with("museum.txt") && !f.ends_with("bridges.md")), "{files:?}");
    assert!(c.passage_count() < before);
    let a = c.ask(&e, "When was the museum founded?", 5).unwrap();
    assert!(a.passages.iter().all(|p| !p.text.contains("1852")), "the old text is gone");
    assert!(a.citations[0].file.ends_with("museum-2.txt"));
    // A file added on its own is not dropped by adding a folder it is not in.
    let other = tempfile::tempdir().unwrap();
    let solo = other.path().join("solo.txt");
    std::fs::write(&solo, "The lighthouse was built in 1870.\n").unwrap();
    c.add_paths(&e, &[&solo]).unwrap();
    let r = c.add_paths(&e, &[&docs]).unwrap();
    assert!(r.removed.is_empty(), "{r:?}");
    assert!(c.files().iter().any(|f| f.path.ends_with("solo.txt")));
    // Files inside the folder that its walk does not visit (hidden, other extensions), added by name,
    // stay while they exist.
    std::fs::create_dir_all(docs.join(".drafts")).unwrap();
    std::fs::write(docs.join(".drafts/parking.md"), "Parking is free after six.\n").unwrap();
    std::fs::write(docs.join("CHANGELOG"), "Version two added the garden.\n").unwrap();
    c.add_paths(&e, &[docs.join(".drafts/parking.md"), docs.join("CHANGELOG")]).unwrap();
    let r = c.add_paths(&e, &[&docs]).unwrap();
    assert!(r.removed.is_empty(), "{r:?}");
    assert!(c.files().iter().any(|f| f.path.ends_with("parking.md")));
    assert!(c.files().iter().any(|f| f.path.ends_with("CHANGELOG")));
}

#[test]
fn a_collection_removed_and_created_again_is_seen_as_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("docs-root");
    let fixtures = fixture_copy();
    let e = HashEmbedder::default();
    let dir = rightmodel_docs::collection_dir(&root, "rr").unwrap();
    let mut c = Collection::create(&dir).unwrap();
    c.add_paths(&e, &[fixtures.path().join("docs/museum.txt")]).unwrap();
    let held = Collection::open(&dir).unwrap();
    assert!(!held.is_stale());
    remove_collection(&root, "rr").unwrap();
    let mut again = Collection::create(&dir).unwrap();
    again.add_paths(&e, &[fixtures.path().join("docs/bridges.md")]).unwrap();
    // Same generation number as before, but another generation: a holder must reopen.
    assert!(held.is_stale());
    let fresh = Collection::open(&dir).unwrap();
    assert!(fresh.files().iter().all(|f| f.path.ends_with("bridges.md")));
    // Opening a generation leaves no lock files in it (it must work on read-only storage).
    let gen = rightmodel_docs::store::current_generation(&dir).unwrap();
    let locks = walk_names(&gen).into_iter().filter(|n| n.ends_with(".lock")).count();
    assert_eq!(locks, 0);
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn overlong_questions_are_refused() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs/museum.txt")]).unwrap();
    let long = "museum ".repeat(rightmodel_docs::MAX_QUESTION_CHARS);
    assert!(matches!(c.ask(&e, &long, 3), Err(DocsError::QuestionTooLong { .. })));
}

/// A language model stand-in: finds a question likeliest after the passage that mentions `favourite`.
struct FavouriteScorer {
    favourite: &'static str,
    calls: std::sync::atomic::AtomicUsize,
}

impl rightmodel_core::PassageReader for FavouriteScorer {
    fn question_log_likelihood(
        &self,
        _question: &str,
        passages: &[&str],
    ) -> Result<Vec<f32>, rightmodel_core::ScoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(passages.iter().map(|p| if p.contains(self.favourite) { 0.0 } else { -100.0 }).collect())
    }
    fn read_answer(&self, _context: &str, _question: &str) -> Result<Reading, rightmodel_core::ScoreError> {
        Err(rightmodel_core::ScoreError("not asked to read".into()))
    }
    fn model_id(&self) -> &str {
        "favourite"
    }
}

#[test]
fn a_language_model_reorders_the_first_passages() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    let q = "When was the museum founded?";
    let plain = c.ask(&e, q, 3).unwrap();
    assert!(plain.citations[0].file.ends_with("museum.txt"));
    assert!(plain.passages.iter().all(|p| p.question_log_likelihood.is_none()));

    // A scorer sure that another passage is the source moves it first, and the answer comes from it.
    let second = plain.passages[1].text.clone();
    let marker: &'static str =
        Box::leak(second.split_whitespace().take(4).collect::<Vec<_>>().join(" ").into_boxed_str());
    let scorer = FavouriteScorer { favourite: marker, calls: Default::default() };
    let params = rightmodel_docs::AskParams { lm_depth: 3, ..Default::default() };
    let moved = c.ask_with_reader(&e, q, 3, &params, &scorer).unwrap();
    assert_eq!(moved.passages[0].text, second);
    assert_eq!(moved.passages[0].question_log_likelihood, Some(0.0));
    assert!(moved.citations[0].text.len() <= second.len() && second.contains(&moved.citations[0].text));
    assert_eq!(moved.passages.iter().filter(|p| p.question_log_likelihood.is_some()).count(), 3);

    // Depth 1 (or 0) leaves nothing to re-order and does not call the model.
    let calls = scorer.calls.load(std::sync::atomic::Ordering::Relaxed);
    let params = rightmodel_docs::AskParams { lm_depth: 1, ..Default::default() };
    let same = c.ask_with_reader(&e, q, 3, &params, &scorer).unwrap();
    assert_eq!(same.passages[0].text, plain.passages[0].text);
    assert_eq!(scorer.calls.load(std::sync::atomic::Ordering::Relaxed), calls);
}

/// A broken language model: its scores do not match the passages.
struct BrokenScorer;

impl rightmodel_core::PassageReader for BrokenScorer {
    fn question_log_likelihood(&self, _q: &str, _p: &[&str]) -> Result<Vec<f32>, rightmodel_core::ScoreError> {
        Ok(vec![f32::NAN])
    }
    fn read_answer(&self, _context: &str, _question: &str) -> Result<Reading, rightmodel_core::ScoreError> {
        Err(rightmodel_core::ScoreError("cannot read".into()))
    }
    fn model_id(&self) -> &str {
        "broken"
    }
}

#[test]
fn a_broken_language_model_is_an_error_not_a_wrong_order() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    let r = c.ask_with_reader(&e, "When was the museum founded?", 3, &Default::default(), &BrokenScorer);
    assert!(matches!(r, Err(DocsError::Score(_))), "{r:?}");
}

/// A language model stand-in that answers every question with the same words.
struct ParrotReader(&'static str);

impl rightmodel_core::PassageReader for ParrotReader {
    fn question_log_likelihood(&self, _q: &str, p: &[&str]) -> Result<Vec<f32>, rightmodel_core::ScoreError> {
        Ok(vec![0.0; p.len()])
    }
    fn read_answer(&self, _context: &str, _question: &str) -> Result<Reading, rightmodel_core::ScoreError> {
        Ok(Reading::text(self.0))
    }
    fn model_id(&self) -> &str {
        "parrot"
    }
}

#[test]
fn a_reading_language_model_picks_the_span_within_the_sentence() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs/museum.txt")]).unwrap();
    let q = "Who was the first director of the museum?";
    let read = rightmodel_docs::AskParams { lm_depth: 0, lm_read: true, ..Default::default() };
    let text = std::fs::read_to_string(tmp.path().join("docs/museum.txt")).unwrap();

    // The model's words ("Sir Henry Cole", not in the text as such) map onto the sentence's "Henry Cole",
    // cited at its character offsets in the file.
    let a = c.ask_with_reader(&e, q, 3, &read, &ParrotReader("Sir Henry Cole")).unwrap();
    let span = a.span.clone().expect("a span");
    assert_eq!(a.answer, "Henry Cole");
    assert_eq!(span.text, "Henry Cole");
    let chars: Vec<char> = text.chars().collect();
    assert_eq!(chars[span.start..span.end].iter().collect::<String>(), "Henry Cole");
    assert!(span.start >= a.citations[0].start && span.end <= a.citations[0].end);
    assert_eq!(a.read_by.as_deref(), Some("parrot"));

    // An answer the sentence does not hold leaves the span scorer's choice.
    let plain = c.ask(&e, q, 3).unwrap();
    let made_up = c.ask_with_reader(&e, q, 3, &read, &ParrotReader("Queen Victoria")).unwrap();
    assert_eq!(made_up.answer, plain.answer);
    assert_eq!(made_up.read_by, None);

    // Without `lm_read` the model is not asked; a failing reader is an error the caller can fall back on.
    let off = rightmodel_docs::AskParams { lm_depth: 0, ..Default::default() };
    assert_eq!(c.ask_with_reader(&e, q, 3, &off, &BrokenScorer).unwrap().answer, plain.answer);
    let r = c.ask_with_reader(&e, q, 3, &read, &BrokenScorer);
    assert!(matches!(r, Err(DocsError::Score(_))), "{r:?}");
}

/// A language model stand-in that answers with the first two words of every sentence it reads: sure of
/// itself (log-probability -0.1 per token) when the sentence lies in `sure_in`, unsure (-5) otherwise.
struct SureReader {
    sure_in: String,
    seen: std::sync::Mutex<Vec<String>>,
}

impl SureReader {
    fn new(sure_in: &str) -> Self {
        SureReader { sure_in: sure_in.to_string(), seen: Default::default() }
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl rightmodel_core::PassageReader for SureReader {
    fn question_log_likelihood(&self, _q: &str, p: &[&str]) -> Result<Vec<f32>, rightmodel_core::ScoreError> {
        Ok(vec![0.0; p.len()])
    }
    fn read_answer(&self, context: &str, _question: &str) -> Result<Reading, rightmodel_core::ScoreError> {
        self.seen.lock().unwrap().push(context.to_string());
        let per_token = if self.sure_in.contains(context) { -0.1 } else { -5.0 };
        let text = context.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Ok(Reading { text, log_prob: 2.0 * per_token, tokens: 2 })
    }
    fn model_id(&self) -> &str {
        "sure"
    }
}

#[test]
fn the_reading_the_model_is_surest_of_chooses_the_answer_sentence() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs/museum.txt")]).unwrap();
    let q = "Who was the first director of the museum?";
    let plain = c.ask(&e, q, 3).unwrap();
    let other = "Today about three million people visit it every year.";
    assert_ne!(plain.sentence, other);

    // One sentence read: the ranker's best, whatever the model thinks of it.
    let one = rightmodel_docs::AskParams {
        lm_depth: 0,
        lm_read: true,
        lm_read_sentences: 1,
        lm_read_passages: 1,
        ..Default::default()
    };
    let reader = SureReader::new(other);
    let a = c.ask_with_reader(&e, q, 3, &one, &reader).unwrap();
    assert_eq!(reader.seen(), vec![plain.sentence.clone()]);
    assert_eq!(a.sentence, plain.sentence);
    assert_eq!(a.read_by.as_deref(), Some("sure"));

    // Three: the ranker's best is read first, and the sentence the model is sure of wins; it becomes
    // the answer sentence, cited, with the span the model read.
    let three = rightmodel_docs::AskParams { lm_read_sentences: 3, ..one.clone() };
    let reader = SureReader::new(other);
    let a = c.ask_with_reader(&e, q, 3, &three, &reader).unwrap();
    let seen = reader.seen();
    assert_eq!(seen[0], plain.sentence);
    assert!(seen.iter().any(|s| s == other), "{seen:?}");
    assert_eq!(a.sentence, other);
    assert_eq!(a.citations[0].text, other);
    assert_eq!(a.answer, "Today about");
    assert_eq!(a.span.as_ref().map(|s| s.text.as_str()), Some("Today about"));

    // Made-up answers everywhere leave the ranker's sentence and the span scorer's answer.
    let made_up = c.ask_with_reader(&e, q, 3, &three, &ParrotReader("Queen Victoria")).unwrap();
    assert_eq!((made_up.answer.as_str(), made_up.read_by.as_deref()), (plain.answer.as_str(), None));

    // The ranker's best sentence misread (the model's words are not in it) while the others are read,
    // unsure: the misreading does not hand the answer to a sentence the ranker put lower. The sentence
    // keeps its place and the span scorer's answer.
    let a = c.ask_with_reader(&e, q, 3, &three, &MisReader(plain.sentence.clone())).unwrap();
    assert_eq!((a.sentence.as_str(), a.answer.as_str()), (plain.sentence.as_str(), plain.answer.as_str()));
    assert_eq!(a.read_by, None);

    // Sentences whose best possible key cannot beat the best reading so far are not read: with weights
    // that ignore the readings, the ranker's best sentence is read and nothing else.
    let ignore = rightmodel_docs::ReadWeights { mean_log_prob: 0.0, match_f1: 0.0, passage_place: 0.0 };
    let bounded = rightmodel_docs::AskParams { read_weights: ignore, ..three };
    let reader = SureReader::new("");
    let a = c.ask_with_reader(&e, q, 3, &bounded, &reader).unwrap();
    assert_eq!(reader.seen(), vec![plain.sentence.clone()]);
    assert_eq!(a.sentence, plain.sentence);
}

/// A language model stand-in that misreads `misread` (a sure answer found nowhere in it) and reads
/// every other sentence's first two words, unsure of them.
struct MisReader(String);

impl rightmodel_core::PassageReader for MisReader {
    fn question_log_likelihood(&self, _q: &str, p: &[&str]) -> Result<Vec<f32>, rightmodel_core::ScoreError> {
        Ok(vec![0.0; p.len()])
    }
    fn read_answer(&self, context: &str, _question: &str) -> Result<Reading, rightmodel_core::ScoreError> {
        if context == self.0 {
            return Ok(Reading { text: "Queen Victoria".into(), log_prob: -0.2, tokens: 2 });
        }
        let text = context.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Ok(Reading { text, log_prob: -10.0, tokens: 2 })
    }
    fn model_id(&self) -> &str {
        "misreader"
    }
}

#[test]
fn a_reading_can_take_the_answer_from_a_later_passage() {
    let tmp = fixture_copy();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[tmp.path().join("docs")]).unwrap();
    let q = "When was the museum founded?";
    let plain = c.ask(&e, q, 3).unwrap();
    let second = plain.passages[1].clone();
    assert_ne!(second.text, plain.passages[0].text);

    // Reading the first passage only, the answer stays there.
    let first_only =
        rightmodel_docs::AskParams { lm_depth: 0, lm_read: true, lm_read_passages: 1, ..Default::default() };
    let a = c.ask_with_reader(&e, q, 3, &first_only, &SureReader::new(&second.text)).unwrap();
    assert_eq!(a.citations[0].passage_id, plain.passages[0].passage_id);

    // With the second passage's best sentence read too, the model's sure reading of it wins: the
    // answer and its citation point into that passage, at offsets inside it.
    let two = rightmodel_docs::AskParams { lm_read_passages: 2, ..first_only };
    let reader = SureReader::new(&second.text);
    let a = c.ask_with_reader(&e, q, 3, &two, &reader).unwrap();
    assert!(second.text.contains(&a.sentence), "{:?}", a.sentence);
    let cite = &a.citations[0];
    assert_eq!((cite.passage_id, cite.file.as_str()), (second.passage_id, second.file.as_str()));
    assert!(cite.start >= second.start && cite.end <= second.end);
    let span = a.span.expect("a span");
    assert!(span.start >= cite.start && span.end <= cite.end && a.sentence.starts_with(&span.text));
    // The passages keep their ranked order; only the answer moved. The ranker's confidence that the
    // collection answers the question stays (the chosen sentence's own lead is negative).
    assert_eq!(a.passages[0].passage_id, plain.passages[0].passage_id);
    assert!(
        a.margin < 0.0 && a.confidence >= plain.confidence,
        "{} {} vs {}",
        a.margin,
        a.confidence,
        plain.confidence
    );
    // An answer lists its k passages and cites one of them: with k = 1 only the first passage is read.
    let reader = SureReader::new(&second.text);
    let one = c.ask_with_reader(&e, q, 1, &two, &reader).unwrap();
    assert_eq!(one.citations[0].passage_id, plain.passages[0].passage_id);
    assert!(reader.seen().iter().all(|s| !second.text.contains(s.as_str())), "{:?}", reader.seen());
}

#[test]
fn a_one_passage_collection_does_not_inflate_confidence() {
    // With no other passage to lead, the lead counts as none (it used to count as the largest, which
    // made any answer from a one-paragraph file look sure).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("eiffel.txt");
    std::fs::write(&file, "The Eiffel Tower is in Paris. It was completed in 1889 for the World Fair.\n").unwrap();
    let e = HashEmbedder::default();
    let mut c = new_collection(&tmp);
    c.add_paths(&e, &[&file]).unwrap();
    assert_eq!(c.passage_count(), 1);
    let a = c.ask(&e, "Who designed the Eiffel Tower?", 3).unwrap();
    assert_eq!(a.margin, 0.0);
    // The file does not say who designed it: not a sure answer (0.85 with the old lead).
    assert!(a.confidence < 0.5, "{}", a.confidence);
    let off = c.ask(&e, "What is the boiling point of liquid nitrogen in kelvin?", 3).unwrap();
    assert!(off.is_low_confidence(), "unanswerable: {}", off.confidence);
}
