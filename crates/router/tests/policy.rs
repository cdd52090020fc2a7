//! Policy tests: one scenario per rule of `Router::decide`, with a fixed scorer so the difficulty is
//! known.

use std::sync::Arc;

use rightmodel_core::{ModelKind, Price};
use rightmodel_router::policy::{Capabilities, Domain, Needs};
use rightmodel_router::scorer::FixedScorer;
use rightmodel_router::{
    BudgetState, Calibration, Candidate, Limit, Message, Overrides, ReasonCode, RouteError, RouteRequest, Router,
    RouterConfig, RouterError, Scorer, Strategy,
};

fn local(name: &str, tier: f32) -> Candidate {
    let mut c = Candidate::new(name, ModelKind::LocalChat, Price::default(), tier, 50.0, 20.0);
    c.capabilities.logprobs = true;
    c
}

fn upstream(name: &str, tier: f32, price_out: f64) -> Candidate {
    Candidate::new(name, ModelKind::Upstream, Price::new(price_out / 4.0, price_out), tier, 300.0, 10.0)
}

fn router(cands: Vec<Candidate>, score: f32) -> Router {
    Router::new(cands, Arc::new(FixedScorer(score)), RouterConfig::default()).unwrap()
}

fn two(score: f32) -> Router {
    router(vec![local("small", 0.0), upstream("large", 1.0, 10.0)], score)
}

fn req(prompt: &str) -> RouteRequest {
    let mut r = RouteRequest::from_prompt(prompt);
    r.input_tokens = 1000;
    r.max_output_tokens = Some(500);
    r
}

fn no_budget() -> BudgetState {
    BudgetState::default()
}

#[test]
fn threshold_splits_easy_and_hard() {
    let d = two(0.2).decide(&req("hi"), &no_budget()).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.reason, ReasonCode::BelowThreshold);
    assert_eq!(d.score, Some(0.2));
    let d = two(0.8).decide(&req("prove it"), &no_budget()).unwrap();
    assert_eq!(d.served, "large");
    assert_eq!(d.reason, ReasonCode::AboveThreshold);
    // At exactly the threshold the strong model serves (score >= threshold).
    assert_eq!(two(0.5).decide(&req("x"), &no_budget()).unwrap().served, "large");
    // cost of the largest: 1000 in x 2.5/M + 500 out x 10/M
    let d = two(0.2).decide(&req("x"), &no_budget()).unwrap();
    assert!((d.cost_if_largest_usd - 0.0075).abs() < 1e-9, "{}", d.cost_if_largest_usd);
    assert_eq!(d.cost_usd, 0.0);
}

#[test]
fn a_key_allow_list_limits_the_candidates() {
    let mut r = req("prove it");
    r.allowed = Some(vec!["small".into()]);
    let d = two(0.9).decide(&r, &no_budget()).unwrap();
    assert_eq!(d.served, "small", "the strong model is off the key's list");
    assert!(d.candidates.iter().any(|c| c.name == "large" && c.excluded == Some(Limit::NotAllowed)));
    r.allowed = Some(vec!["other".into()]);
    let e = two(0.9).decide(&r, &no_budget()).unwrap_err();
    let api = e.to_api_error();
    assert_eq!(api.kind.status(), 403);
    assert_eq!(api.code.as_deref(), Some("model_not_allowed"));
    // When the models the key may use are kept out by another limit, that limit is the error.
    let three = router(vec![local("small", 0.0), upstream("mid", 0.5, 2.0), upstream("large", 1.0, 10.0)], 0.9);
    let mut r = req("prove it");
    r.allowed = Some(vec!["large".into()]);
    r.overrides.max_cost_usd = Some(1e-9);
    let api = three.decide(&r, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("max_cost_exceeded"), "{api:?}");
}

#[test]
fn three_tiers_take_bands_of_scores() {
    let cands = || vec![local("s", 0.0), upstream("m", 0.5, 2.0), upstream("l", 1.0, 10.0)];
    // Threshold .5: a candidate clears when d (1 - tier) < .5: s for d < .5, m for d < 1.
    assert_eq!(router(cands(), 0.4).decide(&req("x"), &no_budget()).unwrap().served, "s");
    assert_eq!(router(cands(), 0.7).decide(&req("x"), &no_budget()).unwrap().served, "m");
    // m clears while d (1 - .5) < .5, i.e. up to d < 1; at the edge the next tier serves.
    assert_eq!(router(cands(), 0.95).decide(&req("x"), &no_budget()).unwrap().served, "m");
    let d = router(cands(), 1.0).decide(&req("x"), &no_budget()).unwrap();
    assert_eq!(d.served, "l");
    let q: Vec<Option<f32>> = d.candidates.iter().map(|c| c.quality).collect();
    assert_eq!(q, vec![Some(0.0), Some(0.5), Some(1.0)]);
}

#[test]
fn configured_tiers_are_relative_so_the_calibrated_share_holds() {
    // The server gives local models tier 0.1: the threshold must still mean "strong when d >= t",
    // or a calibrated 30% strong share would become almost none (d >= t / 0.9).
    let scores: Vec<f32> = (0..100).map(|i| 0.45 + i as f32 * 0.002).collect();
    let cal = Calibration::from_scores(&scores, 0.3).unwrap();
    let rc = RouterConfig::from_calibration(&cal);
    let t = rc.threshold;
    let served = |d: f32| {
        let cands = vec![local("small", 0.1), upstream("large", 0.9, 10.0)];
        Router::new(cands, Arc::new(FixedScorer(d)), rc.clone()).unwrap().decide(&req("x"), &no_budget()).unwrap()
    };
    assert_eq!(served(t + 0.001).served, "large");
    assert_eq!(served(t - 0.001).served, "small");
    let strong = scores.iter().filter(|&&d| served(d).served == "large").count();
    assert!((25..=35).contains(&strong), "{strong} of 100 calibration scores escalate, want about 30");
    // Equally capable candidates: the cheapest serves whatever the score.
    let same = vec![local("small", 0.5), upstream("large", 0.5, 10.0)];
    let d = Router::new(same, Arc::new(FixedScorer(0.99)), rc.clone()).unwrap().decide(&req("x"), &no_budget());
    assert_eq!(d.unwrap().served, "small");
    // A strong share of 0 calibrates above every score: accepted, and nothing escalates.
    let never = RouterConfig { threshold: cal.threshold_for_share(0.0), ..rc };
    let r = Router::new(vec![local("small", 0.1), upstream("large", 0.9, 10.0)], Arc::new(FixedScorer(1.0)), never);
    assert_eq!(r.unwrap().decide(&req("x"), &no_budget()).unwrap().served, "small");
}

#[test]
fn threshold_and_strong_share_overrides() {
    let scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let cal = Calibration::from_scores(&scores, 0.3).unwrap();
    let r = Router::new(
        vec![local("small", 0.0), upstream("large", 1.0, 10.0)],
        Arc::new(FixedScorer(0.75)),
        RouterConfig::from_calibration(&cal),
    )
    .unwrap();
    // Config: 30% strong => threshold ~0.7 => 0.75 escalates.
    assert_eq!(r.decide(&req("x"), &no_budget()).unwrap().served, "large");
    // Request asks for 20% strong => threshold ~0.8 => stays small.
    let mut q = req("x");
    q.overrides.strong_share = Some(0.2);
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "small");
    assert!(d.base_threshold > 0.75);
    q.overrides.threshold = Some(0.1);
    assert_eq!(r.decide(&q, &no_budget()).unwrap().served, "large", "threshold wins over strong_share");
    // Without a calibration a share cannot be mapped: 400 naming the field.
    let mut q = req("x");
    q.overrides.strong_share = Some(0.2);
    let e = two(0.5).decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(e.kind.status(), 400);
    assert_eq!(e.param.as_deref(), Some("rightmodel.strong_share"));
}

#[test]
fn max_cost_limits_and_names_itself() {
    let mut q = req("x");
    q.overrides.max_cost_usd = Some(0.001);
    let d = two(0.9).decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.reason, ReasonCode::Constrained);
    assert_eq!(d.constrained_by, Some(Limit::MaxCost));
    assert_eq!(d.candidates[1].excluded, Some(Limit::MaxCost));

    let only_paid = router(vec![upstream("a", 0.5, 2.0), upstream("b", 1.0, 10.0)], 0.9);
    let e = only_paid.decide(&q, &no_budget()).unwrap_err();
    let api = e.to_api_error();
    assert_eq!(api.kind.status(), 422);
    assert_eq!(api.code.as_deref(), Some("max_cost_exceeded"));
    assert_eq!(api.param.as_deref(), Some("rightmodel.max_cost_usd"));
    assert!(api.message.contains("max_cost_usd=0.001"), "{}", api.message);
    assert!(matches!(e, RouteError::NoCandidate { limit: Limit::MaxCost, .. }));
}

#[test]
fn max_latency_uses_live_estimates() {
    let r = two(0.9);
    let mut q = req("x");
    // large: 300 ms + 499 x 10 ms = 5290 ms; small: 50 + 499 x 20 = 10030 ms.
    q.overrides.max_latency_ms = Some(6000.0);
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "large");
    q.overrides.max_latency_ms = Some(4000.0);
    let api = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("max_latency_exceeded"));
    assert_eq!(api.kind.status(), 422);
    // The server reports the large model got slow: it is now excluded at 6000 ms.
    for _ in 0..30 {
        r.candidates()[1].latency.observe(2000.0, 12000.0, 500);
    }
    q.overrides.max_latency_ms = Some(6000.0);
    assert!(r.decide(&q, &no_budget()).is_err());
}

#[test]
fn budget_raises_threshold_and_exhaustion_leaves_free_models() {
    let r = two(0.6);
    let full = BudgetState { daily_usd: Some(10.0), spent_today_usd: 0.0, ..Default::default() };
    let d = r.decide(&req("x"), &full).unwrap();
    assert_eq!(d.served, "large");
    assert_eq!(d.threshold, 0.5);
    // 75% spent: threshold 1 - 0.5 * sqrt(0.25) = 0.75 > 0.6 -> small.
    let low = BudgetState { daily_usd: Some(10.0), spent_today_usd: 7.5, ..Default::default() };
    let d = r.decide(&req("x"), &low).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.reason, ReasonCode::BudgetRaisedThreshold);
    assert!((d.threshold - 0.75).abs() < 1e-6);
    assert_eq!(d.budget, Some(low));
    // Spent: only free models, even for a hard prompt.
    let gone = BudgetState { daily_usd: Some(10.0), spent_today_usd: 10.0, ..Default::default() };
    let d = two(0.99).decide(&req("x"), &gone).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.candidates[1].excluded, Some(Limit::Budget));
    let paid = router(vec![upstream("a", 0.3, 1.0), upstream("b", 1.0, 10.0)], 0.1);
    let api = paid.decide(&req("x"), &gone).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("daily_budget_exhausted"));
    // A call that costs more than what is left is excluded too.
    let almost = BudgetState { daily_usd: Some(10.0), spent_today_usd: 9.999, ..Default::default() };
    assert_eq!(two(0.99).decide(&req("x"), &almost).unwrap().served, "small");
    // The other limit (a key's, beside the gateway's) counts in dollars even when this one steers the
    // threshold: an untouched budget with a nearly spent key still leaves only the free model.
    let key_nearly_spent = BudgetState { other_remaining_usd: Some(0.001), ..full };
    let d = two(0.99).decide(&req("x"), &key_nearly_spent).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.candidates[1].excluded, Some(Limit::Budget));
    assert_eq!(BudgetState { other_remaining_usd: Some(5.0), ..full }.remaining_usd(), Some(5.0));
    assert_eq!(BudgetState { other_remaining_usd: Some(-1.0), ..BudgetState::default() }.remaining_usd(), Some(0.0));
}

#[test]
fn a_budget_refusal_says_whose_limit_and_what_is_left_precisely() {
    let paid = router(vec![upstream("a", 0.3, 1.0), upstream("b", 1.0, 10.0)], 0.1);
    // The key's limit steers and leaves $0.00002: it is named, with that amount and the cheapest estimate.
    let key =
        BudgetState { daily_usd: Some(0.0011), spent_today_usd: 0.00108, other_remaining_usd: None, key_limit: true };
    let e = paid.decide(&req("x"), &key).unwrap_err().to_api_error();
    assert!(e.message.starts_with("this API key's daily limit of $0.0011 has $0.00002 left"), "{}", e.message);
    assert!(e.message.contains("likely cost of $0.00075 (a)"), "{}", e.message);
    assert_eq!(e.param.as_deref(), Some("key.daily_spend_usd"));
    // The gateway's budget spent: named as such, with its setting.
    let gone = BudgetState { daily_usd: Some(10.0), spent_today_usd: 10.0, ..Default::default() };
    let e = paid.decide(&req("x"), &gone).unwrap_err().to_api_error();
    assert!(e.message.starts_with("the gateway's daily budget of $10.00 is spent"), "{}", e.message);
    assert_eq!(e.param.as_deref(), Some("budget.daily_usd"));
    // The gateway's budget steers (more of the key's is left in share) but the key leaves fewer dollars.
    let both = BudgetState {
        daily_usd: Some(0.002),
        spent_today_usd: 0.0015,
        other_remaining_usd: Some(0.0001),
        key_limit: false,
    };
    let e = paid.decide(&req("x"), &both).unwrap_err().to_api_error();
    assert!(e.message.starts_with("this API key's daily limit has $0.0001 left"), "{}", e.message);
}

#[test]
fn a_huge_max_tokens_is_estimated_as_the_server_holds_it_and_still_needs_its_context() {
    // "No limit" as 2^32 - 1: estimates count 4,096 answer tokens, as admission holds them, so a paid
    // model is not priced out of a budget it fits; the cost the decision reports is that estimate.
    let r = two(0.99);
    let mut q = req("x");
    q.max_output_tokens = Some(u32::MAX);
    let budget = BudgetState { daily_usd: Some(1.0), ..Default::default() };
    let d = r.decide(&q, &budget).unwrap();
    assert_eq!(d.served, "large");
    // 1000 in x 2.5/M + 4096 out x 10/M
    assert!((d.cost_usd - (0.0025 + 0.04096)).abs() < 1e-9, "{}", d.cost_usd);
    // The context check sees all of it: a model whose context cannot hold the answer asked for is out.
    let mut small = local("small", 0.0);
    small.capabilities.context_tokens = Some(8192);
    let r = router(vec![small, upstream("large", 1.0, 10.0)], 0.1);
    let mut q = req("x");
    q.max_output_tokens = Some(8000);
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.candidates[0].excluded, Some(Limit::Context));
}

#[test]
fn calibrated_budget_shrinks_the_strong_share() {
    let scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
    let cal = Calibration::from_scores(&scores, 0.4).unwrap();
    let make = |s: f32| {
        Router::new(
            vec![local("small", 0.0), upstream("large", 1.0, 10.0)],
            Arc::new(FixedScorer(s)),
            RouterConfig::from_calibration(&cal),
        )
        .unwrap()
    };
    // 75% spent: share 0.4 * sqrt(0.25) = 0.2 -> threshold at the 80th percentile (~0.8).
    let low = BudgetState { daily_usd: Some(10.0), spent_today_usd: 7.5, ..Default::default() };
    let d = make(0.7).decide(&req("x"), &low).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.reason, ReasonCode::BudgetRaisedThreshold);
    assert!((d.threshold - 0.8).abs() < 0.01, "{}", d.threshold);
    assert_eq!(make(0.85).decide(&req("x"), &low).unwrap().served, "large");
    // Untouched budget: the calibrated threshold as is.
    let full = BudgetState { daily_usd: Some(10.0), spent_today_usd: 0.0, ..Default::default() };
    let d = make(0.7).decide(&req("x"), &full).unwrap();
    assert_eq!(d.threshold, d.base_threshold);
    assert_eq!(d.served, "large");
}

#[test]
fn explain_keeps_explainable_models_only() {
    let mut big = upstream("large", 1.0, 10.0);
    big.explainable = false;
    let mut small = local("small", 0.0);
    small.explainable = true;
    let r = router(vec![small, big], 0.9);
    let mut q = req("x");
    q.overrides.explain = Some(true);
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "small");
    assert_eq!(d.constrained_by, Some(Limit::Explain));
    let none = two(0.1);
    let api = none.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("no_explainable_model"));
    assert_eq!(api.param.as_deref(), Some("rightmodel.explain"));
}

#[test]
fn domain_model_serves_confident_in_domain_requests() {
    let mut clf = Candidate::new("banking-intents", ModelKind::Classifier, Price::default(), 0.2, 5.0, 0.0);
    clf.domain = Some(Domain {
        name: "banking".into(),
        fit: Arc::new(|t: &str| {
            if t.contains("card") {
                Some(0.95)
            } else if t.contains("bank") {
                Some(0.4)
            } else {
                None
            }
        }),
        min_confidence: 0.8,
    });
    let r = router(vec![clf, local("small", 0.0), upstream("large", 1.0, 10.0)], 0.9);
    let d = r.decide(&req("my card was declined"), &no_budget()).unwrap();
    assert_eq!(d.served, "banking-intents");
    assert_eq!(d.reason, ReasonCode::DomainMatch);
    assert_eq!(d.candidates[0].domain_confidence, Some(0.95));
    // The same text after earlier turns is part of a conversation: a language model answers it.
    let mut later = req("my card was declined");
    later
        .conversation
        .messages
        .insert(0, Message { role: "user".into(), content: "Write a story about dragons".into() });
    later.conversation.messages.insert(1, Message { role: "assistant".into(), content: "Once upon a time".into() });
    let d = r.decide(&later, &no_budget()).unwrap();
    assert_eq!((d.served.as_str(), d.candidates[0].excluded), ("large", Some(Limit::Domain)));
    // Instructions before the one turn do not count as turns.
    let mut instructed = req("my card was declined");
    instructed.conversation.messages.insert(0, Message { role: "system".into(), content: "Be brief.".into() });
    assert_eq!(r.decide(&instructed, &no_budget()).unwrap().served, "banking-intents");
    // In the domain but not confident enough, or out of it: general routing.
    let d = r.decide(&req("which bank is best"), &no_budget()).unwrap();
    assert_eq!(d.served, "large");
    assert_eq!(d.candidates[0].excluded, Some(Limit::Domain));
    // Only task models and none recognises the request: 422 out_of_domain.
    let mut only = Candidate::new("banking-intents", ModelKind::Classifier, Price::default(), 0.2, 5.0, 0.0);
    only.domain = Some(Domain { name: "banking".into(), fit: Arc::new(|_: &str| None), min_confidence: 0.5 });
    let api = router(vec![only], 0.5).decide(&req("hello"), &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("out_of_domain"));
    // With general models too, classifiers that do not know the request do not outvote the limit that
    // kept the general ones out.
    let unknowing = |name: &str| {
        let mut c = Candidate::new(name, ModelKind::Classifier, Price::default(), 0.2, 5.0, 0.0);
        c.domain = Some(Domain { name: "x".into(), fit: Arc::new(|_: &str| None), min_confidence: 0.5 });
        c
    };
    let r = router(vec![unknowing("c1"), unknowing("c2"), upstream("large", 1.0, 10.0)], 0.5);
    let mut q = req("hello");
    q.overrides.max_cost_usd = Some(1e-9);
    let api = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.code.as_deref(), Some("max_cost_exceeded"), "{}", api.message);
}

#[test]
fn several_choices_count_in_the_cost_and_leave_out_task_models() {
    let mut classifier = Candidate::new("intents", ModelKind::Classifier, Price::default(), 0.2, 5.0, 0.0);
    classifier.domain = Some(Domain { name: "x".into(), fit: Arc::new(|_: &str| Some(0.99)), min_confidence: 0.5 });
    let r = router(vec![classifier, local("small", 0.0), upstream("large", 1.0, 10.0)], 0.2);
    assert_eq!(r.decide(&req("x"), &no_budget()).unwrap().served, "intents");
    let mut q = req("x");
    q.choices = 3;
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "small", "a classifier answers one way only");
    assert_eq!(d.candidates[0].excluded, Some(Limit::Capability));
    // Three answers of up to 500 tokens: 1000 in x 2.5/M + 1500 out x 10/M.
    assert!((d.cost_if_largest_usd - 0.0175).abs() < 1e-9, "{}", d.cost_if_largest_usd);
    // When only task models may serve, the error names `n`.
    q.allowed = Some(vec!["intents".into()]);
    let api = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!((api.code.as_deref(), api.param.as_deref()), (Some("capability_unavailable"), Some("n")));
    assert!(api.message.contains("3 choices (n)"), "{}", api.message);
}

#[test]
fn the_capability_error_names_the_field_that_kept_most_models_out() {
    // Two local models write at most 16 choices; the upstream one cannot call tools. Asking for tools
    // and 17 choices: `n` kept two models out, `tools` one.
    let capped = |name: &str| {
        let mut c = local(name, 0.0);
        c.capabilities.tools = true;
        c.capabilities.max_choices = Some(16);
        c
    };
    let r = router(vec![capped("small"), capped("small2"), upstream("large", 1.0, 10.0)], 0.5);
    let mut q = req("x");
    q.needs = Needs { tools: true, ..Needs::default() };
    q.choices = 17;
    let api = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(
        (api.code.as_deref(), api.param.as_deref()),
        (Some("capability_unavailable"), Some("n")),
        "{}",
        api.message
    );
    assert!(api.message.contains("17 choices (n)") && api.message.contains("tools"), "{}", api.message);
    // One of each: a tie goes to the first in the documented order.
    let r = router(vec![capped("small"), upstream("large", 1.0, 10.0)], 0.5);
    let api = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.param.as_deref(), Some("tools"));
}

#[test]
fn capabilities_and_context_window() {
    let mut small = local("small", 0.0);
    small.capabilities = Capabilities {
        tools: false,
        json_schema: false,
        logprobs: true,
        context_tokens: Some(1200),
        passthrough: false,
        max_choices: None,
    };
    let mut large = upstream("large", 1.0, 10.0);
    large.capabilities.tools = true;
    let r = router(vec![small, large], 0.1);
    let mut q = req("x");
    q.needs = Needs { tools: true, ..Needs::default() };
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.served, "large");
    assert_eq!(d.constrained_by, Some(Limit::Capability));
    // An image only a model it is passed on to can read: the large one, or nothing.
    let mut q = req("x");
    q.needs = Needs { passthrough: true, ..Needs::default() };
    assert_eq!(r.decide(&q, &no_budget()).unwrap().served, "large");
    let mut q = req("x");
    q.needs = Needs { tools: true, passthrough: true, ..Needs::default() };
    q.max_output_tokens = None;
    // (The small model could hold the context, but not the image.)
    assert_eq!(r.decide(&q, &no_budget()).unwrap().candidates[0].excluded, Some(Limit::Capability));
    // 1000 prompt + 500 output > 1200 context of the small model.
    let d = r.decide(&req("x"), &no_budget()).unwrap();
    assert_eq!(d.served, "large");
    assert_eq!(d.candidates[0].excluded, Some(Limit::Context));
    // Without max_tokens only the prompt (plus one token) must fit, as when the model is named.
    let mut q = req("x");
    q.max_output_tokens = None;
    assert_eq!(r.decide(&q, &no_budget()).unwrap().served, "small");
    // A cost cap that keeps out the large model, while the free one lacks the context: the message
    // quotes the model the cap kept out, not the free one.
    let mut q = req("x");
    q.overrides.max_cost_usd = Some(1e-9);
    let e = r.decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(e.kind.status(), 422);
    assert!(e.message.contains("(large)"), "{}", e.message);
}

#[test]
fn cascade_plans_small_then_large() {
    let r = two(0.9);
    let mut q = req("x");
    q.overrides.strategy = Some(Strategy::Cascade);
    let d = r.decide(&q, &no_budget()).unwrap();
    assert_eq!(d.strategy, Strategy::Cascade);
    assert_eq!(d.reason, ReasonCode::Cascade);
    assert_eq!(d.served, "small");
    let plan = d.cascade.unwrap();
    assert_eq!((plan.small.as_str(), plan.large.as_str()), ("small", "large"));
    assert!(plan.accept_logprobs(&[-0.01, -0.05]));
    assert!(!plan.accept_logprobs(&[-2.0, -3.0]));
    // Escalating costs both calls' time: small 10,030 ms + large 5,290 ms. A cap that each fits alone
    // but the pair does not leaves no plan; the chosen model serves directly.
    let mut capped = q.clone();
    capped.overrides.max_latency_ms = Some(11_000.0);
    let d = r.decide(&capped, &no_budget()).unwrap();
    assert!(d.cascade.is_none(), "{:?}", d.cascade);
    assert_eq!(d.served, "large");
    capped.overrides.max_latency_ms = Some(16_000.0);
    assert!(r.decide(&capped, &no_budget()).unwrap().cascade.is_some());
    // Without a model that returns log-probabilities there is no cascade.
    let plain = router(vec![upstream("a", 0.0, 1.0), upstream("b", 1.0, 10.0)], 0.9);
    let d = plain.decide(&q, &no_budget()).unwrap();
    assert!(d.cascade.is_none());
    assert_eq!(d.served, "b");
}

struct Failing;
impl Scorer for Failing {
    fn score(&self, _c: &rightmodel_router::Conversation) -> Result<f32, RouterError> {
        Err(RouterError::Eval("encoder down".into()))
    }
    fn name(&self) -> &str {
        "failing"
    }
}

#[test]
fn scorer_failure_falls_back_to_length() {
    let r = Router::new(
        vec![local("small", 0.0), upstream("large", 1.0, 10.0)],
        Arc::new(Failing),
        RouterConfig::default(),
    )
    .unwrap();
    let d = r.decide(&req("short"), &no_budget()).unwrap();
    assert!(d.score_fallback);
    assert_eq!(d.served, "small");
    let long = "word ".repeat(1000);
    assert_eq!(r.decide(&req(&long), &no_budget()).unwrap().served, "large");
}

#[test]
fn decision_json_is_compact_and_header_safe() {
    let mut small = local("klein-ü", 0.0);
    small.name = "klein-ü".into();
    let r = router(vec![small, upstream("large", 1.0, 10.0)], 0.2);
    let d = r.decide(&req("x"), &no_budget()).unwrap();
    let json = d.to_json();
    assert!(!json.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["served"], "klein-ü");
    assert_eq!(v["reason"], "below_threshold");
    assert!(v.get("cascade").is_none(), "absent fields are skipped");
    let h = d.to_header_value();
    assert!(h.is_ascii());
    let back: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert_eq!(back, v);
}

#[test]
fn bad_configuration_and_options_are_rejected() {
    assert!(Router::new(vec![], Arc::new(FixedScorer(0.5)), RouterConfig::default()).is_err());
    assert!(Router::new(vec![local("a", 0.0), local("a", 1.0)], Arc::new(FixedScorer(0.5)), RouterConfig::default())
        .is_err());
    let mut q = req("x");
    q.overrides = Overrides { max_cost_usd: Some(-1.0), ..Overrides::default() };
    let api = two(0.5).decide(&q, &no_budget()).unwrap_err().to_api_error();
    assert_eq!(api.kind.status(), 400);
    assert_eq!(api.param.as_deref(), Some("rightmodel.max_cost_usd"));
}

#[test]
fn single_candidate_needs_no_score() {
    let d = router(vec![local("only", 0.0)], 0.9).decide(&req("x"), &no_budget()).unwrap();
    assert_eq!(d.served, "only");
    assert_eq!(d.reason, ReasonCode::OnlyCandidate);
    assert_eq!(d.score, None);
}
