//! Routing policies: candidates, per-request limits, the daily budget, domain fit and the decision
//! itself. Everything here is plain data and pure functions over it; the only I/O-like step is the
//! scorer call inside [`Router::decide`].

pub mod budget;
pub mod candidate;
pub mod decision;
pub mod error;
pub mod request;
pub mod router;

pub use budget::{budget_threshold, BudgetState};
pub use candidate::{Candidate, Capabilities, Domain, DomainFit, LatencyTracker};
pub use decision::{header_safe_json, CandidateEstimate, Decision, ReasonCode};
pub use error::{Limit, RouteError};
pub use request::{Needs, Overrides, RouteRequest, Strategy};
pub use router::{Router, RouterConfig};
