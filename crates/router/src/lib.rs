//! rightmodel's router: decides, per request, whether a small local model is enough or a larger one
//! is needed, and proves the choice with numbers.
//!
//! - [`scorer`]: the learned difficulty scorer ([`DifficultyScorer`]) - an embedding of the
//!   conversation from the local MiniLM (its input-embedding table, [`StaticEmbedder`], for speed;
//!   the full contextual encoder also works) plus cheap text features into a logistic model whose
//!   weights ship in the binary - and the [`Scorer`] trait with two baselines.
//! - [`policy`]: the [`Router`] over N [`Candidate`]s with per-request limits (`max_cost_usd`,
//!   `max_latency_ms`, `explain`), the daily budget, domain fit and the cascade plan; the
//!   [`Decision`] it returns serialises to compact JSON for headers and logs.
//! - [`cascade`]: confidence from token log-probabilities and the accept/escalate rule.
//! - [`train`], [`eval`], [`metrics`], [`calibrate`], [`report`]: training on the user's outcome
//!   data, RouteLLM's APGR/CPT metrics under grouped cross-validation, threshold calibration for a
//!   target strong share, and Markdown/SVG reports.
//! - [`compare`]: small vs large vs routed on the user's own prompts and expected answers (quality,
//!   latency, cost; a table and a chart), for `rightmodel eval route`.
//!
//! The library never loads models itself: it takes an [`rightmodel_core::Embedder`], so the server
//! and CLI pass the MiniLM encoder and tests pass a fake.

pub mod bench;
pub mod calibrate;
pub mod cascade;
pub mod compare;
pub mod conversation;
pub mod cv;
pub mod data;
pub mod error;
pub mod eval;
pub mod features;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod scorer;
pub mod train;

pub use calibrate::Calibration;
pub use cascade::{cascade_accept, CascadePlan, ConfidenceMeasure};
pub use conversation::{Conversation, Message};
pub use error::RouterError;
pub use features::static_embed::StaticEmbedder;
pub use policy::{
    BudgetState, Candidate, Capabilities, Decision, Domain, DomainFit, Limit, Overrides, ReasonCode, RouteError,
    RouteRequest, Router, RouterConfig, Strategy,
};
pub use scorer::{DifficultyScorer, RouterWeights, Scorer};
