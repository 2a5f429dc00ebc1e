//! Why the gateway answered a request itself: a [`Refusal`], and the reason phrases of the statuses
//! it makes.
//!
//! Every gateway-made response comes from a [`Refusal`]: a status, a stable machine-readable
//! `error` code for the JSON body, and whether the client connection must close (after a framing
//! error nothing that follows on the connection can be trusted). Causes are grouped by who caused
//! them: the client (bad request, limits, timeouts), the config (no route), or the upstream
//! (connect failure, timeout, protocol error). The policies refuse with the same type the engine
//! answers with; mapping the engine's own failures to refusals stays in the engine
//! (`ringgate_http::error`).

/// A request the HTTP parser could not accept: it knows its status and stable error code.
///
/// The codec's error type implements it (in `ringgate-http`), so [`Refusal::from_codec`] can live
/// here without this crate knowing the codec.
pub trait FramingError {
    /// The status to answer with (400, 413, 414, 431, 501, 505...).
    fn status(&self) -> u16;
    /// The stable error code for the JSON body.
    fn code(&self) -> &'static str;
}

/// A response the gateway makes itself instead of proxying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Stable error code, the `error` field of the JSON body.
    pub code: &'static str,
    /// Close the client connection after answering.
    pub close: bool,
}

impl Refusal {
    /// A refusal that keeps the connection when the request was well framed.
    pub const fn new(status: u16, code: &'static str) -> Self {
        Self {
            status,
            code,
            close: false,
        }
    }

    /// The same refusal, closing the connection.
    pub const fn closing(self) -> Self {
        Self {
            close: true,
            ..self
        }
    }

    /// 404: no route matched.
    pub const NO_ROUTE: Refusal = Refusal::new(404, "no_route");
    /// 408: the request head did not arrive in time.
    pub const REQUEST_TIMEOUT: Refusal = Refusal::new(408, "request_timeout").closing();
    /// 408: the request body missed its deadline (total or minimum rate).
    pub const BODY_TIMEOUT: Refusal = Refusal::new(408, "request_body_timeout").closing();
    /// 413: the body is over the route's limit.
    pub const BODY_TOO_LARGE: Refusal = Refusal::new(413, "payload_too_large").closing();
    /// 502: no upstream connection could be made.
    pub const UPSTREAM_CONNECT_FAILED: Refusal = Refusal::new(502, "upstream_connect_failed");
    /// 502: the TLS handshake with the upstream failed (the reason is logged and counted).
    pub const UPSTREAM_TLS_FAILED: Refusal = Refusal::new(502, "upstream_tls_failed");
    /// 502: the upstream broke the protocol or the connection.
    pub const UPSTREAM_PROTOCOL: Refusal = Refusal::new(502, "upstream_protocol_error");
    /// 503: the upstream has no endpoint.
    pub const NO_ENDPOINT: Refusal = Refusal::new(503, "no_healthy_upstream");
    /// 504: the upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: Refusal = Refusal::new(504, "upstream_timeout");
    /// 503: the upstream's circuit breaker is open.
    pub const UPSTREAM_UNAVAILABLE: Refusal = Refusal::new(503, "upstream_unavailable");
    /// 503: the upstream's per-core request or connection cap is reached.
    pub const UPSTREAM_OVERLOADED: Refusal = Refusal::new(503, "upstream_overloaded");

    /// The refusal for a request the codec rejected: always closes the connection.
    pub fn from_codec(e: &impl FramingError) -> Self {
        Refusal {
            status: e.status(),
            code: e.code(),
            close: true,
        }
    }

    /// The standard reason phrase of the status.
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status)
    }
}

/// Reason phrases for the statuses the gateway makes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unframed;

    impl FramingError for Unframed {
        fn status(&self) -> u16 {
            431
        }
        fn code(&self) -> &'static str {
            "header_too_large"
        }
    }

    #[test]
    fn a_framing_error_refuses_and_closes() {
        let r = Refusal::from_codec(&Unframed);
        assert_eq!((r.status, r.code, r.close), (431, "header_too_large", true));
        assert_eq!(r.reason(), "Request Header Fields Too Large");
    }

    #[test]
    fn closing_keeps_status_and_code() {
        let (keep, close) = (Refusal::NO_ROUTE, Refusal::BODY_TOO_LARGE);
        assert_eq!((keep.close, close.close), (false, true));
        let c = Refusal::NO_ROUTE.closing();
        assert_eq!((c.status, c.code, c.close), (404, "no_route", true));
    }

    #[test]
    fn unknown_statuses_have_a_phrase() {
        assert_eq!(reason_phrase(503), "Service Unavailable");
        assert_eq!(reason_phrase(599), "Unknown");
    }
}
