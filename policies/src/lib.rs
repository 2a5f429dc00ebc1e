//! ringgate's decisions, kept free of I/O so each can be tested alone: the compiled route
//! table ([`routing`]), shared read-only across cores; and the per-core resilience logic of
//! load balancing, health, outlier ejection, circuit breakers, retry budgets and traffic
//! splits ([`balance`]). Authentication and authorization ([`auth`]: credentials, API keys,
//! JWTs, token introspection, scope rules, and the per-request adapter the workers run with its
//! signature-check budget) are here too, and rate limiting ([`ratelimit`]:
//! per-core buckets, the reconciler's arithmetic, the store contract).
#![forbid(unsafe_code)]
// Tests may panic on a broken expectation; library code still may not (it is linted in the
// non-test build too).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod balance;
pub mod idhash;
pub mod ratelimit;
pub mod routing;
