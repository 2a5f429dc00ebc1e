//! The response head parser: where an upstream's response head ends and how its body is framed.
//!
//! Upstreams are trusted no more than clients: a response the gateway frames differently from the
//! client is response splitting, and poisons a pooled connection. So the same strict line scan
//! runs first, and the framing rules are those of requests with the differences RFC 9112 §6.3
//! makes for responses: no body after HEAD, 1xx, 204 and 304; read-until-close when there is
//! neither Content-Length nor Transfer-Encoding. One difference is ours: RFC 9112 reads a body
//! whose final coding is not chunked until close, and forwards other codings; the engine rewrites
//! Transfer-Encoding hop by hop (to plain `chunked`), so any coding but `chunked` alone is refused
//! rather than passed to the client undeclared. The engine maps every error here to 502.

use httparse::{Header, Status};

use super::error::{CodecError, Kind};
use super::head::{
    body_framing, first_line, scan_head, skip_empty_lines, version_error, ConnectionOptions,
    ContentLength, TransferCodings,
};
use super::{BodyKind, MAX_HEADERS};

/// A parsed response head, borrowing the caller's buffer (`'b`) and header array (`'h`).
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'h, 'b> {
    /// The status code, 100 to 999.
    pub status: u16,
    /// The reason phrase as sent; empty if absent, or if it holds non-ASCII bytes (httparse's
    /// choice: it is never needed for framing).
    pub reason: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in order, names as sent, values with surrounding whitespace trimmed.
    pub headers: &'h [Header<'b>],
    /// The bytes of the buffer taken by the head, final CRLF CRLF included: the body starts here.
    pub head_len: usize,
    /// How the body is framed: [`BodyKind::Empty`] for 1xx, 204, 304 and answers to HEAD (and for
    /// a Content-Length of 0); else [`BodyKind::Chunked`] (Transfer-Encoding exactly `chunked`),
    /// [`BodyKind::Length`], or [`BodyKind::UntilClose`] (neither header).
    pub body: BodyKind,
    /// The Content-Length the head declared, its duplicates collapsed (`2, 2` and two
    /// `Content-Length: 2` lines are both 2; different values are refused), whether or not a body
    /// follows (a response to HEAD declares the length of the body it would have had).
    pub content_length: Option<u64>,
    /// Whether the connection can carry another request after this response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`; always false when the
    /// body runs until close, and for 101 (the connection then belongs to another protocol).
    pub keep_alive: bool,
}

/// Parses a response head from the start of `buf`.
///
/// `request_was_head` says whether the request this answers was HEAD (its response has no body
/// whatever its headers say). Returns `Ok(None)` when `buf` does not hold a whole head yet; an
/// error once `max_head_bytes` are buffered without one (431), or when the head is malformed.
/// `headers` should hold [`MAX_HEADERS`] entries; only that many are used.
pub fn parse_response_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    request_was_head: bool,
    max_head_bytes: usize,
) -> Result<Option<ResponseHead<'h, 'b>>, CodecError> {
    let window = &buf[..buf.len().min(max_head_bytes)];
    let usable = headers.len().min(MAX_HEADERS);
    let headers = &mut headers[..usable];
    let mut resp = httparse::Response::new(headers);

    let Some(end) = scan_head(window)? else {
        return match resp.parse(window) {
            Ok(Status::Partial) if buf.len() >= max_head_bytes => Err(Kind::HeadTooLarge.into()),
            Ok(Status::Partial) => Ok(None),
            Ok(Status::Complete(_)) => Err(Kind::MalformedHead.into()),
            Err(e) => Err(map_httparse_error(e, window)),
        };
    };
    let head_len = match resp.parse(&window[..end]) {
        Ok(Status::Complete(n)) if n == end => n,
        // scan_head and httparse must agree on where the head ends; if not, trust neither.
        Ok(_) => return Err(Kind::MalformedHead.into()),
        Err(e) => return Err(map_httparse_error(e, window)),
    };
    let httparse::Response {
        version: Some(minor_version),
        code: Some(status),
        reason: Some(reason),
        headers,
    } = resp
    else {
        return Err(Kind::MalformedHead.into());
    };
    if status < 100 {
        return Err(Kind::InvalidStatusCode.into());
    }

    let mut content_length = ContentLength::default();
    let mut codings = TransferCodings::default();
    let mut connection = ConnectionOptions::default();
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length.add(h.value)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings.add(h.value)?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        }
    }
    // Framing headers are checked even when the status says there is no body: an upstream
    // that sends contradictory framing is broken, and its connection is not reused.
    let framed = body_framing(
        &content_length,
        &codings,
        minor_version,
        BodyKind::UntilClose,
    )?;
    let bodiless =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if bodiless { BodyKind::Empty } else { framed };
    let keep_alive =
        body != BodyKind::UntilClose && status != 101 && connection.persistent(minor_version);
    let content_length = content_length.value()?;

    Ok(Some(ResponseHead {
        status,
        reason,
        minor_version,
        headers,
        head_len,
        body,
        content_length,
        keep_alive,
    }))
}

/// Maps an httparse error, telling an unsupported version (505) from a malformed one (400).
fn map_httparse_error(e: httparse::Error, window: &[u8]) -> CodecError {
    if e != httparse::Error::Version {
        return e.into();
    }
    let (line, ended) = first_line(skip_empty_lines(window));
    match memchr::memchr(b' ', line) {
        Some(i) => version_error(&line[..i], true),
        None => version_error(line, ended),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], head: bool) -> Result<Option<(u16, BodyKind, bool, usize)>, CodecError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse_response_head(buf, &mut headers, head, 8192)
            .map(|r| r.map(|r| (r.status, r.body, r.keep_alive, r.head_len)))
    }

    fn body(buf: &[u8]) -> BodyKind {
        match parse(buf, false) {
            Ok(Some((_, body, _, _))) => body,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn kind(buf: &[u8]) -> Kind {
        match parse(buf, false) {
            Err(e) => e.kind(),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn response_with_content_length_is_length_framed() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let r = parse_response_head(buf, &mut headers, false, 8192)
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.head_len, buf.len() - 5);
        assert_eq!(r.body, BodyKind::Length(5));
        assert!(r.keep_alive);
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn response_without_length_runs_until_close_and_is_not_reusable() {
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((r.1, r.2), (BodyKind::UntilClose, false));
    }

    #[test]
    fn response_content_length_zero_is_empty() {
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            BodyKind::Empty
        );
    }

    #[test]
    fn chunked_response_is_chunked() {
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            BodyKind::Chunked
        );
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n"),
            BodyKind::Chunked
        );
    }

    #[test]
    fn response_transfer_codings_other_than_chunked_are_rejected() {
        // The engine rewrites Transfer-Encoding to plain chunked towards the client, so another
        // coding would reach the client undeclared.
        let e = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert_eq!(
            (e.status(), e.kind()),
            (501, Kind::UnsupportedTransferCoding)
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Kind::ChunkedNotFinal
        );
    }

    #[test]
    fn response_with_chunked_twice_or_not_last_is_rejected() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            Kind::ChunkedTwice
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Kind::ChunkedNotFinal
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n"),
            Kind::EmptyTransferCoding
        );
    }

    #[test]
    fn response_with_content_length_and_transfer_encoding_is_rejected() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Kind::ContentLengthWithTransferEncoding
        );
    }

    #[test]
    fn response_transfer_encoding_in_http10_is_rejected() {
        assert_eq!(
            kind(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Kind::TransferEncodingHttp10
        );
    }

    #[test]
    fn response_content_length_rules_match_requests() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Kind::ConflictingContentLength
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"),
            Kind::InvalidContentLength
        );
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
            BodyKind::Length(3)
        );
    }

    #[test]
    fn bodiless_statuses_and_head_responses_are_empty() {
        for status in [
            "100 Continue",
            "101 Switching Protocols",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            let buf = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(body(buf.as_bytes()), BodyKind::Empty, "{status}");
        }
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!((r.1, r.2), (BodyKind::Empty, true));
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.1, BodyKind::Empty);
    }

    #[test]
    fn switching_protocols_is_not_reusable() {
        let r = parse(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((r.0, r.1, r.2), (101, BodyKind::Empty, false));
    }

    #[test]
    fn response_keep_alive_follows_version_and_connection() {
        let ka = |buf: &[u8]| parse(buf, false).unwrap().unwrap().2;
        assert!(ka(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"));
        assert!(ka(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n"
        ));
    }

    #[test]
    fn response_bare_lf_is_rejected() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\nContent-Length: 1\n\n"),
            Kind::BareLf
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nContent-Length: 1\n"),
            Kind::BareLf
        );
    }

    #[test]
    fn response_bare_cr_is_rejected() {
        assert_eq!(kind(b"HTTP/1.1 200 OK\rX: y\r\n\r\n"), Kind::BareCr);
    }

    #[test]
    fn response_ctl_in_header_value_is_rejected() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n"),
            Kind::HeaderValue
        );
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nX: a\x0bb\r\n\r\n"),
            Kind::HeaderValue
        );
    }

    #[test]
    fn response_obs_fold_and_space_before_colon_are_rejected() {
        assert_eq!(
            kind(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
            Kind::ObsFold
        );
        assert_eq!(kind(b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), Kind::HeaderName);
    }

    #[test]
    fn response_status_below_100_is_rejected() {
        assert_eq!(kind(b"HTTP/1.1 099 Odd\r\n\r\n"), Kind::InvalidStatusCode);
        assert_eq!(kind(b"HTTP/1.1 20 OK\r\n\r\n"), Kind::StatusLine);
    }

    #[test]
    fn response_with_other_version_is_505_or_400() {
        assert_eq!(kind(b"HTTP/2.0 200 OK\r\n\r\n"), Kind::VersionNotSupported);
        assert_eq!(kind(b"HTTP/2"), Kind::VersionNotSupported);
        assert_eq!(kind(b"HTTX/1.1 200 OK\r\n\r\n"), Kind::MalformedVersion);
    }

    #[test]
    fn incomplete_response_needs_more_bytes_until_the_limit() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let buf = b"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaaaaa";
        let e = parse_response_head(buf, &mut headers, false, 32).unwrap_err();
        assert_eq!(e.kind(), Kind::HeadTooLarge);
        let buf = b"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaa\r\n\r\n";
        let e = parse_response_head(buf, &mut headers, false, buf.len() - 1).unwrap_err();
        assert_eq!(e.kind(), Kind::HeadTooLarge);
        assert!(parse_response_head(buf, &mut headers, false, buf.len())
            .unwrap()
            .is_some());
    }

    #[test]
    fn response_with_too_many_headers_is_431() {
        let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let e = parse_response_head(&buf, &mut headers, false, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 431);
    }
}
