//! TLS termination end to end: real handshakes from curl and from a rustls client against a
//! gateway whose certificates come from a throwaway CA. SNI picks among three certificates; a
//! renewed certificate reaches new connections after a reload while an open connection keeps
//! working; mTLS admits trusted client certificates (their identity reaches the upstream and
//! the rate limiter) and refuses missing or untrusted ones; sessions resume on tickets; plain
//! HTTP and garbage on the TLS port are answered or dropped and counted, never a panic.

#![allow(clippy::unwrap_used)]

use ringbench::upstream::UpstreamHandle;
use ringgate_testkit::client::get;
use ringgate_testkit::config;
use ringgate_testkit::curl::curl;
use ringgate_testkit::gateway::{gateway, TestGateway};
use ringgate_testkit::pki::{CertFiles, Pki};
use ringgate_testkit::stub::stub;
use ringgate_testkit::tlsclient::{Options, TlsClient};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Config text: a TLS listener (`tls` is the body of its `[listeners.tls]` table), one upstream, a catch-all route (extra route keys in `route`).
fn tls_config(up: SocketAddr, tls: &str, route: &str) -> String {
    config::catch_all("tls-test", &format!("[listeners.tls]\n{tls}"), up, route)
}

/// A PKI and the `[listeners.tls]` body serving its `api.example` certificate with client
/// certificates `mode` (`"required"`, `"optional"`).
fn mtls(mode: &str) -> (Pki, String) {
    let (pki, api) = Pki::with_api();
    let tls = format!(
        "certificates = [{}]\n{}",
        api.entry(),
        pki.client_auth(mode)
    );
    (pki, tls)
}

/// A gateway with a TLS listener in front of a stub upstream (both stop on drop).
fn started(tls: &str, route: &str) -> (TestGateway, UpstreamHandle) {
    let up = stub("up");
    let gw = gateway(&tls_config(up.addr(), tls, route));
    (gw, up)
}

#[test]
fn curl_gets_through_tls_1_3_and_1_2_with_keep_alive() {
    let (pki, api) = Pki::with_api();
    let (gw, _up) = started(&format!("certificates = [{}]", CertFiles::entry(&api)), "");
    let addr = gw.addr;
    let port = addr.port();
    let resolve = format!("api.example:{port}:127.0.0.1");
    let url = format!("https://api.example:{port}/echo");
    let ca = pki.server_ca_path();
    let ca = ca.to_str().unwrap();
    // Two requests on one connection: one handshake.
    let (ok, out, err) = curl(&["--cacert", ca, "--resolve", &resolve, &url, &url]);
    assert!(ok, "curl failed: {err}");
    assert_eq!(out.matches("GET /echo HTTP/1.1").count(), 2, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "the upstream must learn the client used https: {out}"
    );
    assert_eq!(
        gw.metric("ringgate_tls_handshakes_total{version=\"1.3\"}"),
        1.0
    );
    let (ok, _, err) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        &url,
    ]);
    assert!(ok, "curl over TLS 1.2 failed: {err}");
    assert_eq!(
        gw.metric("ringgate_tls_handshakes_total{version=\"1.2\"}"),
        1.0
    );
    // A client that does not trust the CA refuses us; the gateway counts its alert.
    let (ok, _, _) = curl(&["--resolve", &resolve, &url]);
    assert!(!ok, "curl must refuse a certificate from an unknown CA");
    // A large body streams back intact over TLS (several records, several writes).
    let big = format!("https://api.example:{port}/chunked?n=300&size=10000");
    let (ok, out, err) = curl(&["--cacert", ca, "--resolve", &resolve, &big]);
    assert!(ok, "{err}");
    assert_eq!(out.len(), 3_000_000);
    drop(gw);
}

#[test]
fn sni_picks_the_right_certificate_among_three() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.example"]);
    let b = pki.server("b", &["b.example", "*.b.example"]);
    let c = pki.server("c", &["c.example"]);
    let tls = format!(
        "certificates = [{}, {}, {}]",
        CertFiles::entry(&a),
        CertFiles::entry(&b),
        CertFiles::entry(&c)
    );
    let (gw, _up) = started(&tls, "");
    let addr = gw.addr;
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    for (name, want) in [
        ("a.example", &a),
        ("b.example", &b),
        ("x.b.example", &b),
        ("c.example", &c),
    ] {
        let mut s = client.connect(addr, name).unwrap();
        assert!(
            s.peer_cert() == want.der,
            "{name} got the wrong certificate"
        );
        let r = s.get(name, "/echo").unwrap();
        assert_eq!(r.status, 200);
    }
    // No match: the first certificate is the default, and the client (verifying the name)
    // refuses it.
    let e = client.connect(addr, "other.example").err().unwrap();
    assert!(e.contains("handshake"), "{e}");
}

#[test]
fn strict_sni_refuses_unknown_names_and_counts_it() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.example"]);
    let tls = format!(
        "certificates = [{}]\nstrict_sni = true",
        CertFiles::entry(&a)
    );
    let (gw, _up) = started(&tls, "");
    let addr = gw.addr;
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    assert!(client.connect(addr, "a.example").is_ok());
    assert!(client.connect(addr, "zzz.example").is_err());
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"unknown_sni\"}"),
        1.0
    );
}

#[test]
fn a_renewed_certificate_reaches_new_connections_after_reload() {
    let pki = Pki::new();
    let old = pki.server("api", &["api.example"]);
    let up = stub("up");
    let text = tls_config(
        up.addr(),
        &format!("certificates = [{}]", CertFiles::entry(&old)),
        "",
    );
    let gw = gateway(&text);
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    let mut kept = client.connect(gw.addr, "api.example").unwrap();
    assert!(kept.peer_cert() == old.der);
    assert_eq!(kept.get("api.example", "/echo").unwrap().status, 200);
    // Renewal: same file names, new key and certificate; then a reload.
    let new = pki.server("api", &["api.example"]);
    assert!(new.der != old.der);
    gw.inner()
        .publish(ringgate::snapshot_from_text(&text).unwrap());
    // The open connection goes on, on its old session.
    for _ in 0..3 {
        assert_eq!(kept.get("api.example", "/echo").unwrap().status, 200);
    }
    // A new connection gets the new one (a client without a session to resume: a resumed
    // session carries the certificate it was first made with).
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    let fresh = client.connect(gw.addr, "api.example").unwrap();
    assert!(
        fresh.peer_cert() == new.der,
        "a new connection must get the renewed certificate"
    );
    // A reload whose certificate does not load is refused; the live one stays.
    std::fs::write(&new.cert, "garbage").unwrap();
    let e = ringgate::snapshot_from_text(&text)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("listeners[0].tls"), "{e}");
    let client = TlsClient::new(&pki.server_ca_path(), &Options::default());
    let again = client.connect(gw.addr, "api.example").unwrap();
    assert!(again.peer_cert() == new.der);
}

#[test]
fn mtls_required_admits_trusted_certificates_only() {
    let (pki, tls) = mtls("required");
    let (gw, _up) = started(&tls, "");
    let addr = gw.addr;
    let good = pki.client("svc-a", "svc-a", Some("spiffe://acme/svc-a"), true);
    let rogue = pki.client("rogue", "svc-a", Some("spiffe://acme/svc-a"), false);
    let ca = pki.server_ca_path();
    let with = |c: Option<&CertFiles>| {
        TlsClient::new(
            &ca,
            &Options {
                client_cert: c,
                ..Options::default()
            },
        )
    };
    let mut s = with(Some(&good)).connect(addr, "api.example").unwrap();
    let r = s.get("api.example", "/echo").unwrap();
    assert_eq!(r.status, 200);
    let echoed = r.text().to_ascii_lowercase();
    assert!(
        echoed.contains("x-client-cert-id: spiffe://acme/svc-a"),
        "{echoed}"
    );
    assert!(echoed.contains("x-client-cert-subject: "), "{echoed}");
    assert!(echoed.contains("cn=svc-a"), "{echoed}");
    // A client forging the identity header has it replaced, not forwarded.
    s.send(b"GET /echo HTTP/1.1\r\nHost: api.example\r\nX-Client-Cert-Id: admin\r\n\r\n")
        .unwrap();
    let r = s.response().unwrap();
    assert!(!r.text().contains("admin"), "{}", r.text());
    // No certificate, or one from a CA the listener does not trust: refused. In TLS 1.3 the
    // client learns it on its first read.
    for c in [None, Some(&rogue)] {
        let refused = with(c)
            .connect(addr, "api.example")
            .and_then(|mut s| s.get("api.example", "/echo"));
        assert!(refused.is_err(), "{refused:?}");
    }
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"client_cert_missing\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"client_cert_invalid\"}"),
        1.0
    );
    // curl with the client certificate, too.
    let port = addr.port();
    let (ok, out, err) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        good.cert_arg(),
        "--key",
        good.key_arg(),
        "--resolve",
        &format!("api.example:{port}:127.0.0.1"),
        &format!("https://api.example:{port}/echo"),
    ]);
    assert!(ok, "{err}");
    assert!(out
        .to_ascii_lowercase()
        .contains("x-client-cert-id: spiffe://acme/svc-a"));
}

#[test]
fn mtls_optional_lets_routes_require_a_certificate_and_keys_limits_on_it() {
    let (pki, tls) = mtls("optional");
    let up = stub("up");
    let text = format!(
        "{}\n[[routes]]\nid = \"open\"\npath = {{ prefix = \"/open\" }}\nupstream = \"up\"\n\
         rate_limits = [\"per-client\"]\n\
         [[rate_limits]]\nname = \"per-client\"\nkey = \"client_id\"\nrate = 0.001\nburst = 2\n",
        tls_config(up.addr(), &tls, "require_client_cert = true")
    );
    let gw = gateway(&text);
    let ca = pki.server_ca_path();
    let anon = TlsClient::new(&ca, &Options::default());
    let mut s = anon.connect(gw.addr, "api.example").unwrap();
    let r = s.get("api.example", "/echo").unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("client_certificate_required"),
        "{}",
        r.text()
    );
    assert_eq!(s.get("api.example", "/open/echo").unwrap().status, 200);
    let one = pki.client("one", "svc-one", None, true);
    let two = pki.client("two", "svc-two", None, true);
    let client = |c: &CertFiles| {
        TlsClient::new(
            &ca,
            &Options {
                client_cert: Some(c),
                ..Options::default()
            },
        )
    };
    let mut s1 = client(&one).connect(gw.addr, "api.example").unwrap();
    assert_eq!(s1.get("api.example", "/echo").unwrap().status, 200);
    // The certificate's identity is the rate-limit key: svc-one spends its burst of 2...
    let st: Vec<u16> = (0..3)
        .map(|_| s1.get("api.example", "/open/x").unwrap().status)
        .collect();
    assert_eq!(st, vec![200, 200, 429]);
    // ...and svc-two has its own.
    let mut s2 = client(&two).connect(gw.addr, "api.example").unwrap();
    assert_eq!(s2.get("api.example", "/open/x").unwrap().status, 200);
}

#[test]
fn sessions_resume_on_tickets_in_both_versions() {
    let (pki, api) = Pki::with_api();
    let (gw, _up) = started(&format!("certificates = [{}]", CertFiles::entry(&api)), "");
    let addr = gw.addr;
    for tls12_only in [false, true] {
        let client = TlsClient::new(
            &pki.server_ca_path(),
            &Options {
                tls12_only,
                ..Options::default()
            },
        );
        let mut first = client.connect(addr, "api.example").unwrap();
        // TLS 1.3 tickets arrive after the handshake: read a response to receive them.
        assert_eq!(first.get("api.example", "/echo").unwrap().status, 200);
        assert!(!first.resumed());
        assert_eq!(first.is_tls13(), !tls12_only);
        let mut second = client.connect(addr, "api.example").unwrap();
        assert_eq!(second.get("api.example", "/echo").unwrap().status, 200);
        assert!(second.resumed(), "tls12_only={tls12_only}: not resumed");
    }
    assert_eq!(gw.metric("ringgate_tls_resumed_total"), 2.0);
}

#[test]
fn alpn_is_negotiated_and_plain_http_or_garbage_never_hurt() {
    let (pki, api) = Pki::with_api();
    let (gw, _up) = started(&format!("certificates = [{}]", CertFiles::entry(&api)), "");
    let addr = gw.addr;
    let offer = |alpn: &'static [&'static str]| {
        TlsClient::new(
            &pki.server_ca_path(),
            &Options {
                alpn,
                ..Options::default()
            },
        )
    };
    // The server's preference (h2, then http/1.1) among what the client offers.
    let s = offer(&["http/1.1", "h2"])
        .connect(addr, "api.example")
        .unwrap();
    assert_eq!(s.alpn().as_deref(), Some(&b"h2"[..]));
    let client = offer(&["http/1.1"]);
    let s = client.connect(addr, "api.example").unwrap();
    assert_eq!(s.alpn().as_deref(), Some(&b"http/1.1"[..]));
    // Only protocols we do not speak: the handshake fails with no_application_protocol.
    assert!(offer(&["spdy/3"]).connect(addr, "api.example").is_err());
    // Plain HTTP on the TLS port: a readable 400.
    let r = get(addr, "api.example", "/echo");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("plain_http_request_to_tls_port"),
        "{}",
        r.text()
    );
    // Garbage, a truncated ClientHello, and a silent client: dropped and counted.
    let mut g = TcpStream::connect(addr).unwrap();
    g.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let _ = g.read_to_end(&mut sink);
    let mut t = TcpStream::connect(addr).unwrap();
    t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1]).unwrap();
    drop(t);
    for _ in 0..50 {
        if gw.metric("ringgate_tls_handshake_failures_total{reason=\"eof\"}") >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"plain_http\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"no_alpn\"}"),
        1.0
    );
    assert!(gw.metric("ringgate_tls_handshake_failures_total{reason=\"bad_message\"}") >= 1.0);
    assert_eq!(
        gw.metric("ringgate_tls_handshake_failures_total{reason=\"eof\"}"),
        1.0
    );
    // The worker is still serving.
    let mut s = client.connect(addr, "api.example").unwrap();
    assert_eq!(s.get("api.example", "/echo").unwrap().status, 200);
}

#[test]
fn bad_tls_config_is_refused_with_its_path() {
    let (_pki, api) = Pki::with_api();
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (tls, want) in [
        ("certificates = []".to_string(), "at least one certificate"),
        (
            format!(
                "certificates = [{}]\nclient_auth = \"required\"",
                CertFiles::entry(&api)
            ),
            "client_ca",
        ),
        (
            format!(
                "certificates = [{}]\nversions = [\"1.1\"]",
                CertFiles::entry(&api)
            ),
            "versions",
        ),
        (
            format!(
                "certificates = [{}]\nalpn = [\"spdy/3\"]",
                CertFiles::entry(&api)
            ),
            "alpn",
        ),
        (
            format!(
                "certificates = [{{ cert = \"{}\", key = \"/nonexistent.key\" }}]",
                api.cert_arg()
            ),
            "/nonexistent.key",
        ),
    ] {
        let e = ringgate::snapshot_from_text(&tls_config(up, &tls, ""))
            .err()
            .unwrap_or_else(|| panic!("{tls} should be refused"))
            .to_string();
        assert!(e.contains(want), "{tls}: {e}");
    }
}
