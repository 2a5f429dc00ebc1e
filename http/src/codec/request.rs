//! The request head parser: where a client's request head ends, what it asks for, and how its body
//! is framed, refusing every ambiguity an upstream could read differently.
//!
//! The work is in three steps, cheapest first:
//! 1. [`scan_head`] checks the line endings and finds the end of the head;
//! 2. httparse parses the request line and the field lines (tokens, bytes of values);
//! 3. one walk over the headers applies the framing rules of RFC 9112 §6 and the Host rules of
//!    §3.2, and interprets the request-target (§3.2).
//!
//! Incomplete heads are re-parsed from the start on the next call (the head is small and httparse
//! is fast; resuming would need state the engine then has to keep per connection). To stop a
//! client from making that quadratic, the limits are checked on incomplete heads too: 431 once
//! `max_head_bytes` are buffered without an end, 414 once the request-target alone exceeds
//! `max_uri_bytes` or the request line runs past `max_uri_bytes + 32` bytes.

use httparse::{Header, Status};

use super::error::{CodecError, Kind};
use super::head::{
    body_framing, first_line, scan_head, skip_empty_lines, version_error, ConnectionOptions,
    ContentLength, TransferCodings,
};
use super::{BodyKind, MAX_HEADERS};

/// Room the request line is given beyond `max_uri_bytes` for the method, spaces and version
/// before an incomplete request line is declared too long.
const REQUEST_LINE_SLACK: usize = 32;

/// Size limits for a request head; they come from the listener's config.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The most bytes a head may take, from the first byte to the final CRLF CRLF included.
    /// More is a 431.
    pub max_head_bytes: usize,
    /// The longest request-target accepted. Longer is a 414.
    pub max_uri_bytes: usize,
}

/// A parsed request head, borrowing the caller's buffer (`'b`) and header array (`'h`).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'h, 'b> {
    /// The method token, as sent (methods are case-sensitive).
    pub method: &'b str,
    /// The request-target as sent: origin-form (`/p?q`), absolute-form (`http://h/p?q`) or `*`.
    pub target: &'b str,
    /// The path of the target without the query: for absolute-form the part after the authority
    /// (`/` if that is empty); `*` for the asterisk-form.
    pub path: &'b str,
    /// The query of the target: what follows the first '?', without it.
    pub query: Option<&'b str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in order, names as sent, values with surrounding whitespace trimmed.
    pub headers: &'h [Header<'b>],
    /// The bytes of the buffer taken by the head, final CRLF CRLF included: the body starts here.
    pub head_len: usize,
    /// How the body is framed: [`BodyKind::Empty`], [`BodyKind::Length`] (> 0) or
    /// [`BodyKind::Chunked`]; never [`BodyKind::UntilClose`].
    pub body: BodyKind,
    /// The host the request is for: the authority of an absolute-form target, else the Host
    /// header's value; `None` only for an HTTP/1.0 request without Host.
    pub host: Option<&'b [u8]>,
    /// Whether the client expects the connection to stay open: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (case-insensitive) is present.
    pub expect_continue: bool,
    /// The Connection header lists `upgrade` and an Upgrade header is present.
    pub upgrade: bool,
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold a whole head yet (read more and call again with the
/// grown buffer), `Ok(Some(head))` when it does (the body, if any, starts at `head.head_len`),
/// and an error whose [`status`](CodecError::status) is the answer to send when the head is
/// refused. `headers` should hold [`MAX_HEADERS`] entries; only that many are used.
pub fn parse_request_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &HeadLimits,
) -> Result<Option<RequestHead<'h, 'b>>, CodecError> {
    // Nothing past max_head_bytes can belong to an acceptable head, so nothing past it is read.
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let usable = headers.len().min(MAX_HEADERS);
    let headers = &mut headers[..usable];

    let Some(end) = scan_head(window)? else {
        return incomplete(window, buf.len(), headers, limits);
    };
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(&window[..end]) {
        Ok(Status::Complete(n)) if n == end => n,
        // scan_head and httparse must agree on where the head ends; if not, trust neither.
        Ok(_) => return Err(Kind::MalformedHead.into()),
        Err(e) => return Err(map_httparse_error(e, window)),
    };
    let httparse::Request {
        method: Some(method),
        path: Some(target),
        version: Some(minor_version),
        headers,
    } = req
    else {
        return Err(Kind::MalformedHead.into());
    };
    let line = RequestLine {
        method,
        target,
        minor_version,
    };
    interpret(line, headers, head_len, limits).map(Some)
}

/// A request head from fields another framing already split (an HTTP/2 stream's method, target
/// and fields, `Host` from `:authority`): the same target, `Host` and framing rules as an
/// HTTP/1.1 head, as HTTP/1.1, with nothing of it in a buffer (`head_len` 0). More than
/// [`MAX_HEADERS`] fields is a 431, as for HTTP/1.1.
pub fn request_from_fields<'h, 'b>(
    method: &'b str,
    target: &'b str,
    headers: &'h [Header<'b>],
    limits: &HeadLimits,
) -> Result<RequestHead<'h, 'b>, CodecError> {
    if headers.len() > MAX_HEADERS {
        return Err(Kind::TooManyHeaders.into());
    }
    let line = RequestLine {
        method,
        target,
        minor_version: 1,
    };
    interpret(line, headers, 0, limits)
}

/// The request line, as httparse split it.
struct RequestLine<'b> {
    method: &'b str,
    target: &'b str,
    minor_version: u8,
}

/// Applies the target, Host and framing rules to a syntactically valid head.
fn interpret<'h, 'b>(
    line: RequestLine<'b>,
    headers: &'h [Header<'b>],
    head_len: usize,
    limits: &HeadLimits,
) -> Result<RequestHead<'h, 'b>, CodecError> {
    let RequestLine {
        method,
        target,
        minor_version,
    } = line;
    if target.len() > limits.max_uri_bytes {
        return Err(Kind::UriTooLong.into());
    }
    if method == "CONNECT" {
        return Err(Kind::ConnectNotSupported.into());
    }
    let form = parse_target(method, target)?;

    let mut host_header = None;
    let mut host_count = 0usize;
    let mut content_length = ContentLength::default();
    let mut codings = TransferCodings::default();
    let mut connection = ConnectionOptions::default();
    let mut upgrade_header = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            host_header = Some(h.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length.add(h.value)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.add(h.value)?;
        } else if name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    if host_count > 1 {
        return Err(Kind::DuplicateHost.into());
    }
    match host_header {
        None if minor_version == 1 => return Err(Kind::MissingHost.into()),
        Some(v) if !valid_authority(v) => return Err(Kind::InvalidHost.into()),
        _ => {}
    }
    let body = body_framing(&content_length, &codings, minor_version, BodyKind::Empty)?;

    Ok(RequestHead {
        method,
        target,
        path: form.path,
        query: form.query,
        minor_version,
        headers,
        head_len,
        body,
        // RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host.
        host: form.authority.or(host_header),
        keep_alive: connection.persistent(minor_version),
        expect_continue,
        upgrade: connection.upgrade && upgrade_header,
    })
}

/// The parts of a request-target.
struct Target<'b> {
    path: &'b str,
    query: Option<&'b str>,
    /// The authority of an absolute-form target.
    authority: Option<&'b [u8]>,
}

/// Splits the request-target into path, query and (absolute-form) authority, refusing forms a
/// gateway does not route: authority-form (only CONNECT uses it, refused before) and anything
/// that is not a URI the origin server could have been sent.
///
/// httparse has already refused CTLs and spaces; refused here in addition are non-ASCII bytes
/// (RFC 3986 has none) and '#' (a fragment is never sent, RFC 9112 §3.2).
fn parse_target<'b>(method: &str, target: &'b str) -> Result<Target<'b>, CodecError> {
    if !target.is_ascii() || memchr::memchr(b'#', target.as_bytes()).is_some() {
        return Err(Kind::TargetByte.into());
    }
    if target.starts_with('/') {
        let (path, query) = split_query(target);
        return Ok(Target {
            path,
            query,
            authority: None,
        });
    }
    if target == "*" {
        if method != "OPTIONS" {
            return Err(Kind::AsteriskNotOptions.into());
        }
        return Ok(Target {
            path: target,
            query: None,
            authority: None,
        });
    }
    let Some(rest) = strip_scheme(target) else {
        return Err(Kind::InvalidTarget.into());
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !valid_authority(authority.as_bytes()) {
        return Err(Kind::TargetAuthority.into());
    }
    let (path, query) = split_query(tail);
    Ok(Target {
        path: if path.is_empty() { "/" } else { path },
        query,
        authority: Some(authority.as_bytes()),
    })
}

/// Strips a case-insensitive `http://` or `https://`.
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Splits at the first '?'.
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

/// Whether `a` is `host [ ":" port ]` with host a bracketed IPv6 literal, or a name / IPv4
/// address made of `ALPHA / DIGIT / "-" / "." / "_" / "~"`, and port 1 to 5 digits up to 65535.
///
/// Stricter than RFC 3986's reg-name on purpose: sub-delims (`,` `;` `=` ...) and
/// percent-encoding never occur in DNS names, and `,` would let a list-parsing upstream see two
/// hosts. Empty hosts and empty ports are refused: a gateway routes by this value.
fn valid_authority(a: &[u8]) -> bool {
    let (host_ok, port) = if let Some(inner) = a.strip_prefix(b"[") {
        let Some(close) = memchr::memchr(b']', inner) else {
            return false;
        };
        let literal = &inner[..close];
        let ok = literal.contains(&b':')
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        match &inner[close + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match memchr::memchr(b':', a) {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        };
        let ok = !host.is_empty()
            && host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        (ok, port)
    };
    host_ok && port.is_none_or(valid_port)
}

/// 1 to 5 digits, at most 65535.
fn valid_port(p: &[u8]) -> bool {
    (1..=5).contains(&p.len())
        && p.iter().all(u8::is_ascii_digit)
        && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// The incomplete-head path: surface errors httparse already sees, then the size limits.
fn incomplete<'h, 'b>(
    window: &'b [u8],
    buf_len: usize,
    headers: &'h mut [Header<'b>],
    limits: &HeadLimits,
) -> Result<Option<RequestHead<'h, 'b>>, CodecError> {
    let mut req = httparse::Request::new(headers);
    match req.parse(window) {
        Ok(Status::Partial) => {}
        // scan_head saw no end of head where httparse does: they disagree.
        Ok(Status::Complete(_)) => return Err(Kind::MalformedHead.into()),
        Err(e) => return Err(map_httparse_error(e, window)),
    }
    let (line, ended) = first_line(skip_empty_lines(window));
    let target = request_line_target(line);
    if target.len() > limits.max_uri_bytes {
        return Err(Kind::UriTooLong.into());
    }
    if !ended && line.len() > limits.max_uri_bytes.saturating_add(REQUEST_LINE_SLACK) {
        return Err(Kind::RequestLineTooLong.into());
    }
    if buf_len >= limits.max_head_bytes {
        return Err(Kind::HeadTooLarge.into());
    }
    Ok(None)
}

/// The request-target of a (possibly incomplete) request line: after the first SP, up to the
/// next SP or the end.
fn request_line_target(line: &[u8]) -> &[u8] {
    let Some(sp) = memchr::memchr(b' ', line) else {
        return &[];
    };
    let rest = &line[sp + 1..];
    &rest[..memchr::memchr(b' ', rest).unwrap_or(rest.len())]
}

/// Maps an httparse error, telling an unsupported version (505) from a malformed one (400).
fn map_httparse_error(e: httparse::Error, window: &[u8]) -> CodecError {
    if e != httparse::Error::Version {
        return e.into();
    }
    let (line, ended) = first_line(skip_empty_lines(window));
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    match memchr::memchr(b' ', version) {
        Some(i) => version_error(&version[..i], true),
        None => version_error(version, ended),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
