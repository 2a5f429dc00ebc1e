//! The request a background refresh replays: a plain `GET` of the same target with the client's
//! fields, less its connection's own, its validators, `Range` and its cache directives (the
//! refresh wants the whole, current response).

use crate::codec::RequestHead;

/// Fields the replay leaves out: the connection's own, validators, range and the client's cache
/// directives (the refresh wants the whole, current response).
const LEFT_OUT: [&str; 15] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "cache-control",
    "pragma",
];

/// The replayed request's head: `GET` of the same target with the client's other fields.
pub(crate) fn replay_head(req: &RequestHead<'_, '_>) -> Vec<u8> {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(b"GET ");
    h.extend_from_slice(req.target.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for f in req.headers {
        if LEFT_OUT.iter().any(|n| f.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        has_host |= f.name.eq_ignore_ascii_case("host");
        h.extend_from_slice(f.name.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(f.value);
        h.extend_from_slice(b"\r\n");
    }
    if let (false, Some(host)) = (has_host, req.host) {
        h.extend_from_slice(b"host: ");
        h.extend_from_slice(host);
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}
