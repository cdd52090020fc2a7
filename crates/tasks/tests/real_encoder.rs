//! The same round trip with the real MiniLM encoder, when it is in the local model store (skipped
//! otherwise: `rightmodel pull` puts it there).

mod common;

use common::{fixture, spec};
use rightmodel_tasks::train::train_classifier;
use rightmodel_tasks::{Classifier, NoProgress};

fn encoder() -> Option<rightmodel_infer::MiniLm> {
    let home = rightmodel_models::home::rightmodel_home();
    let dir = rightmodel_models::Store::new(&home).resolve_encoder(rightmodel_models::DEFAULT_EMBED_MODEL).ok()?;
    rightmodel_infer::MiniLm::load(&dir).ok()
}

#[test]
fn minilm_classifier_explains_with_sentiment_words() {
    let Some(enc) = encoder() else {
        eprintln!("skipped: the MiniLM encoder is not in the local store");
        return;
    };
    rightmodel_infer::threads::configure_candle_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sentiment");
    let out = train_classifier(&spec(fixture("sentiment.csv"), "text", dest.clone()), &enc, &NoProgress).unwrap();
    assert!(out.manifest.validation.accuracy >= 0.8, "{:?}", out.manifest.validation);
    let clf = Classifier::load(&dest).unwrap();
    // Hand-made sentences, worded unlike the fixture's templates.
    let cases = [
        ("my friends and i thought the movie was fantastic", &["fantastic"][..], "positive"),
        ("a horrible waste of two hours", &["horrible", "waste"][..], "negative"),
        ("the performances were superb", &["superb"][..], "positive"),
        ("sadly the dialogue is boring", &["boring", "sadly"][..], "negative"),
        // Punctuation stuck to a word is not part of the word an explanation names.
        ("honestly, the ending was wonderful!", &["wonderful"][..], "positive"),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let preds = clf.predict(&enc, &texts, true).unwrap();
    for ((text, words, label), p) in cases.iter().zip(&preds) {
        assert_eq!(&p.label, label, "{text}");
        let e = p.explanation.as_ref().unwrap();
        let top = &e.tokens[0];
        assert!(words.contains(&top.0.as_str()), "{text}: top tokens {:?}", e.tokens);
        assert!(top.1 > 0.0, "{text}: {:?}", e.tokens);
    }
    // Sentences from another domain score lower than the training domain.
    let ood = clf.predict(&enc, &["What is the boiling point of water ?", "I want to cancel my card"], false).unwrap();
    let ind = clf.predict(&enc, &["the acting was dull", "i found the story charming"], false).unwrap();
    let max_ood = ood.iter().map(|p| p.in_domain).fold(0.0f32, f32::max);
    let min_in = ind.iter().map(|p| p.in_domain).fold(1.0f32, f32::min);
    assert!(min_in > max_ood, "in {min_in} vs out {max_ood}");
}

#[test]
fn finetuned_classifier_round_trip() {
    let Some(enc) = encoder() else {
        eprintln!("skipped: the MiniLM encoder is not in the local store");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ft");
    let mut s = finetune_spec(&dest);
    s.settings.epochs = 4;
    s.settings.batch_size = 8;
    s.settings.max_len = 32;
    s.settings.learning_rate = 2e-4;
    let t0 = std::time::Instant::now();
    let out = train_classifier(&s, &enc, &Print).unwrap();
    let ft = out.finetune.as_ref().unwrap();
    eprintln!(
        "fine-tuned in {:.1}s: {:?}, validation {:.3}",
        t0.elapsed().as_secs_f64(),
        ft,
        out.manifest.validation.accuracy
    );
    assert!(out.manifest.validation.accuracy >= 0.75, "{:?}", out.manifest.validation);
    assert!(dest.join("encoder").join("model.safetensors").is_file());
    // The mix with the fast head is decided on validation and recorded; its head is saved only when used.
    let w = out.manifest.settings.blend_weight.expect("blend weight recorded");
    assert!((0.0..=1.0).contains(&w));
    assert_eq!(dest.join("blend").join("head.safetensors").is_file(), w > 0.0, "weight {w}");
    let clf = Classifier::load(&dest).unwrap();
    assert_eq!(clf.mode(), rightmodel_tasks::Mode::Finetune);
    let preds = clf.predict(&enc, &["the film was wonderful and moving", "a dreadful , tedious plot"], true).unwrap();
    assert_eq!(preds[0].label, "positive");
    assert_eq!(preds[1].label, "negative");
    assert!(preds[0].explanation.as_ref().is_some_and(|e| !e.tokens.is_empty()));
}

#[test]
fn word_embeddings_change_only_when_trained() {
    let Some(enc) = encoder() else {
        eprintln!("skipped: the MiniLM encoder is not in the local store");
        return;
    };
    let key = "embeddings.word_embeddings.weight";
    let words = |dir: &std::path::Path| {
        let t = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
        t[key].to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let original = words(finetune_spec(tmp.path()).base_encoder.as_deref().unwrap());
    for train_embeddings in [false, true] {
        let dest = tmp.path().join(format!("ft-{train_embeddings}"));
        let mut s = finetune_spec(&dest);
        s.settings.epochs = 1;
        s.settings.batch_size = 16;
        s.settings.max_len = 16;
        s.settings.train_embeddings = train_embeddings;
        // The second run also trains each layer at its own rate (one optimiser per depth): the
        // embeddings, at the lowest rate, must still move.
        s.settings.layer_decay = train_embeddings.then_some(0.8);
        let out = train_classifier(&s, &enc, &NoProgress).unwrap();
        assert_eq!(out.manifest.settings.train_embeddings, train_embeddings);
        assert_eq!(out.manifest.settings.layer_decay, s.settings.layer_decay);
        let saved = words(&dest.join("encoder"));
        assert_eq!(saved.len(), original.len());
        let moved = saved.iter().zip(&original).filter(|(a, b)| a != b).count();
        if train_embeddings {
            assert!(moved > 0, "trained word embeddings were saved unchanged");
        } else {
            assert_eq!(moved, 0, "frozen word embeddings changed");
        }
        // The classifier loads and predicts from either.
        let clf = Classifier::load(&dest).unwrap();
        assert_eq!(clf.predict(&enc, &["a fine film"], false).unwrap().len(), 1);
    }
}

/// A fine-tuning spec for the sentiment fixture into `dest`, from the pulled MiniLM (present: callers
/// check [`encoder`] first), on two threads.
fn finetune_spec(dest: &std::path::Path) -> rightmodel_tasks::train::TrainSpec {
    rightmodel_infer::threads::configure_candle_threads(2);
    let home = rightmodel_models::home::rightmodel_home();
    let base = rightmodel_models::Store::new(&home).resolve_encoder(rightmodel_models::DEFAULT_EMBED_MODEL).unwrap();
    let mut s = spec(fixture("sentiment.csv"), "text", dest.to_path_buf());
    s.settings = rightmodel_tasks::train::default_settings(rightmodel_tasks::Mode::Finetune);
    s.base_encoder = Some(base);
    s
}

struct Print;
impl rightmodel_tasks::Progress for Print {
    fn note(&self, m: &str) {
        eprintln!("{m}");
    }
}
