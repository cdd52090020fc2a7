//! The shipped scorer with the real MiniLM store entry, when it is present (`rightmodel pull`);
//! skipped otherwise so the suite runs on machines without models.

use std::path::PathBuf;
use std::sync::Arc;

use rightmodel_core::{ModelKind, Price};
use rightmodel_router::bench::time_decisions;
use rightmodel_router::{
    BudgetState, Candidate, Conversation, DifficultyScorer, RouteRequest, Router, RouterConfig, RouterWeights, Scorer,
};

fn encoder_dir() -> Option<PathBuf> {
    let store = rightmodel_models::Store::new(&rightmodel_models::home::rightmodel_home());
    store.resolve_encoder("minilm-l6").ok()
}

#[test]
fn shipped_scorer_scores_and_decides_fast() {
    let Some(dir) = encoder_dir() else {
        eprintln!("skipped: the minilm-l6 encoder is not in the model store");
        return;
    };
    let scorer = DifficultyScorer::with_encoder_dir(RouterWeights::shipped().unwrap(), &dir, None).unwrap();
    let prompts = [
        "What is the capital of France?",
        "A landowner conveyed a tract of land to a trustee for the benefit of his grandchildren. Which of the \
         following best describes the interest of the grandchildren under the rule against perpetuities?\nA. vested\nB. contingent\nC. void\nD. executory\nAnswer:",
    ];
    let convs: Vec<Conversation> = prompts.iter().map(|p| Conversation::from_prompt(p)).collect();
    let batch = scorer.score_batch(&convs).unwrap();
    for (c, b) in convs.iter().zip(&batch) {
        let s = scorer.score(c).unwrap();
        assert!((0.0..=1.0).contains(&s));
        assert!((s - b).abs() < 1e-5, "batch and single scores agree");
    }

    let calibration = scorer.calibration().clone();
    let router = Router::new(
        vec![
            Candidate::new("small", ModelKind::LocalChat, Price::default(), 0.0, 80.0, 25.0),
            Candidate::new("large", ModelKind::Upstream, Price::new(2.5, 10.0), 1.0, 400.0, 15.0),
        ],
        Arc::new(scorer),
        RouterConfig::from_calibration(&calibration),
    )
    .unwrap();
    let req = RouteRequest::from_prompt(&"Please summarise the attached quarterly report for the board. ".repeat(20));
    let stats = time_decisions(&router, &req, &BudgetState::default(), 5, 50, || {}).unwrap();
    // The goal is p50 <= 10 ms on two cores; a loose bound keeps the test stable on busy machines.
    assert!(stats.p50_ms < 50.0, "{stats:?}");
}
