//! HTTP/1.1 client connections: the loop that reads a head, runs the request pipeline and the
//! exchange, and waits for the next request holding no buffer.

pub(crate) mod serve;
