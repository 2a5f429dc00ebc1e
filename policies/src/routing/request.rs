//! What the lookup is given: borrowed views into the parsed request head, nothing owned.

/// A request as the router sees it. All fields borrow from the request head buffer.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The `Host` header (HTTP/1.1) or `:authority` (HTTP/2), as received: any case, port,
    /// trailing dot. Empty if the request had none: only host-less routes can match then.
    pub host: &'a [u8],
    /// The request target's path. A `?query` suffix, if present, is ignored for matching.
    /// Must start with `/` to match anything (`*` and absolute-form targets do not).
    pub path: &'a [u8],
    /// The method, compared case-sensitively.
    pub method: &'a [u8],
    /// The request headers.
    pub headers: &'a [httparse::Header<'a>],
}

/// Splits an origin-form request target into its path and query (without the `?`).
///
/// ```
/// use ringgate_policies::routing::split_path_query;
/// assert_eq!(split_path_query(b"/a?b=1"), (&b"/a"[..], Some(&b"b=1"[..])));
/// assert_eq!(split_path_query(b"/a"), (&b"/a"[..], None));
/// ```
pub fn split_path_query(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    }
}
