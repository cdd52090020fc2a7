//! rightmodel's OpenAI-compatible HTTP gateway.
//!
//! A request is taken in by the server loop ([`intake`], which starts its accounting the moment it
//! arrives, so even a client that leaves at once leaves a row), parsed into the wire types of
//! `rightmodel-core`, authenticated ([`auth`]), routed when `model` is `auto` ([`routing`]), served by
//! a local engine ([`local`]) or an upstream ([`upstream`]) with fallback, and accounted for exactly
//! once ([`accounting`]): one row in the SQLite request log ([`reqlog`]), Prometheus metrics
//! ([`metrics`]) and spend counters ([`budget`]).
//! Two clients of a gateway live here too: [`loadbench`] (the overhead it adds under load) and
//! [`compare_client`] (every model's answers to the user's test cases, for `rightmodel eval route`).

pub mod accounting;
pub mod app;
pub mod auth;
pub mod budget;
pub mod chat;
pub mod compare_client;
pub mod config;
pub mod embed_batch;
pub mod endpoints;
pub mod http_error;
pub mod intake;
pub mod loadbench;
pub mod local;
pub mod metrics;
pub mod readiness;
pub mod reqlog;
pub mod routing;
pub mod state;
pub mod tasks_api;
pub mod token_input;
pub mod tools;
pub mod upstream;
pub mod upstream_health;

pub use app::{app, build_state, log_path, serve, ServeError};
pub use config::Config;
