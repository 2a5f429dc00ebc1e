//! The request body's deadline (issue 14 item 6): a body too slow, by its total or by its
//! minimum rate, gets 408 and its upstream connection is closed, so slow clients cannot hold
//! upstream connections; a small body is read whole before any upstream connection is taken.

use ringgate_testkit::client::Client;
use ringgate_testkit::gateway::{config, gateway_with, test_profile, TestGateway};
use ringgate_testkit::scripted::Scripted;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An upstream that reads a request with a Content-Length body and answers 200; it counts its
/// connections open now (a connection counts until the gateway closes it).
struct Upstream {
    server: Scripted,
    open: Arc<AtomicUsize>,
}

fn upstream() -> Upstream {
    let open = Arc::new(AtomicUsize::new(0));
    let o = open.clone();
    let server = Scripted::spawn(move |mut s, _| {
        o.fetch_add(1, Ordering::SeqCst);
        serve_bodies(&mut s);
        o.fetch_sub(1, Ordering::SeqCst);
    });
    Upstream { server, open }
}

/// Answers requests until the peer closes.
fn serve_bodies(s: &mut TcpStream) {
    let mut carry = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(p) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => carry.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&carry[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while carry.len() < head_end + len {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => carry.extend_from_slice(&tmp[..n]),
            }
        }
        carry.drain(..head_end + len);
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A gateway with one route carrying `route_extra` TOML lines, a 1 s rate grace, and the
/// default small-body buffering.
fn gateway_for(up: SocketAddr, route_extra: &str) -> TestGateway {
    let mut p = test_profile();
    p.timeouts.body_grace = Duration::from_secs(1);
    let routes = format!(
        "[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"up\"\n{route_extra}\n"
    );
    gateway_with(&config(&[("up", &[up])], &routes), p)
}

/// Starts a POST of `len` body bytes and keeps sending one body byte every `every` from a
/// thread, until the gateway closes; returns the client to read the answer from.
fn trickle(gw: SocketAddr, len: usize, first: usize, every: Duration) -> Client {
    let mut c = Client::connect(gw);
    c.send(format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n").as_bytes());
    c.send(&vec![b'x'; first]);
    let mut w = c.stream.try_clone().expect("clone");
    std::thread::spawn(move || {
        for _ in first..len {
            std::thread::sleep(every);
            if w.write_all(b"x").is_err() {
                return;
            }
        }
    });
    c
}

/// Waits until `f()` holds, for at most 10 s.
fn wait_until(what: &str, f: impl Fn() -> bool) {
    ringgate_testkit::wait::until_named(what, Duration::from_secs(10), f);
}

#[test]
fn a_slow_loris_body_gets_408_and_its_upstream_connection_is_closed() {
    let up = upstream();
    // 1,000 bytes/s after a 1 s grace; the client sends 100 bytes, then 5 bytes/s.
    let gw = gateway_for(up.server.addr, "min_body_rate = 1000");
    let mut c = trickle(gw.addr, 100_000, 100, Duration::from_millis(200));
    let r = c
        .try_response_to("POST")
        .expect("an answer before the body");
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("request_body_timeout"), "{}", r.text());
    assert_eq!(up.server.accepted(), 1, "the body was streaming upstream");
    wait_until("the upstream connection is closed", || {
        up.open.load(Ordering::SeqCst) == 0
    });
}

#[test]
fn slow_bodies_do_not_hold_upstream_connections_beyond_their_total() {
    let up = upstream();
    // No minimum rate: the total alone ends them.
    let gw = gateway_for(up.server.addr, "body_timeout = \"2s\"\nmin_body_rate = 0");
    let clients: Vec<Client> = (0..20)
        .map(|_| trickle(gw.addr, 50_000, 20_000, Duration::from_millis(100)))
        .collect();
    wait_until("the slow bodies reach the upstream", || {
        up.open.load(Ordering::SeqCst) >= 10
    });
    for mut c in clients {
        let r = c.try_response_to("POST").expect("an answer");
        assert_eq!(r.status, 408, "{}", r.text());
    }
    wait_until("no upstream connection is left", || {
        up.open.load(Ordering::SeqCst) == 0
    });
    // The gateway still serves bodies that keep up.
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.response_to("POST").status, 200);
}

#[test]
fn a_slow_small_body_holds_no_upstream_connection() {
    let up = upstream();
    let gw = gateway_for(up.server.addr, "min_body_rate = 1000");
    let mut c = trickle(gw.addr, 2_000, 10, Duration::from_millis(200));
    let r = c.try_response_to("POST").expect("an answer");
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(
        up.server.accepted(),
        0,
        "a small body is read before connecting"
    );
    // A small body that arrives in pieces, in time, is sent whole.
    let mut c = Client::connect(gw.addr);
    c.send(b"POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"def");
    assert_eq!(c.response_to("POST").status, 200);
    assert_eq!(up.server.accepted(), 1);
}

#[test]
fn a_slow_http2_body_gets_408_and_its_upstream_connection_is_closed() {
    let up = upstream();
    let gw = gateway_for(up.server.addr, "min_body_rate = 1000");
    let addr = gw.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (client, conn) = h2::client::handshake(tcp).await.expect("h2c");
        tokio::spawn(conn);
        let mut client = client.ready().await.expect("ready");
        let req = http::Request::post(format!("http://{addr}/up"))
            .header("content-length", "100000")
            .body(())
            .expect("request");
        let (resp, mut body) = client.send_request(req, false).expect("stream");
        body.send_data(bytes::Bytes::from(vec![b'x'; 100]), false)
            .expect("first bytes");
        // One byte every 200 ms, until the answer comes.
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if body
                    .send_data(bytes::Bytes::from_static(b"x"), false)
                    .is_err()
                {
                    return;
                }
            }
        });
        let status = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("an answer within 10 s")
            .expect("a response")
            .status()
            .as_u16();
        trickle.abort();
        status
    });
    assert_eq!(status, 408);
    wait_until("the upstream connection is closed", || {
        up.open.load(Ordering::SeqCst) == 0
    });
    assert_eq!(up.server.accepted(), 1, "the body was streaming upstream");
}
