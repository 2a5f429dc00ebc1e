//! What the engine asks of authentication: who is this request, and may it use its route?
//!
//! The verdict and output types live in `ringgate-model` ([`ringgate_model::authn`]), shared with
//! the policies that produce them, and are re-exported here under their old paths. The compiled
//! snapshot runs the checks through [`crate::gateway::Gateway::authenticate`] with the worker's
//! own per-core [`crate::gateway::Gateway::Auth`] state; the engine only applies the verdict.

pub use ringgate_model::authn::{AuthOutput, AuthVerdict, LimitStage, LimitVerdict};
