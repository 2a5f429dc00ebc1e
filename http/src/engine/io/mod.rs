//! Bytes in and out: ring operations with deadlines, the client's stream (plain, TLS or one
//! HTTP/2 stream), the per-core buffer pool, the TLS handshake, and the adapter `h2` runs on.

pub mod body_deadline;
pub(crate) mod buffers;
pub(crate) mod downstream;
pub(crate) mod h2io;
pub(crate) mod handshake;
pub mod ops;
pub mod peek;
pub(crate) mod stream;
