//! The daily spend budget and how it raises the routing threshold.
//!
//! With `f` the remaining fraction of the day's budget (1 = untouched, 0 = spent) and `γ` the
//! `budget_exponent` (default 0.5), the router shrinks the share of strong calls smoothly:
//!
//! ```text
//! share_eff(f) = share · f^γ            (when the router is calibrated: the usual case)
//! τ_eff(f)     = 1 - (1 - τ) · f^γ      (without a calibration: the same curve on the score scale)
//! ```
//!
//! where `share` is the configured (or requested) strong share and `τ` the base threshold; the
//! calibrated threshold for `share_eff` is then used. Both equal the base setting with the budget
//! untouched, move continuously and monotonically as money is spent, and reach "no strong calls" as
//! the budget runs out; with γ = 0.5 a quarter of the budget spent cuts the strong share by 13%, three
//! quarters by half. Working in share space keeps the curve meaningful whatever the spread of the
//! scorer's scores. At zero remaining, paid candidates are also excluded outright, so only free
//! (local) models serve.

use serde::{Deserialize, Serialize};

use crate::calibrate::Calibration;

/// Today's budget and spending, supplied by the server with each decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// Daily budget in USD; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Spent so far today in USD.
    #[serde(default)]
    pub spent_today_usd: f64,
    /// What another daily limit leaves in USD, when one applies too (the caller's key beside the
    /// gateway's budget): a paid model must fit both, whichever steers the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_remaining_usd: Option<f64>,
    /// True when `daily_usd` and `spent_today_usd` are the caller's API key's daily limit (and
    /// `other_remaining_usd` what the gateway's budget leaves); false when they are the gateway's. Lets a
    /// refusal say whose limit kept the paid models out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_limit: bool,
}

/// Dollars as people read them: cents for a dollar or more, otherwise enough digits to tell small
/// amounts apart ($0.00002 is not "$0.0000").
pub fn usd(x: f64) -> String {
    if x.abs() >= 1.0 {
        return format!("${x:.2}");
    }
    let s = format!("{x:.8}");
    let t = s.trim_end_matches('0');
    if t.split('.').nth(1).map_or(0, str::len) <= 2 {
        format!("${x:.2}")
    } else {
        format!("${t}")
    }
}

impl BudgetState {
    /// Remaining money today under every limit (`None` when unlimited), never negative.
    pub fn remaining_usd(&self) -> Option<f64> {
        let own = self.daily_usd.map(|d| (d - self.spent_today_usd).max(0.0));
        let other = self.other_remaining_usd.map(|r| r.max(0.0));
        match (own, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Remaining fraction in `[0, 1]` (1 when unlimited).
    pub fn remaining_fraction(&self) -> f64 {
        match self.daily_usd {
            Some(d) if d > 0.0 => ((d - self.spent_today_usd) / d).clamp(0.0, 1.0),
            Some(_) => 0.0,
            None => 1.0,
        }
    }

    /// True when a budget is set and nothing is left.
    pub fn exhausted(&self) -> bool {
        self.remaining_usd().is_some_and(|r| r <= 0.0)
    }

    /// Whether the limit that leaves the least is the caller's key's (see [`BudgetState::key_limit`]):
    /// the other limit when it leaves less than this one, else this one.
    pub fn key_binds(&self) -> bool {
        let own = self.daily_usd.map(|d| (d - self.spent_today_usd).max(0.0));
        let other_binds = match (own, self.other_remaining_usd) {
            (Some(a), Some(b)) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        self.key_limit != other_binds
    }

    /// Why no paid model may serve: whose limit leaves too little, what it leaves (with enough digits
    /// for small amounts) and, given the cheapest paid model it kept out (`cheapest`: name and
    /// estimate), what that would have cost.
    pub fn refusal_message(&self, cheapest: Option<(&str, f64)>) -> String {
        let key = self.key_binds();
        let whose = if key { "this API key's daily limit" } else { "the gateway's daily budget" };
        // The limit's whole amount is known only for the limit this state is about.
        let total = (key == self.key_limit).then_some(self.daily_usd).flatten();
        let of = total.map(|t| format!(" of {}", usd(t))).unwrap_or_default();
        let left = self.remaining_usd().unwrap_or(0.0);
        let state = if left <= 0.0 {
            format!("{whose}{of} is spent")
        } else {
            let cost = cheapest
                .map(|(name, c)| format!(", less than the cheapest paid model's likely cost of {} ({name})", usd(c)))
                .unwrap_or_default();
            format!("{whose}{of} has {} left{cost}", usd(left))
        };
        format!("{state}, and no free model can serve this request")
    }
}

/// The strong share left for base share `share` with `remaining` budget fraction (see the module
/// docs); `exponent` is γ.
pub fn budget_share(share: f32, remaining: f64, exponent: f32) -> f32 {
    share.clamp(0.0, 1.0) * (remaining.clamp(0.0, 1.0) as f32).powf(exponent.max(1e-3))
}

/// The effective threshold for base threshold `tau` with `remaining` budget fraction, for routers
/// without a calibration (see the module docs); `exponent` is γ.
pub fn budget_threshold(tau: f32, remaining: f64, exponent: f32) -> f32 {
    let f = remaining.clamp(0.0, 1.0) as f32;
    let tau = tau.clamp(0.0, 1.0);
    // Written as tau + (1 - tau)(1 - f^γ) so that an untouched budget gives exactly tau.
    tau + (1.0 - tau) * (1.0 - f.powf(exponent.max(1e-3)))
}

/// The effective threshold for base threshold `tau` with `remaining` budget fraction, for a router
/// calibrated by `cal` (see the module docs): the share `tau` sends, shrunk by the budget, turned back
/// into a threshold (never below `tau`).
///
/// A `tau` below the lowest calibration score sends every calibration prompt, as would any threshold
/// down there, so its share is 1 and the first cent spent would turn it into the lowest score seen (a
/// request's `threshold: 0` jumped to 0.48). The calibration's lowest band is therefore stretched down
/// to `tau`: the threshold starts at `tau` and rises continuously as the budget is spent.
pub fn calibrated_budget_threshold(cal: &Calibration, tau: f32, remaining: f64, exponent: f32) -> f32 {
    let stretched;
    let cal = match cal.quantiles.first() {
        Some(&lowest) if tau < lowest => {
            let mut c = cal.clone();
            c.quantiles[0] = tau;
            stretched = c;
            &stretched
        }
        _ => cal,
    };
    let share = budget_share(cal.share_at(tau), remaining, exponent);
    cal.threshold_for_share(share).max(tau)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_below_the_calibrated_scores_rises_from_itself() {
        let scores: Vec<f32> = (0..1000).map(|i| 0.48 + 0.42 * i as f32 / 999.0).collect();
        let cal = Calibration::from_scores(&scores, 0.3).unwrap();
        for tau in [0.0, 0.3, 0.6] {
            let mut last = tau;
            // Down to the last thousandth: at zero the threshold leaves the scale (nothing strong).
            for i in (1..=1000).rev() {
                let t = calibrated_budget_threshold(&cal, tau, i as f64 / 1000.0, 0.5);
                assert!(t >= last - 1e-6, "monotone at tau {tau}: {last} -> {t}");
                assert!(t - last < 0.05, "no jumps at tau {tau}: {last} -> {t} (remaining {i}/1000)");
                last = t;
            }
            assert_eq!(calibrated_budget_threshold(&cal, tau, 1.0, 0.5), tau);
            assert!(calibrated_budget_threshold(&cal, tau, 0.0, 0.5) > 1.0, "nothing strong at zero");
        }
        // A millionth of the budget spent moves a threshold of 0 by almost nothing (it jumped to 0.48).
        assert!(calibrated_budget_threshold(&cal, 0.0, 0.999_999, 0.5) < 0.01);
    }

    #[test]
    fn threshold_rises_smoothly_from_base_to_one() {
        assert_eq!(budget_threshold(0.4, 1.0, 0.5), 0.4);
        assert_eq!(budget_threshold(0.4, 0.0, 0.5), 1.0);
        let mut last = 0.4;
        for i in (0..100).rev() {
            let t = budget_threshold(0.4, i as f64 / 100.0, 0.5);
            assert!(t >= last, "monotone");
            assert!(t - last < 0.07, "no jumps: {} -> {}", last, t);
            last = t;
        }
        let quarter = budget_threshold(0.4, 0.75, 0.5);
        assert!((quarter - (1.0 - 0.6 * 0.75f32.sqrt())).abs() < 1e-6);
    }

    #[test]
    fn share_shrinks_smoothly_to_zero() {
        assert_eq!(budget_share(0.3, 1.0, 0.5), 0.3);
        assert_eq!(budget_share(0.3, 0.0, 0.5), 0.0);
        assert!((budget_share(0.3, 0.25, 0.5) - 0.15).abs() < 1e-6);
    }

    #[test]
    fn refusals_say_whose_limit_and_what_it_leaves() {
        // The key's limit steers: $0.00002 left of $0.0011.
        let key = BudgetState {
            daily_usd: Some(0.0011),
            spent_today_usd: 0.00108,
            other_remaining_usd: None,
            key_limit: true,
        };
        assert!(key.key_binds());
        let m = key.refusal_message(Some(("gpt", 0.0004)));
        assert!(m.starts_with("this API key's daily limit of $0.0011 has $0.00002 left"), "{m}");
        assert!(m.contains("likely cost of $0.0004 (gpt)") && !m.contains("$0.0000 "), "{m}");
        // The gateway's budget steers but the key leaves less: the key is named, without a total.
        let gw = BudgetState {
            daily_usd: Some(10.0),
            spent_today_usd: 9.0,
            other_remaining_usd: Some(0.0),
            key_limit: false,
        };
        assert!(gw.key_binds());
        assert!(
            gw.refusal_message(None).starts_with("this API key's daily limit is spent"),
            "{}",
            gw.refusal_message(None)
        );
        // The gateway's own budget spent.
        let spent = BudgetState { daily_usd: Some(10.0), spent_today_usd: 10.0, ..Default::default() };
        assert!(!spent.key_binds());
        assert!(spent.refusal_message(None).starts_with("the gateway's daily budget of $10.00 is spent"));
        assert_eq!(usd(0.00002), "$0.00002");
        assert_eq!(usd(0.0), "$0.00");
    }

    #[test]
    fn remaining() {
        let b = BudgetState { daily_usd: Some(10.0), spent_today_usd: 2.5, ..Default::default() };
        assert_eq!(b.remaining_usd(), Some(7.5));
        assert_eq!(b.remaining_fraction(), 0.75);
        assert!(!b.exhausted());
        let over = BudgetState { daily_usd: Some(10.0), spent_today_usd: 12.0, ..Default::default() };
        assert_eq!(over.remaining_usd(), Some(0.0));
        assert!(over.exhausted());
        assert_eq!(BudgetState::default().remaining_fraction(), 1.0);
        assert!(!BudgetState::default().exhausted());
    }
}
