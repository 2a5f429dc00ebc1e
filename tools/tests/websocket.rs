//! WebSocket through the gateway, with a real client and server (tungstenite): the upgrade is
//! routed, authenticated and rate-limited like any request, then tunnelled both ways over plain
//! TCP and over TLS (large messages, server pushes, the close handshake); per-core tunnel caps
//! answer 503, idle tunnels are closed, and other upgrades (h2c) are not passed on. An HTTP/2
//! client's extended CONNECT (RFC 8441) reaches an HTTP/1.1 WebSocket upstream too, and a drain
//! ends its tunnel with a 1001 close frame as it does an HTTP/1.1 client's.

#![allow(clippy::unwrap_used)]
// tungstenite's handshake callback returns its own large error type.
#![allow(clippy::result_large_err)]

mod common;

use ringgate_testkit::client::Client;
use ringgate_testkit::config;
use ringgate_testkit::gateway::{gateway, gateway_with, test_profile, TestGateway};
use ringgate_testkit::pki::Pki;
use ringgate_testkit::stub::stub;
use ringgate_testkit::tlsclient::{Options, TlsClient};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

/// Request heads the echo server saw (lower-cased `name: value` lines).
type Seen = Arc<Mutex<Vec<String>>>;

/// A WebSocket server: echoes every data message; on `/push` it sends `push 0..4` first,
/// 20 ms apart, then echoes.
fn ws_server() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let addr = common::listen(move |s| {
        let mut path = String::new();
        let cb = |req: &Request, resp: Response| {
            path = req.uri().path().to_string();
            let mut head = String::new();
            for (k, v) in req.headers() {
                head.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            seen2.lock().unwrap().push(head.to_ascii_lowercase());
            Ok(resp)
        };
        let Ok(mut ws) = tungstenite::accept_hdr(s, cb) else {
            return;
        };
        if path == "/push" {
            for i in 0..5 {
                if ws.send(Message::text(format!("push {i}"))).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        common::echo(&mut ws, None);
    });
    (addr, seen)
}

fn config(up: SocketAddr, listener_tls: &str, route: &str) -> String {
    let mut text = config::head("ws-test", listener_tls);
    text.push_str(&config::upstream("ws", up));
    text.push_str(&config::route("ws", "/", "ws", route));
    text
}

/// Opens a WebSocket through the gateway at `gw` over plain TCP.
fn open(gw: &TestGateway, path: &str) -> Result<WebSocket<TcpStream>, tungstenite::Error> {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tungstenite::client(format!("ws://api.example{path}"), s)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })
}

fn status_of(e: &tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

fn echo_round<S: Read + Write>(ws: &mut WebSocket<S>) {
    for i in 0..50 {
        ws.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("hello {i}")));
    }
    // 1 MiB in one message: many reads and writes on both sides of the tunnel.
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap().into_data().as_ref(), &big[..]);
}

fn wait_metric(gw: &TestGateway, name: &str, want: f64) {
    let t0 = Instant::now();
    while gw.metric(name) != want && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gw.metric(name), want, "{name}");
}

#[test]
fn websocket_echo_and_push_over_plain_tcp() {
    let (up, seen) = ws_server();
    let gw = gateway(&config(up, "", ""));
    let mut ws = open(&gw, "/chat").unwrap();
    echo_round(&mut ws);
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.contains("x-forwarded-proto: http\n"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    assert!(head.contains("sec-websocket-key: "), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    // Server pushes arrive without the client sending anything.
    let mut ws = open(&gw, "/push").unwrap();
    for i in 0..5 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("push {i}")));
    }
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    wait_metric(&gw, "ringgate_websocket_tunnels_open", 0.0);
    assert_eq!(gw.metric("ringgate_websocket_tunnels_total"), 2.0);
    // The requests are answered 101 in the route's metrics.
    assert!(gw.metric("ringgate_requests_total{route=\"ws\",code=\"1xx\"}") >= 2.0);
}

#[test]
fn websocket_over_tls_with_a_route_requiring_a_client_certificate() {
    let (pki, api) = Pki::with_api();
    let tls = format!("{}\n{}", api.listener_tls(), pki.client_auth("optional"));
    let (up, seen) = ws_server();
    let gw = gateway(&config(up, &tls, "require_client_cert = true"));
    let ca = pki.server_ca_path();
    // Anonymous: the upgrade is refused like any request of the route.
    let anon = TlsClient::new(&ca, &Options::default());
    let s = anon.connect(gw.addr, "api.example").unwrap().into_stream();
    let e = tungstenite::client("wss://api.example/chat", s)
        .err()
        .unwrap();
    let e = match e {
        tungstenite::HandshakeError::Failure(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(status_of(&e), 403);
    // With a certificate: tunnelled over TLS, identity forwarded.
    let cert = pki.client("svc", "svc-ws", None, true);
    let client = TlsClient::new(
        &ca,
        &Options {
            client_cert: Some(&cert),
            ..Options::default()
        },
    );
    let s = client
        .connect(gw.addr, "api.example")
        .unwrap()
        .into_stream();
    let (mut ws, resp) = tungstenite::client("wss://api.example/push", s).unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    assert!(resp.headers().contains_key("x-request-id"));
    for i in 0..5 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("push {i}")));
    }
    echo_round(&mut ws);
    let head = seen.lock().unwrap().last().cloned().unwrap();
    assert!(head.contains("x-forwarded-proto: https\n"), "{head}");
    assert!(head.contains("x-client-cert-id: svc-ws\n"), "{head}");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    wait_metric(&gw, "ringgate_websocket_tunnels_open", 0.0);
}

#[test]
fn upgrades_are_rate_limited_capped_per_core_and_idle_tunnels_close() {
    let (up, _) = ws_server();
    let mut profile = test_profile();
    profile.limits.max_tunnels_per_core = 1;
    profile.timeouts.tunnel_idle = Duration::from_millis(300);
    let limits = "rate_limits = [\"upgrades\"]\n[[rate_limits]]\nname = \"upgrades\"\nkey = \"route\"\nrate = 0.001\nburst = 2\n";
    let gw = gateway_with(&config(up, "", limits), profile);
    let mut first = open(&gw, "/chat").unwrap();
    // The core's one tunnel is taken: 503.
    let e = open(&gw, "/chat").err().unwrap();
    assert_eq!(status_of(&e), 503);
    // Traffic keeps a tunnel alive past its idle time...
    for i in 0..8 {
        first.send(Message::text(format!("m{i}"))).unwrap();
        assert_eq!(first.read().unwrap(), Message::text(format!("m{i}")));
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and silence closes it.
    std::thread::sleep(Duration::from_millis(700));
    let after = first.read();
    assert!(
        matches!(
            after,
            Err(tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(_)
                | tungstenite::Error::Io(_))
        ),
        "{after:?}"
    );
    if let Err(tungstenite::Error::Io(e)) = &after {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the gateway did not close the idle tunnel: {e}"
        );
    }
    wait_metric(&gw, "ringgate_websocket_tunnels_open", 0.0);
    // Two upgrades spent the route's burst of 2 (the refused one spent nothing): 429.
    let e = open(&gw, "/chat").err().unwrap();
    assert_eq!(status_of(&e), 429);
}

#[test]
fn other_upgrades_are_not_passed_on() {
    let up = stub("up");
    let gw = gateway(&config(up.addr(), "", ""));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
    let r = c.response_to("GET");
    assert_eq!(r.status, 200);
    let text = r.text().to_ascii_lowercase();
    assert!(!text.contains("upgrade"), "{text}");
    assert!(!text.contains("http2-settings"), "{text}");
    // A websocket handshake to a route with websocket = false goes as a plain GET.
    let gw2 = gateway(&config(up.addr(), "", "websocket = false"));
    let mut c = Client::connect(gw2.addr);
    c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    let r = c.response_to("GET");
    assert_eq!(r.status, 200);
    assert!(
        !r.text().to_ascii_lowercase().contains("upgrade: websocket"),
        "{}",
        r.text()
    );
}

/// Runs `f` on a current-thread tokio runtime (the h2 client's).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An HTTP/2 connection to `addr` (h2c) with a WebSocket opened on it by an extended CONNECT
/// (RFC 8441): the client for further requests, the response, and the stream's send half.
async fn extended_connect(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    http::Response<h2::RecvStream>,
    h2::SendStream<bytes::Bytes>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/chat"))
        .extension(h2::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let (resp, send) = client.send_request(req, false).unwrap();
    (client, resp.await.unwrap(), send)
}

#[test]
fn websocket_over_http2_extended_connect() {
    // RFC 8441: an HTTP/2 client opens the WebSocket with CONNECT :protocol websocket; the
    // gateway asks the HTTP/1.1 upstream for the upgrade and tunnels the stream to it.
    let (up, seen) = ws_server();
    let gw = gateway(&config(up, "", ""));
    let addr = gw.addr;
    let (status, echoed) = block_on(async move {
        let (client, resp, mut send) = extended_connect(addr).await;
        let status = resp.status().as_u16();
        let mut recv = resp.into_body();
        // A masked text frame "hello" (client frames are masked, RFC 6455 §5.3).
        let mask = [7u8, 1, 9, 3];
        let mut frame = vec![0x81, 0x80 | 5];
        frame.extend_from_slice(&mask);
        frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        send.send_data(bytes::Bytes::from(frame), false).unwrap();
        let mut got = Vec::new();
        while got.len() < 7 {
            match recv.data().await {
                Some(Ok(d)) => {
                    let _ = recv.flow_control().release_capacity(d.len());
                    got.extend_from_slice(&d);
                }
                other => panic!("stream ended: {other:?}"),
            }
        }
        // A plain CONNECT (a TCP tunnel) is not served.
        let plain = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("{addr}"))
            .body(())
            .unwrap();
        let mut client = client.ready().await.unwrap();
        let (r, _) = client.send_request(plain, false).unwrap();
        assert_eq!(r.await.unwrap().status(), 501);
        (status, got)
    });
    assert_eq!(status, 200);
    // The server's unmasked text frame "hello".
    assert_eq!(echoed, [&[0x81u8, 5][..], b"hello"].concat());
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("sec-websocket-key: "), "{head}");
}

#[test]
fn an_upstream_answering_the_wrong_accept_value_is_refused_to_an_http2_client() {
    // The gateway made the HTTP/1.1 handshake for the HTTP/2 client, so it checks the
    // upstream's Sec-WebSocket-Accept (RFC 6455 §4.1) instead of tunnelling to whatever said 101.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                );
                let _ = s.read(&mut b);
            });
        }
    });
    let gw = gateway(&config(up, "", ""));
    let addr = gw.addr;
    let (status, body) = block_on(async move {
        let (_client, resp, _send) = extended_connect(addr).await;
        let status = resp.status().as_u16();
        let mut recv = resp.into_body();
        let mut body = Vec::new();
        while let Some(Ok(d)) = recv.data().await {
            body.extend_from_slice(&d);
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(status, 502);
    assert!(body.contains("bad_websocket_handshake"), "{body}");
}

#[test]
fn a_drain_sends_going_away_to_an_http2_clients_websocket() {
    // The tunnel of an extended CONNECT ends a drain like an HTTP/1.1 one (see websocket_drain.rs):
    // a close frame with status 1001 in the stream's DATA, then the end of the stream.
    let (up, _seen) = ws_server();
    let mut profile = test_profile();
    profile.timeouts.drain = Duration::from_secs(3);
    let snapshot = ringgate::snapshot_from_text(&config(up, "", "")).unwrap();
    let gw = ringgate::server::start(snapshot, &profile).unwrap();
    let addr = gw.addrs[0];
    let (got, stopping) = block_on(async move {
        let (_client, resp, _send) = extended_connect(addr).await;
        assert_eq!(resp.status(), 200);
        let mut recv = resp.into_body();
        let stopping = std::thread::spawn(move || gw.stop());
        let read = async {
            let mut got = Vec::new();
            while let Some(Ok(d)) = recv.data().await {
                let _ = recv.flow_control().release_capacity(d.len());
                got.extend_from_slice(&d);
            }
            got
        };
        let got = tokio::time::timeout(Duration::from_secs(15), read)
            .await
            .expect("the tunnel's stream ends with the drain");
        (got, stopping)
    });
    assert_eq!(got, [0x88, 2, 0x03, 0xe9], "one close frame, status 1001");
    let out = stopping.join().unwrap();
    assert_eq!(out.aborted, 0, "{out:?}");
}
