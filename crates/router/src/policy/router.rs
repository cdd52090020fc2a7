//! The decision: which candidate serves a request, under the request's limits and the budget.
//!
//! 1. Each candidate gets a cost estimate (`price` x prompt tokens and expected output tokens) and a
//!    latency estimate (live EWMAs); candidates that break a limit (capability, context window,
//!    `explain`, budget, `max_cost_usd`, `max_latency_ms`) are excluded. None left: a
//!    [`RouteError::NoCandidate`] naming the limit (HTTP 422).
//! 2. Task models with a [`super::Domain`] serve the request when they recognise it with at least
//!    their minimum confidence (the most confident one); otherwise they are out of the running.
//! 3. The scorer rates the conversation's difficulty `d`. Each candidate's predicted quality,
//!    relative to the largest model, is `q = 1 - d * (1 - tier)`; a candidate clears the bar when
//!    `q > 1 - threshold` (the largest always does). With two candidates (tiers 0 and 1) this is the
//!    classic rule "strong when `d >= threshold`";
//!    with more, each tier takes the band of scores it is good enough for.
//! 4. The cheapest feasible candidate that clears the bar serves; when none does (the adequate ones
//!    are excluded by limits), the feasible candidate with the highest predicted quality serves.
//! 5. In cascade mode, the cheapest feasible candidate that returns log-probabilities answers first
//!    and the plan names the candidate to escalate to.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::budget::{budget_threshold, calibrated_budget_threshold, BudgetState};
use super::candidate::{Candidate, Capabilities};
use super::decision::{CandidateEstimate, Decision, ReasonCode};
use super::error::{Limit, RouteError};
use super::request::{RouteRequest, Strategy};
use crate::calibrate::Calibration;
use crate::cascade::{CascadePlan, ConfidenceMeasure};
use crate::scorer::{LengthScorer, Scorer};

/// Router settings (from the configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// Score threshold at or above which a request needs the strong model.
    pub threshold: f32,
    /// Score distribution for `strong_share` overrides; without it such overrides are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Output tokens assumed when a request sets no `max_tokens`.
    pub default_output_tokens: u32,
    /// Most output tokens a cost or latency estimate counts, whatever the request's `max_tokens` (the
    /// server holds no more than this against budgets while a call runs, so its estimates and the
    /// router's agree): a client that sends a huge `max_tokens` as "no limit" must not price every paid
    /// model out of the day's budget. The context check sees the whole `max_tokens`.
    #[serde(default = "default_output_estimate_max")]
    pub output_estimate_max: u32,
    /// γ of the budget threshold curve (see [`super::budget`]).
    pub budget_exponent: f32,
    /// Default strategy.
    pub strategy: Strategy,
    /// Cascade: the small answer is kept when its confidence is at least this.
    pub cascade_min_confidence: f32,
    /// Cascade: how confidence is computed from log-probabilities.
    pub confidence_measure: ConfidenceMeasure,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            threshold: 0.5,
            calibration: None,
            default_output_tokens: 256,
            output_estimate_max: default_output_estimate_max(),
            budget_exponent: 0.5,
            strategy: Strategy::Direct,
            cascade_min_confidence: 0.6,
            confidence_measure: ConfidenceMeasure::GeoMean,
        }
    }
}

/// [`RouterConfig::output_estimate_max`] by default: 4,096 tokens.
fn default_output_estimate_max() -> u32 {
    4096
}

impl RouterConfig {
    /// The output tokens the estimates of a request count: its `max_tokens` up to
    /// [`RouterConfig::output_estimate_max`], or [`RouterConfig::default_output_tokens`] without one.
    pub fn estimated_output_tokens(&self, max_tokens: Option<u32>) -> u32 {
        max_tokens.map_or(self.default_output_tokens, |t| t.min(self.output_estimate_max))
    }

    /// Settings that take threshold and calibration from a trained scorer's calibration.
    pub fn from_calibration(c: &Calibration) -> Self {
        RouterConfig { threshold: c.threshold, calibration: Some(c.clone()), ..Default::default() }
    }
}

/// Routes requests between candidates.
pub struct Router {
    candidates: Vec<Candidate>,
    /// Each candidate's tier rescaled over the general candidates (see [`relative_tiers`]).
    rel_tier: Vec<f32>,
    scorer: Arc<dyn Scorer>,
    config: RouterConfig,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("candidates", &self.candidates.iter().map(|c| &c.name).collect::<Vec<_>>())
            .field("scorer", &self.scorer.name())
            .field("config", &self.config)
            .finish()
    }
}

/// Sort key for "cheapest": estimated cost, then latency, then lower tier.
fn cheaper(a: &CandidateEstimate, ta: f32, b: &CandidateEstimate, tb: f32) -> std::cmp::Ordering {
    a.cost_usd.total_cmp(&b.cost_usd).then(a.latency_ms.total_cmp(&b.latency_ms)).then(ta.total_cmp(&tb))
}

/// Tiers rescaled so that the least capable general candidate is 0 and the most capable 1.
///
/// The threshold is calibrated as "strong when `d >= threshold`", which is what `d (1 - tier) <
/// threshold` means only for tiers 0 and 1. Configured tiers are relative guesses (a local model at
/// 0.1, a mid-size upstream at 0.6): taken as they are, a weakest tier of 0.1 would need
/// `d >= threshold / 0.9`, above nearly every score the calibration saw, and the strong share would
/// collapse. Candidates that are all equally capable all clear the bar (the cheapest serves).
fn relative_tiers(candidates: &[Candidate]) -> Vec<f32> {
    let general = candidates.iter().filter(|c| c.domain.is_none()).map(|c| c.tier);
    let lo = general.clone().fold(f32::INFINITY, f32::min);
    let hi = general.fold(f32::NEG_INFINITY, f32::max);
    candidates
        .iter()
        .map(|c| match c.domain {
            Some(_) => c.tier,
            None if hi - lo > 1e-6 => (c.tier - lo) / (hi - lo),
            None => 1.0,
        })
        .collect()
}

fn round_to(v: f64, step: f64) -> f64 {
    (v / step).round() * step
}

impl Router {
    /// A router over `candidates` (at least one, unique names) scoring with `scorer`.
    pub fn new(candidates: Vec<Candidate>, scorer: Arc<dyn Scorer>, config: RouterConfig) -> Result<Self, RouteError> {
        if candidates.is_empty() {
            return Err(RouteError::Internal("the router has no candidates".into()));
        }
        let mut names = std::collections::HashSet::new();
        for c in &candidates {
            if !names.insert(c.name.as_str()) {
                return Err(RouteError::Internal(format!("candidate `{}` is listed twice", c.name)));
            }
            if !c.tier.is_finite() {
                return Err(RouteError::Internal(format!("candidate `{}` has no valid tier", c.name)));
            }
        }
        // Above 1 is allowed: a strong share of 0 calibrates to a threshold no score reaches.
        if !config.threshold.is_finite() || config.threshold < 0.0 {
            return Err(RouteError::Internal(format!("threshold {} is not a number >= 0", config.threshold)));
        }
        let rel_tier = relative_tiers(&candidates);
        Ok(Router { candidates, rel_tier, scorer, config })
    }

    /// The candidates.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    fn base_threshold(&self, req: &RouteRequest) -> Result<f32, RouteError> {
        let ov = &req.overrides;
        if let Some(t) = ov.threshold {
            return Ok(t);
        }
        if let Some(s) = ov.strong_share {
            return match &self.config.calibration {
                Some(c) => Ok(c.threshold_for_share(s)),
                None => Err(RouteError::invalid(
                    "rightmodel.strong_share",
                    "this router has no calibration; run `rightmodel router calibrate` or send `threshold`",
                )),
            };
        }
        Ok(self.config.threshold)
    }

    fn exclusion(
        &self,
        c: &Candidate,
        est: &CandidateEstimate,
        req: &RouteRequest,
        budget: &BudgetState,
    ) -> Option<Limit> {
        if req.allowed.as_ref().is_some_and(|a| !a.contains(&c.name)) {
            return Some(Limit::NotAllowed);
        }
        let caps = &c.capabilities;
        if missing_needs(caps, req).next().is_some() {
            return Some(Limit::Capability);
        }
        // Without max_tokens the model writes until its context is full, so the prompt plus one token
        // must fit; the default output length is for estimates, not a requirement.
        let out = req.max_output_tokens.map(u64::from).unwrap_or(1);
        if caps.context_tokens.is_some_and(|ctx| req.input_tokens + out > u64::from(ctx)) {
            return Some(Limit::Context);
        }
        if req.overrides.explain == Some(true) && !c.explainable {
            return Some(Limit::Explain);
        }
        if !c.is_free() && budget.remaining_usd().is_some_and(|r| r <= 0.0 || est.cost_usd > r) {
            return Some(Limit::Budget);
        }
        if req.overrides.max_cost_usd.is_some_and(|m| est.cost_usd > m) {
            return Some(Limit::MaxCost);
        }
        if req.overrides.max_latency_ms.is_some_and(|m| est.latency_ms > m) {
            return Some(Limit::MaxLatency);
        }
        None
    }

    /// The request field that kept the most models out for what they lack (among the models that
    /// count for the error, see [`Router::no_candidate`]); on a tie, the first in [`missing_needs`]'s
    /// order.
    fn blocking_need(&self, excluded: &[(String, Limit)], req: &RouteRequest, has_general: bool) -> &'static str {
        let count = |general_only: bool| {
            let mut counts = NEED_PARAMS.map(|p| (p, 0usize));
            let lacking = excluded
                .iter()
                .filter(|(_, l)| *l == Limit::Capability)
                .filter_map(|(n, _)| self.candidates.iter().find(|c| &c.name == n))
                .filter(|c| !general_only || c.domain.is_none());
            for c in lacking {
                for need in missing_needs(&c.capabilities, req) {
                    if let Some((_, k)) = counts.iter_mut().find(|(p, _)| *p == need) {
                        *k += 1;
                    }
                }
            }
            // `max_by_key` keeps the last of equals: reversed, the earlier need wins a tie.
            counts.iter().rev().filter(|(_, k)| *k > 0).max_by_key(|(_, k)| *k).map(|(p, _)| *p)
        };
        // Task models count only when no general model was kept out for what it lacks.
        (if has_general { count(true) } else { None }).or_else(|| count(false)).unwrap_or("model")
    }

    fn no_candidate(&self, estimates: &[CandidateEstimate], req: &RouteRequest, budget: &BudgetState) -> RouteError {
        let excluded: Vec<(String, Limit)> =
            estimates.iter().filter_map(|e| e.excluded.map(|l| (e.name.clone(), l))).collect();
        // Models off the key's list are named only when nothing else stood in the way: otherwise the
        // limit that kept out the models the key may use is the one to fix.
        // A task model (classifier) that does not know the request votes "domain"; when general models
        // exist, the limit that kept *them* out is the one to report.
        let has_general = self.candidates.iter().any(|c| c.domain.is_none());
        let general = |name: &str| self.candidates.iter().any(|c| c.name == name && c.domain.is_none());
        let on_list: Vec<Limit> = excluded
            .iter()
            .filter(|(n, _)| !has_general || general(n))
            .map(|(_, l)| *l)
            .filter(|l| *l != Limit::NotAllowed)
            .collect();
        // When the key's list leaves only task models, what kept them out is the answer.
        let on_list = if on_list.is_empty() {
            excluded.iter().map(|(_, l)| *l).filter(|l| *l != Limit::NotAllowed).collect()
        } else {
            on_list
        };
        let votes = if on_list.is_empty() { vec![Limit::NotAllowed] } else { on_list };
        // Name the limit that excluded the most candidates; on a tie, the request's own limits first.
        let order = [
            Limit::MaxCost,
            Limit::MaxLatency,
            Limit::Budget,
            Limit::Explain,
            Limit::Capability,
            Limit::Context,
            Limit::Domain,
            Limit::NotAllowed,
        ];
        let limit = order
            .iter()
            .copied()
            .max_by_key(|l| {
                (votes.iter().filter(|x| *x == l).count(), std::cmp::Reverse(order.iter().position(|o| o == l)))
            })
            .unwrap_or(Limit::Domain);
        // The estimates quoted are those of the models this limit kept out (a free model excluded for
        // its context window is not "the cheapest" a cost cap could have had).
        let kept_out = |l: Limit| estimates.iter().filter(move |e| e.excluded == Some(l));
        let cheapest = kept_out(Limit::MaxCost).min_by(|a, b| a.cost_usd.total_cmp(&b.cost_usd));
        let fastest = kept_out(Limit::MaxLatency).min_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms));
        let message = match limit {
            Limit::MaxCost => format!(
                "no model can serve this request within max_cost_usd={}: the cheapest estimate is ${:.6} ({})",
                req.overrides.max_cost_usd.unwrap_or(0.0),
                cheapest.map(|c| c.cost_usd).unwrap_or(0.0),
                cheapest.map(|c| c.name.as_str()).unwrap_or("-")
            ),
            Limit::MaxLatency => format!(
                "no model can serve this request within max_latency_ms={}: the fastest estimate is {:.0} ms ({})",
                req.overrides.max_latency_ms.unwrap_or(0.0),
                fastest.map(|c| c.latency_ms).unwrap_or(0.0),
                fastest.map(|c| c.name.as_str()).unwrap_or("-")
            ),
            Limit::Budget => budget.refusal_message(
                kept_out(Limit::Budget)
                    .min_by(|a, b| a.cost_usd.total_cmp(&b.cost_usd))
                    .map(|c| (c.name.as_str(), c.cost_usd)),
            ),
            Limit::Explain => "explain: true, but no model that can serve this request returns evidence".into(),
            Limit::Capability => {
                format!("no model that may serve this request supports what it needs ({})", needs_list(req))
            }
            Limit::Context => "the prompt plus max_tokens exceed every model's context window".into(),
            Limit::Domain => {
                "no model can serve this request: the only candidates are task models and none recognises it".into()
            }
            Limit::NotAllowed => "this API key may not use any model that `auto` could choose".into(),
        };
        let detail: Vec<String> = excluded.iter().map(|(n, l)| format!("{n}: {}", l.code())).collect();
        let param = match limit {
            Limit::Capability => self.blocking_need(&excluded, req, has_general),
            // A key's limit is its `[[key]]` entry's, not the gateway's `[budget]`.
            Limit::Budget if budget.key_binds() => "key.daily_spend_usd",
            l => l.param(),
        };
        RouteError::NoCandidate { limit, message: format!("{message} [{}]", detail.join(", ")), excluded, param }
    }

    /// Decides who serves `req` given today's `budget`, scoring the conversation when needed.
    pub fn decide(&self, req: &RouteRequest, budget: &BudgetState) -> Result<Decision, RouteError> {
        self.decide_inner(req, budget, None)
    }

    /// Like [`Router::decide`] with a difficulty computed beforehand (tests, batch replays).
    pub fn decide_with_score(
        &self,
        req: &RouteRequest,
        budget: &BudgetState,
        score: f32,
    ) -> Result<Decision, RouteError> {
        self.decide_inner(req, budget, Some(score))
    }

    fn decide_inner(
        &self,
        req: &RouteRequest,
        budget: &BudgetState,
        given: Option<f32>,
    ) -> Result<Decision, RouteError> {
        req.overrides.validate()?;
        let base = self.base_threshold(req)?;
        let tau = match (&self.config.calibration, budget.daily_usd) {
            (_, None) => base,
            _ if budget.remaining_fraction() >= 1.0 => base,
            (Some(cal), Some(_)) => {
                calibrated_budget_threshold(cal, base, budget.remaining_fraction(), self.config.budget_exponent)
            }
            (None, Some(_)) => budget_threshold(base, budget.remaining_fraction(), self.config.budget_exponent),
        };
        let out_tokens = self.config.estimated_output_tokens(req.max_output_tokens);
        let mut est: Vec<CandidateEstimate> = self
            .candidates
            .iter()
            .map(|c| CandidateEstimate {
                name: c.name.clone(),
                quality: None,
                cost_usd: round_to(
                    c.price.cost(req.input_tokens, u64::from(out_tokens) * u64::from(req.choices.max(1))),
                    1e-9,
                ),
                latency_ms: round_to(c.latency.estimate_ms(out_tokens), 0.1),
                excluded: None,
                domain_confidence: None,
            })
            .collect();
        for (c, e) in self.candidates.iter().zip(est.iter_mut()) {
            e.excluded = self.exclusion(c, e, req, budget);
        }
        let largest = self
            .candidates
            .iter()
            .zip(&est)
            .filter(|(c, _)| c.domain.is_none())
            .max_by(|(a, ea), (b, eb)| a.tier.total_cmp(&b.tier).then(ea.cost_usd.total_cmp(&eb.cost_usd)))
            .map(|(_, e)| e.cost_usd)
            .unwrap_or(0.0);
        let strategy = req.overrides.strategy.unwrap_or(self.config.strategy);
        let mut decision = Decision {
            served: String::new(),
            reason: ReasonCode::OnlyCandidate,
            constrained_by: None,
            score: None,
            score_fallback: false,
            threshold: tau,
            base_threshold: base,
            strategy,
            cascade: None,
            cost_usd: 0.0,
            cost_if_largest_usd: largest,
            candidates: Vec::new(),
            budget: budget.daily_usd.is_some().then_some(*budget),
        };

        // Task models: the most confident in-domain one serves. Only a request that is one turn (after
        // any system or developer instructions): a text that looks like their training data, asked after
        // earlier turns ("Write a story about dragons", then "I love this product"), is a conversation a
        // language model follows, not a text to label.
        let text = req.conversation.last_user();
        let one_turn = req.conversation.history().all(|m| m.role == "system" || m.role == "developer");
        let mut best_domain: Option<(usize, f32)> = None;
        for (i, c) in self.candidates.iter().enumerate() {
            let Some(d) = &c.domain else { continue };
            if est[i].excluded.is_some() {
                continue;
            }
            if !one_turn {
                est[i].excluded = Some(Limit::Domain);
                continue;
            }
            match d.fit.in_domain(text).filter(|&conf| conf >= d.min_confidence) {
                Some(conf) => {
                    est[i].domain_confidence = Some(conf);
                    if best_domain.is_none_or(|(_, b)| conf > b) {
                        best_domain = Some((i, conf));
                    }
                }
                None => est[i].excluded = Some(Limit::Domain),
            }
        }
        if let Some((i, _)) = best_domain {
            decision.served = self.candidates[i].name.clone();
            decision.reason = ReasonCode::DomainMatch;
            decision.cost_usd = est[i].cost_usd;
            decision.candidates = est;
            return Ok(decision);
        }

        let general: Vec<usize> = (0..self.candidates.len()).filter(|&i| self.candidates[i].domain.is_none()).collect();
        let feasible: Vec<usize> = general.iter().copied().filter(|&i| est[i].excluded.is_none()).collect();
        if feasible.is_empty() {
            return Err(self.no_candidate(&est, req, budget));
        }

        let score = if general.len() < 2 {
            None
        } else if let Some(s) = given {
            Some(s.clamp(0.0, 1.0))
        } else {
            match self.scorer.score(&req.conversation) {
                Ok(s) => Some(s.clamp(0.0, 1.0)),
                Err(e) => {
                    tracing::warn!(error = %e, "difficulty scoring failed; routing on prompt length");
                    decision.score_fallback = true;
                    LengthScorer.score(&req.conversation).ok()
                }
            }
        };
        decision.score = score;
        let d = score.unwrap_or(0.0);
        for &i in &general {
            est[i].quality = score.map(|s| ((1.0 - s * (1.0 - self.rel_tier[i])) * 1e4).round() / 1e4);
        }
        let quality = |i: usize| 1.0 - d * (1.0 - self.rel_tier[i]);
        let by_cost = |a: &usize, b: &usize| cheaper(&est[*a], self.rel_tier[*a], &est[*b], self.rel_tier[*b]);
        // The cheapest candidate among `pool` that clears the bar for threshold `t`, else the best one.
        // `q > 1 - t`, i.e. `d (1 - tier) < t`, written without the subtraction so that a score equal
        // to the threshold escalates exactly as in calibration and evaluation (`score >= threshold`).
        let clears = |i: usize, t: f32| self.rel_tier[i] >= 1.0 || d * (1.0 - self.rel_tier[i]) < t;
        let pick = |pool: &[usize], t: f32| -> Option<usize> {
            let clear = pool.iter().copied().filter(|&i| clears(i, t)).min_by(by_cost);
            clear
                .or_else(|| pool.iter().copied().max_by(|a, b| quality(*a).total_cmp(&quality(*b)).then(by_cost(b, a))))
        };
        let chosen = pick(&feasible, tau).unwrap_or(feasible[0]);
        let ideal = pick(&general, tau).unwrap_or(chosen);
        let ideal_base = pick(&general, base).unwrap_or(chosen);
        let cheapest_general = general.iter().copied().min_by(by_cost).unwrap_or(chosen);

        decision.reason = if general.len() == 1 {
            ReasonCode::OnlyCandidate
        } else if ideal != chosen {
            decision.constrained_by = est[ideal].excluded;
            ReasonCode::Constrained
        } else if ideal_base != ideal && quality(ideal_base) > quality(ideal) {
            ReasonCode::BudgetRaisedThreshold
        } else if chosen == cheapest_general {
            ReasonCode::BelowThreshold
        } else {
            ReasonCode::AboveThreshold
        };

        let mut served = chosen;
        if strategy == Strategy::Cascade {
            let small = feasible.iter().copied().filter(|&i| self.candidates[i].capabilities.logprobs).min_by(by_cost);
            if let Some(small) = small {
                let large = if chosen != small && quality(chosen) > quality(small) {
                    Some(chosen)
                } else {
                    feasible
                        .iter()
                        .copied()
                        .filter(|&i| i != small && self.rel_tier[i] > self.rel_tier[small])
                        .max_by(|a, b| self.rel_tier[*a].total_cmp(&self.rel_tier[*b]).then(by_cost(b, a)))
                };
                // An escalated request pays for and waits on both calls: the plan must fit the request's
                // limits and the budget as a pair, else the chosen model serves directly.
                let fits = |large: &usize| {
                    let (a, b) = (&est[small], &est[*large]);
                    let cost = a.cost_usd + b.cost_usd;
                    req.overrides.max_cost_usd.is_none_or(|m| cost <= m)
                        && req.overrides.max_latency_ms.is_none_or(|m| a.latency_ms + b.latency_ms <= m)
                        && (cost <= 0.0 || budget.remaining_usd().is_none_or(|r| cost <= r))
                };
                if let Some(large) = large.filter(fits) {
                    decision.constrained_by = None;
                    decision.cascade = Some(CascadePlan {
                        small: self.candidates[small].name.clone(),
                        large: self.candidates[large].name.clone(),
                        min_confidence: self.config.cascade_min_confidence,
                        measure: self.config.confidence_measure,
                    });
                    decision.reason = ReasonCode::Cascade;
                    served = small;
                }
            }
        }
        decision.served = self.candidates[served].name.clone();
        decision.cost_usd = est[served].cost_usd;
        decision.candidates = est;
        Ok(decision)
    }
}

/// What `req` asks of a model, in words, for the error when no model has it.
fn needs_list(req: &RouteRequest) -> String {
    let needs = &req.needs;
    let choices = format!("{} choices (n)", req.choices);
    let mut out = Vec::new();
    if needs.tools {
        out.push("tools the model decides to call");
    }
    if needs.json_schema {
        out.push("a JSON schema");
    }
    if needs.logprobs {
        out.push("logprobs");
    }
    if needs.passthrough {
        out.push("content only an upstream reads, such as images");
    }
    if req.choices > 1 {
        out.push(&choices);
    }
    if out.is_empty() {
        "plain text".into()
    } else {
        out.join(", ")
    }
}

/// The request fields a model may lack what they ask for: `tools`, `response_format`, `logprobs`,
/// `messages` (content only an upstream reads) and `n`, in the order a tie is broken.
const NEED_PARAMS: [&str; 5] = ["tools", "response_format", "logprobs", "messages", "n"];

/// The request fields (of [`NEED_PARAMS`], in its order) behind what `req` needs and a model with
/// `caps` lacks.
fn missing_needs<'a>(caps: &'a Capabilities, req: &'a RouteRequest) -> impl Iterator<Item = &'static str> + 'a {
    let needs = &req.needs;
    let missing = [
        needs.tools && !caps.tools,
        needs.json_schema && !caps.json_schema,
        needs.logprobs && !caps.logprobs,
        needs.passthrough && !caps.passthrough,
        caps.max_choices.is_some_and(|m| req.choices.max(1) > m),
    ];
    NEED_PARAMS.into_iter().zip(missing).filter_map(|(param, m)| m.then_some(param))
}
