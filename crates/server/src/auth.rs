//! API keys: bearer tokens checked against sha256 hashes from the config, with per-key request-rate and
//! daily spend limits. Keys are never logged; only their configured names are. The table can be
//! replaced while the gateway runs ([`Auth::reload`], on SIGHUP): a key keeps its name's spend and rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderMap;
use parking_lot::{Mutex, RwLock};
use rightmodel_core::{ApiError, ErrorKind};
use sha2::{Digest, Sha256};

use crate::budget::SpendCounter;
use crate::config::KeyConfig;

/// Hex sha256 of a bearer token, as stored in the config. The token is hashed without surrounding
/// whitespace, as [`bearer_token`] reads it from a client: a key given with a pasted newline
/// (`serve --hash-key $'sk-a\n'`, a key file) must hash to what its clients will send.
pub fn hash_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
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
    /// Shared with the key's next configuration after a reload, as is `spend`.
    bucket: Arc<Mutex<Bucket>>,
    /// Dollars spent by this key today (requests still running when the keys are reloaded add to the
    /// same counter).
    pub spend: Arc<SpendCounter>,
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
        let (limit, at) = (k.config.daily_spend_usd, k.spend.committed_parts());
        if price.is_free() || limit <= 0.0 || at.total() + cost <= limit {
            return Ok(());
        }
        let what = format!("Key `{}`'s daily limit", k.config.name);
        Err(crate::budget::limit_refusal(&what, limit, at, cost, model, "insufficient_quota"))
    }

    /// Replaces the `old` dollars this request holds against the key's limit with `new`, refused like
    /// [`Caller::check_spend`] (nothing changes then) when a call to the paid `model` likely to cost
    /// `cost` (part of `new`) does not fit. Check and hold are one step, so concurrent requests cannot
    /// all pass a nearly spent limit.
    pub fn swap_hold(
        &self,
        model: &str,
        price: rightmodel_core::Price,
        cost: f64,
        old: f64,
        new: f64,
    ) -> Result<(), ApiError> {
        let Some(k) = &self.key else { return Ok(()) };
        let limit = k.config.daily_spend_usd;
        let limit = (!price.is_free() && limit > 0.0).then_some(limit);
        k.spend.swap_hold(old, new, limit).map_err(|others| {
            let what = format!("Key `{}`'s daily limit", k.config.name);
            // What this request's earlier calls cost (part of `new`) is spent, not held by others.
            let at = crate::budget::Committed { spent: others.spent + (new - cost).max(0.0), ..others };
            crate::budget::limit_refusal(&what, limit.unwrap_or_default(), at, cost, model, "insufficient_quota")
        })
    }

    /// The key's daily limit and what it has spent today plus what its running requests hold, when it
    /// has a limit.
    pub fn spend_limit(&self) -> Option<(f64, f64)> {
        self.spend_limit_parts().map(|(limit, at)| (limit, at.total()))
    }

    /// The key's daily limit and what it has spent and what its running requests hold, apart, when it
    /// has a limit (a refusal tells a limit spent from one held by running requests).
    pub fn spend_limit_parts(&self) -> Option<(f64, crate::budget::Committed)> {
        let k = self.key.as_ref()?;
        (k.config.daily_spend_usd > 0.0).then(|| (k.config.daily_spend_usd, k.spend.committed_parts()))
    }

    /// The refusal of a call to the paid `model`, likely to cost `cost`, by the key's daily limit, as a
    /// named model gets it ([`Caller::check_spend`]); `None` when the key has no limit or the call fits.
    pub fn spend_refusal(&self, model: &str, cost: f64) -> Option<ApiError> {
        let k = self.key.as_ref()?;
        let (limit, at) = self.spend_limit_parts()?;
        if at.total() + cost <= limit {
            return None;
        }
        let what = format!("Key `{}`'s daily limit", k.config.name);
        Some(crate::budget::limit_refusal(&what, limit, at, cost, model, "insufficient_quota"))
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
    /// Read per request (an `Arc` clone), replaced whole by [`Auth::reload`].
    by_hash: RwLock<Arc<HashMap<String, Arc<KeyState>>>>,
}

/// What [`Auth::reload`] changed, by key name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeysReloaded {
    /// Keys that are new.
    pub added: Vec<String>,
    /// Keys that are gone (their requests still running finish).
    pub removed: Vec<String>,
    /// Keys whose secret, limits or models changed.
    pub changed: Vec<String>,
}

impl Auth {
    /// Builds the table from the config; `spent_today` restores each key's spend after a restart.
    pub fn new(keys: &[KeyConfig], spent_today: &[(String, f64)]) -> Self {
        let auth = Auth::default();
        *auth.by_hash.write() = Arc::new(table(keys, &HashMap::new(), spent_today));
        auth
    }

    /// Replaces the keys with `keys` without a restart. A key is known by its name, or by its secret when
    /// it was renamed: one that stays keeps its spend today and its rate bucket whatever else changed (a
    /// rotated secret, a new limit, a new name), so a reload never resets what a key may still spend; a
    /// new one starts from `spent_today` (the log's spend by name). A reload that would leave no key at all is refused: it would open the gateway to
    /// anyone, which only a restart should do.
    pub fn reload(&self, keys: &[KeyConfig], spent_today: &[(String, f64)]) -> Result<KeysReloaded, String> {
        let current = self.table();
        if keys.is_empty() && !current.is_empty() {
            return Err("the configuration has no [[key]]; an open gateway needs a restart".into());
        }
        let old: HashMap<&str, &Arc<KeyState>> = current.values().map(|k| (k.config.name.as_str(), k)).collect();
        let mut report = KeysReloaded::default();
        for k in keys {
            match old.get(k.name.as_str()) {
                // A renamed key (same secret) is new by name; its spend carries over (see `table`).
                None => report.added.push(k.name.clone()),
                Some(o) if !same_key(&o.config, k) => report.changed.push(k.name.clone()),
                Some(_) => {}
            }
        }
        report.removed = old.keys().filter(|n| !keys.iter().any(|k| k.name == **n)).map(|n| n.to_string()).collect();
        report.removed.sort();
        let next = table(keys, &old, spent_today);
        *self.by_hash.write() = Arc::new(next);
        Ok(report)
    }

    fn table(&self) -> Arc<HashMap<String, Arc<KeyState>>> {
        self.by_hash.read().clone()
    }

    /// True when no keys are configured (open gateway).
    pub fn is_open(&self) -> bool {
        self.by_hash.read().is_empty()
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
        let key = self.by_hash.read().get(&hash_key(token)).cloned().ok_or_else(|| {
            ApiError::new(ErrorKind::Authentication, "Incorrect API key provided.").with_code("invalid_api_key")
        })?;
        Ok(Caller { key: Some(key) })
    }
}

/// The key table for `keys`: a key named in `old` (or, renamed, with the same secret there) shares its
/// spend and rate bucket, a new one starts from `spent_today`.
fn table(
    keys: &[KeyConfig],
    old: &HashMap<&str, &Arc<KeyState>>,
    spent_today: &[(String, f64)],
) -> HashMap<String, Arc<KeyState>> {
    keys.iter()
        .map(|k| {
            let same_secret = || {
                old.values()
                    .find(|o| {
                        o.config.sha256.eq_ignore_ascii_case(&k.sha256) && !keys.iter().any(|n| n.name == o.config.name)
                    })
                    .copied()
            };
            let (bucket, spend) = match old.get(k.name.as_str()).copied().or_else(same_secret) {
                Some(o) => (o.bucket.clone(), o.spend.clone()),
                None => {
                    let spend = SpendCounter::default();
                    if let Some((_, usd)) = spent_today.iter().find(|(n, _)| n == &k.name) {
                        spend.add(*usd);
                    }
                    let full = Bucket { tokens: f64::from(k.requests_per_minute), last: Instant::now() };
                    (Arc::new(Mutex::new(full)), Arc::new(spend))
                }
            };
            (k.sha256.to_ascii_lowercase(), Arc::new(KeyState { config: k.clone(), bucket, spend }))
        })
        .collect()
}

/// Whether two configurations of a key are the same (secret, limits, models).
fn same_key(a: &KeyConfig, b: &KeyConfig) -> bool {
    a.sha256.eq_ignore_ascii_case(&b.sha256)
        && a.requests_per_minute == b.requests_per_minute
        && a.daily_spend_usd == b.daily_spend_usd
        && a.models == b.models
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

    #[test]
    fn a_key_hashes_as_its_clients_send_it() {
        assert_eq!(hash_key("sk-a\n"), hash_key("sk-a"));
        assert_eq!(hash_key(" \tsk-a\r\n"), hash_key("sk-a"));
        let sent = bearer_token("Bearer sk-a ").expect("a token");
        assert_eq!(hash_key(sent), hash_key("sk-a\n"));
    }

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
    fn a_reload_keeps_each_keys_spend_and_rate_by_name() {
        let a = Auth::new(&[key(2, 1.0)], &[("t".into(), 0.4)]);
        let running = a.authenticate(&bearer("sk-test")).unwrap();
        running.reserve(0.1);
        // The secret is rotated and the limit raised; a second key arrives.
        let rotated = KeyConfig { sha256: hash_key("sk-new"), daily_spend_usd: 2.0, ..key(2, 1.0) };
        let other = KeyConfig { name: "o".into(), sha256: hash_key("sk-other"), ..key(0, 0.0) };
        let r = a.reload(&[rotated, other], &[("o".into(), 0.25)]).unwrap();
        assert_eq!(r, KeysReloaded { added: vec!["o".into()], removed: vec![], changed: vec!["t".into()] });
        assert_eq!(a.authenticate(&bearer("sk-test")).unwrap_err().kind, ErrorKind::Authentication);
        let t = a.identify(&bearer("sk-new")).unwrap();
        // Today's spend and the running request's hold carry over, under the new limit; the request
        // that started before the reload settles on the same counter.
        assert_eq!(t.spend_limit(), Some((2.0, 0.5)));
        running.release(0.1);
        running.add_spend(0.3);
        assert_eq!(t.spend_limit(), Some((2.0, 0.7)));
        // The rate bucket too: one of two requests was taken before the reload.
        t.admit().unwrap();
        assert_eq!(t.admit().unwrap_err().kind, ErrorKind::RateLimited);
        let o = a.identify(&bearer("sk-other")).unwrap();
        assert_eq!(o.key.as_ref().unwrap().spend.today(), 0.25);
        // Removing every key would open the gateway: refused, the keys stay.
        assert!(a.reload(&[], &[]).is_err());
        assert!(!a.is_open() && a.identify(&bearer("sk-other")).is_ok());
        let r = a.reload(&[key(2, 1.0)], &[]).unwrap();
        assert_eq!((r.removed, r.changed), (vec!["o".to_string()], vec!["t".to_string()]));
        // Renamed (same secret): still the same spend, not the log's $0 under the new name.
        a.reload(&[KeyConfig { name: "t2".into(), ..key(2, 1.0) }], &[]).unwrap();
        assert_eq!(a.identify(&bearer("sk-test")).unwrap().spend_limit(), Some((1.0, 0.7)));
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
