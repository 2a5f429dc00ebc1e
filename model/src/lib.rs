//! ringgate-model: the vocabulary the engine and the policies share, with no I/O and no runtime.
//!
//! The engine (`ringgate-http`) drives requests over sockets; the policies (`ringgate-policies`)
//! decide about them without touching a socket. Both need the same few words: why the gateway
//! answers a request itself, what authentication and rate limiting concluded, what the engine asks
//! of a per-core balancer, breaker and retry budget, and how a header line is written. Those words
//! live here, below both crates, so that the policies stay sans-IO (no monoio, rustls or h2 in
//! their dependency tree) and neither crate reaches into the other for them.
//!
//! - [`refusal`]: a gateway-made response ([`refusal::Refusal`]) and the reason phrases;
//! - [`authn`]: the auth and rate-limit verdicts and what a passed authentication adds;
//! - [`resilience`]: the per-core upstream and route contracts, retry and split settings, request
//!   keys;
//! - [`headers`]: writing one header line into a head being built.

pub mod authn;
pub mod calendar;
pub mod headers;
pub mod refusal;
pub mod resilience;
