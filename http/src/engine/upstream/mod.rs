//! Forwarding a planned request: the per-core connection pool, the upstream stream, the attempt
//! loop with its retries, the request body out and the response back, and HTTP/2 upstreams.

pub(crate) mod exchange;
pub(crate) mod h2;
pub mod pool;
pub mod stream;

pub use stream::UpStream;
