//! A strict, sans-IO HTTP/1.1 codec: bytes in, parsed heads and body framing out, no sockets.
//!
//! The proxy engine reads bytes into its own buffers and asks this module three questions:
//! where does this request (or response) head end and what does it say
//! ([`parse_request_head`], [`parse_response_head`]); how long is the body that follows
//! ([`BodyKind`]); and, for a chunked body, where does it end ([`ChunkedDecoder`]). Which headers
//! must not be forwarded is answered by [`HopByHop`].
//!
//! # Strictness
//! A gateway sits between a client and an upstream that each parse HTTP/1.1 with their own
//! leniencies; any message the two could frame differently is a request-smuggling vector. So this
//! codec accepts only what RFC 9112 says a sender must produce, and refuses the rest with a
//! [`CodecError`] that names the rule: no bare LF or CR, no obs-fold, no whitespace before a colon,
//! Content-Length as 1*DIGIT with identical duplicates only, never together with
//! Transfer-Encoding, `chunked` exactly once and last (and no other transfer-coding: the gateway
//! does not decode payloads, 501), one valid Host, and a chunked body whose every line is
//! checked. What the chunked decoder accepts is exactly what the upstream sees, since the engine
//! forwards the raw bytes.
//!
//! Version policy: HTTP/1.0 and HTTP/1.1 only. A well-formed other version (`HTTP/2.0`, so also
//! the HTTP/2 connection preface `PRI * HTTP/2.0`, or `HTTP/1.2`) is 505; a malformed version
//! field is 400.
//!
//! # Performance
//! Parsing allocates nothing: heads borrow the caller's buffer (`&'b str` / `&'b [u8]`) and the
//! caller's header array (`&'h [httparse::Header<'b>]`); errors are `Copy` values with `'static`
//! texts. A head costs one `memchr2` scan plus one httparse pass plus one walk over the headers.
//!
//! # Files
//! - `head.rs`: the strict line scan and the framing-header rules shared by both directions;
//! - `request.rs` / `response.rs`: the head parsers;
//! - `chunked.rs`: the resumable chunked-body validator;
//! - `hop.rs`: hop-by-hop header names;
//! - `trailers.rs`: the fields no trailer section may carry, dropped when forwarding one;
//! - `path.rs`: path normalization, the spelling routes match and upstreams receive;
//! - `error.rs`: [`CodecError`].

mod chunked;
mod error;
mod head;
mod hop;
mod path;
mod request;
mod response;
mod trailers;

pub use chunked::{ChunkProgress, ChunkedDecoder, ChunkedLimits};
pub use error::CodecError;
pub use hop::{HopByHop, MAX_CONNECTION_TOKENS};
pub use path::{normalize_path, strip_parameters, EscapedSeparators, PathError, PathPolicy};
pub use request::{parse_request_head, request_from_fields, HeadLimits, RequestHead};
pub use response::{parse_response_head, ResponseHead};
pub use trailers::{prohibited_in_trailers, Settled};

/// The most header fields a head may carry: size the `headers` array passed to the parsers with
/// it (`[httparse::EMPTY_HEADER; MAX_HEADERS]`). A larger array is only used up to this many;
/// more fields than this is a 431.
pub const MAX_HEADERS: usize = 100;

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body follows the head.
    Empty,
    /// Exactly this many bytes follow (always more than zero: a length of 0 is [`BodyKind::Empty`]).
    Length(u64),
    /// A chunked body follows; feed it to a [`ChunkedDecoder`] to find its end.
    Chunked,
    /// The body runs until the upstream closes the connection (responses only).
    UntilClose,
}
