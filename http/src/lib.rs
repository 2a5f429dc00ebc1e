//! ringgate-http: the HTTP layer of the gateway.
//!
//! - [`codec`]: a strict, sans-IO HTTP/1.1 parser (heads, chunked bodies, hop-by-hop headers),
//!   the request-smuggling defence;
//! - [`hygiene`]: the heads the gateway writes on each side;
//! - [`respond`] and [`error`]: gateway-made responses and the one mapping from causes to them;
//! - [`authn`]: what the engine asks of authentication, and the verdict it applies;
//! - [`gateway`]: what the engine asks of a compiled config snapshot;
//! - [`pool`]: per-core upstream connection pools;
//! - [`metrics`]: per-core counters and histograms, merged when scraped;
//! - [`trace`]: request ids and W3C trace context;
//! - [`resilience`]: the per-core balancing, breaker and retry state the engine drives;
//! - [`tls`]: TLS termination (rustls driven over the worker's own socket I/O);
//! - [`accesslog`]: the access log: per-worker batching writers and one JSON-lines log thread;
//! - [`engine`]: the per-worker accept and connection loops that tie it together.
//!
//! The vocabulary this crate shares with `ringgate-policies` lives one crate down, in
//! `ringgate-model` (no I/O, no runtime): [`Refusal`](error::Refusal) and
//! [`reason_phrase`](error::reason_phrase), the auth and rate-limit verdicts of [`authn`], the
//! contracts and settings of [`resilience`], and [`push_header`](hygiene::push_header). The
//! modules above re-export them under their old paths, so `crate::error::Refusal` and the like
//! keep working; new code may name `ringgate_model` directly.

pub mod accesslog;
pub mod authn;
pub mod cache;
pub mod codec;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod h2head;
pub mod hygiene;
pub mod metrics;
pub use engine::upstream::pool;
pub mod resilience;
pub mod respond;
pub mod tls;
pub mod trace;
