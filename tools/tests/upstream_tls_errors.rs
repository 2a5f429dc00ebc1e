//! Failed TLS handshakes with an upstream say why (issue 14, item 8): a certificate for another
//! name and a certificate from a CA the gateway does not trust are each a `502
//! upstream_tls_failed`, with the cause in the access log (`detail`) and in
//! `ringgate_upstream_tls_failures_total{upstream, reason}`; the connect failure is counted too.

use ringgate_testkit::client::get;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::gateway;
use ringgate_testkit::pki::Pki;
use ringgate_testkit::tlsupstream::tls_upstream;
use std::net::SocketAddr;

fn config(up: SocketAddr, log: &str, tls: &str) -> String {
    format!(
        "version = \"up-tls-errors\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[access_log]\npath = \"{log}\"\n[[upstreams]]\nname = \"tlserr\"\nendpoints = [\"{up}\"]\n[upstreams.tls]\n{tls}\n[[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"tlserr\"\n"
    )
}

/// One request through a gateway whose upstream TLS settings are `tls`: the response's status
/// and body, the failure counters, and the access log line.
fn attempt(up: SocketAddr, tls: &str, reason: &str) -> (u16, String, f64, f64, serde_json::Value) {
    let log = TempFile::new("tls-errors.log", "");
    let gw = gateway(&config(up, log.arg(), tls));
    let r = get(gw.addr, "a", "/x");
    let by_reason = gw.metric(&format!(
        "ringgate_upstream_tls_failures_total{{upstream=\"tlserr\",reason=\"{reason}\"}}"
    ));
    let connect = gw.metric("ringgate_upstream_connect_failures_total{upstream=\"tlserr\"}");
    drop(gw);
    let text = std::fs::read_to_string(log.path()).expect("access log");
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no log line: {text:?}"));
    let entry = serde_json::from_str(line).expect("json log line");
    (r.status, r.text(), by_reason, connect, entry)
}

#[test]
fn a_certificate_for_another_name_is_named_as_such() {
    let pki = Pki::new();
    let up = tls_upstream(&pki.server("internal", &["api.internal"]), None);
    let ca = pki.server_ca_path().display().to_string();
    let (status, body, n, connect, entry) = attempt(
        up.addr,
        &format!("ca = \"{ca}\"\nserver_name = \"other.internal\""),
        "name_mismatch",
    );
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_tls_failed"), "{body}");
    assert_eq!(n, 1.0);
    assert_eq!(connect, 1.0);
    assert_eq!(entry["reason"], "upstream_tls_failed", "{entry}");
    assert_eq!(entry["detail"], "name_mismatch", "{entry}");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_named_as_such() {
    let pki = Pki::new();
    let up = tls_upstream(&pki.server("internal", &["api.internal"]), None);
    // The client CA did not sign the server's certificate.
    let wrong = pki.client_ca_path().display().to_string();
    let (status, body, n, connect, entry) = attempt(
        up.addr,
        &format!("ca = \"{wrong}\"\nserver_name = \"api.internal\""),
        "unknown_ca",
    );
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_tls_failed"), "{body}");
    assert_eq!(n, 1.0);
    assert_eq!(connect, 1.0);
    assert_eq!(entry["reason"], "upstream_tls_failed", "{entry}");
    assert_eq!(entry["detail"], "unknown_ca", "{entry}");
}
