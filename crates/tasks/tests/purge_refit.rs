//! A validation split of a phrase-level training file. `fast` mode: training rows that overlap
//! validation texts are left out while choosing C, and the saved head is refit on every row. `finetune`
//! mode: validation is whole sentences and the rows inside them are never trained on. With a validation
//! file nothing changes.

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, spec, HashEmbedder};
use rightmodel_tasks::manifest::{Manifest, MANIFEST_FILE};
use rightmodel_tasks::train::{train_classifier, REPORT_FILE};
use rightmodel_tasks::{Classifier, NoProgress, Progress};

/// Keeps the notes a run reports.
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl Progress for Notes {
    fn note(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
}

impl Notes {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A phrase-level file in the manner of SST-2: every sentence and some of its sub-phrases are rows of
/// their own, with the sentence's label. Returns the path and the number of rows.
fn phrase_file(dir: &Path) -> (PathBuf, usize) {
    let good = ["wonderful", "brilliant", "charming", "delightful", "superb", "moving"];
    let bad = ["dreadful", "tedious", "clumsy", "boring", "awful", "painful"];
    let nouns = ["plot", "script", "ending", "cast", "story", "soundtrack", "director's work"];
    let mut rows = Vec::new();
    for (i, noun) in nouns.iter().enumerate() {
        for (words, label) in [(&good, "positive"), (&bad, "negative")] {
            for j in 0..words.len() {
                let (a, b) = (words[(i + j) % words.len()], words[(i + 2 * j + 1) % words.len()]);
                let sentence = format!("honestly , the {noun} was {a} and {b} .");
                for phrase in [sentence.clone(), format!("the {noun} was {a}"), format!("{a} and {b}")] {
                    rows.push(format!("{phrase}\t{label}"));
                }
            }
        }
    }
    let path = dir.join("phrases.tsv");
    std::fs::write(&path, format!("sentence\tlabel\n{}\n", rows.join("\n"))).unwrap();
    (path, rows.len())
}

#[test]
fn a_split_chooses_c_without_overlapping_rows_and_refits_on_all_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, n) = phrase_file(tmp.path());
    let dest = tmp.path().join("phrases");
    let emb = HashEmbedder::new();
    let notes = Notes::default();
    let out = train_classifier(&spec(data, "sentence", dest.clone()), &emb, &notes).unwrap();
    let m = &out.manifest;
    let notes = notes.all();

    // Rows overlapping the split were set aside, said so, and recorded.
    let purged = m.settings.purged_rows.expect("purge recorded");
    assert!(purged > 0 && purged < m.train_data.rows, "{purged} of {}", m.train_data.rows);
    assert!(
        notes
            .iter()
            .any(|t| t.contains(&format!("{purged} of {}", m.train_data.rows))
                && t.contains("left out while choosing C")),
        "{notes:?}"
    );
    // The saved head was refit on every row; validation scores are still those of the chosen head.
    assert_eq!(m.settings.refit_rows, Some(n));
    assert_eq!(m.train_data.rows + m.valid_data.rows, n);
    assert_eq!(m.validation.n, m.valid_data.rows);
    assert!(notes.iter().any(|t| t.contains(&format!("refit on all {n} rows"))), "{notes:?}");
    let report = std::fs::read_to_string(dest.join(REPORT_FILE)).unwrap();
    assert!(report.contains(&format!("refit with that C on all {n} rows")), "{report}");
    assert!(report.contains(&format!("{purged} training rows that overlap validation texts left out")), "{report}");

    // The directory round-trips: the manifest reads back with the new fields, and the model predicts.
    let back = Manifest::read(&dest).unwrap();
    assert_eq!(back.settings, m.settings);
    let clf = Classifier::load(&dest).unwrap();
    let texts = ["the soundtrack was superb and charming", "the plot was tedious and awful"];
    let preds = clf.predict(&emb, &texts, true).unwrap();
    assert_eq!(preds[0].label, "positive");
    assert_eq!(preds[1].label, "negative");
    assert_eq!(Classifier::load(&dest).unwrap().predict(&emb, &texts, true).unwrap(), preds);
}

#[test]
fn a_validation_file_keeps_the_head_chosen_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    let emb = HashEmbedder::new();
    let mut s = spec(fixture("sentiment.csv"), "text", dest.clone());
    s.valid_path = Some(fixture("sentiment.jsonl"));
    let notes = Notes::default();
    let out = train_classifier(&s, &emb, &notes).unwrap();
    assert_eq!(out.manifest.settings.purged_rows, None);
    assert_eq!(out.manifest.settings.refit_rows, None);
    assert!(!notes.all().iter().any(|t| t.contains("overlap") || t.contains("refit")), "{:?}", notes.all());
    // The new fields are left out of the file when unused, so it reads exactly as before.
    let json = std::fs::read_to_string(dest.join(MANIFEST_FILE)).unwrap();
    assert!(!json.contains("purged_rows") && !json.contains("refit_rows"), "{json}");
    assert!(!std::fs::read_to_string(dest.join(REPORT_FILE)).unwrap().contains("refit"));
}

#[test]
fn manifests_without_the_new_fields_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    let emb = HashEmbedder::new();
    train_classifier(&spec(fixture("sentiment.csv"), "text", dest.clone()), &emb, &NoProgress).unwrap();
    let path = dest.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let settings = v["settings"].as_object_mut().unwrap();
    assert!(settings.contains_key("refit_rows"), "a split run records the refit");
    settings.remove("refit_rows");
    settings.remove("purged_rows");
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let m = Manifest::read(&dest).unwrap();
    assert_eq!((m.settings.purged_rows, m.settings.refit_rows), (None, None));
    assert!(Classifier::load(&dest).is_ok());
}

#[test]
fn finetuning_holds_out_whole_sentences_and_never_trains_on_their_phrases() {
    let home = rightmodel_models::home::rightmodel_home();
    let store = rightmodel_models::Store::new(&home);
    let Some((base, enc)) = store
        .resolve_encoder(rightmodel_models::DEFAULT_EMBED_MODEL)
        .ok()
        .and_then(|dir| rightmodel_infer::MiniLm::load(&dir).ok().map(|enc| (dir, enc)))
    else {
        eprintln!("skipped: the MiniLM encoder is not in the local store");
        return;
    };
    rightmodel_infer::threads::configure_candle_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let (data, n) = phrase_file(tmp.path());
    let dest = tmp.path().join("ft");
    let mut s = spec(data, "sentence", dest.clone());
    s.settings = rightmodel_tasks::train::default_settings(rightmodel_tasks::Mode::Finetune);
    s.settings.valid_split = 0.2;
    s.settings.epochs = 1;
    s.settings.batch_size = 16;
    s.settings.max_len = 32;
    s.base_encoder = Some(base);
    let notes = Notes::default();
    let out = train_classifier(&s, &enc, &notes).unwrap();
    let m = &out.manifest;
    let left_out = m.settings.purged_rows.expect("rows inside validation sentences recorded");
    assert!(left_out > 0, "{:?}", m.settings);
    assert_eq!(m.train_data.rows + m.valid_data.rows + left_out, n);
    assert!(m.valid_data.path.contains("texts no other row contains"), "{}", m.valid_data.path);
    assert!(
        notes.all().iter().any(|t| t.contains("whole texts") && t.contains("left out of training")),
        "{:?}",
        notes.all()
    );
    // 20% of each class's 42 sentences (no phrase is a whole text here).
    assert_eq!(m.valid_data.rows, 16, "{:?}", m.valid_data);
    assert_eq!(m.settings.refit_rows, None);
}
