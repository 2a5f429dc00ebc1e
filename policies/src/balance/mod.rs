//! Choosing an upstream endpoint and keeping away from failing ones: load balancing
//! ([`Balancer`]), active health ([`HealthTracker`]), passive outlier ejection
//! ([`OutlierDetector`]), circuit breaking ([`CircuitBreaker`]), retry budgets
//! ([`RetryBudget`], [`backoff`]) and weighted traffic splits ([`TrafficSplit`]).
//!
//! # Ownership and time
//!
//! Everything here is pure logic owned by **one core**: plain fields, no atomics, locks or
//! `Arc`; each core keeps its own copy per upstream and decides from the traffic it sees
//! (values are `Send`, so the engine can build them before handing them to a core).
//! Nothing reads the clock: every operation that depends on time takes `now: Instant`, and
//! everything random draws from a [`FastRng`] the caller passes in, so tests replay
//! exactly, with synthetic instants.
//!
//! Endpoints are indices `0..n` into the upstream's endpoint list, the same in every
//! structure. When that list changes, the engine builds new structures (state such as
//! ejections and EWMAs starts over).
//!
//! # One request, as the engine is expected to drive it
//!
//! 1. Pick the backend of a split, if the route has one: [`TrafficSplit::pick`] on a hash
//!    of the request's key ([`hash_bytes`]).
//! 2. [`CircuitBreaker::try_acquire`]; on [`Admit::Rejected`] answer 503 at once.
//! 3. [`RetryBudget::record_request`].
//! 4. [`Balancer::pick`] with `eligible = |i| health.is_healthy(i) &&
//!    !outliers.is_ejected(i, now)`; `None` means no endpoint is usable (the engine may
//!    then retry with a weaker filter, "panic mode", or answer 503).
//! 5. [`Balancer::start`] when sending; on completion [`Balancer::finish`], plus
//!    [`Balancer::observe`] with the latency if a response arrived.
//! 6. [`OutlierDetector::record_success`] or [`OutlierDetector::record_failure`], and
//!    [`CircuitBreaker::record`] with the [`Admit`] from step 2.
//! 7. To retry: [`RetryBudget::try_retry`], then wait [`backoff`] and go back to step 4.
//!
//! Active health checks run elsewhere and feed [`HealthTracker::record`].

mod breaker;
mod budget;
mod health;
mod outlier;
mod pick;
mod rng;
mod runtime;
mod split;
mod window;

pub use breaker::{Admit, BreakerConfig, BreakerState, CircuitBreaker};
pub use budget::{backoff, RetryBudget, RetryBudgetConfig};
pub use health::{HealthConfig, HealthTracker, Transition};
pub use outlier::{FailureKind, OutlierConfig, OutlierDetector};
pub use pick::{
    Balancer, LbKind, LeastRequests, Maglev, PeakEwma, PeakEwmaConfig, RoundRobin,
    SmoothWeightedRoundRobin,
};
pub use rng::{hash_bytes, FastRng};
pub use runtime::{RoutePolicy, RouteState, UpstreamPolicy, UpstreamState};
pub use split::TrafficSplit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_can_be_built_elsewhere_and_moved_to_a_core() {
        fn send<T: Send>() {}
        send::<Balancer>();
        send::<FastRng>();
        send::<HealthTracker>();
        send::<OutlierDetector>();
        send::<CircuitBreaker>();
        send::<RetryBudget>();
        send::<TrafficSplit>();
    }
}
