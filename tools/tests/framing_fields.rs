//! Framing fields an upstream or a client should not have sent, end to end (issue 14, item 8):
//! a response's duplicate `Content-Length` (`2, 2`) reaches the client as one field with one
//! value (different values stay a 502); fields no trailer section may carry (`Content-Length`,
//! `Host`, `Authorization`, `Content-Type`...) are dropped from chunked trailers in both
//! directions, and from trailers crossing an HTTP/2 hop, while other trailer fields go on.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::{send, Client};
use ringgate_testkit::gateway::{catch_all, gateway};
use ringgate_testkit::scripted::{fixed, recorder};

#[test]
fn a_duplicated_content_length_is_relayed_as_one() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        twice_through(raw, |r| {
            let lengths: Vec<&str> = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(lengths, ["2"], "{:?}", r.headers);
        });
    }
    let up = fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nhi");
    let gw = gateway(&catch_all(up.addr));
    assert_eq!(
        send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        502
    );
}

const CHUNKED_WITH_TRAILERS: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Checksum: abc\r\nContent-Length: 99\r\nHost: evil.example\r\nContent-Type: text/evil\r\nAuthorization: Bearer x\r\n\r\n";

fn assert_clean_trailers(r: &ringgate_testkit::client::Response) {
    let names: Vec<String> = r
        .trailers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"x-checksum".to_string()), "{names:?}");
    for bad in ["content-length", "host", "content-type", "authorization"] {
        assert!(!names.contains(&bad.to_string()), "{bad} in {names:?}");
    }
}

#[test]
fn prohibited_fields_are_dropped_from_response_trailers() {
    twice_through(CHUNKED_WITH_TRAILERS, assert_clean_trailers);
}

/// Two requests on one connection through a gateway to an upstream that answers `raw`: each
/// a 200 with the body `hi`, then `check`ed.
fn twice_through(raw: &'static [u8], check: impl Fn(&ringgate_testkit::client::Response)) {
    let up = fixed(raw);
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    for _ in 0..2 {
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hi");
        check(&r);
    }
}

#[test]
fn prohibited_fields_are_dropped_from_request_trailers() {
    let (rec, seen) = recorder();
    let gw = gateway(&catch_all(rec.addr));
    let mut c = Client::connect(gw.addr);
    // In two writes (the trailer section may span reads), with a second request behind it.
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nContent-Len");
    c.send(b"gth: 99\r\nHost: evil.example\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 200);
    assert_eq!(c.response().status, 200);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let body = String::from_utf8_lossy(&got[0].raw_body).to_ascii_lowercase();
    assert!(body.starts_with("5\r\nhello\r\n0\r\n"), "{body:?}");
    assert!(body.contains("x-checksum: abc\r\n"), "{body:?}");
    assert!(body.ends_with("\r\n\r\n"), "{body:?}");
    assert!(
        !body.contains("content-length") && !body.contains("evil"),
        "{body:?}"
    );
    assert!(
        got[1].request_line().starts_with("GET /next "),
        "{:?}",
        got[1].head
    );
}

#[test]
fn prohibited_fields_are_dropped_from_trailers_crossing_http2() {
    // HTTP/1.1 upstream -> gateway serving h2c -> gateway with an HTTP/2 upstream -> client.
    let up = fixed(CHUNKED_WITH_TRAILERS);
    let inner = gateway(&catch_all(up.addr));
    let front = gateway(&format!(
        "version = \"h2-trailers\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"h2t\"\nendpoints = [\"{}\"]\nprotocol = \"h2\"\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"h2t\"\n",
        inner.addr
    ));
    let r = send(front.addr, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hi");
    assert_clean_trailers(&r);
}
