//! Edge cases of the HTTP/1.1 exchange (retries, early answers, HTTP/1.0, `Expect`, HEAD,
//! interim responses, pipelining, truncation), end to end through an in-process gateway and
//! scripted upstreams. Each test pins one behaviour: either one the engine once got wrong (a worker-killing
//! panic on retry, early upstream answers lost to a 502, HTTP/1.0 keep-alive and `Expect`
//! handling, HEAD framing headers, a Content-Length listed in Connection), or one that was checked
//! and found right and is easy to break (pipelining after a chunked body, interim responses,
//! truncation, connection accounting, refusals with `Expect`).

use ringgate_testkit::client::Client;
use ringgate_testkit::gateway::{
    catch_all, config, gateway, gateway_with, test_profile, TestGateway,
};
use ringgate_testkit::scripted::{fixed, read_request, recorder, Scripted};
use std::io::Write;
use std::time::{Duration, Instant};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[test]
fn a_streamed_idempotent_body_is_not_retried_on_a_reused_connection() {
    // Connection 0 answers its first request and then takes the second one whole and closes
    // without answering (the keep-alive race a stale pooled connection loses). Any later
    // connection answers normally.
    let up = Scripted::spawn(|mut s, i| {
        let mut carry = Vec::new();
        if i == 0 {
            if read_request(&mut s, &mut carry).is_some() {
                let _ = s.write_all(OK);
            }
            let _ = read_request(&mut s, &mut carry);
            return;
        }
        while read_request(&mut s, &mut carry).is_some() {
            if s.write_all(OK).is_err() {
                return;
            }
        }
    });
    // Small bodies are otherwise read whole before connecting (and then can be sent again).
    let mut profile = test_profile();
    profile.io.buffer_body_bytes = 0;
    let gw = gateway_with(&catch_all(up.addr), profile);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // The body is held back until 100 Continue, so it is streamed, not sent from memory: it is
    // gone once sent and the request cannot be repeated.
    c.send(b"PUT /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response().status, 100);
    c.send(b"hello");
    let r = c
        .try_response_to("PUT")
        .expect("the gateway answers (it must not crash)");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.accepted(), 1, "a streamed body is never sent twice");
    // The worker is still serving.
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

/// Reads up to the end of a head; what followed it stays in `carry`.
fn read_head_only(s: &mut std::net::TcpStream, carry: &mut Vec<u8>) -> Option<String> {
    use std::io::Read;
    loop {
        if let Some(p) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&carry[..p + 4]).into_owned();
            carry.drain(..p + 4);
            return Some(head);
        }
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => carry.extend_from_slice(&tmp[..n]),
        }
    }
}

#[test]
fn an_early_response_to_a_streaming_upload_reaches_the_client() {
    // The upstream refuses the upload from its head alone and closes without reading the body,
    // as servers commonly do: the client must get that answer, not a 502.
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        if read_head_only(&mut s, &mut carry).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbig!",
            );
        }
    });
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    let total = 8 << 20;
    c.send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {total}\r\n\r\n").as_bytes());
    let mut writer = c.stream.try_clone().expect("clone");
    let feeder = std::thread::spawn(move || {
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if writer.write_all(&block).is_err() {
                return;
            }
            sent += block.len();
        }
    });
    let r = c.try_response_to("POST").expect("a response");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.text(), "big!");
    assert_eq!(r.header("connection"), Some("close"));
    drop(c);
    let _ = feeder.join();
}

#[test]
fn bytes_after_a_complete_response_are_not_read_as_the_next_response() {
    // Content-Length says 2, and a whole second response follows it in the same write: the extra
    // bytes are dropped with the connection, never pooled to answer someone else's request.
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while read_request(&mut s, &mut carry).is_some() {
            let mut both = OK.to_vec();
            both.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil");
            if s.write_all(&both).is_err() {
                return;
            }
        }
    });
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    for i in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(
        up.accepted(),
        3,
        "no connection that sent extra bytes is reused"
    );
}

#[test]
fn an_http10_client_never_gets_100_continue() {
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /x HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"hello");
    let r = c.response_to("POST");
    assert_eq!(r.status, 200, "the first thing back is the final response");
    assert_eq!(log.lock().expect("log")[0].raw_body, b"hello");
}

#[test]
fn an_http10_keep_alive_client_is_told_its_connection_stays_after_a_refusal() {
    // The gateway keeps the connection after a 404 or 502 to a bodiless request; an HTTP/1.0
    // client only knows that from `Connection: keep-alive`.
    let dead = ringgate_testkit::gateway::refusing_addr();
    let cfg = config(
        &[("up", &[dead])],
        "[[routes]]\nid = \"a\"\npath = { prefix = \"/a\" }\nupstream = \"up\"\n",
    );
    let gw = gateway(&cfg);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /nowhere HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /a HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed_by_peer());
}

#[test]
fn head_to_a_chunked_resource_keeps_its_transfer_encoding_and_the_connection() {
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            let resp: &[u8] = if r.request_line().starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kind: head\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            };
            if s.write_all(resp).is_err() {
                return;
            }
        }
    });
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response_to("HEAD");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-kind"), Some("head"));
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "HEAD shows the header fields GET would (RFC 9110 §9.3.2)"
    );
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().text(), "ok");
    assert_eq!(up.accepted(), 1);
    // An HTTP/1.0 client is never shown a transfer-coding.
    let mut c = Client::connect(gw.addr);
    c.send(b"HEAD / HTTP/1.0\r\n\r\n");
    let r = c.response_to("HEAD");
    assert_eq!(r.header("transfer-encoding"), None);
}

#[test]
fn an_upstream_listing_content_length_as_hop_by_hop_does_not_lose_the_framing() {
    // `Connection: content-length` is invalid (RFC 9110 §7.6.1), and honouring it would strip the
    // only framing of a response the gateway keeps alive: the client would wait for a close.
    let up = fixed(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok");
    let gw = gateway(&catch_all(up.addr));
    let mut c = Client::connect(gw.addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        assert_eq!(r.header("content-length"), Some("2"));
        assert_eq!(r.text(), "ok");
    }
}

/// Waits (bounded) until the gateway reports no request in flight.
fn settles_to_no_inflight(gw: &TestGateway) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if gw.inner().shutdown.inflight() == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn every_failed_exchange_gives_back_its_connection_and_inflight_slot() {
    // One connection per core: a leaked count would refuse every later client.
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            let resp: &[u8] = if r.request_line().contains("/cut-chunked") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
            } else if r.request_line().contains("/cut") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"
            } else {
                OK
            };
            if s.write_all(resp).is_err() || r.request_line().contains("/cut") {
                return;
            }
        }
    });
    let mut p = test_profile();
    p.limits.max_connections_per_core = 1;
    p.timeouts.header_read = Duration::from_millis(200);
    let gw = gateway_with(&catch_all(up.addr), p);
    let served = |raw: &[u8]| {
        let mut c = Client::connect(gw.addr);
        c.send(raw);
        c.try_response_to("GET")
    };
    // The client leaves mid-body.
    {
        let mut c = Client::connect(gw.addr);
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nten bytes!");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(settles_to_no_inflight(&gw));
    let r = served(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(r.map(|r| r.status), Some(200));
    // The upstream leaves mid-body: the client sees a close before the promised length, or
    // before the last chunk.
    for path in ["/cut", "/cut-chunked"] {
        let mut c = Client::connect(gw.addr);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert!(
            c.try_response_to("GET").is_none(),
            "a truncated body never looks complete ({path})"
        );
        drop(c);
        assert!(settles_to_no_inflight(&gw));
    }
    // The head never completes (408).
    let r = served(b"GET / HTTP/1.1\r\nHost: h\r\n");
    assert_eq!(r.map(|r| r.status), Some(408));
    let r = served(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(r.map(|r| r.status), Some(200));
    assert!(settles_to_no_inflight(&gw));
}

#[test]
fn interim_responses_are_skipped_and_504_keeps_a_bodiless_request_alive() {
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            if r.request_line().contains("/slow") {
                std::thread::sleep(Duration::from_millis(600));
                return;
            }
            let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n");
            std::thread::sleep(Duration::from_millis(20));
            let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            if s.write_all(OK).is_err() {
                return;
            }
        }
    });
    let cfg = config(
        &[("up", &[up.addr])],
        "[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"up\"\ntimeout = \"200ms\"\n",
    );
    let gw = gateway(&cfg);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 504);
    c.send(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        c.response().status,
        200,
        "the client connection survived the 504"
    );
}

#[test]
fn a_request_pipelined_behind_a_chunked_body_that_arrived_in_pieces_is_served() {
    let (up, log) = recorder();
    let gw = gateway(&catch_all(up.addr));
    let body = b"3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\n";
    let mut raw = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let body_at = raw.len();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    // Cut inside a size line, inside data, and between the final CR and LF.
    let last_cr = body_at + body.len() - 1;
    let cuts = [body_at + 1, body_at + 10, last_cr, raw.len()];
    let mut c = Client::connect(gw.addr);
    let mut from = 0;
    for to in cuts {
        c.send(&raw[from..to]);
        from = to;
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(c.response_to("POST").status, 200);
    assert_eq!(c.response().status, 200);
    let log = log.lock().expect("log");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].raw_body, body);
    assert_eq!(log[1].request_line(), "GET /next HTTP/1.1");
}

#[test]
fn a_refused_request_expecting_100_continue_gets_only_its_final_status() {
    let (up, log) = recorder();
    let cfg = config(
        &[("up", &[up.addr])],
        "[[routes]]\nid = \"small\"\npath = { prefix = \"/up\" }\nupstream = \"up\"\nmax_body_bytes = 10\n",
    );
    let gw = gateway(&cfg);
    for (raw, status) in [
        (&b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"[..], 413),
        (b"PUT /elsewhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 404),
    ] {
        let mut c = Client::connect(gw.addr);
        c.send(raw);
        let r = c.response_to("PUT");
        assert_eq!(r.status, status, "no 100 Continue before a refusal");
        assert_eq!(r.header("connection"), Some("close"), "the body was never read");
        assert!(c.is_closed_by_peer());
    }
    assert!(log.lock().expect("log").is_empty());
}

#[test]
fn late_bytes_after_a_complete_response_never_reach_the_next_client() {
    use ringgate_testkit::scripted::{read_request, Scripted};
    use std::io::Write;
    // Connection 0 answers, then a moment later sends a second, unrequested response; every
    // other connection answers "fresh". The pooled connection 0 must not be reused.
    let stray_sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = stray_sent.clone();
    let up = Scripted::spawn(move |mut s, i| {
        let mut carry = Vec::new();
        while read_request(&mut s, &mut carry).is_some() {
            if i == 0 {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                std::thread::sleep(std::time::Duration::from_millis(30));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil");
                sent.store(true, std::sync::atomic::Ordering::SeqCst);
            } else if s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")
                .is_err()
            {
                return;
            }
        }
    });
    let gw = ringgate_testkit::gateway::gateway(&ringgate_testkit::gateway::catch_all(up.addr));
    let first = ringgate_testkit::client::get(gw.addr, "h", "/a");
    assert_eq!(first.text(), "ok");
    // The stray bytes are in the pooled connection's receive queue (loopback delivers them as
    // the write returns) before the next request takes a connection.
    ringgate_testkit::wait::until_named(
        "the upstream sent its stray response",
        std::time::Duration::from_secs(10),
        || stray_sent.load(std::sync::atomic::Ordering::SeqCst),
    );
    let second = ringgate_testkit::client::get(gw.addr, "h", "/b");
    assert_eq!(
        second.text(),
        "fresh",
        "a stray upstream response was served to another client"
    );
    assert_eq!(up.accepted(), 2);
}

#[test]
fn a_close_delimited_response_cut_short_ends_in_a_reset_not_a_clean_close() {
    use ringgate_testkit::scripted::{read_request, Scripted};
    use std::io::{Read, Write};
    // The upstream starts a chunked body and dies in the middle of it. An HTTP/1.0 client gets
    // the body de-chunked and delimited by the close, so only a reset can tell it the body is cut.
    let up = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        if read_request(&mut s, &mut carry).is_some() {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let gw = ringgate_testkit::gateway::gateway(&ringgate_testkit::gateway::catch_all(up.addr));
    let mut s = std::net::TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
    let mut got = Vec::new();
    let mut tmp = [0u8; 1024];
    let end = loop {
        match s.read(&mut tmp) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) => break Err(e),
        }
    };
    let e = end.expect_err("a truncated close-delimited body must not end in a clean close");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}
