//! Header hygiene: the request head the upstream sees and the response head the client sees.
//!
//! A proxy must not forward what belongs to one hop: the fixed hop-by-hop set and every header
//! the message's `Connection` header names are dropped both ways. Framing headers are never copied
//! blindly: the engine decides the framing it forwards (the codec has validated it, so smuggling
//! ambiguities cannot pass) and writes `Content-Length` or `Transfer-Encoding` itself. On the way
//! up the gateway adds `X-Forwarded-For` (appending the client's address to any chain it was
//! given), `X-Forwarded-Proto` and `X-Forwarded-Host`, and sets `Host` per the upstream's policy.
//! `Expect` is consumed here: the gateway answers `100-continue` itself when it wants the body.
//! Heads are written into a reused buffer; nothing is allocated.

use crate::codec::{BodyKind, HopByHop, RequestHead, ResponseHead};
use crate::gateway::HostRewrite;
use crate::respond::push_u64;
use crate::trace::RequestTrace;
use std::io::Write as _;
use std::net::SocketAddr;

/// Appends `name: value\r\n` (lives in `ringgate-model`, shared with the policies that write
/// identity headers; re-exported here under its old path).
pub use ringgate_model::headers::push_header;

/// What the gateway adds to a forwarded request.
pub struct ForwardContext<'a> {
    /// The client's IP, as text (formatted once per connection).
    pub client_ip: &'a [u8],
    /// `http` or `https`: the scheme the client used.
    pub proto: &'static str,
    /// The upstream's Host policy.
    pub host: &'a HostRewrite,
    /// The endpoint chosen for this attempt.
    pub endpoint: SocketAddr,
    /// The request's ids: when given, the client's `X-Request-Id` and `traceparent` are replaced
    /// by these (the request id is the client's own when it sent a sane one).
    pub trace: Option<&'a RequestTrace>,
    /// Further header lines the gateway adds (each `name: value\r\n`), e.g. identity headers.
    pub extra: &'a [u8],
    /// Header names (lower case) never forwarded from the client (identity headers).
    pub drop: &'a [Box<str>],
    /// Drop the client's credential headers (`Authorization`, `X-API-Key`).
    pub strip_credential: bool,
    /// Ask the upstream to switch to this protocol (`Connection: upgrade`, `Upgrade: ...`).
    pub upgrade: Option<&'static str>,
    /// Drop every client header whose name has a `_` (else only those that name a managed
    /// header once `_` reads as `-`).
    pub drop_underscores: bool,
}

/// Whether header name `name` is `managed` (lower case, `-` separated) in any spelling an
/// upstream may read as it: any case, and `_` for `-` (CGI, WSGI and PHP map both to `_`).
pub fn names_header(name: &str, managed: &str) -> bool {
    name.len() == managed.len()
        && name
            .bytes()
            .zip(managed.bytes())
            .all(|(a, m)| a.to_ascii_lowercase() == m || (a == b'_' && m == b'-'))
}

/// Request headers the gateway writes itself (never copied from the client), in any spelling.
fn is_managed_request_header(name: &str) -> bool {
    const MANAGED: [&str; 7] = [
        "host",
        "content-length",
        "transfer-encoding",
        "expect",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    MANAGED.iter().any(|m| names_header(name, m))
        || name
            .get(..CLIENT_CERT_PREFIX.len())
            .is_some_and(|p| names_header(p, CLIENT_CERT_PREFIX))
}

/// Headers the gateway writes from a verified client certificate (`x-client-cert-id`,
/// `-subject`, `-san`): never taken from a client, on any listener.
const CLIENT_CERT_PREFIX: &str = "x-client-cert-";

/// Request headers replaced when the gateway assigns the request's ids.
fn is_trace_header(name: &str) -> bool {
    names_header(name, "x-request-id") || names_header(name, "traceparent")
}

/// Whether the client's header `name` goes upstream as sent: not hop-by-hop, not a header the
/// gateway manages or replaces (framing, `Host`, forwarding, identity, trace ids when it assigns
/// them, credentials it strips), in any spelling an upstream may read as one of them. One rule
/// for every upstream protocol.
pub fn passes(name: &str, hop: &HopByHop<'_>, fwd: &ForwardContext<'_>) -> bool {
    !((fwd.drop_underscores && name.contains('_'))
        || is_managed_request_header(name)
        || hop.contains(name)
        || (fwd.trace.is_some() && is_trace_header(name))
        || (fwd.strip_credential
            && (names_header(name, "authorization") || names_header(name, "x-api-key")))
        || fwd.drop.iter().any(|d| names_header(name, d)))
}

/// The `Host` the upstream gets, per its policy (the endpoint when the client sent none).
pub fn upstream_host<'a>(req: &RequestHead<'_, 'a>, fwd: &ForwardContext<'a>, out: &mut Vec<u8>) {
    match fwd.host {
        HostRewrite::Keep if req.host.is_some_and(|h| !h.is_empty()) => {
            out.extend_from_slice(req.host.unwrap_or_default());
        }
        HostRewrite::Set(v) => out.extend_from_slice(v.as_bytes()),
        // HTTP/1.0 clients may send no Host; the upstream still needs one.
        HostRewrite::Keep | HostRewrite::Endpoint => {
            let _ = write!(out, "{}", fwd.endpoint);
        }
    }
}

/// The `X-Forwarded-For` value: the chain the client sent (several headers joined in order),
/// then this hop's view of the client.
pub fn forwarded_for(req: &RequestHead<'_, '_>, client_ip: &[u8], out: &mut Vec<u8>) {
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
    {
        let v = trim_ows(h.value);
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client_ip);
}

/// Appends the upstream request head for `req` (path already rewritten) to `out`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    hop: &HopByHop<'_>,
    upstream_path: &[u8],
    fwd: &ForwardContext<'_>,
) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream_path);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    upstream_host(req, fwd, out);
    out.extend_from_slice(b"\r\n");
    for h in req.headers {
        if passes(h.name, hop, fwd) {
            push_header(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(t) = fwd.trace {
        push_header(out, b"x-request-id", t.request_id());
        push_header(out, b"traceparent", t.traceparent());
    }
    out.extend_from_slice(fwd.extra);
    out.extend_from_slice(b"x-forwarded-for: ");
    forwarded_for(req, fwd.client_ip, out);
    out.extend_from_slice(b"\r\n");
    push_header(out, b"x-forwarded-proto", fwd.proto.as_bytes());
    if let Some(proto) = fwd.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        push_header(out, b"upgrade", proto.as_bytes());
    }
    if let Some(host) = req.host {
        push_header(out, b"x-forwarded-host", host);
    }
    match req.body {
        BodyKind::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyKind::Empty | BodyKind::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// As the upstream framed it (content-length, chunked, or no body).
    AsIs,
    /// Chunked upstream, HTTP/1.0 client: payload only, delimited by closing the connection.
    Dechunk,
    /// Until the upstream closes: delimited by closing the connection.
    UntilClose,
}

/// Appends the client response head for `resp` to `out`.
///
/// `close` says the gateway will close the client connection after this response;
/// `http10_keep_alive` says an HTTP/1.0 client asked to keep it; `extra` holds header lines the
/// gateway adds (each `name: value\r\n`).
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    hop: &HopByHop<'_>,
    framing: ClientFraming,
    close: bool,
    http10_keep_alive: bool,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length_written = false;
    for h in resp.headers {
        // Content-Length is end-to-end even when the upstream lists it in Connection (RFC 9110
        // §7.6.1 forbids that): dropping it would leave a kept-alive response unframed. Its
        // duplicates (`2, 2`, or two lines) go on as one field with the one value, where the
        // first one was.
        if h.name.eq_ignore_ascii_case("content-length") {
            if !length_written && framing != ClientFraming::Dechunk {
                if let Some(n) = resp.content_length {
                    out.extend_from_slice(b"content-length: ");
                    push_u64(out, n);
                    out.extend_from_slice(b"\r\n");
                }
            }
            length_written = true;
            continue;
        }
        if hop.contains(h.name) {
            continue;
        }
        push_header(out, h.name.as_bytes(), h.value);
    }
    if resp.body == BodyKind::Chunked && framing == ClientFraming::AsIs {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10_keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of a `101 Switching Protocols` for the client: the upstream's end-to-end
/// fields (`Sec-WebSocket-Accept`, `-Protocol`, `-Extensions`...), then `Connection: upgrade`
/// and `Upgrade: proto`, then the gateway's own lines.
pub fn write_switch_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead<'_, '_>,
    hop: &HopByHop<'_>,
    proto: &str,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for h in resp.headers {
        if hop.contains(h.name)
            || h.name.eq_ignore_ascii_case("content-length")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        push_header(out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"connection: upgrade\r\n");
    push_header(out, b"upgrade", proto.as_bytes());
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{parse_request_head, parse_response_head, HeadLimits, MAX_HEADERS};

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 16384,
        max_uri_bytes: 8192,
    };

    fn forward(raw: &[u8], host: HostRewrite) -> String {
        forward_with(raw, host, false, &[], false)
    }

    fn forward_with(
        raw: &[u8],
        host: HostRewrite,
        drop_underscores: bool,
        drop: &[Box<str>],
        strip_credential: bool,
    ) -> String {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = parse_request_head(raw, &mut hs, &LIMITS)
            .expect("valid")
            .expect("complete");
        let hop = HopByHop::from_headers(req.headers).expect("hop");
        let fwd = ForwardContext {
            client_ip: b"10.1.2.3",
            proto: "http",
            host: &host,
            endpoint: "127.0.0.1:9000".parse().expect("addr"),
            trace: None,
            extra: b"",
            drop,
            strip_credential,
            upgrade: None,
            drop_underscores,
        };
        let mut out = Vec::new();
        write_request_head(&mut out, &req, &hop, b"/up/path?q=1", &fwd);
        String::from_utf8(out).expect("utf8")
    }

    const SPOOFS: &[u8] = b"GET /a HTTP/1.1\r\nHost: ex.com\r\nX_User_Id: admin\r\nx-USER_id: root\r\nX-User-Id: mallory\r\nX_Forwarded_For: 1.2.3.4\r\nX_Api_Key: k\r\nAuthorization: Bearer t\r\nX_Client_Cert_Id: cn\r\nAccept_Language: fr\r\nX-Kept: 1\r\n\r\n";

    #[test]
    fn underscore_names_are_dropped_by_default() {
        let managed: Vec<Box<str>> = vec!["x-user-id".into()];
        let s = forward_with(SPOOFS, HostRewrite::Keep, true, &managed, true);
        assert!(!s.contains('_'), "{s}");
        assert!(
            !s.contains("mallory") && !s.contains("admin") && !s.contains("root"),
            "{s}"
        );
        assert!(s.contains("X-Kept: 1"), "{s}");
        assert!(!s.contains("Bearer"), "{s}");
    }

    #[test]
    fn managed_names_are_matched_in_every_spelling_when_underscores_are_allowed() {
        let managed: Vec<Box<str>> = vec!["x-user-id".into()];
        let s = forward_with(SPOOFS, HostRewrite::Keep, false, &managed, true);
        for gone in [
            "admin",
            "root",
            "mallory",
            "1.2.3.4",
            "X_Api_Key",
            "Bearer",
            "X_Client_Cert_Id",
        ] {
            assert!(!s.contains(gone), "{gone} leaked: {s}");
        }
        assert!(s.contains("Accept_Language: fr"), "{s}");
        assert!(names_header("X_FORWARDED-for", "x-forwarded-for"));
        assert!(!names_header("x-forwarded-fo", "x-forwarded-for"));
        assert!(!names_header("x-forwarded_forx", "x-forwarded-for"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let s = forward(
            b"GET /a HTTP/1.1\r\nHost: ex.com\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\nX-Secret: s\r\nTE: trailers\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
            HostRewrite::Keep,
        );
        let lower = s.to_ascii_lowercase();
        for gone in [
            "connection:",
            "keep-alive:",
            "x-secret:",
            "\r\nte:",
            "upgrade:",
        ] {
            assert!(!lower.contains(gone), "{gone} must be dropped: {s}");
        }
        assert!(
            s.starts_with("GET /up/path?q=1 HTTP/1.1\r\nhost: ex.com\r\n"),
            "{s}"
        );
        assert!(s.contains("Accept: */*\r\n"));
    }

    #[test]
    fn forwarded_headers_are_added_and_xff_chain_is_extended() {
        let s = forward(
            b"GET / HTTP/1.1\r\nHost: ex.com\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
            HostRewrite::Keep,
        );
        assert!(s.contains("x-forwarded-for: 1.1.1.1, 10.1.2.3\r\n"), "{s}");
        assert!(s.contains("x-forwarded-proto: http\r\n"), "{s}");
        assert!(s.contains("x-forwarded-host: ex.com\r\n"), "{s}");
        assert!(!s.contains("evil") && !s.contains("https"), "{s}");
    }

    #[test]
    fn an_http10_request_without_host_gets_the_endpoint_as_host() {
        let s = forward(b"GET / HTTP/1.0\r\n\r\n", HostRewrite::Keep);
        assert!(s.contains("host: 127.0.0.1:9000\r\n"), "{s}");
        assert!(!s.contains("x-forwarded-host"), "{s}");
    }

    #[test]
    fn host_policy_is_applied() {
        let set = forward(
            b"GET / HTTP/1.1\r\nHost: ex.com\r\n\r\n",
            HostRewrite::Set("api.internal".into()),
        );
        assert!(set.contains("host: api.internal\r\n"), "{set}");
        let ep = forward(
            b"GET / HTTP/1.1\r\nHost: ex.com\r\n\r\n",
            HostRewrite::Endpoint,
        );
        assert!(ep.contains("host: 127.0.0.1:9000\r\n"), "{ep}");
    }

    #[test]
    fn framing_is_rewritten_by_the_gateway_and_expect_is_consumed() {
        let s = forward(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            HostRewrite::Keep,
        );
        assert!(s.contains("content-length: 5\r\n"));
        assert!(!s.to_ascii_lowercase().contains("expect"));
        let c = forward(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            HostRewrite::Keep,
        );
        assert!(c.contains("transfer-encoding: chunked\r\n"));
        assert!(!c.contains("content-length"));
    }

    /// The client head the gateway writes for the upstream response `raw`.
    fn relay(raw: &[u8], framing: ClientFraming, close: bool) -> String {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let resp = parse_response_head(raw, &mut hs, false, 16384)
            .expect("ok")
            .expect("complete");
        let hop = HopByHop::from_headers(resp.headers).expect("hop");
        let mut out = Vec::new();
        write_response_head(&mut out, &resp, &hop, framing, close, false, b"");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn response_head_drops_hop_headers_and_sets_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nServer: up\r\n\r\n";
        let s = relay(raw, ClientFraming::AsIs, true);
        assert!(s.contains("Server: up\r\n"));
        assert!(s.contains("transfer-encoding: chunked\r\n"));
        assert!(s.contains("connection: close\r\n"));
        assert!(!s.contains("X-Hop"));
        assert!(!relay(raw, ClientFraming::Dechunk, true).contains("transfer-encoding"));
    }

    #[test]
    fn content_length_survives_being_listed_in_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\n";
        let s = relay(raw, ClientFraming::AsIs, false);
        assert!(s.contains("content-length: 2\r\n"), "{s}");
        assert!(!s.contains("X-Hop"), "{s}");
    }

    #[test]
    fn duplicate_content_lengths_go_on_as_one() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nServer: up\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: up\r\nContent-Length: 2\r\n\r\n",
        ] {
            let s = relay(raw, ClientFraming::AsIs, false);
            assert_eq!(
                s.to_ascii_lowercase().matches("content-length").count(),
                1,
                "{s}"
            );
            assert!(
                s.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nServer: up\r\n"),
                "{s}"
            );
        }
        // The length a HEAD response declares is kept, collapsed too.
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n";
        let resp = parse_response_head(raw, &mut hs, true, 16384)
            .expect("ok")
            .expect("complete");
        let hop = HopByHop::from_headers(resp.headers).expect("hop");
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &resp,
            &hop,
            ClientFraming::AsIs,
            false,
            false,
            b"",
        );
        let s = String::from_utf8(out).expect("utf8");
        assert!(
            s.contains("content-length: 7\r\n") && !s.contains("7, 7"),
            "{s}"
        );
    }
}
