//! HTTP/2 towards clients, end to end with real clients: curl (`--http2` over TLS with ALPN,
//! `--http2-prior-knowledge` in cleartext) and h2load, through the same routes, filters and
//! upstream pools as HTTP/1.1. Request bodies with and without a length, large responses under
//! flow control, gateway-made errors, many concurrent streams, and a graceful GOAWAY on drain
//! (with the `h2` crate as client, over tokio). Upstreams spoken to over HTTP/2 are health
//! checked over HTTP/2.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::curl::{curl, upload};
use ringgate_testkit::gateway::{gateway, gateway_with, test_profile, TestGateway};
use ringgate_testkit::pki::Pki;
use ringgate_testkit::stub::stub;
use std::net::SocketAddr;
use std::process::Command;

fn config(up: SocketAddr, tls: &str) -> String {
    format!(
        "version = \"h2\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{tls}\n[[upstreams]]\nname = \"up\"\nendpoints = [\"{up}\"]\n[[routes]]\nid = \"api\"\npath = {{ prefix = \"/\" }}\nupstream = \"up\"\n[[routes]]\nid = \"nope\"\npath = {{ prefix = \"/nope\" }}\nupstream = \"up\"\nrequire_client_cert = true\n"
    )
}

fn tls_table(pki: &Pki) -> String {
    pki.server("api", &["api.example"]).listener_tls()
}

struct Tls {
    _pki: Pki,
    ca: String,
    resolve: String,
    base: String,
}

impl Tls {
    /// curl over HTTP/2, trusting the test CA and resolving `api.example` to the gateway, with
    /// `args` after.
    fn curl(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["--http2", "--cacert", &self.ca, "--resolve", &self.resolve];
        all.extend_from_slice(args);
        curl(&all)
    }
}

fn tls_gateway() -> (TestGateway, ringbench::upstream::UpstreamHandle, Tls) {
    let pki = Pki::new();
    let up = stub("up");
    let gw = gateway(&config(up.addr(), &tls_table(&pki)));
    let port = gw.addr.port();
    let t = Tls {
        ca: pki.server_ca_path().display().to_string(),
        resolve: format!("api.example:{port}:127.0.0.1"),
        base: format!("https://api.example:{port}"),
        _pki: pki,
    };
    (gw, up, t)
}

#[test]
fn curl_speaks_http2_over_tls_through_the_routes() {
    let (gw, _up, t) = tls_gateway();
    let url = format!("{}/echo", t.base);
    let (ok, out, err) = t.curl(&["-w", "\nversion=%{http_version}", &url, &url]);
    assert!(ok, "{err}");
    // Both requests on one HTTP/2 connection.
    assert_eq!(out.matches("version=2").count(), 2, "{out}");
    assert_eq!(out.matches("GET /echo HTTP/1.1").count(), 2, "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-proto: https"), "{out}");
    assert!(lower.contains("host: api.example:"), "{out}");
    // A body with a length, and one without (streamed from stdin: chunked upstream).
    let body = ringgate_testkit::files::TempFile::new("body", &"x".repeat(300_000));
    let at_body = format!("@{}", body.arg());
    let (ok, out, err) = t.curl(&["-D", "-", "--data-binary", &at_body, &url]);
    assert!(ok, "{err}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-echo-body-bytes: 300000"),
        "{out}"
    );
    let args = [
        "--http2",
        "--cacert",
        &t.ca,
        "--resolve",
        &t.resolve,
        "-D",
        "-",
        &url,
    ];
    let out = upload(&args, 100_000, 1000, b'y').to_ascii_lowercase();
    assert!(out.contains("x-echo-body-bytes: 100000"), "{out}");
    assert!(
        out.contains("transfer-encoding: chunked"),
        "the upstream got it chunked: {out}"
    );
    // A large chunked response arrives whole, under flow control.
    let big = format!("{}/chunked?n=300&size=10000", t.base);
    let (ok, out, err) = t.curl(&[&big]);
    assert!(ok, "{err}");
    assert_eq!(out.len(), 3_000_000);
    // A gateway-made refusal is an HTTP/2 response too.
    let nope = format!("{}/nope", t.base);
    let (ok, out, _) = t.curl(&["-w", "\n%{http_code}", &nope]);
    assert!(ok);
    assert!(out.ends_with("\n403"), "{out}");
    assert!(out.contains("client_certificate_required"), "{out}");
    assert!(gw.metric("ringgate_http2_streams_total") >= 6.0);
    assert_eq!(gw.metric("ringgate_http2_connections_total"), 5.0);
    assert_eq!(
        gw.metric("ringgate_tls_handshakes_total{version=\"1.3\"}"),
        5.0
    );
}

#[test]
fn cleartext_prior_knowledge_and_http11_share_a_listener() {
    let up = stub("up");
    let gw = gateway(&config(up.addr(), ""));
    let url = format!("http://127.0.0.1:{}/echo", gw.addr.port());
    let (ok, out, err) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\nversion=%{http_version}",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("version=2"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("x-forwarded-proto: http") && !lower.contains("x-forwarded-proto: https"),
        "{out}"
    );
    let (ok, out, err) = curl(&["-w", "\nversion=%{http_version}", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("version=1.1"), "{out}");
    // Cleartext HTTP/2 can be turned off: the preface is then a bad HTTP/1.1 request.
    let mut profile = test_profile();
    profile.http2.cleartext = false;
    let gw2 = gateway_with(&config(up.addr(), ""), profile);
    let url2 = format!("http://127.0.0.1:{}/echo", gw2.addr.port());
    let (ok, _, _) = curl(&["--http2-prior-knowledge", &url2]);
    assert!(!ok);
}

/// `h2load` args → (requests done, succeeded).
fn h2load(args: &[&str]) -> (u64, u64, String) {
    let out = Command::new("h2load")
        .args(args)
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let num = |word: &str| -> u64 {
        line.split(',')
            .find(|p| p.trim().ends_with(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (num("done"), num("succeeded"), text)
}

/// h2load: 4000 requests over 4 connections, `streams` concurrent streams on each, to `url`.
fn h2load_4000(streams: &str, url: &str) -> (u64, u64, String) {
    h2load(&["-n", "4000", "-c", "4", "-m", streams, url])
}

#[test]
fn h2load_over_tls_and_h2c_with_many_concurrent_streams() {
    let (gw, _up, t) = tls_gateway();
    let port = gw.addr.port();
    // More concurrent streams asked for than the gateway allows (128): the client waits.
    let (done, ok, text) = h2load_4000("200", &format!("https://127.0.0.1:{port}/"));
    assert_eq!((done, ok), (4000, 4000), "{text}");
    assert!(text.contains("TLS Protocol: TLSv1.3"), "{text}");
    assert!(text.contains("Application protocol: h2"), "{text}");
    drop(t);
    let up = stub("up");
    let clear = gateway(&config(up.addr(), ""));
    let (done, ok, text) = h2load_4000("32", &format!("http://127.0.0.1:{}/", clear.addr.port()));
    assert_eq!((done, ok), (4000, 4000), "{text}");
}

#[test]
fn a_draining_gateway_sends_goaway_and_finishes_streams_in_flight() {
    use std::io::Write;
    // Answers each request 700 ms after reading it.
    let up = ringgate_testkit::scripted::Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while ringgate_testkit::scripted::read_request(&mut s, &mut carry).is_some() {
            std::thread::sleep(std::time::Duration::from_millis(700));
            if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                .is_err()
            {
                return;
            }
        }
    });
    let gw = gateway(&config(up.addr, ""));
    let addr = gw.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let slow = http::Request::get(format!("http://{addr}/slow"))
            .body(())
            .unwrap();
        let (in_flight, _) = client.send_request(slow, true).unwrap();
        // Stop the gateway while the stream is in flight.
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            drop(gw);
        });
        let resp = in_flight.await.unwrap();
        assert_eq!(resp.status(), 200, "the stream in flight finishes");
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk.unwrap();
        }
        // The gateway said GOAWAY: a new stream on this connection is not served.
        let refused = match client.ready().await {
            Ok(mut c) => {
                let r = http::Request::get(format!("http://{addr}/echo"))
                    .body(())
                    .unwrap();
                match c.send_request(r, true) {
                    Ok((f, _)) => f.await.map(|r| r.status().as_u16()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        assert!(refused.is_err(), "served after GOAWAY: {refused:?}");
        let _ = driver.await;
        stopper.join().unwrap();
    });
}

#[test]
fn a_rapid_reset_flood_closes_the_connection() {
    let up = stub("up");
    let gw = gateway(&config(up.addr(), ""));
    let addr = gw.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        // Open and cancel streams as fast as frames can be written (CVE-2023-44487).
        for _ in 0..2000 {
            let r = http::Request::get(format!("http://{addr}/echo"))
                .body(())
                .unwrap();
            match client.send_request(r, true) {
                // Dropping the response future resets the stream.
                Ok((f, _)) => drop(f),
                Err(_) => break,
            }
            match client.clone().ready().await {
                Ok(c) => client = c,
                Err(_) => break,
            }
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), driver)
            .await
            .map(|j| j.unwrap())
    });
    let err = match outcome {
        Ok(Err(e)) => e,
        other => panic!("the connection survived the flood: {other:?}"),
    };
    // The GOAWAY reaches the client, or the closed socket does first (it was still writing).
    assert!(
        err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
        "closed for another reason: {err}"
    );
    // The gateway goes on serving others.
    let url = format!("http://127.0.0.1:{}/echo", gw.addr.port());
    let (ok, _, e) = curl(&["--http2-prior-knowledge", &url]);
    assert!(ok, "{e}");
}

#[test]
fn http2_upstreams_are_health_checked_over_http2() {
    // The endpoints are two gateways serving h2c, each in front of one stub; when A's stub
    // stops, A answers its GET probes 502 and the front gateway stops sending it calls.
    let (sa, sb) = (stub("A"), stub("B"));
    let (ga, gb) = (
        gateway(&config(sa.addr(), "")),
        gateway(&config(sb.addr(), "")),
    );
    let front = gateway(&format!(
        "version = \"h2-health\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"h2\"\nendpoints = [\"{}\", \"{}\"]\nprotocol = \"h2\"\n\
         [upstreams.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"1s\"\nunhealthy_threshold = 2\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"h2\"\n",
        ga.addr, gb.addr
    ));
    let who = || {
        let r = ringgate_testkit::client::get(front.addr, "h", "/x");
        (r.status, r.header("x-upstream").unwrap_or("").to_string())
    };
    let first: Vec<_> = (0..10).map(|_| who()).collect();
    assert!(first.contains(&(200, "A".into())) && first.contains(&(200, "B".into())));
    sa.stop();
    let t0 = std::time::Instant::now();
    loop {
        let last: Vec<_> = (0..10).map(|_| who()).collect();
        if last.iter().all(|r| *r == (200, "B".to_string())) {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "A still gets calls: {last:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn an_http11_clients_request_trailers_reach_an_http2_upstream() {
    // HTTP/1.1 client -> gateway -> h2c -> gateway -> HTTP/1.1 recorder: the chunked trailer
    // section crosses the HTTP/2 hop as trailers and arrives as a trailer section again; a
    // framing field smuggled into the trailers does not.
    let (rec, seen) = ringgate_testkit::scripted::recorder();
    let inner = gateway(&config(rec.addr, ""));
    let front = gateway(&format!(
        "version = \"h2-trailers\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"h2\"\nendpoints = [\"{}\"]\nprotocol = \"h2\"\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"h2\"\n",
        inner.addr
    ));
    let r = ringgate_testkit::client::send(
        front.addr,
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc123\r\ncontent-length: 99\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = seen.lock().unwrap().last().cloned().unwrap();
    let body = String::from_utf8_lossy(&got.raw_body).to_ascii_lowercase();
    assert!(body.contains("hello"), "{body:?}");
    assert!(body.contains("x-checksum: abc123"), "{body:?}");
    assert!(!body.contains("content-length: 99"), "{body:?}");
}

#[test]
fn an_http2_request_with_too_many_fields_is_refused_with_431() {
    let up = stub("up");
    let gw = gateway(&config(up.addr(), ""));
    let url = format!("http://127.0.0.1:{}/echo", gw.addr.port());
    let fields: Vec<String> = (0..130).map(|i| format!("x-f{i}: {i}")).collect();
    let mut args = vec![
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
    ];
    for f in &fields {
        args.push("-H");
        args.push(f);
    }
    args.push(&url);
    let (ok, out, err) = curl(&args);
    assert!(ok, "{err}");
    assert_eq!(out, "431 2", "{err}");
    // The same request with a few fields goes through on the same listener.
    let (ok, out, _) = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "x-f: 1",
        &url,
    ]);
    assert!(ok);
    assert_eq!(out, "200");
}
