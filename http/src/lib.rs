//! ringgate-http: the HTTP layer of the gateway.
//!
//! - [`codec`]: a strict, sans-IO HTTP/1.1 parser (heads, chunked bodies, hop-by-hop headers),
//!   the request-smuggling defence;
//! - [`hygiene`]: the heads the gateway writes on each side;
//! - [`respond`] and [`error`]: gateway-made responses and the one mapping from causes to them;
//! - [`gateway`]: what the engine asks of a compiled config snapshot;
//! - [`pool`]: per-core upstream connection pools;
//! - [`engine`]: the per-worker accept and connection loops that tie it together.

pub mod codec;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod hygiene;
pub mod pool;
pub mod respond;
