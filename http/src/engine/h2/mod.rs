//! HTTP/2 client connections: the `h2` server on the connection's task, each stream run through
//! the request pipeline, and the probe that checks an upstream speaks HTTP/2.

pub(crate) mod conn;
pub(crate) mod head;
pub mod probe;
pub(crate) mod stream;
