//! TLS from the gateway to upstreams: the upstream's certificate is verified against the
//! configured CA under the configured (or derived) server name, which is also the SNI sent;
//! connections are pooled and reused (one handshake for many requests); a client certificate is
//! presented when configured (mTLS to the upstream); a certificate the CA did not sign, or a
//! required client certificate left out, fails the request with 502. Pooled connections are
//! bound to the TLS settings they were made under: upstreams sharing an address under different
//! names never share one, nor do the settings before and after a reload that changed them.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::{get, Client};
use ringgate_testkit::gateway::gateway;
use ringgate_testkit::pki::Pki;
use ringgate_testkit::tlsupstream::{tls_upstream, TlsUpstream};
use std::net::SocketAddr;

fn config(up: SocketAddr, upstream_extra: &str, tls: &str) -> String {
    format!(
        "version = \"up-tls\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"secure\"\nendpoints = [\"{up}\"]\n{upstream_extra}\n[upstreams.tls]\n{tls}\n[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"secure\"\n"
    )
}

/// A PKI and a TLS upstream serving `api.internal` (asking for a client certificate signed by
/// the PKI's client CA when `client_ca`), with the server CA's path.
fn internal_upstream(client_ca: bool) -> (Pki, TlsUpstream, String) {
    let pki = Pki::new();
    let cert = pki.server("internal", &["api.internal"]);
    let up = tls_upstream(&cert, client_ca.then(|| pki.client_ca_path()).as_deref());
    let ca = pki.server_ca_path().display().to_string();
    (pki, up, ca)
}

/// [`config`] verifying the upstream as `api.internal` against `ca`, with more `[upstreams.tls]`
/// keys in `extra`.
fn verified(up: SocketAddr, ca: &str, extra: &str) -> String {
    config(
        up,
        "",
        &format!("ca = \"{ca}\"\nserver_name = \"api.internal\"{extra}"),
    )
}

#[test]
fn requests_reach_a_verified_tls_upstream_over_pooled_connections() {
    let (_pki, up, ca) = internal_upstream(false);
    let gw = gateway(&verified(up.addr, &ca, ""));
    for _ in 0..20 {
        let r = get(gw.addr, "a", "/x");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "sni=api.internal client_cert=false");
    }
    assert_eq!(
        up.handshakes(),
        1,
        "the TLS connection is pooled and reused"
    );
    // The name can come from a fixed Host header.
    let gw2 = gateway(&config(
        up.addr,
        "host_header = \"api.internal\"",
        &format!("ca = \"{ca}\""),
    ));
    assert_eq!(
        get(gw2.addr, "a", "/x").text(),
        "sni=api.internal client_cert=false"
    );
}

#[test]
fn a_certificate_that_does_not_verify_is_a_502() {
    let (pki, up, ca) = internal_upstream(false);
    // Wrong name.
    let gw = gateway(&config(
        up.addr,
        "",
        &format!("ca = \"{ca}\"\nserver_name = \"other.internal\""),
    ));
    let r = get(gw.addr, "a", "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("upstream_tls_failed"), "{}", r.text());
    // Wrong CA (the client CA did not sign the server's certificate).
    let wrong = pki.client_ca_path().display().to_string();
    let gw = gateway(&config(
        up.addr,
        "",
        &format!("ca = \"{wrong}\"\nserver_name = \"api.internal\""),
    ));
    assert_eq!(get(gw.addr, "a", "/x").status, 502);
}

#[test]
fn a_client_certificate_is_presented_when_configured() {
    let (pki, up, ca) = internal_upstream(true);
    let me = pki.client("gateway", "ringgate", None, true);
    let gw = gateway(&config(
        up.addr,
        "",
        &format!(
            "ca = \"{ca}\"\nserver_name = \"api.internal\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            me.cert_arg(),
            me.key_arg()
        ),
    ));
    let r = get(gw.addr, "a", "/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "sni=api.internal client_cert=true");
    // Without it, the upstream refuses the handshake (TLS 1.3: on the first read): 502.
    let gw = gateway(&verified(up.addr, &ca, ""));
    assert_eq!(get(gw.addr, "a", "/x").status, 502);
}

#[test]
fn bad_upstream_tls_settings_are_refused() {
    let pki = Pki::new();
    let ca = pki.server_ca_path().display().to_string();
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (tls, want) in [
        (
            "ca = \"/nonexistent.pem\"\nserver_name = \"a\"".to_string(),
            "upstreams[0].tls.ca",
        ),
        (
            format!("ca = \"{ca}\"\nclient_cert = \"/x.pem\"\nserver_name = \"a\""),
            "go together",
        ),
        (
            format!("ca = \"{ca}\"\nserver_name = \"not a name!\""),
            "server_name",
        ),
    ] {
        let e = ringgate::snapshot_from_text(&config(up, "", &tls))
            .err()
            .unwrap_or_else(|| panic!("{tls} should be refused"))
            .to_string();
        assert!(e.contains(want), "{tls}: {e}");
    }
}

#[test]
fn health_checks_probe_a_tls_upstream_over_tls() {
    let (_pki, up, ca) = internal_upstream(false);
    let text = format!(
        "version = \"hc-tls\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"secure\"\nendpoints = [\"{}\"]\n[upstreams.tls]\nca = \"{ca}\"\nserver_name = \"api.internal\"\n[upstreams.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\ntimeout = \"500ms\"\nunhealthy_threshold = 1\n[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"secure\"\n",
        up.addr
    );
    let gw = gateway(&text);
    // Probes run over TLS (each a new handshake); a probe in cleartext would fail and the
    // only endpoint would be marked down after one.
    let t0 = std::time::Instant::now();
    while up.handshakes() < 4 && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(up.handshakes() >= 4, "probes: {}", up.handshakes());
    for _ in 0..5 {
        assert_eq!(get(gw.addr, "a", "/x").status, 200);
    }
}

#[test]
fn upstreams_sharing_an_address_under_different_names_never_share_a_connection() {
    // Two virtual hosts behind one TLS balancer: the same address, different SNI. A pooled
    // connection made for one name must not carry the other's requests, and a reload that
    // changes a name must not reuse connections made under the old one.
    let pki = Pki::new();
    let cert = pki.server("lb", &["a.internal", "b.internal", "c.internal"]);
    let up = tls_upstream(&cert, None);
    let ca = pki.server_ca_path().display().to_string();
    let text = |b_name: &str| {
        format!(
            "version = \"vhosts\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
             [[upstreams]]\nname = \"a\"\nendpoints = [\"{0}\"]\n[upstreams.tls]\nca = \"{ca}\"\nserver_name = \"a.internal\"\n\
             [[upstreams]]\nname = \"b\"\nendpoints = [\"{0}\"]\n[upstreams.tls]\nca = \"{ca}\"\nserver_name = \"{b_name}\"\n\
             [[routes]]\nid = \"a\"\npath = {{ prefix = \"/a\" }}\nupstream = \"a\"\n\
             [[routes]]\nid = \"b\"\npath = {{ prefix = \"/b\" }}\nupstream = \"b\"\n",
            up.addr
        )
    };
    let gw = gateway(&text("b.internal"));
    // One client connection: one core, one pool.
    let mut c = Client::connect(gw.addr);
    let mut ask = |path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200);
        r.text().to_string()
    };
    for _ in 0..5 {
        assert_eq!(ask("/a"), "sni=a.internal client_cert=false");
        assert_eq!(ask("/b"), "sni=b.internal client_cert=false");
    }
    assert_eq!(up.handshakes(), 2, "one pooled connection per name");
    gw.inner()
        .publish(ringgate::snapshot_from_text(&text("c.internal")).unwrap());
    for _ in 0..3 {
        assert_eq!(ask("/b"), "sni=c.internal client_cert=false");
        assert_eq!(ask("/a"), "sni=a.internal client_cert=false");
    }
    assert_eq!(
        up.handshakes(),
        3,
        "the renamed upstream got a new connection; the unchanged one kept its own"
    );
}
