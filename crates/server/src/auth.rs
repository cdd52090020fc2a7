//! API keys: bearer tokens checked against sha256 hashes from the config, with per-key request-rate and
//! daily spend limits. Keys are never logged; only their configured names are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use parking_lot::Mutex;
use rightmodel_core::{ApiError, ErrorKind};
use sha2::{Digest, Sha256};

use crate::budget::SpendCounter;
use crate::config::KeyConfig;

/// Hex sha256 of a bearer token, as stored in the config.
pub fn hash_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A per-key token bucket refilled at `rate` per minute, holding at most `rate` tokens (one minute's
/// burst).
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A configured key with its live limits.
#[derive(Debug)]
pub struct KeyState {
    /// The key's configuration (hash, limits, allowed models).
    pub config: KeyConfig,
    bucket: Mutex<Bucket>,
    /// Dollars spent by this key today.
    pub spend: SpendCounter,
}

/// Who is calling: the key's state, or anonymous when the gateway has no keys.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key, when keys are configured.
    pub key: Option<Arc<KeyState>>,
}

impl Caller {
    /// The key's configured name, for logs and metrics.
    pub fn name(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.config.name.as_str())
    }

    /// Takes one request from the key's per-minute rate: 429 with `Retry-After` when none is left.
    pub fn admit(&self) -> Result<(), ApiError> {
        let Some(key) = &self.key else { return Ok(()) };
        if key.config.requests_per_minute > 0 {
            let rate = f64::from(key.config.requests_per_minute);
            let mut b = key.bucket.lock();
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate / 60.0).min(rate);
            b.last = now;
            if b.tokens < 1.0 {
                let wait = ((1.0 - b.tokens) * 60.0 / rate).ceil().max(1.0) as u64;
                return Err(ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "Rate limit reached for key `{}`: {} requests per minute.",
                        key.config.name, key.config.requests_per_minute
                    ),
                )
                .with_code("rate_limit_exceeded")
                .with_retry_after(wait));
            }
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// 403 when the key may not use `model`.
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        match &self.key {
            Some(k) if !k.config.models.is_empty() && !k.config.models.iter().any(|m| m == model) => {
                Err(ApiError::new(
                    ErrorKind::PermissionDenied,
                    format!("This API key is not allowed to use the model `{model}`."),
                )
                .with_param("model")
                .with_code("model_not_allowed"))
            }
            _ => Ok(()),
        }
    }

    /// The models the gateway may serve this caller with when it chooses (routing, fallbacks, cascade
    /// escalation, document answers sent upstream): `None` when any will do, which is the case without
    /// keys, for a key with no list, and for a key whose list names only `auto` (it leaves the choice to
    /// the gateway). Otherwise the listed models, `auto` aside.
    pub fn allowed_models(&self) -> Option<Vec<String>> {
        let list = &self.key.as_ref()?.config.models;
        if list.iter().all(|m| m == "auto") {
            return None;
        }
        Some(list.iter().filter(|m| *m != "auto").cloned().collect())
    }

    /// Whether the gateway may serve this caller with `model` (see [`Caller::allowed_models`]).
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models().is_none_or(|list| list.iter().any(|m| m == model))
    }

    /// 429 when what is left of the key's daily limit (after today's spend and what its running
    /// requests hold) does not cover a call to the paid `model` likely to cost `cost`, 422 when the
    /// whole limit does not (free models still serve).
    pub fn check_spend(&self, model: &str, price: rightmodel_core::Price, cost: f64) -> Result<(), ApiError> {
        let Some(k) = &self.key else { return Ok(()) };
        let (limit, committed) = (k.config.daily_spend_usd, k.spend.committed());
        if price.is_free() || limit <= 0.0 || committed + cost <= limit {
            return Ok(());
        }
        let what = format!("Key `{}`'s daily limit", k.config.name);
        Err(crate::budget::limit_refusal(&what, limit, committed, cost, model, "insufficient_quota"))
    }

    /// The key's daily limit and what it has spent today plus what its running requests hold, when it
    /// has a limit.
    pub fn spend_limit(&self) -> Option<(f64, f64)> {
        let k = self.key.as_ref()?;
        (k.config.daily_spend_usd > 0.0).then(|| (k.config.daily_spend_usd, k.spend.committed()))
    }

    /// Holds `usd` against the key's limit while a paid request runs (see [`crate::budget::SpendCounter`]).
    pub fn reserve(&self, usd: f64) {
        if let Some(k) = &self.key {
            k.spend.reserve(usd);
        }
    }

    /// Releases a hold made with [`Caller::reserve`].
    pub fn release(&self, usd: f64) {
        if let Some(k) = &self.key {
            k.spend.release(usd);
        }
    }

    /// What the key's running requests hold against its limit.
    pub fn spend_held(&self) -> f64 {
        self.key.as_ref().map_or(0.0, |k| (k.spend.committed() - k.spend.today()).max(0.0))
    }

    /// Records `usd` spent against the key's daily limit.
    pub fn add_spend(&self, usd: f64) {
        if let Some(k) = &self.key {
            k.spend.add(usd);
        }
    }
}

/// The key table.
#[derive(Debug, Default)]
pub struct Auth {
    by_hash: HashMap<String, Arc<KeyState>>,
}

impl Auth {
    /// Builds the table from the config; `spent_today` restores each key's spend after a restart.
    pub fn new(keys: &[KeyConfig], spent_today: &[(String, f64)]) -> Self {
        let by_hash = keys
            .iter()
            .map(|k| {
                let spend = SpendCounter::default();
                if let Some((_, usd)) = spent_today.iter().find(|(n, _)| n == &k.name) {
                    spend.add(*usd);
                }
                let state = KeyState {
                    config: k.clone(),
                    bucket: Mutex::new(Bucket { tokens: f64::from(k.requests_per_minute), last: Instant::now() }),
                    spend,
                };
                (k.sha256.to_ascii_lowercase(), Arc::new(state))
            })
            .collect();
        Auth { by_hash }
    }

    /// True when no keys are configured (open gateway).
    pub fn is_open(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Checks the `Authorization` header and the key's request rate (its spend limit is checked where
    /// the model is known, [`Caller::check_spend`]).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.identify(headers)?;
        caller.admit()?;
        Ok(caller)
    }

    /// Who is calling, from the `Authorization` header, without taking from the key's request rate:
    /// for endpoints that are not requests to a model (`/v1/models`, `/metrics`), and for handlers
    /// that record the key before [`Caller::admit`] may refuse it (so a 429 row names its key).
    pub fn identify(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::default());
        }
        let header = headers.get(axum::http::header::AUTHORIZATION);
        let token = header.and_then(|v| v.to_str().ok()).and_then(bearer_token).ok_or_else(|| {
            // A header in another form is not a missing key: say what form is expected.
            let message = if header.is_some() {
                "The Authorization header must read `Bearer <key>`."
            } else {
                "You didn't provide an API key. Provide it in the Authorization header as `Bearer <key>`."
            };
            ApiError::new(ErrorKind::Authentication, message).with_code("missing_api_key")
        })?;
        let key = self.by_hash.get(&hash_key(token)).ok_or_else(|| {
            ApiError::new(ErrorKind::Authentication, "Incorrect API key provided.").with_code("invalid_api_key")
        })?;
        Ok(Caller { key: Some(key.clone()) })
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive and may be
/// followed by any whitespace (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_at(value.find(char::is_whitespace)?);
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rpm: u32, spend: f64) -> KeyConfig {
        KeyConfig {
            name: "t".into(),
            sha256: hash_key("sk-test"),
            requests_per_minute: rpm,
            daily_spend_usd: spend,
            models: vec!["a".into()],
        }
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn missing_and_wrong_keys_are_401() {
        let a = Auth::new(&[key(0, 0.0)], &[]);
        assert_eq!(a.authenticate(&HeaderMap::new()).unwrap_err().kind, ErrorKind::Authentication);
        assert_eq!(a.authenticate(&bearer("nope")).unwrap_err().kind, ErrorKind::Authentication);
        let c = a.authenticate(&bearer("sk-test")).unwrap();
        assert_eq!(c.name(), Some("t"));
        assert_eq!(c.check_model("b").unwrap_err().kind, ErrorKind::PermissionDenied);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("BEARER\tsk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("bearer   sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearersk-1"), None);
    }

    #[test]
    fn identify_takes_nothing_from_the_rate() {
        let a = Auth::new(&[key(1, 0.0)], &[]);
        for _ in 0..5 {
            a.identify(&bearer("sk-test")).unwrap();
        }
        let c = a.identify(&bearer("sk-test")).unwrap();
        c.admit().unwrap();
        assert_eq!(c.admit().unwrap_err().kind, ErrorKind::RateLimited);
    }

    #[test]
    fn rate_limit_is_429_with_retry_after() {
        let a = Auth::new(&[key(2, 0.0)], &[]);
        a.authenticate(&bearer("sk-test")).unwrap();
        a.authenticate(&bearer("sk-test")).unwrap();
        let e = a.authenticate(&bearer("sk-test")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.retry_after.unwrap() >= 1);
    }

    #[test]
    fn spend_limit_restored_from_log() {
        let a = Auth::new(&[key(0, 1.0)], &[("t".into(), 1.5)]);
        let caller = a.authenticate(&bearer("sk-test")).unwrap();
        let paid = rightmodel_core::Price::new(1.0, 2.0);
        assert_eq!(caller.check_spend("a", paid, 0.0).unwrap_err().code.as_deref(), Some("insufficient_quota"));
        // Free (local) models still serve a key that has spent its limit.
        caller.check_spend("local", rightmodel_core::Price::default(), 0.0).unwrap();
        assert_eq!(caller.spend_limit(), Some((1.0, 1.5)));
    }

    #[test]
    fn a_call_must_fit_what_is_left_of_the_limit() {
        let a = Auth::new(&[key(0, 1.0)], &[("t".into(), 0.4)]);
        let caller = a.authenticate(&bearer("sk-test")).unwrap();
        let paid = rightmodel_core::Price::new(1.0, 2.0);
        caller.check_spend("a", paid, 0.6).unwrap();
        let e = caller.check_spend("a", paid, 0.7).unwrap_err();
        assert!(e.message.contains("$0.60 left, less than this call's likely cost of $0.70"), "{}", e.message);
        // What running requests hold counts as spent.
        caller.reserve(0.5);
        assert!(caller.check_spend("a", paid, 0.2).is_err());
        caller.release(0.5);
        caller.check_spend("a", paid, 0.2).unwrap();
        // A call that costs more than the whole limit cannot wait for tomorrow: 422 naming max_tokens.
        let e = caller.check_spend("a", paid, 1.5).unwrap_err();
        assert_eq!((e.kind, e.param.as_deref(), e.retry_after), (ErrorKind::Unprocessable, Some("max_tokens"), None));
    }
}
