//! Forwarding a planned request: the per-core connection pool, the upstream stream, the attempt
//! loop with its retries, the request body out and the response back, and HTTP/2 upstreams.

pub(crate) mod attempt;
pub(crate) mod exchange;
pub(crate) mod fail;
pub(crate) mod h2;
pub(crate) mod h2connect;
pub(crate) mod h2pool;
pub mod pool;
pub(crate) mod relay;
pub(crate) mod request_body;
pub(crate) mod response;
pub mod stream;

pub use stream::UpStream;
