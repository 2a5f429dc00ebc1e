//! gRPC end to end: a real gRPC client and server (grpcio, Python) through the gateway, HTTP/2 on
//! both sides. Unary, server-streaming, client-streaming and bidirectional calls (one of them in
//! lockstep: each message sent only after the previous answer), a 3 MB message,
//! status codes and trailers passed through, an unknown method; gateway-made errors as gRPC
//! statuses (a rate limit is RESOURCE_EXHAUSTED); `grpc-timeout` honoured as the deadline
//! (DEADLINE_EXCEEDED from the gateway, seen by an h2 client that sets no deadline of its own);
//! the same over TLS (ALPN h2) from the client. Active health checks speak the gRPC health
//! protocol: an endpoint answering NOT_SERVING is taken out of the rotation, and back. With
//! PINGs on, a connection whose peer went silent is replaced.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::gateway::{gateway, TestGateway};
use ringgate_testkit::pki::Pki;
use ringgate_testkit::run::succeed;
use ringgate_testkit::wait::until_every;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc");

/// The Python gRPC server; killed on drop.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With `[cert, key]`: over TLS.
    fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg(format!("{DIR}/server.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the gRPC server (pip install grpcio)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        GrpcServer {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(up: SocketAddr, tls: &str, route_extra: &str) -> String {
    config_up(up, tls, "", route_extra)
}

/// With extra upstream keys (`upstream_extra`, e.g. its `[upstreams.tls]` table).
fn config_up(up: SocketAddr, tls: &str, upstream_extra: &str, route_extra: &str) -> String {
    format!(
        "version = \"grpc\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{tls}\n[[upstreams]]\nname = \"grpc\"\nendpoints = [\"{up}\"]\nprotocol = \"h2\"\n{upstream_extra}\n[[routes]]\nid = \"svc\"\npath = {{ prefix = \"/\" }}\nupstream = \"grpc\"\n{route_extra}\n"
    )
}

/// Runs the Python client against `target`; returns its JSON report.
fn client(args: &[&str]) -> serde_json::Value {
    let out = succeed(
        Command::new("python3")
            .arg(format!("{DIR}/client.py"))
            .args(args),
        "the gRPC client (python3)",
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn check_calls(r: &serde_json::Value) {
    assert_eq!(r["echo"]["value"], "hello", "{r}");
    assert_eq!(r["echo"]["trailer"], "yes", "trailers pass through: {r}");
    assert_eq!(r["big"], 3_000_000, "{r}");
    let count: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(r["count"], serde_json::json!(count), "{r}");
    assert_eq!(r["total"], "100005", "{r}");
    assert_eq!(r["chat"], serde_json::json!(["a", "b", "c"]), "{r}");
    assert_eq!(
        r["pingpong"],
        serde_json::json!(["0", "1", "2", "3", "4"]),
        "interleaved bidi: {r}"
    );
    assert_eq!(r["fail"]["code"], "NOT_FOUND", "{r}");
    assert_eq!(r["fail"]["message"], "nope", "{r}");
    assert_eq!(r["unknown"]["code"], "UNIMPLEMENTED", "{r}");
}

/// The Python gRPC server behind a gateway that reaches it over h2c (cleartext listener).
fn h2c_gateway() -> (GrpcServer, TestGateway) {
    let server = GrpcServer::start();
    let gw = gateway(&config(server.addr, "", ""));
    (server, gw)
}

#[test]
fn grpc_calls_of_every_kind_pass_through_h2c() {
    let (_server, gw) = h2c_gateway();
    let r = client(&[&gw.addr.to_string()]);
    check_calls(&r);
}

#[test]
fn grpc_over_tls_from_the_client() {
    let (pki, api) = Pki::with_api();
    let tls = api.listener_tls();
    let server = GrpcServer::start();
    let gw = gateway(&config(server.addr, &tls, ""));
    let ca = pki.server_ca_path().display().to_string();
    let r = client(&[&gw.addr.to_string(), "--tls", &ca, "api.example"]);
    check_calls(&r);
}

#[test]
fn gateway_errors_are_grpc_statuses() {
    let server = GrpcServer::start();
    let limited = "rate_limits = [\"calls\"]\n[[rate_limits]]\nname = \"calls\"\nkey = \"route\"\nrate = 0.001\nburst = 3\n";
    let gw = gateway(&config(server.addr, "", limited));
    let r = client(&[&gw.addr.to_string()]);
    // The first calls pass; once the burst is spent, the limit answers for the gateway.
    assert_eq!(r["echo"]["value"], "hello", "{r}");
    let limited = ["total", "chat", "pingpong", "fail", "unknown"]
        .iter()
        .filter(|k| r[**k]["code"] == "RESOURCE_EXHAUSTED" && r[**k]["message"] == "rate_limited")
        .count();
    assert!(limited >= 3, "{r}");
    assert_eq!(r["unknown"]["code"], "RESOURCE_EXHAUSTED", "{r}");
    // An upstream that is down: UNAVAILABLE.
    let dead = ringgate_testkit::gateway::refusing_addr();
    let gw2 = gateway(&config(dead, "", ""));
    let r = client(&[&gw2.addr.to_string()]);
    assert_eq!(r["echo"]["code"], "UNAVAILABLE", "{r}");
    assert_eq!(r["echo"]["message"], "upstream_connect_failed", "{r}");
}

#[test]
fn grpc_timeout_is_the_deadline() {
    let (_server, gw) = h2c_gateway();
    let addr = gw.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, grpc_status, took) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::post(format!("http://{addr}/test.Svc/Slow"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "300m")
            .body(())
            .unwrap();
        let t0 = std::time::Instant::now();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        // One gRPC message: uncompressed, 2 bytes.
        body.send_data(
            bytes::Bytes::from_static(&[0, 0, 0, 0, 2, b'h', b'i']),
            true,
        )
        .unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        // Trailers-only: grpc-status is in the headers.
        let grpc = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string());
        (status, grpc, t0.elapsed())
    });
    assert_eq!(status, 200);
    assert_eq!(grpc_status.as_deref(), Some("4"), "DEADLINE_EXCEEDED");
    eprintln!("deadline answered after {took:?} (grpc-timeout 300m, the call takes 2 s)");
}

#[test]
fn grpc_to_a_tls_upstream_negotiates_h2() {
    let pki = Pki::new();
    let internal = pki.server("internal", &["grpc.internal"]);
    let server = GrpcServer::start_with(&[internal.cert_arg(), internal.key_arg()]);
    let up_tls = format!(
        "[upstreams.tls]\nca = \"{}\"\nserver_name = \"grpc.internal\"",
        pki.server_ca_path().display()
    );
    let gw = gateway(&config_up(server.addr, "", &up_tls, ""));
    let r = client(&[&gw.addr.to_string()]);
    check_calls(&r);
}

#[test]
fn concurrent_calls_share_connections_up_to_the_stream_cap() {
    let server = GrpcServer::start();
    let gw = gateway(&config_up(
        server.addr,
        "",
        "max_streams_per_connection = 2",
        "",
    ));
    // Six calls in flight at once (each takes 2 s upstream), at most 2 per connection.
    let r = client(&[&gw.addr.to_string(), "--slow", "6"]);
    let want: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    assert_eq!(r["slow"], serde_json::json!(want), "{r}");
    let new = gw.metric("ringgate_upstream_connections_new_total{upstream=\"grpc\"}");
    let reused = gw.metric("ringgate_upstream_connections_reused_total{upstream=\"grpc\"}");
    assert_eq!(
        new, 3.0,
        "6 concurrent streams over connections of 2 (reused {reused})"
    );
    assert_eq!(reused, 3.0);
}

#[test]
fn idle_upstream_connections_are_let_go() {
    let server = GrpcServer::start();
    let mut profile = ringgate_testkit::gateway::test_profile();
    profile.upstream.pool_idle_timeout = std::time::Duration::from_millis(100);
    let gw = ringgate_testkit::gateway::gateway_with(&config(server.addr, "", ""), profile);
    let new = |gw: &ringgate_testkit::gateway::TestGateway| {
        gw.metric("ringgate_upstream_connections_new_total{upstream=\"grpc\"}")
    };
    let open =
        |gw: &ringgate_testkit::gateway::TestGateway| gw.metric("ringgate_upstream_h2_connections");
    client(&[&gw.addr.to_string(), "--slow", "1"]);
    assert_eq!(new(&gw), 1.0);
    // Idle past the timeout (100 ms: it may be gone already), it is swept on the worker's tick;
    // the next call opens a new one.
    ringgate_testkit::wait::until_named(
        "the idle upstream connection was let go",
        std::time::Duration::from_secs(20),
        || open(&gw) == 0.0,
    );
    client(&[&gw.addr.to_string(), "--slow", "1"]);
    assert_eq!(new(&gw), 2.0);
}

/// One unary gRPC call to `addr` (h2c) from an h2 client of the test's own; the answer's message.
fn unary(addr: SocketAddr, path: &str, msg: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = path.to_string();
    let msg = msg.to_vec();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let mut body = vec![0u8];
        body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        body.extend_from_slice(&msg);
        send.send_data(bytes::Bytes::from(body), true).unwrap();
        let mut recv = resp.await.unwrap().into_body();
        let mut got = Vec::new();
        while let Some(d) = recv.data().await {
            let d = d.unwrap();
            let _ = recv.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        got.get(5..).map(<[u8]>::to_vec).unwrap_or_default()
    })
}

#[test]
fn grpc_health_checks_take_a_not_serving_endpoint_out_and_back() {
    let (a, b) = (GrpcServer::start(), GrpcServer::start());
    let text = format!(
        "version = \"grpc-health\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"grpc\"\nendpoints = [\"{}\", \"{}\"]\nprotocol = \"h2\"\n\
         [upstreams.health_check]\ngrpc = true\ninterval = \"100ms\"\ntimeout = \"1s\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n\
         [[routes]]\nid = \"svc\"\npath = {{ prefix = \"/\" }}\nupstream = \"grpc\"\n",
        a.addr, b.addr
    );
    let gw = gateway(&text);
    let port = |s: &GrpcServer| s.addr.port().to_string().into_bytes();
    let who = || unary(gw.addr, "/test.Svc/Who", b"");
    let answers = |n: usize| (0..n).map(|_| who()).collect::<Vec<_>>();
    let seen = answers(10);
    assert!(
        seen.contains(&port(&a)) && seen.contains(&port(&b)),
        "both serve"
    );
    // A says NOT_SERVING: within a few probes every call goes to B.
    assert_eq!(unary(a.addr, "/test.Svc/SetHealth", b"2"), b"2");
    let t0 = std::time::Instant::now();
    while answers(6).contains(&port(&a)) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "A still gets calls"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(answers(20).iter().all(|w| *w == port(&b)));
    // SERVING again: A is back in the rotation.
    assert_eq!(unary(a.addr, "/test.Svc/SetHealth", b"1"), b"1");
    let (within, every) = (Duration::from_secs(20), Duration::from_millis(100));
    until_every("A never came back", within, every, || {
        answers(6).contains(&port(&a))
    });
}

#[test]
fn an_http2_upstream_connection_that_stops_answering_pings_is_replaced() {
    // An HTTP/2 server that answers one request per connection, then stops reading it (a peer
    // gone without a FIN). With pings on, the gateway notices and the next call opens a new
    // connection instead of waiting on the dead one.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            l.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(tcp).await.unwrap();
                    if let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let resp = http::Response::builder().status(200).body(()).unwrap();
                        let _ = respond.send_response(resp, true);
                    }
                    // Flush the answer, then go silent while keeping the socket open.
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(200), conn.accept())
                            .await;
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    drop(conn);
                });
            }
        });
    });
    let mut profile = ringgate_testkit::gateway::test_profile();
    profile.upstream.h2_ping_interval = std::time::Duration::from_millis(100);
    profile.upstream.h2_ping_timeout = std::time::Duration::from_millis(200);
    profile.timeouts.response = std::time::Duration::from_secs(5);
    let gw = ringgate_testkit::gateway::gateway_with(&config(up, "", ""), profile);
    let get = || ringgate_testkit::client::get(gw.addr, "h", "/x").status;
    assert_eq!(get(), 200);
    // The silent connection misses its pings (within about half a second) and leaves the pool.
    ringgate_testkit::wait::until_named(
        "the silent upstream connection was dropped",
        std::time::Duration::from_secs(20),
        || gw.metric("ringgate_upstream_h2_connections") == 0.0,
    );
    assert_eq!(get(), 200, "a new connection, not the silent one");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
