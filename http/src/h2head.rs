//! The upstream request head for an HTTP/2 upstream, made from the typed request head once:
//! the same fields the HTTP/1.1 head gets (one rule decides which client fields pass:
//! [`passes`]), minus those HTTP/2 forbids (connection-specific fields; `Host` becomes
//! `:authority`), plus `te: trailers` for gRPC. Before, the HTTP/1.1 text was written and then
//! parsed again into this form.

use crate::codec::{BodyKind, HopByHop, RequestHead};
use crate::hygiene::{forwarded_for, passes, upstream_host, ForwardContext};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request};

/// Why the head could not be made (a field the `http` crate refuses).
#[derive(Debug, thiserror::Error)]
#[error("upstream request head: {0}")]
pub struct H2HeadError(#[from] http::Error);

/// Fields that exist only for one HTTP/1.1 connection (RFC 9113 §8.2.2): never sent over HTTP/2.
pub fn connection_specific(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "host",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// The request for an HTTP/2 upstream reached over `scheme` (path already rewritten).
pub fn h2_request_head(
    req: &RequestHead<'_, '_>,
    hop: &HopByHop<'_>,
    upstream_path: &[u8],
    fwd: &ForwardContext<'_>,
    scheme: &str,
    grpc: bool,
) -> Result<Request<()>, H2HeadError> {
    let mut scratch = Vec::with_capacity(64);
    upstream_host(req, fwd, &mut scratch);
    let mut uri = Vec::with_capacity(scheme.len() + 3 + scratch.len() + upstream_path.len());
    uri.extend_from_slice(scheme.as_bytes());
    uri.extend_from_slice(b"://");
    uri.extend_from_slice(&scratch);
    uri.extend_from_slice(upstream_path);
    let mut map = HeaderMap::with_capacity(req.headers.len() + 8);
    for h in req.headers {
        if passes(h.name, hop, fwd) && !connection_specific(h.name) {
            append(&mut map, h.name.as_bytes(), h.value)?;
        }
    }
    if let Some(t) = fwd.trace {
        append(&mut map, b"x-request-id", t.request_id())?;
        append(&mut map, b"traceparent", t.traceparent())?;
    }
    for line in fwd.extra.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            append(&mut map, &line[..colon], line[colon + 1..].trim_ascii())?;
        }
    }
    scratch.clear();
    forwarded_for(req, fwd.client_ip, &mut scratch);
    append(&mut map, b"x-forwarded-for", &scratch)?;
    append(&mut map, b"x-forwarded-proto", fwd.proto.as_bytes())?;
    if let Some(host) = req.host {
        append(&mut map, b"x-forwarded-host", host)?;
    }
    if let BodyKind::Length(n) = req.body {
        map.append(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if grpc {
        // gRPC servers expect it: the client understands trailers.
        map.append(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let mut r = Request::builder()
        .method(req.method)
        .uri(uri.as_slice())
        .body(())?;
    *r.headers_mut() = map;
    Ok(r)
}

fn append(map: &mut HeaderMap, name: &[u8], value: &[u8]) -> Result<(), http::Error> {
    let name = HeaderName::from_bytes(name).map_err(http::Error::from)?;
    let value = HeaderValue::from_bytes(value).map_err(http::Error::from)?;
    map.append(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{parse_request_head, HeadLimits, MAX_HEADERS};
    use crate::gateway::HostRewrite;
    use crate::hygiene::write_request_head;

    fn fwd<'a>(host: &'a HostRewrite, extra: &'a [u8]) -> ForwardContext<'a> {
        ForwardContext {
            client_ip: b"192.0.2.7",
            proto: "https",
            host,
            endpoint: "127.0.0.1:9000".parse().expect("addr"),
            trace: None,
            extra,
            drop: &[],
            strip_credential: true,
            upgrade: None,
            drop_underscores: true,
        }
    }

    /// The fields of an HTTP/1.1 head, lower-cased, in order.
    fn fields_of(text: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut hs);
        assert!(r.parse(text).expect("parses").is_complete());
        r.headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect()
    }

    #[test]
    fn the_h2_head_carries_what_the_http1_head_carries_minus_connection_fields() {
        let raw = b"POST /v1/items?x=1 HTTP/1.1\r\nHost: api.example\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nAuthorization: Bearer t\r\nX_User_Id: spoof\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\nAccept: text/plain\r\nContent-Length: 3\r\n\r\nabc";
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = parse_request_head(
            raw,
            &mut hs,
            &HeadLimits {
                max_head_bytes: 16 * 1024,
                max_uri_bytes: 8 * 1024,
            },
        )
        .expect("valid")
        .expect("complete");
        let hop = HopByHop::from_headers(req.headers).expect("hop");
        let host = HostRewrite::Keep;
        let f = fwd(&host, b"x-user-id: alice\r\n");
        let mut text = Vec::new();
        write_request_head(&mut text, &req, &hop, b"/items?x=1", &f);
        let h2 = h2_request_head(&req, &hop, b"/items?x=1", &f, "http", true).expect("head");
        assert_eq!(h2.method(), "POST");
        assert_eq!(h2.uri().to_string(), "http://api.example/items?x=1");
        let mut from_text: Vec<(String, Vec<u8>)> = fields_of(&text)
            .into_iter()
            .filter(|(n, _)| !connection_specific(n))
            .collect();
        from_text.push(("te".into(), b"trailers".to_vec()));
        let mut from_h2: Vec<(String, Vec<u8>)> = h2
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        from_text.sort();
        from_h2.sort();
        assert_eq!(from_h2, from_text);
        // What must not pass did not.
        for gone in ["authorization", "x_user_id", "x-hop", "connection", "host"] {
            assert!(h2.headers().get(gone).is_none(), "{gone} passed");
        }
        assert_eq!(h2.headers()["x-user-id"], "alice");
        assert_eq!(h2.headers()["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
    }
}
