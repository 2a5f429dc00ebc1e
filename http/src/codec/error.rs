//! The one error type of the codec: why a message head or a chunked body was refused.
//!
//! The type is opaque on purpose (as h2 does it): the variants are a private enum, and callers ask
//! the three questions a gateway needs answered, each with a stable answer:
//! - [`CodecError::status`]: which status the gateway sends the client (the engine maps errors from
//!   [`parse_response_head`](super::parse_response_head) to 502 instead: an upstream's bad framing
//!   is not the client's fault, and these values then only say what class of fault it was);
//! - [`CodecError::code`]: a stable machine-readable code for the error body and the metrics;
//! - [`CodecError::detail`]: a short fixed phrase for the logs, precise enough to tell which rule
//!   fired (request smuggling attempts are diagnosed from these).
//!
//! Everything is `'static` and `Copy`: building an error allocates nothing, so a flood of bad
//! requests costs no more than a flood of good ones.

/// Why the codec refused a message head or a chunked body.
///
/// `Display` prints `"<status> <code>: <detail>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {}", self.status(), self.code(), self.detail())]
pub struct CodecError {
    kind: Kind,
}

/// Every rule the codec enforces, one variant each. Private: the public contract is
/// status/code/detail, so rules can be split or merged without breaking callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    // --- 400: the message is malformed ---
    /// httparse refused a byte in a header name (also: whitespace before the colon).
    HeaderName,
    /// httparse refused a byte in a header value (NUL, CTL other than HTAB, DEL).
    HeaderValue,
    /// httparse refused a line ending.
    NewLine,
    /// httparse refused the status line of a response.
    StatusLine,
    /// httparse refused the method or the request-target (a byte outside the allowed set).
    Token,
    /// The version field is not of the form `HTTP/<digit>.<digit>`.
    MalformedVersion,
    /// A LF that does not follow a CR.
    BareLf,
    /// A CR that is not followed by a LF.
    BareCr,
    /// A line of the head starts with SP or HTAB (obs-fold, or whitespace before the first field).
    ObsFold,
    /// httparse found the end of the head where our scan did not (cannot happen; kept total).
    MalformedHead,
    /// The request-target is none of origin-form, absolute-form, or `*`.
    InvalidTarget,
    /// `*` as request-target with a method other than OPTIONS.
    AsteriskNotOptions,
    /// The request-target contains a '#' or a byte outside ASCII.
    TargetByte,
    /// The authority of an absolute-form target is not a valid host[:port].
    TargetAuthority,
    /// HTTP/1.1 request without a Host header.
    MissingHost,
    /// More than one Host header.
    DuplicateHost,
    /// The Host header is not a valid host[:port].
    InvalidHost,
    /// A Content-Length value is not 1*DIGIT.
    InvalidContentLength,
    /// A Content-Length value does not fit in a u64.
    ContentLengthOverflow,
    /// Several Content-Length values that are not all identical.
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 message.
    TransferEncodingHttp10,
    /// An empty Transfer-Encoding value or list element.
    EmptyTransferCoding,
    /// A transfer-coding that is not a token (or `chunked` with parameters).
    InvalidTransferCoding,
    /// The final transfer-coding is not chunked.
    ChunkedNotFinal,
    /// `chunked` listed more than once.
    ChunkedTwice,
    /// A response status code below 100.
    InvalidStatusCode,
    /// A Connection header element that is not a token.
    InvalidConnectionToken,
    /// More Connection tokens than [`HopByHop`](super::HopByHop) can hold.
    TooManyConnectionTokens,
    /// A chunk-size that does not start with a hex digit.
    ChunkSize,
    /// A chunk-size of more than 16 hex digits.
    ChunkSizeTooLong,
    /// Whitespace after the chunk-size that is not followed by an extension.
    ChunkSizeTrailingSpace,
    /// A chunk extension that does not follow the grammar.
    ChunkExtension,
    /// A chunk-size line longer than `max_line_bytes`.
    ChunkLineTooLong,
    /// A chunk-size line not ended by CRLF.
    ChunkLineEnding,
    /// Chunk data not followed by CRLF.
    ChunkDataEnding,
    /// A trailer field line that is not a valid field line.
    TrailerField,
    /// A trailer section larger than `max_trailer_bytes`.
    TrailerTooLarge,
    /// The trailer section (or the last-chunk) not ended by CRLF.
    TrailerLineEnding,

    // --- 414 ---
    /// The request-target is longer than `max_uri_bytes`.
    UriTooLong,
    /// No end of the request line within `max_uri_bytes + 32` bytes.
    RequestLineTooLong,

    // --- 431 ---
    /// The head is longer than `max_head_bytes`.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`](super::MAX_HEADERS) header fields.
    TooManyHeaders,

    // --- 501 ---
    /// CONNECT (authority-form) requests: a tunnel is not a proxied request.
    ConnectNotSupported,
    /// A transfer-coding other than chunked applied to a request body.
    UnsupportedTransferCoding,

    // --- 505 ---
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (e.g. the HTTP/2 preface).
    VersionNotSupported,
}

impl From<Kind> for CodecError {
    fn from(kind: Kind) -> Self {
        CodecError { kind }
    }
}

impl CodecError {
    /// A head with more fields than [`super::MAX_HEADERS`] (431), for framings that split the
    /// fields themselves (HTTP/2).
    pub fn too_many_fields() -> Self {
        Kind::TooManyHeaders.into()
    }

    /// The status the gateway answers a client with for this error:
    /// 400, 414, 431, 501 or 505.
    pub fn status(&self) -> u16 {
        use Kind::*;
        match self.kind {
            UriTooLong | RequestLineTooLong => 414,
            HeadTooLarge | TooManyHeaders => 431,
            ConnectNotSupported | UnsupportedTransferCoding => 501,
            VersionNotSupported => 505,
            _ => 400,
        }
    }

    /// A stable machine-readable code, one per status: `bad_request`, `uri_too_long`,
    /// `request_header_fields_too_large`, `not_implemented`, `http_version_not_supported`.
    pub fn code(&self) -> &'static str {
        match self.status() {
            414 => "uri_too_long",
            431 => "request_header_fields_too_large",
            501 => "not_implemented",
            505 => "http_version_not_supported",
            _ => "bad_request",
        }
    }

    /// A short fixed phrase naming the rule that fired, for the logs.
    pub fn detail(&self) -> &'static str {
        use Kind::*;
        match self.kind {
            HeaderName => "invalid header name (bad byte, or whitespace before the colon)",
            HeaderValue => "invalid byte in header value",
            NewLine => "invalid line ending",
            StatusLine => "invalid status line",
            Token => "invalid byte in method or request-target",
            MalformedVersion => "malformed HTTP version",
            BareLf => "bare LF line ending",
            BareCr => "bare CR",
            ObsFold => "line starts with whitespace (obs-fold)",
            MalformedHead => "malformed message head",
            InvalidTarget => "request-target is not origin-form, absolute-form or '*'",
            AsteriskNotOptions => "'*' request-target with a method other than OPTIONS",
            TargetByte => "request-target contains '#' or a non-ASCII byte",
            TargetAuthority => "absolute-form target has an invalid authority",
            MissingHost => "HTTP/1.1 request without Host",
            DuplicateHost => "more than one Host header",
            InvalidHost => "Host header is not a valid authority",
            InvalidContentLength => "content-length is not 1*DIGIT",
            ContentLengthOverflow => "content-length overflows u64",
            ConflictingContentLength => "conflicting content-length values",
            ContentLengthWithTransferEncoding => "content-length with transfer-encoding",
            TransferEncodingHttp10 => "transfer-encoding in an HTTP/1.0 message",
            EmptyTransferCoding => "empty transfer-coding",
            InvalidTransferCoding => "invalid transfer-coding",
            ChunkedNotFinal => "final transfer-coding is not chunked",
            ChunkedTwice => "chunked applied more than once",
            InvalidStatusCode => "status code below 100",
            InvalidConnectionToken => "connection option is not a token",
            TooManyConnectionTokens => "too many connection options",
            ChunkSize => "chunk-size is not 1*HEXDIG",
            ChunkSizeTooLong => "chunk-size has more than 16 hex digits",
            ChunkSizeTrailingSpace => "whitespace after chunk-size without extension",
            ChunkExtension => "invalid chunk extension",
            ChunkLineTooLong => "chunk-size line exceeds max_line_bytes",
            ChunkLineEnding => "chunk-size line not ended by CRLF",
            ChunkDataEnding => "chunk data not followed by CRLF",
            TrailerField => "invalid trailer field",
            TrailerTooLarge => "trailer section exceeds max_trailer_bytes",
            TrailerLineEnding => "trailer line not ended by CRLF",
            UriTooLong => "request-target exceeds max_uri_bytes",
            RequestLineTooLong => "request line has no end within max_uri_bytes + 32 bytes",
            HeadTooLarge => "message head exceeds max_head_bytes",
            TooManyHeaders => "more than MAX_HEADERS header fields",
            ConnectNotSupported => "CONNECT is not supported",
            UnsupportedTransferCoding => "transfer-coding other than chunked",
            VersionNotSupported => "HTTP version other than 1.0 and 1.1",
        }
    }

    /// The rule that fired; tests in this module assert on it.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

/// httparse's own refusals. `Version` is mapped by the head parsers themselves, which can tell
/// a malformed version (400) from a well-formed unsupported one (505).
impl From<httparse::Error> for CodecError {
    fn from(e: httparse::Error) -> Self {
        let kind = match e {
            httparse::Error::HeaderName => Kind::HeaderName,
            httparse::Error::HeaderValue => Kind::HeaderValue,
            httparse::Error::NewLine => Kind::NewLine,
            httparse::Error::Status => Kind::StatusLine,
            httparse::Error::Token => Kind::Token,
            httparse::Error::TooManyHeaders => Kind::TooManyHeaders,
            httparse::Error::Version => Kind::MalformedVersion,
        };
        kind.into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_status_code_and_detail() {
        let e = CodecError::from(Kind::ContentLengthWithTransferEncoding);
        assert_eq!(
            e.to_string(),
            "400 bad_request: content-length with transfer-encoding"
        );
    }

    #[test]
    fn each_status_has_its_stable_code() {
        let cases = [
            (Kind::BareLf, 400, "bad_request"),
            (Kind::UriTooLong, 414, "uri_too_long"),
            (Kind::RequestLineTooLong, 414, "uri_too_long"),
            (Kind::HeadTooLarge, 431, "request_header_fields_too_large"),
            (Kind::TooManyHeaders, 431, "request_header_fields_too_large"),
            (Kind::ConnectNotSupported, 501, "not_implemented"),
            (Kind::UnsupportedTransferCoding, 501, "not_implemented"),
            (Kind::VersionNotSupported, 505, "http_version_not_supported"),
        ];
        for (kind, status, code) in cases {
            let e = CodecError::from(kind);
            assert_eq!((e.status(), e.code()), (status, code), "{kind:?}");
        }
    }

    #[test]
    fn httparse_too_many_headers_maps_to_431() {
        let e = CodecError::from(httparse::Error::TooManyHeaders);
        assert_eq!(e.status(), 431);
        assert_eq!(CodecError::from(httparse::Error::HeaderValue).status(), 400);
    }
}
