//! Train, save, load and predict with the `fast` classifier on a small hand-made fixture.

mod common;

use common::{fixture, spec, HashEmbedder};
use rightmodel_tasks::eval::{self, EvalOptions};
use rightmodel_tasks::train::train_classifier;
use rightmodel_tasks::{data, plot, registry, Classifier, Mode, NoProgress};

/// The sentiment fixture's classifier, trained with `emb` into `dest` and loaded.
fn trained_sentiment(dest: &std::path::Path, emb: &HashEmbedder) -> Classifier {
    train_classifier(&spec(fixture("sentiment.csv"), "text", dest.to_path_buf()), emb, &NoProgress).unwrap();
    Classifier::load(dest).unwrap()
}

#[test]
fn train_save_load_predict_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sentiment");
    let emb = HashEmbedder::new();
    let out = train_classifier(&spec(fixture("sentiment.csv"), "text", dest.clone()), &emb, &NoProgress).unwrap();
    assert_eq!(out.manifest.labels, vec!["negative", "positive"]);
    assert!(out.manifest.validation.accuracy >= 0.75, "validation {:?}", out.manifest.validation.accuracy);
    assert_eq!(out.manifest.train_data.sha256.len(), 64);
    for f in [
        "classifier.json",
        "head.safetensors",
        "ngrams.json",
        "neighbours.safetensors",
        "neighbours.json",
        "metrics.md",
    ] {
        assert!(dest.join(f).is_file(), "{f} missing");
    }

    let clf = Classifier::load(&dest).unwrap();
    assert_eq!(clf.name(), "sentiment");
    assert_eq!(clf.mode(), Mode::Fast);
    assert_eq!(clf.labels(), ["negative", "positive"]);
    let texts = ["the plot was wonderful and charming", "the acting was dreadful and dull"];
    let preds = clf.predict(&emb, &texts, false).unwrap();
    assert_eq!(preds.len(), 2);
    assert_eq!(preds[0].label, "positive");
    assert_eq!(preds[1].label, "negative");
    for p in &preds {
        let total: f32 = p.probs.values().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert_eq!(p.confidence, p.probs[&p.label]);
        assert!((0.0..=1.0).contains(&p.in_domain));
        assert!(p.explanation.is_none());
    }
    // JSON shape the CLI and the server emit.
    let v = serde_json::to_value(&preds[0]).unwrap();
    for k in ["label", "confidence", "probs", "in_domain"] {
        assert!(v.get(k).is_some(), "{k} missing from {v}");
    }
    assert!(v.get("explanation").is_none());

    // Loading again gives the same answers (the saved head is the trained head).
    let again = Classifier::load(&dest).unwrap().predict(&emb, &texts, false).unwrap();
    assert_eq!(preds, again);

    // In-domain texts score higher than unrelated ones.
    let ood = ["quarterly revenue grew by three percent", "how many moons does jupiter have ?"];
    let in_scores = clf.predict(&emb, &["i found the story superb", "the ending was boring"], false).unwrap();
    let ood_scores = clf.predict(&emb, &ood, false).unwrap();
    let min_in = in_scores.iter().map(|p| p.in_domain).fold(1.0f32, f32::min);
    let max_ood = ood_scores.iter().map(|p| p.in_domain).fold(0.0f32, f32::max);
    assert!(min_in > max_ood, "in-domain {min_in} vs out-of-domain {max_ood}");
}

#[test]
fn explanations_point_at_sentiment_words() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("s");
    let emb = HashEmbedder::new();
    train_classifier(&spec(fixture("sentiment.tsv"), "sentence", dest.clone()), &emb, &NoProgress).unwrap();
    let clf = Classifier::load(&dest).unwrap();
    let cases = [
        ("the soundtrack was wonderful", "wonderful", "positive"),
        ("honestly the script felt tedious", "tedious", "negative"),
        ("i thought the cast was brilliant", "brilliant", "positive"),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let preds = clf.predict(&emb, &texts, true).unwrap();
    for ((_, word, label), p) in cases.iter().zip(&preds) {
        assert_eq!(&p.label, label);
        let e = p.explanation.as_ref().unwrap();
        assert_eq!(e.tokens[0].0, *word, "tokens {:?}", e.tokens);
        assert!(e.tokens[0].1 > 0.0, "the sentiment word should push towards the prediction");
        assert!(!e.neighbours.is_empty() && e.neighbours.len() <= 3);
        assert!(e.neighbours.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    }
    let v = serde_json::to_value(&preds[0]).unwrap();
    assert!(v["explanation"]["tokens"][0][0].is_string());
    assert!(v["explanation"]["neighbours"][0]["label"].is_string());
}

#[test]
fn all_three_formats_train_the_same_classes() {
    let emb = HashEmbedder::new();
    for (file, col) in [("sentiment.csv", "text"), ("sentiment.tsv", "sentence"), ("sentiment.jsonl", "text")] {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("m");
        let out = train_classifier(&spec(fixture(file), col, dest), &emb, &NoProgress).unwrap();
        assert_eq!(out.manifest.labels.len(), 2, "{file}");
        assert_eq!(out.manifest.train_data.rows + out.manifest.valid_data.rows, 80, "{file}");
    }
}

#[test]
fn embeddings_only_head_and_separate_validation_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    let emb = HashEmbedder::new();
    let mut s = spec(fixture("sentiment.csv"), "text", dest.clone());
    s.settings.ngrams = false;
    s.valid_path = Some(fixture("sentiment.jsonl"));
    let out = train_classifier(&s, &emb, &NoProgress).unwrap();
    assert_eq!(out.manifest.valid_data.rows, 80);
    assert!(!dest.join("ngrams.json").exists());
    let clf = Classifier::load(&dest).unwrap();
    assert_eq!(clf.predict(&emb, &["the story was superb"], false).unwrap()[0].label, "positive");
}

#[test]
fn existing_classifier_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    let emb = HashEmbedder::new();
    let s = spec(fixture("sentiment.csv"), "text", dest.clone());
    train_classifier(&s, &emb, &NoProgress).unwrap();
    let err = train_classifier(&s, &emb, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let mut forced = s.clone();
    forced.overwrite = true;
    train_classifier(&forced, &emb, &NoProgress).unwrap();
    assert!(Classifier::load(&dest).is_ok());

    // --force replaces classifiers, never other directories (replacing deletes the old one).
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("thesis.txt"), "important").unwrap();
    let mut other = forced.clone();
    other.dest = work.clone();
    let err = train_classifier(&other, &emb, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("not a classifier"), "{err}");
    assert!(work.join("thesis.txt").is_file());

    // Leftovers of a killed run (a process id that is not running) are swept by the next run.
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let host = if host.is_empty() { "host".to_string() } else { host };
    let stale = tmp.path().join(format!(".m.partial-{host}-{}-abc", u32::MAX - 1));
    let other_host = tmp.path().join(format!(".m.partial-elsewhere{host}-{}-abc", u32::MAX - 1));
    std::fs::create_dir(&other_host).unwrap();
    std::fs::create_dir(&stale).unwrap();
    train_classifier(&forced, &emb, &NoProgress).unwrap();
    if std::path::Path::new("/proc/self").exists() {
        assert!(!stale.exists(), "stale partial directory kept");
    }
    assert!(other_host.exists(), "another machine's run is not this machine's to judge");
}

#[test]
fn failure_midway_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    // Embedding the training texts succeeds, the validation texts fail.
    let emb = HashEmbedder::failing_after(1);
    let err = train_classifier(&spec(fixture("sentiment.csv"), "text", dest.clone()), &emb, &NoProgress);
    assert!(err.is_err());
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary directories left: {leftovers:?}");
}

#[test]
fn wrong_encoder_is_refused() {
    struct Wide;
    impl rightmodel_core::Embedder for Wide {
        fn embed(&self, t: &[&str]) -> Result<Vec<Vec<f32>>, rightmodel_core::EmbedError> {
            Ok(t.iter().map(|_| vec![1.0; 8]).collect())
        }
        fn dim(&self) -> usize {
            8
        }
        fn model_id(&self) -> &str {
            "other"
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let clf = trained_sentiment(&tmp.path().join("m"), &HashEmbedder::new());
    let err = clf.predict(&Wide, &["hello"], false).unwrap_err().to_string();
    assert!(err.contains("256-d"), "{err}");
    let err = clf.predict(&HashEmbedder::new(), &["  "], false).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn registry_resolves_names_and_paths() {
    let home = tempfile::tempdir().unwrap();
    let (dir, name) = registry::target_dir(home.path(), "reviews").unwrap();
    assert_eq!(name, "reviews");
    assert_eq!(dir, home.path().join("classifiers").join("reviews"));
    assert!(registry::target_dir(home.path(), "bad name!").is_err());
    let err = registry::resolve_in(home.path(), "reviews").unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");

    train_classifier(&spec(fixture("sentiment.csv"), "text", dir.clone()), &HashEmbedder::new(), &NoProgress).unwrap();
    assert_eq!(registry::resolve_in(home.path(), "reviews").unwrap(), dir);
    assert_eq!(registry::resolve_in(home.path(), dir.to_str().unwrap()).unwrap(), dir);
    assert_eq!(registry::list_in(home.path()).unwrap(), vec!["reviews"]);
}

#[test]
fn evaluation_reports_scores_speed_and_domain_separation() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = HashEmbedder::new();
    let clf = trained_sentiment(&tmp.path().join("m"), &emb);
    let ds = data::load_labelled(&fixture("sentiment.jsonl"), "text", "label").unwrap();
    let ood: Vec<String> =
        ["stock markets fell sharply today", "what year did the war end ?", "reset my card pin please"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let r = eval::evaluate(
        &clf,
        &emb,
        &ds,
        Some(("ood", &ood)),
        EvalOptions { batch: 16, latency_samples: 5 },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.metrics.n, 80);
    assert!(r.metrics.accuracy > 0.9);
    assert!(r.throughput > 0.0 && r.latency_n == 5);
    let d = r.domain.as_ref().unwrap();
    assert!(d.auc > 0.9, "auc {}", d.auc);
    let md = r.to_markdown();
    assert!(md.contains("macro-F1") && md.contains("AUC") && md.contains("Confusion matrix"));
    let png = tmp.path().join("confusion.png");
    // Drawing needs a system font; machines without one report an error instead of writing a file.
    match plot::confusion_png(&r.metrics, "test", &png) {
        Ok(()) => assert!(std::fs::metadata(&png).unwrap().len() > 1000),
        Err(e) => eprintln!("skipped PNG check: {e}"),
    }
}

#[test]
fn classifier_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Classifier>();
}

/// The hash embedder with its dimensions rotated: same size, different embeddings.
struct RotatedEmbedder(HashEmbedder);

impl rightmodel_core::Embedder for RotatedEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, rightmodel_core::EmbedError> {
        let mut out = self.0.embed(texts)?;
        out.iter_mut().for_each(|v| v.rotate_left(7));
        Ok(out)
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn model_id(&self) -> &str {
        "rotated-bow-256"
    }
}

#[test]
fn another_encoder_of_the_same_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = HashEmbedder::new();
    let clf = trained_sentiment(&tmp.path().join("sentiment"), &emb);
    assert!(clf.manifest().encoder.probe.is_some());
    let err = clf.predict(&RotatedEmbedder(HashEmbedder::new()), &["a wonderful film"], false).unwrap_err();
    assert!(err.to_string().contains("embeds differently"), "{err}");
    // The encoder it was trained with still works.
    assert_eq!(clf.predict(&emb, &["a wonderful film"], false).unwrap().len(), 1);
}

/// Keeps the notes a run reports (warnings among them).
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl rightmodel_tasks::Progress for Notes {
    fn note(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
}

impl Notes {
    fn warnings(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|n| n.starts_with("warning:")).cloned().collect()
    }
}

#[test]
fn validating_on_the_training_file_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = HashEmbedder::new();
    let mut s = spec(fixture("sentiment.csv"), "text", tmp.path().join("a"));
    s.valid_path = Some(fixture("sentiment.csv"));
    let notes = Notes::default();
    train_classifier(&s, &emb, &notes).unwrap();
    let w = notes.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("--valid") && w[0].contains("same file as --data") && w[0].contains("training rows"),
        "{w:?}"
    );

    // A copy is the same data under another name.
    let copy = tmp.path().join("copy.csv");
    std::fs::copy(fixture("sentiment.csv"), &copy).unwrap();
    s.valid_path = Some(copy);
    s.dest = tmp.path().join("b");
    let notes = Notes::default();
    train_classifier(&s, &emb, &notes).unwrap();
    assert!(notes.warnings().iter().any(|w| w.contains("same contents")), "{:?}", notes.warnings());

    // A different validation file, or none, is not warned about.
    for (valid, dest) in [(Some(fixture("sentiment.jsonl")), "c"), (None, "d")] {
        s.valid_path = valid;
        s.dest = tmp.path().join(dest);
        let notes = Notes::default();
        train_classifier(&s, &emb, &notes).unwrap();
        assert!(notes.warnings().is_empty(), "{:?}", notes.warnings());
    }
}

#[test]
fn max_train_is_an_upper_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = HashEmbedder::new();
    let mut s = spec(fixture("sentiment.csv"), "text", tmp.path().join("m3"));
    s.settings.max_train = Some(3);
    let out = train_classifier(&s, &emb, &NoProgress).unwrap();
    assert_eq!(out.manifest.train_data.rows, 3);
    s.settings.max_train = Some(1);
    s.dest = tmp.path().join("m1");
    let err = train_classifier(&s, &emb, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("--max-train 1") && err.contains("number of classes (2)"), "{err}");
    assert!(!s.dest.exists());
}

#[test]
fn a_missing_ngram_vocabulary_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("m");
    trained_sentiment(&dest, &HashEmbedder::new());
    std::fs::remove_file(dest.join("ngrams.json")).unwrap();
    let err = Classifier::load(&dest).err().expect("loading should fail").to_string();
    assert!(err.contains("ngrams.json: no such file"), "{err}");
}
