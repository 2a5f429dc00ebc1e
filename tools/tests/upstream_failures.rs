//! Upstream trouble: connect failures, response timeouts, stale pooled connections, garbage.

use ringgate_testkit::client::{send, Client};
use ringgate_testkit::gateway::{
    catch_all, config, gateway, gateway_with, test_profile, TestGateway,
};
use ringgate_testkit::scripted::{drops_second_request, fixed, one_shot, stalling};
use ringgate_testkit::stub::stub;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[test]
fn a_refused_connect_is_502_upstream_connect_failed() {
    let dead = ringgate_testkit::gateway::refusing_addr();
    let gw = gateway(&catch_all(dead));
    let mut c = Client::connect(gw.addr);
    let r = c.get_with("/", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), r#"{"error":"upstream_connect_failed"}"#);
    let again = c.get_with("/", &[]).status;
    assert_eq!(
        again, 502,
        "a bodiless request keeps its connection after a 502"
    );
}

#[test]
fn a_connect_that_hangs_is_cut_at_the_connect_timeout() {
    // A listener with a full backlog of 0-accepting... not portable; a blackhole address is:
    // 10.255.255.1 would leave the machine, so use a loopback listener that never accepts and
    // whose backlog is filled first.
    let l =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind");
    l.listen(0).expect("listen");
    let addr: SocketAddr = l.local_addr().expect("addr").as_socket().expect("inet");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            fillers.push(s);
        }
    }
    let mut p = test_profile();
    p.timeouts.connect = Duration::from_millis(300);
    let gw = gateway_with(&catch_all(addr), p);
    let t0 = Instant::now();
    let r = send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    // Depending on the kernel the SYN is dropped (timeout) or the connect completes into the
    // backlog and the upstream never answers (response timeout would then apply): either way the
    // gateway answers with a 5xx within its timeouts, never hangs.
    assert!(r.status == 502 || r.status == 504, "got {}", r.status);
    assert!(t0.elapsed() < Duration::from_secs(35));
}

#[test]
fn a_slow_upstream_gets_504_at_the_route_timeout() {
    let up = stalling(Duration::from_secs(3));
    let cfg = config(
        &[("up", &[up.addr])],
        "[[routes]]\nid = \"slow\"\npath = { prefix = \"/\" }\nupstream = \"up\"\ntimeout = \"300ms\"\n",
    );
    let gw = gateway(&cfg);
    let t0 = Instant::now();
    let r = send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), r#"{"error":"upstream_timeout"}"#);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "took {took:?}"
    );
}

/// A gateway routing everything to `up`, and a client connection to it that has had one
/// `GET /1` answered 200 (so the gateway holds a pooled upstream connection).
fn after_one_get(up: SocketAddr) -> (TestGateway, Client) {
    let gw = gateway(&catch_all(up));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.response().status, 200);
    (gw, c)
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_detected_at_checkout() {
    let up = one_shot();
    let (_gw, mut c) = after_one_get(up.addr);
    // The upstream has closed its side (on loopback the FIN reaches the pooled socket within
    // the close) before the next request checks the connection out.
    ringgate_testkit::wait::until(Duration::from_secs(5), || up.finished() == 1);
    // Even a POST (never retried) succeeds: the closed connection is not reused at all.
    c.send(b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.accepted(), 2);
}

#[test]
fn a_reused_connection_failing_before_the_response_is_retried_once_for_get() {
    let up = drops_second_request();
    let (_gw, mut c) = after_one_get(up.addr);
    c.send(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "retried on a fresh connection: {}", r.text());
    assert_eq!(up.accepted(), 2);
}

#[test]
fn a_reused_connection_failing_before_the_response_is_not_retried_for_post() {
    let up = drops_second_request();
    let (_gw, mut c) = after_one_get(up.addr);
    c.send(b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
    let r = c.response();
    assert_eq!(r.status, 502, "a POST is not repeated: {}", r.text());
    assert_eq!(up.accepted(), 1);
}

#[test]
fn round_robin_spreads_requests_across_endpoints() {
    let a = stub("a");
    let b = stub("b");
    let gw = gateway(&config(
        &[("up", &[a.addrs()[0], b.addrs()[0]])],
        "[[routes]]\nid = \"all\"\npath = { prefix = \"/\" }\nupstream = \"up\"\n",
    ));
    let mut c = Client::connect(gw.addr);
    let mut seen = Vec::new();
    for _ in 0..10 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        seen.push(
            c.response()
                .header("x-upstream")
                .expect("x-upstream")
                .to_string(),
        );
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 5, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 5, "{seen:?}");
}

#[test]
fn garbage_from_the_upstream_is_502() {
    let up = fixed(b"SSH-2.0-OpenSSH\r\n\r\n");
    let gw = gateway(&catch_all(up.addr));
    let r = send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), r#"{"error":"upstream_protocol_error"}"#);
}

#[test]
fn a_smuggling_response_from_the_upstream_is_502() {
    let up = fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let gw = gateway(&catch_all(up.addr));
    assert_eq!(
        send(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        502
    );
}
