//! The small slice of HTTP/1.1 that ringbench needs on both sides, sans-IO: body framing
//! ([`body`], shared with the stub upstream and living in [`ringgate_stubs::body`]) and the
//! generator's response reader ([`response`]).

pub use ringgate_stubs::body;
pub mod response;
