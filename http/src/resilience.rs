//! What the engine asks of an upstream's and a route's per-core resilience state.
//!
//! The contracts ([`UpstreamRuntime`], [`RouteRuntime`]), the route settings and the request-key
//! helpers live in `ringgate-model` ([`ringgate_model::resilience`]), shared with the policies that
//! implement them, and are re-exported here under their old paths. A compiled snapshot names the
//! implementations through the [`crate::gateway::Gateway`] associated types.

pub use ringgate_model::resilience::{
    cookie_value, key_hash, Admission, AttemptOutcome, Fallback, HashOn, HealthBoard,
    RetrySettings, RouteRuntime, RouteSplit, UpstreamRuntime,
};
