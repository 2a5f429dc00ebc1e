//! The small slice of HTTP/1.1 that ringbench needs on both sides, sans-IO: body framing
//! ([`body`]) and the generator's response reader ([`response`]).

pub mod body;
pub mod response;
