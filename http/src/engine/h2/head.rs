//! An HTTP/2 stream's request as the pipeline's typed head, without a detour through text.
//!
//! The stream's fields are lent to the same head type an HTTP/1.1 request parses into
//! ([`RequestHead`]) and judged by the same target, `Host` and framing rules
//! ([`request_from_fields`]): `:authority` as `Host`, split `cookie` fields joined again (RFC
//! 9113 §8.2.3), connection-specific fields left out (the pipeline frames the body itself: by the
//! stream's `content-length`, else chunked), and a WebSocket opened with an extended CONNECT (RFC
//! 8441) as the HTTP/1.1 upgrade its upstream knows. Before, the head was written as HTTP/1.1
//! text and parsed again.

use crate::codec::{request_from_fields, CodecError, HeadLimits, RequestHead};
use http::request::Parts;

/// An HTTP/2 request's head, kept for the pipeline.
pub(crate) struct H2Head {
    parts: Parts,
    /// An extended CONNECT for a WebSocket: a `GET` with an upgrade upstream.
    websocket: bool,
    /// The stream's `cookie` fields joined (empty when it sent none).
    cookie: Vec<u8>,
    /// The `Sec-WebSocket-Key` the gateway sends upstream for a WebSocket.
    ws_key: String,
    /// The body is framed chunked upstream (no `content-length`, not ended with the head).
    chunked: bool,
    /// The stream's request ended (a stream carries one request).
    given: bool,
}

impl H2Head {
    /// The head of a stream whose request has `parts`; `ended`: its head ended the stream.
    pub(crate) fn new(parts: Parts, websocket: bool, ws_key: String, ended: bool) -> Self {
        let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
        let mut cookie = Vec::new();
        if let Some(first) = cookies.next() {
            cookie.extend_from_slice(first.as_bytes());
            for c in cookies {
                cookie.extend_from_slice(b"; ");
                cookie.extend_from_slice(c.as_bytes());
            }
        }
        let chunked =
            !websocket && !ended && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
        H2Head {
            parts,
            websocket,
            cookie,
            ws_key,
            chunked,
            given: false,
        }
    }

    /// The body is framed chunked upstream.
    pub(crate) fn chunked(&self) -> bool {
        self.chunked
    }

    /// The method sent.
    pub(crate) fn method(&self) -> &str {
        self.parts.method.as_str()
    }

    /// The request has not ended yet (its head is still to be planned, or planned again after
    /// a wait).
    pub(crate) fn pending(&self) -> bool {
        !self.given
    }

    /// The request ended: the stream has nothing more to plan.
    pub(crate) fn done(&mut self) {
        self.given = true;
    }

    /// The typed head, its fields lent into `hs` (a head with more fields than `hs` holds is a
    /// 431, as for HTTP/1.1).
    pub(crate) fn view<'a, 'h>(
        &'a self,
        hs: &'h mut [httparse::Header<'a>],
        limits: &HeadLimits,
    ) -> Result<RequestHead<'h, 'a>, CodecError> {
        let mut n = 0;
        let mut overflow = false;
        let mut push = |name: &'a str, value: &'a [u8]| {
            match hs.get_mut(n) {
                Some(slot) => *slot = httparse::Header { name, value },
                None => overflow = true,
            }
            n += 1;
        };
        let authority = self.parts.uri.authority();
        if let Some(a) = authority {
            push("host", a.as_str().as_bytes());
        }
        let mut length = None;
        for (name, value) in &self.parts.headers {
            match name.as_str() {
                // :authority wins over a host field (RFC 9113 §8.3.1).
                "host" if authority.is_some() => {}
                // Connection-specific fields are malformed in HTTP/2 (h2 refuses most); the
                // pipeline frames the body itself.
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding"
                | "upgrade" | "te" | "expect" | "sec-websocket-key" | "cookie" => {}
                "content-length" => length = Some(value.as_bytes()),
                other => push(other, value.as_bytes()),
            }
        }
        if !self.cookie.is_empty() {
            push("cookie", &self.cookie);
        }
        if self.websocket {
            push("connection", b"upgrade");
            push("upgrade", b"websocket");
            push("sec-websocket-key", self.ws_key.as_bytes());
        } else if let Some(v) = length {
            push("content-length", v);
        } else if self.chunked {
            push("transfer-encoding", b"chunked");
        }
        let target = match self.parts.uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => pq.as_str(),
            _ => "/",
        };
        let method = if self.websocket { "GET" } else { self.method() };
        if overflow {
            return Err(CodecError::too_many_fields());
        }
        request_from_fields(method, target, &hs[..n], limits)
    }
}
