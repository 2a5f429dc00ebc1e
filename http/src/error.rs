//! Why the gateway answered a request itself, and the one place that maps it to a response.
//!
//! Every gateway-made response comes from a [`Refusal`]: a status, a stable machine-readable
//! `error` code for the JSON body, and whether the client connection must close (after a framing
//! error nothing that follows on the connection can be trusted). Causes are grouped by who caused
//! them: the client (bad request, limits, timeouts), the config (no route), or the upstream
//! (connect failure, timeout, protocol error).

use crate::codec::CodecError;

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
    pub fn from_codec(e: &CodecError) -> Self {
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

/// Why one proxied exchange failed (internal to the engine; becomes a [`Refusal`] or an abort).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something the codec rejects.
    #[error("bad request: {0}")]
    Codec(#[from] CodecError),
    /// The client went away or its socket failed.
    #[error("client i/o: {0}")]
    ClientIo(std::io::Error),
    /// The client stalled while sending a body.
    #[error("client body stalled")]
    ClientStalled,
    /// The request body missed its deadline (total, or minimum rate).
    #[error("request body too slow")]
    BodyTooSlow,
    /// The request body is over the route's limit.
    #[error("request body over the route's limit")]
    BodyTooLarge,
    /// Connecting to the upstream failed or timed out.
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream connection failed or closed mid-exchange.
    #[error("upstream i/o: {0}")]
    UpstreamIo(std::io::Error),
    /// The upstream sent something unparsable.
    #[error("upstream protocol error: {0}")]
    UpstreamProtocol(CodecError),
    /// The upstream's per-core connection cap is reached.
    #[error("upstream connection cap reached")]
    Overloaded,
}

impl ProxyError {
    /// The response for this failure, if one can still be sent; `None` means just close.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            ProxyError::Codec(e) => Some(Refusal::from_codec(e)),
            ProxyError::ClientIo(_) => None,
            ProxyError::ClientStalled => Some(Refusal::REQUEST_TIMEOUT),
            ProxyError::BodyTooSlow => Some(Refusal::BODY_TIMEOUT),
            ProxyError::BodyTooLarge => Some(Refusal::BODY_TOO_LARGE),
            ProxyError::Connect(e) if crate::tls::UpstreamTlsFail::of_io(e).is_some() => {
                Some(Refusal::UPSTREAM_TLS_FAILED)
            }
            ProxyError::Connect(_) => Some(Refusal::UPSTREAM_CONNECT_FAILED),
            ProxyError::Overloaded => Some(Refusal::UPSTREAM_OVERLOADED),
            ProxyError::UpstreamTimeout => Some(Refusal::UPSTREAM_TIMEOUT),
            ProxyError::UpstreamIo(_) | ProxyError::UpstreamProtocol(_) => {
                Some(Refusal::UPSTREAM_PROTOCOL)
            }
        }
    }
}
