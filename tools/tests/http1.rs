//! HTTP/1.1 semantics through the gateway: keep-alive and upstream reuse, pipelining, HTTP/1.0
//! clients, `Expect: 100-continue`, chunked bodies with trailers both ways, bodiless responses,
//! header hygiene.

use ringgate_testkit::client::{send, Client};
use ringgate_testkit::gateway::{catch_all, gateway};
use ringgate_testkit::scripted::{fixed, read_request, recorder, Scripted};
use ringgate_testkit::stub::stub;
use std::io::Write;
use std::time::Duration;

#[test]
fn a_thousand_keep_alive_requests_reuse_upstream_connections() {
    let up = stub("s");
    let gw = gateway(&catch_all(up.addrs()[0]));
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(gw.addr)).collect();
    for i in 0..1000 {
        let c = &mut clients[i % 4];
        c.send(b"GET /anything HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    let accepted = up.connections_accepted();
    // Clients take turns, so one pooled connection serves them all; a few more are allowed.
    assert!(
        accepted <= 4,
        "1,000 requests opened {accepted} upstream connections"
    );
    assert_eq!(up.requests_served(), 1000);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    for _ in 0..3 {
        assert_eq!(c.response().status, 200);
    }
    let lines: Vec<String> = log
        .lock()
        .expect("log")
        .iter()
        .map(|r| r.request_line().to_string())
        .collect();
    assert_eq!(
        lines,
        ["GET /1 HTTP/1.1", "POST /2 HTTP/1.1", "GET /3 HTTP/1.1"]
    );
    assert_eq!(log.lock().expect("log")[1].raw_body, b"abc");
}

#[test]
fn http10_clients_get_close_unless_they_ask_for_keep_alive() {
    let up = stub("s");
    let gw = gateway(&catch_all(up.addrs()[0]));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /x HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed_by_peer());

    let mut c = Client::connect(gw.addr);
    c.send(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn http10_client_gets_a_chunked_upstream_response_dechunked() {
    let up = fixed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.text(), "hello world");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(b"PUT /doc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.response();
    assert_eq!(r.status, 200);
    let seen = &log.lock().expect("log")[0];
    assert_eq!(seen.raw_body, b"hello");
    assert!(
        seen.header("expect").is_none(),
        "Expect is consumed by the gateway"
    );
}

#[test]
fn chunked_request_with_trailers_streams_through_verbatim() {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nChecksum: abc\r\n\r\n";
    let mut raw = b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(body);
    let mut c = Client::connect(gw.addr);
    // In three pieces, so the body streams rather than arriving with the head.
    c.send(&raw[..60]);
    std::thread::sleep(Duration::from_millis(30));
    c.send(&raw[60..75]);
    std::thread::sleep(Duration::from_millis(30));
    c.send(&raw[75..]);
    assert_eq!(c.response().status, 200);
    let seen = &log.lock().expect("log")[0];
    assert_eq!(seen.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(seen.raw_body, body);
}

#[test]
fn chunked_response_with_trailers_reaches_the_client() {
    let up = fixed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\nX-Sum: 42\r\n\r\n");
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        assert_eq!(r.text(), "abcdef");
        assert_eq!(r.trailers, vec![("X-Sum".to_string(), "42".to_string())]);
    }
}

#[test]
fn head_204_and_304_responses_have_no_body_and_keep_the_connection() {
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            let resp: &[u8] = match r.request_line() {
                l if l.starts_with("HEAD") => b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
                l if l.contains("/204") => b"HTTP/1.1 204 No Content\r\n\r\n",
                _ => b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n",
            };
            if s.write_all(resp).is_err() {
                return;
            }
        }
    });
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response_to("HEAD");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("1000"),
        "HEAD keeps the length of the would-be body"
    );
    c.send(b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 204);
    c.send(b"GET /304 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 304);
    c.send(b"HEAD /again HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        c.response_to("HEAD").status,
        200,
        "connection still in sync"
    );
}

#[test]
fn hop_by_hop_headers_are_dropped_and_forwarded_headers_added() {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let r = send(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nX-Keep: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = &log.lock().expect("log")[0];
    assert!(seen.header("x-private").is_none());
    assert!(seen.header("keep-alive").is_none());
    assert!(seen.header("te").is_none());
    assert!(seen.header("connection").is_none());
    assert_eq!(seen.header("x-keep").as_deref(), Some("yes"));
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("shop.test")
    );
    assert_eq!(seen.header("host").as_deref(), Some("shop.test"));
}

#[test]
fn host_header_policy_of_the_upstream_is_applied() {
    let (up, log) = recorder();
    let cfg = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"{0}\"]\nhost_header = \"internal.svc\"\n[[upstreams]]\nname = \"e\"\nendpoints = [\"{0}\"]\nhost_header = \"endpoint\"\n[[routes]]\nid = \"u\"\npath = {{ prefix = \"/u\" }}\nupstream = \"u\"\n[[routes]]\nid = \"e\"\npath = {{ prefix = \"/e\" }}\nupstream = \"e\"\n",
        up.addr
    );
    let gw = gateway(&cfg);
    send(gw.addr, b"GET /u HTTP/1.1\r\nHost: public\r\n\r\n");
    send(gw.addr, b"GET /e HTTP/1.1\r\nHost: public\r\n\r\n");
    let log = log.lock().expect("log");
    assert_eq!(log[0].header("host").as_deref(), Some("internal.svc"));
    assert_eq!(log[1].header("host"), Some(up.addr.to_string()));
}
