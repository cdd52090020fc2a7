//! What the router is asked: the conversation, its size, and the request's own limits and overrides.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::RouteError;
use crate::conversation::Conversation;

/// How a request is served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One call to the chosen model.
    #[default]
    Direct,
    /// The small model first; escalate when its confidence is low.
    Cascade,
}

/// Per-request options, as clients send them in `extra_body={"rightmodel": {...}}`. Every field is
/// optional and overrides the configuration for this request only. An unknown key is an error: a
/// misspelt cap (`max_cost` for `max_cost_usd`) must not be dropped without a word.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    /// Target share of strong calls, mapped to a threshold by the calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strong_share: Option<f32>,
    /// Score threshold (wins over `strong_share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Most this request may cost, in USD (estimated before the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Most this request may take, in milliseconds (estimated before the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Only models that can return evidence for their answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<bool>,
    /// Direct or cascade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Whether a local model may reuse a cached prompt prefix (default yes); `false` makes a greedy
    /// answer independent of earlier requests (see `SamplingParams::cache_prompt` in the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_prompt: Option<bool>,
}

impl Overrides {
    /// Parses and validates the `rightmodel` object of a request; errors name the field (HTTP 400).
    pub fn from_json(v: &Value) -> Result<Self, RouteError> {
        let Some(fields) = v.as_object() else {
            return Err(RouteError::invalid("rightmodel", "`rightmodel` must be an object"));
        };
        let mut o = Overrides::default();
        for (key, value) in fields {
            let param = format!("rightmodel.{key}");
            let bad = |what: &str| RouteError::invalid(&param, format!("`{key}` must be {what}, got {value}"));
            // A null leaves the option unset (lifting a configured default when merged over one).
            if value.is_null() {
                continue;
            }
            let number = || value.as_f64().filter(|x| x.is_finite());
            match key.as_str() {
                "strong_share" => o.strong_share = Some(number().ok_or_else(|| bad("a number from 0 to 1"))? as f32),
                "threshold" => o.threshold = Some(number().ok_or_else(|| bad("a number from 0 to 1"))? as f32),
                "max_cost_usd" => o.max_cost_usd = Some(number().ok_or_else(|| bad("a number of dollars"))?),
                "max_latency_ms" => o.max_latency_ms = Some(number().ok_or_else(|| bad("a number of milliseconds"))?),
                "explain" => o.explain = Some(value.as_bool().ok_or_else(|| bad("true or false"))?),
                "cache_prompt" => o.cache_prompt = Some(value.as_bool().ok_or_else(|| bad("true or false"))?),
                "strategy" => {
                    o.strategy = Some(match value.as_str().map(str::to_ascii_lowercase).as_deref() {
                        Some("direct") => Strategy::Direct,
                        Some("cascade") => Strategy::Cascade,
                        _ => return Err(bad("\"direct\" or \"cascade\"")),
                    })
                }
                _ => {
                    return Err(RouteError::invalid(
                        &param,
                        format!(
                            "unknown option `{key}`; the options are strong_share, threshold, max_cost_usd, \
                             max_latency_ms, explain, strategy and cache_prompt"
                        ),
                    ))
                }
            }
        }
        o.validate()?;
        Ok(o)
    }

    /// Checks ranges: shares and thresholds in `[0, 1]`, limits positive.
    pub fn validate(&self) -> Result<(), RouteError> {
        let unit = |v: Option<f32>, name: &str| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(RouteError::invalid(
                &format!("rightmodel.{name}"),
                format!("`{name}` must be between 0 and 1, got {x}"),
            )),
            _ => Ok(()),
        };
        unit(self.strong_share, "strong_share")?;
        unit(self.threshold, "threshold")?;
        let positive = |v: Option<f64>, name: &str| match v {
            Some(x) if !(x > 0.0 && x.is_finite()) => Err(RouteError::invalid(
                &format!("rightmodel.{name}"),
                format!("`{name}` must be a positive number, got {x}"),
            )),
            _ => Ok(()),
        };
        positive(self.max_cost_usd, "max_cost_usd")?;
        positive(self.max_latency_ms, "max_latency_ms")
    }
}

/// Features a request needs from the model that serves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// The request has `tools`.
    pub tools: bool,
    /// The request has a JSON-schema `response_format`.
    pub json_schema: bool,
    /// The client asked for `logprobs`.
    pub logprobs: bool,
    /// The request holds content only a model it is passed on to can read (images, `logit_bias`, ...).
    pub passthrough: bool,
}

/// One routing question.
#[derive(Debug, Clone, Default)]
pub struct RouteRequest {
    /// The conversation to serve.
    pub conversation: Conversation,
    /// Prompt tokens (estimated by the server's tokenizer or from characters).
    pub input_tokens: u64,
    /// `max_tokens` of the request as sent, if set: the context check needs room for all of it, while
    /// cost and latency estimates count at most [`super::RouterConfig::output_estimate_max`] of it (the
    /// router's default output estimate without it).
    pub max_output_tokens: Option<u32>,
    /// Choices asked for (`n`): each is an answer of up to `max_output_tokens`, so estimates count them
    /// all; 0 reads as 1.
    pub choices: u32,
    /// Per-request overrides.
    pub overrides: Overrides,
    /// Required features.
    pub needs: Needs,
    /// The only candidates the caller may use (an API key's allow-list); `None`: all of them.
    pub allowed: Option<Vec<String>>,
}

impl RouteRequest {
    /// A request for a single prompt with a token estimate from its text
    /// ([`rightmodel_core::tokens::text_tokens`]).
    pub fn from_prompt(prompt: &str) -> Self {
        RouteRequest {
            conversation: Conversation::from_prompt(prompt),
            input_tokens: rightmodel_core::tokens::text_tokens(prompt),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_validates_overrides() {
        let o = Overrides::from_json(
            &json!({"strong_share": 0.2, "max_cost_usd": 0.01, "strategy": "Cascade", "threshold": null}),
        )
        .unwrap();
        assert_eq!(o.strong_share, Some(0.2));
        assert_eq!(o.strategy, Some(Strategy::Cascade));
        assert_eq!(o.threshold, None);
        // Unknown keys (a misspelt cap) and wrong types name the field.
        for (v, param, says) in [
            (json!({"max_cost": 1e-9}), "rightmodel.max_cost", "unknown option `max_cost`"),
            (json!({"strong_share": "0.3"}), "rightmodel.strong_share", "must be a number from 0 to 1"),
            (json!({"explain": "yes"}), "rightmodel.explain", "must be true or false"),
            (json!({"strategy": 5}), "rightmodel.strategy", "\"direct\" or \"cascade\""),
        ] {
            let e = Overrides::from_json(&v).unwrap_err().to_api_error();
            assert_eq!(e.param.as_deref(), Some(param));
            assert!(e.message.contains(says), "{}", e.message);
        }
        let e = Overrides::from_json(&json!({"strong_share": 2})).unwrap_err();
        assert_eq!(e.to_api_error().param.as_deref(), Some("rightmodel.strong_share"));
        assert_eq!(e.to_api_error().kind.status(), 400);
        assert!(Overrides::from_json(&json!({"max_latency_ms": -5})).is_err());
        assert!(Overrides::from_json(&json!({"strategy": "sideways"})).is_err());
        assert!(Overrides::from_json(&json!([1])).is_err());
    }
}
