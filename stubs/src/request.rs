//! Request heads for the stub upstream: parse with httparse, decide the endpoint, the body
//! framing and whether the connection stays open. Sans-IO and allocation-free except for
//! `/echo`, whose reply is built from the head while it is still borrowed.

use std::time::Duration;

use crate::body::BodySkipper;

/// Most headers a request may carry (more: 431).
pub const MAX_HEADERS: usize = 64;

/// Largest chunk count / chunk size / SSE event count the streaming endpoints accept.
const MAX_STREAM_ITEMS: u64 = 1_000_000;
const MAX_CHUNK_SIZE: u64 = 1 << 20;

/// The endpoint a request asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Any other path: the configured body, latency and error injection.
    Default,
    /// `/healthz`: 200 `ok`, never delayed or failed (but held during a stall).
    Healthz,
    /// `/echo`: the request line and headers as the body.
    Echo,
    /// `/chunked?n=N&size=BYTES&interval_ms=MS`: a chunked response of N chunks.
    Chunked {
        /// Number of chunks.
        n: u64,
        /// Bytes per chunk.
        size: u64,
        /// Pause between chunks.
        interval: Duration,
    },
    /// `/sse?n=N&interval_ms=MS`: a server-sent event stream of N events.
    Sse {
        /// Number of events.
        n: u64,
        /// Pause between events.
        interval: Duration,
    },
    /// `/__stall?ms=MS`: every worker of this server holds all responses for MS.
    Stall(Duration),
    /// `/status/NNN`: an empty response with that status.
    Status(u16),
}

/// What the connection loop needs from a parsed head.
#[derive(Debug)]
pub struct Head {
    /// Bytes of the head (request line, headers, blank line).
    pub len: usize,
    /// Endpoint.
    pub route: Route,
    /// HEAD request: answer without a body.
    pub head_only: bool,
    /// Close the connection after answering (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// The body to skip, if any.
    pub body: Option<BodySkipper>,
    /// For `/echo`: the reply body (request line and headers).
    pub echo: Option<Vec<u8>>,
}

/// Result of looking at the front of the read buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A whole head.
    Complete(Head),
    /// Need more bytes.
    Partial,
    /// Not a request we accept; answer with this status and close.
    Invalid(u16),
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn route_for(path: &str) -> Route {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let ms = |key| Duration::from_millis(query_u64(q, key).unwrap_or(0).min(3_600_000));
    match p {
        "/healthz" => Route::Healthz,
        "/echo" => Route::Echo,
        "/chunked" => Route::Chunked {
            n: query_u64(q, "n").unwrap_or(4).min(MAX_STREAM_ITEMS),
            size: query_u64(q, "size").unwrap_or(16).clamp(1, MAX_CHUNK_SIZE),
            interval: ms("interval_ms"),
        },
        "/sse" => Route::Sse {
            n: query_u64(q, "n").unwrap_or(10).min(MAX_STREAM_ITEMS),
            interval: ms("interval_ms"),
        },
        "/__stall" => Route::Stall(ms("ms")),
        _ => match p
            .strip_prefix("/status/")
            .and_then(|s| s.parse::<u16>().ok())
        {
            Some(code) if (200..=599).contains(&code) => Route::Status(code),
            _ if p.starts_with("/echo/") => Route::Echo,
            _ => Route::Default,
        },
    }
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn echo_body(req: &httparse::Request<'_, '_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(req.method.unwrap_or("").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("").as_bytes());
    out.extend_from_slice(if req.version == Some(0) {
        b" HTTP/1.0\n"
    } else {
        b" HTTP/1.1\n"
    });
    for h in req.headers.iter() {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.push(b'\n');
    }
    out
}

/// Parses one request head from the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(431),
        Err(_) => return Parsed::Invalid(400),
    };
    let http10 = req.version == Some(0);
    let mut close = http10;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            else {
                return Parsed::Invalid(400);
            };
            if length.is_some_and(|l| l != n) {
                return Parsed::Invalid(400);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !has_token(h.value, b"chunked") {
                return Parsed::Invalid(501);
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if http10 && has_token(h.value, b"keep-alive") {
                close = false;
            }
        }
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Parsed::Invalid(400),
        (_, true) => Some(BodySkipper::chunked()),
        (Some(n), false) if n > 0 => Some(BodySkipper::length(n)),
        _ => None,
    };
    let route = route_for(req.path.unwrap_or("/"));
    let echo = (route == Route::Echo).then(|| echo_body(&req));
    Parsed::Complete(Head {
        len,
        route,
        head_only: req.method == Some("HEAD"),
        close,
        body,
        echo,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> Head {
        match parse(raw) {
            Parsed::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_are_picked_from_the_path() {
        assert_eq!(complete(b"GET / HTTP/1.1\r\n\r\n").route, Route::Default);
        assert_eq!(
            complete(b"GET /healthz HTTP/1.1\r\n\r\n").route,
            Route::Healthz
        );
        assert_eq!(
            complete(b"GET /echo?a=1 HTTP/1.1\r\n\r\n").route,
            Route::Echo
        );
        assert_eq!(
            complete(b"GET /status/503 HTTP/1.1\r\n\r\n").route,
            Route::Status(503)
        );
        assert_eq!(
            complete(b"GET /chunked?n=3&size=5 HTTP/1.1\r\n\r\n").route,
            Route::Chunked {
                n: 3,
                size: 5,
                interval: Duration::ZERO
            }
        );
        assert_eq!(
            complete(b"GET /sse?n=2&interval_ms=7 HTTP/1.1\r\n\r\n").route,
            Route::Sse {
                n: 2,
                interval: Duration::from_millis(7)
            }
        );
        assert_eq!(
            complete(b"POST /__stall?ms=1000 HTTP/1.1\r\n\r\n").route,
            Route::Stall(Duration::from_secs(1))
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(!complete(b"GET / HTTP/1.1\r\n\r\n").close);
        assert!(complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").close);
        assert!(complete(b"GET / HTTP/1.0\r\n\r\n").close);
        assert!(!complete(b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n").close);
    }

    #[test]
    fn body_framing_is_read_from_the_head() {
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").body.is_none());
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n").body,
            Some(BodySkipper::length(7))
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            Some(BodySkipper::chunked())
        );
    }

    #[test]
    fn ambiguous_or_broken_heads_are_refused() {
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(both), Parsed::Invalid(400)));
        let two = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(matches!(parse(two), Parsed::Invalid(400)));
        assert!(matches!(parse(b"GARBAGE\r\n\r\n"), Parsed::Invalid(400)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x"),
            Parsed::Partial
        ));
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(matches!(parse(gzip), Parsed::Invalid(501)));
    }

    #[test]
    fn echo_body_lists_request_line_and_headers() {
        let h = complete(b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
        assert_eq!(
            h.echo.unwrap(),
            b"GET /echo/x HTTP/1.1\nHost: a\nX-Forwarded-For: 1.2.3.4\n".to_vec()
        );
    }
}
