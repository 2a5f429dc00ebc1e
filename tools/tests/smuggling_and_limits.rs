//! Request smuggling defences and limits, end to end: each bad request gets its status, the
//! upstream never sees it, and the connection is closed behind it.

use ringgate_testkit::client::{send, Client};
use ringgate_testkit::gateway::{catch_all, config, gateway, gateway_with, test_profile};
use ringgate_testkit::scripted::recorder;
use std::time::{Duration, Instant};

fn rejected(raw: &[u8], status: u16) {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(raw);
    let r = c.response();
    assert_eq!(
        r.status,
        status,
        "for {:?}: {}",
        String::from_utf8_lossy(raw),
        r.text()
    );
    assert!(
        r.text().starts_with("{\"error\":\""),
        "JSON error body: {}",
        r.text()
    );
    assert!(
        c.is_closed_by_peer(),
        "connection closed after a rejected request"
    );
    assert!(
        log.lock().expect("log").is_empty(),
        "the upstream must not see {:?}",
        String::from_utf8_lossy(raw)
    );
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejected(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

#[test]
fn differing_duplicate_content_lengths_are_400() {
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\nabcde",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd",
        400,
    );
}

#[test]
fn bad_chunk_sizes_and_extensions_are_400() {
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
        400,
    );
    rejected(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;=bad\r\nabc\r\n0\r\n\r\n", 400);
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        400,
    );
}

#[test]
fn obscure_transfer_encodings_are_refused() {
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    );
    rejected(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn whitespace_before_colon_is_400() {
    rejected(
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 0\r\n\r\n",
        400,
    );
}

#[test]
fn bare_cr_lf_and_nul_in_the_head_are_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400);
    rejected(b"GET / HTTP/1.1\nHost: h\n\n", 400);
    rejected(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n", 400);
}

#[test]
fn obs_fold_is_400() {
    rejected(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400);
}

#[test]
fn missing_or_duplicate_host_is_400() {
    rejected(b"GET / HTTP/1.1\r\n\r\n", 400);
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

#[test]
fn oversized_head_is_431_and_long_uri_is_414() {
    let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..400 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    rejected(&big, 431);
    let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000));
    rejected(long.as_bytes(), 414);
}

#[test]
fn body_over_the_route_limit_is_413_by_length_and_while_streaming() {
    let (up, log) = recorder();
    let cfg = config(
        &[("up", &[up.addr])],
        "[[routes]]\nid = \"small\"\npath = { prefix = \"/\" }\nupstream = \"up\"\nmax_body_bytes = 10\n",
    );
    let gw = gateway(&cfg);
    let r = send(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), r#"{"error":"payload_too_large"}"#);
    assert!(log.lock().expect("log").is_empty());
    let r = send(gw.addr, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
    assert_eq!(r.status, 413);
    let r = send(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    assert_eq!(r.status, 200, "at the limit is fine");
}

#[test]
fn a_head_not_complete_within_the_header_timeout_is_408() {
    let (up, _log) = recorder();
    let mut p = test_profile();
    p.timeouts.header_read = Duration::from_millis(300);
    let gw = gateway_with(&catch_all(up.addr), p);
    let mut c = Client::connect(gw.addr);
    let t0 = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n");
    let r = c.response();
    assert_eq!(r.status, 408);
    assert_eq!(r.text(), r#"{"error":"request_timeout"}"#);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(c.is_closed_by_peer());
}

#[test]
fn slowloris_dribbling_does_not_extend_the_header_timeout() {
    let (up, _log) = recorder();
    let mut p = test_profile();
    p.timeouts.header_read = Duration::from_millis(400);
    let gw = gateway_with(&catch_all(up.addr), p);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET / HTTP/1.1\r\n");
    let t0 = Instant::now();
    let mut got_408 = false;
    while t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        if std::io::Write::write_all(&mut c.stream, b"X-A: b\r\n").is_err() {
            break;
        }
        c.stream.set_nonblocking(true).expect("nb");
        let mut b = [0u8; 64];
        let read = std::io::Read::read(&mut c.stream, &mut b);
        c.stream.set_nonblocking(false).expect("blocking");
        if let Ok(n) = read {
            if n > 0 && b.starts_with(b"HTTP/1.1 408") {
                got_408 = true;
                break;
            }
        }
    }
    assert!(
        got_408,
        "a head trickling in must still be cut at the header timeout"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let (up, _log) = recorder();
    let mut p = test_profile();
    p.timeouts.idle = Duration::from_millis(300);
    let gw = gateway_with(&catch_all(up.addr), p);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let t0 = Instant::now();
    assert!(c.is_closed_by_peer());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn a_new_connection_that_sends_nothing_is_closed_at_the_header_timeout_without_a_response() {
    let (up, _log) = recorder();
    let mut p = test_profile();
    p.timeouts.header_read = Duration::from_millis(300);
    p.timeouts.idle = Duration::from_secs(30);
    let gw = gateway_with(&catch_all(up.addr), p);
    let mut c = Client::connect(gw.addr);
    let t0 = Instant::now();
    let mut b = [0u8; 16];
    let n = std::io::Read::read(&mut c.stream, &mut b).unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "held for {:?}: the idle timeout applied",
        t0.elapsed()
    );
}

#[test]
fn connections_over_the_per_core_cap_are_closed_at_accept() {
    let (up, _log) = recorder();
    let mut p = test_profile();
    p.limits.max_connections_per_core = 2;
    p.timeouts.header_read = Duration::from_secs(30);
    let gw = gateway_with(&catch_all(up.addr), p);
    let mut held: Vec<Client> = (0..2).map(|_| Client::connect(gw.addr)).collect();
    for c in &mut held {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    // A third connection is accepted by the kernel and closed by the gateway at once.
    // Only the cap can close it within a second (the header timeout is 30 s).
    let mut third = Client::connect(gw.addr);
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut b = [0u8; 1];
    let closed = matches!(std::io::Read::read(&mut third.stream, &mut b), Ok(0))
        || matches!(std::io::Read::read(&mut third.stream, &mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(closed, "over the cap: closed at accept");
    // The two held connections still work, and once one leaves a new one is served.
    held[0].send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(held[0].response().status, 200);
    drop(held.pop());
    let t0 = Instant::now();
    loop {
        let mut c = Client::connect(gw.addr);
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        if let Some(r) = c.try_response_to("GET") {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a freed slot is reused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
