//! Behaviour of `ringbench upstream` over loopback, with plain blocking std clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Client;
use ringbench::upstream::{self, UpstreamConfig};

fn start(cfg: UpstreamConfig) -> upstream::UpstreamHandle {
    upstream::spawn(cfg).unwrap()
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let up = start(UpstreamConfig {
        body_bytes: 100,
        name: "up-a".into(),
        ..Default::default()
    });
    let mut c = Client::connect(up.addr());
    for _ in 0..50 {
        let r = c.get("/anything");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 100);
        assert_eq!(r.header("x-upstream"), Some("up-a"));
    }
    assert_eq!(up.requests_served(), 50);
    assert_eq!(up.connections_accepted(), 1);
    up.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = start(UpstreamConfig {
        latency: "uniform:0ms..3ms".parse().unwrap(),
        ..Default::default()
    });
    let mut c = Client::connect(up.addr());
    let mut raw = Vec::new();
    for code in [201, 404, 202, 503, 204] {
        raw.extend_from_slice(format!("GET /status/{code} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        raw.extend_from_slice(b"GET /delayed HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    c.send(&raw);
    for code in [201, 404, 202, 503, 204] {
        assert_eq!(c.read_response(false).status, code);
        assert_eq!(c.read_response(false).status, 200);
    }
}

#[test]
fn request_bodies_are_skipped_by_length_and_by_chunks() {
    let up = start(UpstreamConfig::default());
    let mut c = Client::connect(up.addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.read_response(false);
    assert_eq!(r.header("x-echo-body-bytes"), Some("11"));
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("x-echo-body-bytes"), Some("8"));
    // A large body split over many reads, then a request on the same connection.
    let body = vec![b'z'; 300_000];
    c.send(format!("PUT /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    c.send(&body);
    assert_eq!(c.read_response(false).status, 200);
    assert_eq!(c.get("/healthz").text(), "ok\n");
}

#[test]
fn echo_returns_method_path_and_headers() {
    let up = start(UpstreamConfig::default());
    let mut c = Client::connect(up.addr());
    c.send(b"DELETE /echo/a/b?q=1 HTTP/1.1\r\nHost: example\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "DELETE /echo/a/b?q=1 HTTP/1.1\nHost: example\nX-Forwarded-For: 10.0.0.1\n"
    );
}

#[test]
fn head_requests_get_no_body_and_close_is_honoured() {
    let up = start(UpstreamConfig {
        body_bytes: 64,
        ..Default::default()
    });
    let mut c = Client::connect(up.addr());
    c.send(b"HEAD / HTTP/1.1\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.header("content-length"), Some("64"));
    c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body.len(), 64);
    assert!(c.closed());
}

#[test]
fn malformed_requests_get_400_and_a_close() {
    let up = start(UpstreamConfig::default());
    let mut c = Client::connect(up.addr());
    c.send(b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(c.read_response(false).status, 400);
    assert!(c.closed());
}

#[test]
fn large_bodies_are_sent_whole() {
    let up = start(UpstreamConfig {
        body_bytes: 1 << 20,
        ..Default::default()
    });
    let mut c = Client::connect(up.addr());
    for _ in 0..3 {
        let r = c.get("/big");
        assert_eq!(r.body.len(), 1 << 20);
        assert_eq!(&r.body[..3], b"abc");
    }
}

#[test]
fn chunked_and_sse_endpoints_stream() {
    let up = start(UpstreamConfig::default());
    let mut c = Client::connect(up.addr());
    let r = c.get("/chunked?n=5&size=100");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 500);
    let r = c.get("/chunked?n=3&size=70000&interval_ms=1");
    assert_eq!(r.body.len(), 210_000);
    let t0 = Instant::now();
    let r = c.get("/sse?n=4&interval_ms=20");
    assert!(t0.elapsed() >= Duration::from_millis(60));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert_eq!(text.matches("data: ").count(), 4);
    assert!(text.starts_with("id: 0\ndata: {\"seq\":0}\n\n"));
    assert_eq!(c.get("/healthz").status, 200);
}

#[test]
fn fixed_latency_holds_each_response_at_least_that_long() {
    let up = start(UpstreamConfig {
        latency: "fixed:3ms".parse().unwrap(),
        ..Default::default()
    });
    let mut c = Client::connect(up.addr());
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(c.get("/").status, 200);
        assert!(t0.elapsed() >= Duration::from_millis(3));
    }
    // Health checks are never delayed by the injected latency: only checked to answer.
    assert_eq!(c.get("/healthz").status, 200);
}

#[test]
fn stall_holds_every_response_until_it_ends() {
    let up = start(UpstreamConfig {
        workers: 2,
        ..Default::default()
    });
    let mut ctl = Client::connect(up.addr());
    let mut c = Client::connect(up.addr());
    assert_eq!(c.get("/").status, 200);
    let t0 = Instant::now();
    assert_eq!(ctl.get("/__stall?ms=300").text(), "stalling\n");
    assert_eq!(c.get("/").status, 200);
    assert_eq!(c.get("/healthz").status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let t1 = Instant::now();
    up.stall(Duration::from_millis(200));
    assert_eq!(c.get("/").status, 200);
    assert!(t1.elapsed() >= Duration::from_millis(200));
}

fn statuses(addr: SocketAddr, n: usize) -> Vec<u16> {
    let mut c = Client::connect(addr);
    (0..n).map(|_| c.get("/").status).collect()
}

#[test]
fn injected_statuses_follow_the_seed() {
    let cfg = UpstreamConfig {
        errors: "503=0.2,500=0.1".parse().unwrap(),
        seed: 99,
        ..Default::default()
    };
    let a = start(cfg.clone());
    let b = start(cfg.clone());
    let c = start(UpstreamConfig { seed: 100, ..cfg });
    let sa = statuses(a.addr(), 400);
    assert_eq!(sa, statuses(b.addr(), 400));
    assert_ne!(sa, statuses(c.addr(), 400));
    let n503 = sa.iter().filter(|s| **s == 503).count();
    let n500 = sa.iter().filter(|s| **s == 500).count();
    assert!((40..=120).contains(&n503), "{n503}");
    assert!((15..=70).contains(&n500), "{n500}");
}

#[test]
fn injected_reset_drops_the_connection_without_an_answer() {
    let up = start(UpstreamConfig {
        errors: "reset=1".parse().unwrap(),
        ..Default::default()
    });
    let mut s = TcpStream::connect(up.addr()).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(n) => assert_eq!(n, 0),
    }
}

#[test]
fn injected_hang_never_answers_but_stop_ends_it() {
    let up = start(UpstreamConfig {
        errors: "hang=1".parse().unwrap(),
        ..Default::default()
    });
    let mut s = TcpStream::connect(up.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    up.stop();
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn stop_closes_idle_keep_alive_connections_and_the_port() {
    let up = start(UpstreamConfig {
        workers: 2,
        ..Default::default()
    });
    let addr = up.addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/").status, 200);
    up.stop();
    assert!(idle.closed());
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn several_ports_and_pinned_workers_all_answer() {
    let up = start(UpstreamConfig {
        listen: vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ],
        workers: 2,
        cpus: Some(vec![0, 1]),
        ..Default::default()
    });
    assert_eq!(up.addrs().len(), 2);
    assert_ne!(up.addrs()[0], up.addrs()[1]);
    for addr in up.addrs() {
        let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(*addr)).collect();
        for c in &mut clients {
            assert_eq!(c.get("/").status, 200);
        }
    }
    assert_eq!(up.connections_accepted(), 8);
}

#[test]
fn a_second_server_on_a_taken_port_fails() {
    let up = start(UpstreamConfig::default());
    let err = upstream::spawn(UpstreamConfig {
        listen: vec![up.addr()],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn invalid_configs_are_refused() {
    assert!(upstream::spawn(UpstreamConfig {
        workers: 0,
        ..Default::default()
    })
    .is_err());
    assert!(upstream::spawn(UpstreamConfig {
        listen: vec![],
        ..Default::default()
    })
    .is_err());
}
