//! What request and response heads share: the strict line scan that runs before httparse, and the
//! interpretation of the framing headers (Content-Length, Transfer-Encoding, Connection).
//!
//! # Why a scan before httparse
//! httparse is fast and mostly strict, but it accepts a bare LF as a line ending (RFC 9112 §2.2
//! allows that leniency; a proxy must not use it: an upstream that disagrees on where a line ends
//! is the classic request-smuggling setup). One `memchr2` pass over the head finds every CR and LF,
//! refuses any CR not followed by LF and any LF not preceded by CR, refuses a line that starts with
//! whitespace (obs-fold), and finds the end of the head (the first CRLF CRLF). httparse then parses
//! exactly that many bytes, so both agree on where the head ends. httparse already rejects NUL and
//! the other CTLs in values, whitespace before a colon, and obs-fold in both directions with its
//! default config; the tests in `request/tests.rs` pin that.
//!
//! # Why accumulators for the framing headers
//! A head is walked once; each framing header is handed to a small accumulator as it is met, and
//! the decision (which [`BodyKind`]) is taken at the end by [`body_framing`]. Accumulators hold
//! slices of the caller's buffer, never copies.

use memchr::memchr2_iter;

use super::error::{CodecError, Kind};
use super::BodyKind;

/// Finds the end of the head in `buf` (the index just past the first CRLF CRLF that ends it),
/// refusing bare CR, bare LF, and lines that start with SP or HTAB.
///
/// Empty lines (CRLF) before the first line are skipped, as RFC 9112 §2.2 asks of a server and as
/// httparse does. `Ok(None)` means the head is not complete in `buf` and nothing seen so far is
/// wrong.
pub(super) fn scan_head(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    // Position of the LF that ended the previous line; a LF right after "<that LF>\r" ends the head.
    let mut prev_lf: Option<usize> = None;
    for i in memchr2_iter(b'\r', b'\n', &buf[start..]).map(|i| i + start) {
        if buf[i] == b'\r' {
            match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => continue,
                Some(_) => return Err(Kind::BareCr.into()),
            }
        }
        if i == start || buf[i - 1] != b'\r' {
            return Err(Kind::BareLf.into());
        }
        if prev_lf.is_some_and(|p| p + 2 == i) {
            return Ok(Some(i + 1));
        }
        if matches!(buf.get(i + 1), Some(b' ' | b'\t')) {
            return Err(Kind::ObsFold.into());
        }
        prev_lf = Some(i);
    }
    Ok(None)
}

/// Skips the empty lines that may precede the first line of a head.
pub(super) fn skip_empty_lines(mut buf: &[u8]) -> &[u8] {
    while let Some(rest) = buf.strip_prefix(b"\r\n") {
        buf = rest;
    }
    buf
}

/// Maps an httparse `Version` error: a field shaped `HTTP/<digit>.<digit>` (or a prefix of that
/// shape of at least `HTTP/<digit>` when the buffer ends inside it) is a version we understand
/// but do not speak, hence 505 (this covers the HTTP/2 preface `PRI * HTTP/2.0`); anything else
/// is a malformed version, hence 400.
///
/// `field` is the version field up to SP, CR or LF; `terminated` says whether one of those ended
/// it, or the end of the buffer did.
pub(super) fn version_error(field: &[u8], terminated: bool) -> CodecError {
    const SHAPE: &[u8] = b"HTTP/";
    let shaped = field.len() <= 8
        && field.len() >= if terminated { 8 } else { 6 }
        && field.iter().enumerate().all(|(i, &b)| match i {
            5 | 7 => b.is_ascii_digit(),
            6 => b == b'.',
            _ => b == SHAPE[i],
        });
    if shaped {
        Kind::VersionNotSupported.into()
    } else {
        Kind::MalformedVersion.into()
    }
}

/// Splits off the first line of `buf` (without its line ending); the flag says whether a CR or LF
/// ended it, or the end of the buffer did.
pub(super) fn first_line(buf: &[u8]) -> (&[u8], bool) {
    match memchr::memchr2(b'\r', b'\n', buf) {
        Some(i) => (&buf[..i], true),
        None => (buf, false),
    }
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether `s` is a token: one or more tchar.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list value, each with its OWS trimmed (empty ones included:
/// each caller decides whether an empty element is an error).
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Content-Length values of one message: every value (of every header and of every list
/// element) must be 1*DIGIT and byte-identical to the first.
///
/// Byte-identical, not numerically equal: "5" and "05" are refused together, so no recipient
/// downstream can read a different number from the same field.
#[derive(Debug, Default)]
pub(super) struct ContentLength<'b> {
    first: Option<&'b [u8]>,
}

impl<'b> ContentLength<'b> {
    /// Adds the value of one Content-Length header.
    pub(super) fn add(&mut self, value: &'b [u8]) -> Result<(), CodecError> {
        for elem in list_elements(value) {
            if elem.is_empty() || !elem.iter().all(u8::is_ascii_digit) {
                return Err(Kind::InvalidContentLength.into());
            }
            match self.first {
                None => self.first = Some(elem),
                Some(first) if first == elem => {}
                Some(_) => return Err(Kind::ConflictingContentLength.into()),
            }
        }
        Ok(())
    }

    /// Whether any Content-Length header was seen.
    pub(super) fn is_present(&self) -> bool {
        self.first.is_some()
    }

    /// The length, if a Content-Length header was seen.
    pub(super) fn value(&self) -> Result<Option<u64>, CodecError> {
        let Some(digits) = self.first else {
            return Ok(None);
        };
        let mut n: u64 = 0;
        for &d in digits {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(CodecError::from(Kind::ContentLengthOverflow))?;
        }
        Ok(Some(n))
    }
}

/// The transfer-codings of one message, all Transfer-Encoding headers taken as one list in order.
///
/// Only the shape matters to framing: whether the final coding is chunked, whether chunked also
/// appears earlier, whether any other coding appears; [`body_framing`] decides.
#[derive(Debug, Default)]
pub(super) struct TransferCodings {
    seen: bool,
    last_chunked: bool,
    chunked_before_final: bool,
    other_coding: bool,
}

impl TransferCodings {
    /// Adds the value of one Transfer-Encoding header. Empty elements are refused (RFC 9110 lets
    /// a recipient skip them; for the one header that decides framing we do not guess).
    pub(super) fn add(&mut self, value: &[u8]) -> Result<(), CodecError> {
        for elem in list_elements(value) {
            if elem.is_empty() {
                return Err(Kind::EmptyTransferCoding.into());
            }
            let (name, has_params) = match memchr::memchr(b';', elem) {
                Some(i) => (trim_ows(&elem[..i]), true),
                None => (elem, false),
            };
            if !is_token(name) {
                return Err(Kind::InvalidTransferCoding.into());
            }
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            if chunked && has_params {
                // chunked takes no parameters (RFC 9112 §7.1).
                return Err(Kind::InvalidTransferCoding.into());
            }
            if self.seen && self.last_chunked {
                self.chunked_before_final = true;
            }
            self.other_coding |= !chunked;
            self.last_chunked = chunked;
            self.seen = true;
        }
        Ok(())
    }

    /// Whether any Transfer-Encoding header was seen.
    pub(super) fn is_present(&self) -> bool {
        self.seen
    }

    /// Whether the final coding is chunked.
    pub(super) fn final_chunked(&self) -> bool {
        self.seen && self.last_chunked
    }

    /// Whether chunked appears before the final coding.
    pub(super) fn chunked_before_final(&self) -> bool {
        self.chunked_before_final
    }

    /// Whether any coding other than chunked appears.
    pub(super) fn other_coding(&self) -> bool {
        self.other_coding
    }
}

/// The connection options of one message that the codec acts on.
#[derive(Debug, Default)]
pub(super) struct ConnectionOptions {
    /// `close` was listed.
    pub(super) close: bool,
    /// `keep-alive` was listed.
    pub(super) keep_alive: bool,
    /// `upgrade` was listed.
    pub(super) upgrade: bool,
}

impl ConnectionOptions {
    /// Adds the value of one Connection header. Elements that are not tokens are ignored here;
    /// [`HopByHop`](super::HopByHop) is where they are refused.
    pub(super) fn add(&mut self, value: &[u8]) {
        for elem in list_elements(value) {
            self.close |= elem.eq_ignore_ascii_case(b"close");
            self.keep_alive |= elem.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade |= elem.eq_ignore_ascii_case(b"upgrade");
        }
    }

    /// Whether the connection stays open after a message of this HTTP/1.x minor version:
    /// HTTP/1.1 unless `close`, HTTP/1.0 only with `keep-alive` (and `close` wins over both).
    pub(super) fn persistent(&self, minor_version: u8) -> bool {
        !self.close && (minor_version >= 1 || self.keep_alive)
    }
}

/// The body framing announced by a message's framing headers (RFC 9112 §6.3, without its
/// leniencies); `without_framing` is what neither header means: [`BodyKind::Empty`] for a
/// request, [`BodyKind::UntilClose`] for a response.
///
/// Refused: Content-Length with Transfer-Encoding (RFC 9112 lets Transfer-Encoding win; a
/// recipient that lets Content-Length win is the classic smuggling pair), Transfer-Encoding in
/// HTTP/1.0 (a 1.0 recipient may ignore it), a final coding other than chunked (a request body
/// whose end cannot be found is a 400; for responses see `response.rs`), chunked twice, and
/// (501) any coding besides chunked: the gateway forwards payloads, it does not decode them.
pub(super) fn body_framing(
    content_length: &ContentLength<'_>,
    codings: &TransferCodings,
    minor_version: u8,
    without_framing: BodyKind,
) -> Result<BodyKind, CodecError> {
    if codings.is_present() {
        if content_length.is_present() {
            return Err(Kind::ContentLengthWithTransferEncoding.into());
        }
        if minor_version == 0 {
            return Err(Kind::TransferEncodingHttp10.into());
        }
        if !codings.final_chunked() {
            return Err(Kind::ChunkedNotFinal.into());
        }
        if codings.chunked_before_final() {
            return Err(Kind::ChunkedTwice.into());
        }
        if codings.other_coding() {
            return Err(Kind::UnsupportedTransferCoding.into());
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(match content_length.value()? {
        None => without_framing,
        Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_end_of_a_crlf_head() {
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\n\r\nbody"), Ok(Some(18)));
        assert_eq!(scan_head(b"GET / HTTP/1.1\r\nA: b\r\n\r\n"), Ok(Some(24)));
    }

    #[test]
    fn scan_skips_leading_empty_lines() {
        assert_eq!(scan_head(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Ok(Some(22)));
    }

    #[test]
    fn scan_reports_incomplete_heads() {
        for buf in [
            &b""[..],
            b"GET",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\n\r",
            b"\r\n",
        ] {
            assert_eq!(
                scan_head(buf),
                Ok(None),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn scan_refuses_bare_lf_bare_cr_and_folded_lines() {
        let kind = |buf: &[u8]| scan_head(buf).map_err(|e| e.kind());
        assert_eq!(kind(b"GET / HTTP/1.1\n\n"), Err(Kind::BareLf));
        assert_eq!(kind(b"\nGET / HTTP/1.1\r\n\r\n"), Err(Kind::BareLf));
        assert_eq!(kind(b"\r\n\nGET"), Err(Kind::BareLf));
        assert_eq!(kind(b"GET / HTTP/1.1\r\nA: b\r\n\n"), Err(Kind::BareLf));
        assert_eq!(kind(b"GET / HTTP/1.1\rA: b\r\n\r\n"), Err(Kind::BareCr));
        assert_eq!(
            kind(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"),
            Err(Kind::ObsFold)
        );
        assert_eq!(
            kind(b"GET / HTTP/1.1\r\n\tA: b\r\n\r\n"),
            Err(Kind::ObsFold)
        );
    }

    #[test]
    fn version_error_tells_unsupported_from_malformed() {
        assert_eq!(version_error(b"HTTP/2.0", true).status(), 505);
        assert_eq!(version_error(b"HTTP/2", false).status(), 505);
        assert_eq!(version_error(b"HTTP/1.2", true).status(), 505);
        assert_eq!(version_error(b"HTTP/2", true).status(), 400);
        assert_eq!(version_error(b"HTTP/11", true).status(), 400);
        assert_eq!(version_error(b"http/1.1", true).status(), 400);
        assert_eq!(version_error(b"HTTP/1.1.1", true).status(), 400);
    }

    #[test]
    fn trim_ows_strips_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
    }
}
