//! The learned scorer end to end with a tiny fake encoder: train on generated outcomes, save, load,
//! score, calibrate, and check that the shipped weights load.

use std::sync::Arc;

use rightmodel_core::{EmbedError, Embedder};
use rightmodel_router::data::{LabelledPrompt, Outcome};
use rightmodel_router::eval::CvConfig;
use rightmodel_router::features::cache::embed_all;
use rightmodel_router::features::EmbedSpec;
use rightmodel_router::pipeline::{train_weights, TrainOptions};
use rightmodel_router::scorer::Provenance;
use rightmodel_router::train::{LabelKind, TrainConfig};
use rightmodel_router::{Conversation, DifficultyScorer, RouterError, RouterWeights, Scorer};

/// 8-d "embedding": a bag of hashed words, L2-normalised. Words like "integral" land in their own
/// bucket, so a linear model can learn them.
struct FakeEncoder;

impl Embedder for FakeEncoder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0.01f32; 8];
                for w in t.split_whitespace() {
                    let h = w.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                    v[(h % 8) as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    }
    fn dim(&self) -> usize {
        8
    }
    fn model_id(&self) -> &str {
        "fake"
    }
}

/// Prompts in 6 groups; the ones mentioning "integral" need the strong model.
fn rows() -> Vec<LabelledPrompt> {
    let mut out = Vec::new();
    for g in 0..6 {
        for i in 0..40 {
            let hard = i % 3 == 0;
            let prompt = if hard {
                format!("topic{g} compute the integral of item {i} carefully")
            } else {
                format!("topic{g} name the colour of item {i}")
            };
            out.push(LabelledPrompt {
                group: Some(format!("g{g}")),
                conversation: Conversation::from_prompt(&prompt),
                outcome: if hard { Outcome { weak: 0.0, strong: 1.0 } } else { Outcome { weak: 1.0, strong: 1.0 } },
            });
        }
    }
    out
}

fn trained() -> RouterWeights {
    let rows = rows();
    let convs: Vec<Conversation> = rows.iter().map(|r| r.conversation.clone()).collect();
    let spec = EmbedSpec::default();
    let vecs = embed_all(&FakeEncoder, &convs, &spec, None, |_, _| {}).unwrap();
    let opts = TrainOptions {
        train: TrainConfig { label: LabelKind::Benefit, l2: 0.01, ..TrainConfig::default() },
        embed: spec,
        encoder: "fake".into(),
        strong_share: 0.4,
        cv: Some(CvConfig { folds: 3, ..CvConfig::default() }),
        provenance: Provenance { data: "generated".into(), command: "test".into(), ..Provenance::default() },
    };
    let t = train_weights(&rows, &vecs, &opts, |_| {}).unwrap();
    assert_eq!(t.calibration_warning, None, "240 varied prompts reach the target share");
    let (w, cv) = (t.weights, t.cv.unwrap());
    assert_eq!(cv.folds.len(), 3);
    // A perfect router scores about 0.83 here (a third of the prompts need the strong model).
    assert!(cv.pooled.learned.apgr > 0.8, "learned APGR {}", cv.pooled.learned.apgr);
    assert!(cv.pooled.learned.apgr > cv.pooled.random.apgr);
    w
}

#[test]
fn train_save_load_score() {
    let w = trained();
    assert_eq!(w.provenance.rows, 240);
    assert!(w.provenance.cv.is_some());
    let dir = tempfile::tempdir().unwrap();
    w.save(dir.path(), rightmodel_router::report::Existing::Replace).unwrap();
    let loaded = RouterWeights::load(dir.path()).unwrap();
    assert_eq!(loaded, w);
    let s = DifficultyScorer::load(dir.path(), Arc::new(FakeEncoder)).unwrap();
    let hard = s.score(&Conversation::from_prompt("topic9 compute the integral of x squared")).unwrap();
    let easy = s.score(&Conversation::from_prompt("topic9 name the colour of the sky")).unwrap();
    assert!(hard > easy, "hard {hard} easy {easy}");
    assert!((0.0..=1.0).contains(&hard) && (0.0..=1.0).contains(&easy));
    // Batch scoring agrees with one-by-one scoring.
    let batch = s
        .score_batch(&[
            Conversation::from_prompt("topic9 compute the integral of x squared"),
            Conversation::from_prompt("topic9 name the colour of the sky"),
        ])
        .unwrap();
    assert!((batch[0] - hard).abs() < 1e-6 && (batch[1] - easy).abs() < 1e-6);
    // The calibrated threshold (40% strong) separates the training distribution's hard and easy prompts.
    let t = s.calibration().threshold;
    let hard = s.score(&Conversation::from_prompt("topic1 compute the integral of item 4 carefully")).unwrap();
    let easy = s.score(&Conversation::from_prompt("topic1 name the colour of item 5")).unwrap();
    assert!(hard >= t && easy < t, "hard {hard} easy {easy} threshold {t}");
}

#[test]
fn conversations_score_with_history() {
    let s = DifficultyScorer::new(trained(), Arc::new(FakeEncoder)).unwrap();
    let conv = Conversation::parse_cell(
        r#"[{"role":"user","content":"compute the integral of sin"},{"role":"assistant","content":"-cos x"},{"role":"user","content":"and of cos?"}]"#,
    );
    let v = s.score(&conv).unwrap();
    assert!(v.is_finite());
}

#[test]
fn mismatched_or_corrupt_weights_are_rejected() {
    let w = trained();
    struct Wide;
    impl Embedder for Wide {
        fn embed(&self, t: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(t.iter().map(|_| vec![0.0; 16]).collect())
        }
        fn dim(&self) -> usize {
            16
        }
        fn model_id(&self) -> &str {
            "wide"
        }
    }
    assert!(matches!(DifficultyScorer::new(w.clone(), Arc::new(Wide)), Err(RouterError::EncoderMismatch { .. })));
    let dir = tempfile::tempdir().unwrap();
    assert!(RouterWeights::load(dir.path()).is_err(), "missing file");
    std::fs::write(dir.path().join("router.json"), "{not json").unwrap();
    assert!(RouterWeights::load(dir.path()).is_err());
    let mut bad = w;
    bad.model.head.weights.pop();
    std::fs::write(dir.path().join("router.json"), serde_json::to_string(&bad).unwrap()).unwrap();
    let e = RouterWeights::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model size"), "{e}");
}

#[test]
fn shipped_weights_load_and_are_small() {
    let w = RouterWeights::shipped().unwrap();
    assert_eq!(w.embedding_dim, 384);
    assert_eq!(w.encoder, "minilm-l6-static");
    assert!(w.uses_static_embeddings());
    assert!(w.provenance.rows > 5000);
    let size = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/weights/router.json")).unwrap().len();
    assert!(size < 1_000_000, "{size} bytes");
}
