//! Reloads see the files a config names (issue 14, item 8): a renewed certificate and key, with
//! the config text unchanged, is a changed config (`"changed": true` from the admin API), and the
//! config-file watcher reloads when only such a file changed.

use ringgate::admin::AdminServer;
use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::start;
use ringgate_testkit::client::send;
use ringgate_testkit::config;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::test_profile;
use ringgate_testkit::pki::Pki;
use std::time::{Duration, Instant};

fn reload(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = send(
        admin,
        b"POST /config/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("json")
}

fn reloads_ok(admin: std::net::SocketAddr) -> u64 {
    let r = send(admin, b"GET /config HTTP/1.1\r\nHost: admin\r\n\r\n");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    v["reloads"]["ok"].as_u64().unwrap_or(0)
}

#[test]
fn a_renewed_certificate_is_a_change_and_the_watcher_reloads_it() {
    let (pki, cert) = Pki::with_api();
    let text = [
        config::head("certs", &cert.listener_tls()),
        "[admin]\naddress = \"127.0.0.1:0\"\n".to_owned(),
        config::upstream("u", "127.0.0.1:9".parse().expect("addr")),
        config::route("all", "/", "u", ""),
    ]
    .concat();
    let file = TempFile::new("certs.toml", &text);
    let raw = RawConfig::parse(&text).expect("parse");
    let snap = ringgate::snapshot_from_text(&text).expect("valid");
    let gw = start(snap, &test_profile()).expect("start");
    let control = Control::new(ConfigSource::File(file.path().into()), raw, &gw);
    let admin = AdminServer::start("127.0.0.1:0".parse().expect("addr"), None, control.clone())
        .expect("admin");
    assert_eq!(reload(admin.addr)["changed"], false, "nothing changed yet");
    // Renewal: new certificate and key at the same paths, the config text untouched.
    pki.server("api", &["api.example"]);
    let r = reload(admin.addr);
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(reload(admin.addr)["changed"], false, "{r}");
    // The watcher sees a renewal alone.
    let _stop = control.watch(Duration::from_millis(50));
    let before = reloads_ok(admin.addr);
    pki.server("api", &["api.example"]);
    let t0 = Instant::now();
    while reloads_ok(admin.addr) <= before {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the watcher did not reload after the certificate changed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    admin.stop();
    gw.stop();
}
