//! The discovery seam end to end, with the sets a source would report pushed into the hub by
//! hand: they reach the workers without a reload, an upstream starts without endpoints and
//! answers 503 until its source answers, a failed answer keeps the last good set, and an
//! endpoint that stayed keeps its per-core state (an ejected endpoint stays ejected when
//! another endpoint joins).

use ringgate::config::discovery::DiscoveryKind;
use ringgate::discovery::{EndpointSet, Found, Sink};
use ringgate_testkit::client::get;
use ringgate_testkit::controlled::Controlled;
use ringgate_testkit::scripted::{fixed, read_request, Scripted};
use ringgate_testkit::stub::stub;
use ringgate_testkit::wait::until_named;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The DNS source runs too (it fails for `api.invalid`, which keeps the sets pushed by hand); it
/// asks a loopback port nobody answers on, never the host's resolver.
fn config(extra_upstream: &str) -> String {
    format!(
        "version = \"seam\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [discovery]\ninitial_wait = \"50ms\"\n[discovery.dns]\nservers = [\"127.0.0.1:1\"]\n\
         [[upstreams]]\nname = \"api\"\ndiscovery = \"dns\"\nendpoints = [\"api.invalid:80\"]\n{extra_upstream}\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"api\"\n"
    )
}

fn set(addrs: &[SocketAddr]) -> EndpointSet {
    EndpointSet {
        endpoints: addrs
            .iter()
            .map(|&addr| Found { addr, weight: 1 })
            .collect(),
        source: DiscoveryKind::Dns,
        revision: None,
        at: SystemTime::now(),
    }
}

/// Who answered `GET /` (the stub's `x-upstream`), or the status when nobody did.
fn who(gw: SocketAddr) -> String {
    let r = get(gw, "api.test", "/");
    match r.header("x-upstream") {
        Some(name) => name.to_string(),
        None => format!("status {}", r.status),
    }
}

/// Waits until `n` answers in a row all come from `names`.
fn until_only(gw: SocketAddr, names: &[&str], n: usize, what: &str) {
    let mut streak = 0;
    until_named(what, Duration::from_secs(10), || {
        if names.contains(&who(gw).as_str()) {
            streak += 1;
        } else {
            streak = 0;
        }
        streak >= n
    });
}

#[test]
fn sets_reach_the_workers_without_a_reload_and_a_failure_keeps_the_last_good_set() {
    let a = stub("a");
    let b = stub("b");
    let gw = Controlled::start("seam.toml", &config(""));
    // Nothing answered yet (there is no `api.invalid`): no endpoints, 503.
    assert_eq!(who(gw.addr()), "status 503");
    let hub = gw.control.discovery.clone();
    hub.update("api", set(&[a.addr()]));
    until_only(gw.addr(), &["a"], 5, "traffic goes to the first set");
    hub.update("api", set(&[a.addr(), b.addr()]));
    let mut seen = std::collections::HashSet::new();
    until_named(
        "both endpoints get traffic",
        Duration::from_secs(10),
        || {
            seen.insert(who(gw.addr()));
            seen.contains("a") && seen.contains("b")
        },
    );
    hub.update("api", set(&[b.addr()]));
    until_only(
        gw.addr(),
        &["b"],
        10,
        "the removed endpoint gets no more traffic",
    );
    // A failed or empty answer keeps the last good set.
    hub.failed("api", DiscoveryKind::Dns, "SERVFAIL".into());
    hub.update("api", set(&[]));
    for _ in 0..10 {
        assert_eq!(who(gw.addr()), "b");
    }
    let st = gw.control.state();
    assert_eq!(
        (st.reloads_ok, st.reloads_failed),
        (0, 0),
        "no reload happened"
    );
    let m = gw.metrics();
    assert!(
        m.contains("ringgate_discovery_endpoints{upstream=\"api\",source=\"dns\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ringgate_discovery_changes_total{upstream=\"api\",source=\"dns\"} 3"),
        "{m}"
    );
    let errors = ringgate_testkit::controlled::metric_in(
        &m,
        "ringgate_discovery_errors_total{upstream=\"api\"",
    );
    assert!(
        errors >= 2.0,
        "the failure and the empty answer are counted: {m}"
    );
}

#[test]
fn an_ejected_endpoint_stays_ejected_when_another_joins() {
    let bad = fixed(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let a = stub("a");
    let b = stub("b");
    let outlier = "[upstreams.outlier]\nconsecutive_5xx = 1\nbase_ejection = \"60s\"\nmax_ejected_percent = 50\n";
    let gw = Controlled::start("seam-outlier.toml", &config(outlier));
    let hub = gw.control.discovery.clone();
    hub.update("api", set(&[bad.addr, a.addr()]));
    // The failing endpoint answers once, is ejected, and from then on only `a` answers.
    until_named(
        "the failing endpoint is ejected",
        Duration::from_secs(10),
        || who(gw.addr()) == "status 500",
    );
    until_only(gw.addr(), &["a"], 6, "only the healthy endpoint answers");
    // A new endpoint joins: the upstream's per-core state is rebuilt for three endpoints, and the
    // ejection of the one that stayed is carried over (a fresh state would send it every third
    // request again).
    hub.update("api", set(&[bad.addr, a.addr(), b.addr()]));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        let w = who(gw.addr());
        assert_ne!(
            w, "status 500",
            "the ejected endpoint got traffic after the change"
        );
        seen.insert(w);
    }
    assert!(
        seen.contains("b"),
        "the new endpoint gets traffic: {seen:?}"
    );
}

#[test]
fn an_endpoint_found_unhealthy_stays_so_when_the_list_changes() {
    // Answers 503; a health probe gets its 503 only after most of the probe timeout, so a prober
    // that started over would leave `sick` "healthy" for that long.
    let sick = Scripted::spawn(|mut s, _| {
        let mut carry = Vec::new();
        while let Some(r) = read_request(&mut s, &mut carry) {
            if r.request_line().contains("/health") {
                std::thread::sleep(Duration::from_millis(700));
            }
            let out: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
            if s.write_all(out).is_err() {
                return;
            }
        }
    });
    let a = stub("a");
    let b = stub("b");
    // Checked once a minute after the first round: only the first probe of each board can
    // decide, so a new board that forgot would send traffic to `sick` for a minute.
    let checks = "[upstreams.health_check]\npath = \"/health\"\ninterval = \"60s\"\ntimeout = \"1s\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n";
    let gw = Controlled::start("seam-health.toml", &config(checks));
    let hub = gw.control.discovery.clone();
    hub.update("api", set(&[sick.addr, a.addr()]));
    until_only(
        gw.addr(),
        &["a"],
        6,
        "the failing endpoint is found unhealthy",
    );
    hub.update("api", set(&[sick.addr, a.addr(), b.addr()]));
    let mut seen = std::collections::HashSet::new();
    until_named(
        "the new endpoint gets traffic",
        Duration::from_secs(10),
        || {
            let w = who(gw.addr());
            assert_ne!(
                w, "status 503",
                "the unhealthy endpoint got traffic after the change"
            );
            seen.insert(w);
            seen.contains("b")
        },
    );
    for _ in 0..20 {
        assert_ne!(who(gw.addr()), "status 503");
    }
}

#[test]
fn a_discovered_tls_endpoint_is_verified_under_the_written_name_never_its_address() {
    use ringgate_testkit::pki::Pki;
    use ringgate_testkit::tlsupstream::tls_upstream;
    let pki = Pki::new();
    let ca = pki.server_ca_path().display().to_string();
    // One upstream with a certificate for the name, one with a certificate for its address.
    let by_name = tls_upstream(&pki.server("named", &["api.internal"]), None);
    let by_addr = tls_upstream(&pki.server("addressed", &["127.0.0.1"]), None);
    let text = format!(
        "version = \"seam-tls\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [discovery]\ninitial_wait = \"50ms\"\n[discovery.dns]\nservers = [\"127.0.0.1:1\"]\n\
         [[upstreams]]\nname = \"api\"\ndiscovery = \"dns\"\nendpoints = [\"api.internal:443\"]\n\
         [upstreams.tls]\nca = \"{ca}\"\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"api\"\n"
    );
    let gw = Controlled::start("seam-tls.toml", &text);
    let hub = gw.control.discovery.clone();
    hub.update("api", set(&[by_name.addr]));
    until_named(
        "the named endpoint answers",
        Duration::from_secs(10),
        || get(gw.addr(), "a", "/").status == 200,
    );
    let r = get(gw.addr(), "a", "/");
    assert_eq!(r.text(), "sni=api.internal client_cert=false");
    // The address's own certificate does not pass: the name verified is the written one.
    hub.update("api", set(&[by_addr.addr]));
    until_named(
        "the address-only certificate is refused",
        Duration::from_secs(10),
        || get(gw.addr(), "a", "/").status == 502,
    );
    assert_eq!(by_addr.handshakes(), 0, "no handshake completed with it");
}

/// The config text with `dns_timeout` in `[discovery.dns]`.
fn reloadable(dns_timeout: &str, extra: &str) -> String {
    config(extra).replace(
        "servers = [\"127.0.0.1:1\"]\n",
        &format!("servers = [\"127.0.0.1:1\"]\ntimeout = \"{dns_timeout}\"\n"),
    )
}

#[test]
fn reloads_keep_the_sets_of_watches_that_stayed_even_when_refused() {
    let a = stub("a");
    let gw = Controlled::start("seam-reload.toml", &config(""));
    let addr = gw.addr();
    gw.control.discovery.update("api", set(&[a.addr()]));
    until_only(addr, &["a"], 5, "traffic goes to the pushed set");
    // A reload that changes only how DNS is asked restarts the source: the watch is the same,
    // so the upstream keeps its endpoints (it used to be emptied: 503).
    std::fs::write(gw.file.path(), reloadable("3s", "")).expect("write config");
    gw.control.reload("test").expect("reload");
    for _ in 0..10 {
        assert_eq!(who(addr), "a");
    }
    // A refused reload (a listener change needs a restart) goes back to the live watches with
    // their sets; a later change of another upstream rebuilds with them still there.
    let refused =
        reloadable("4s", "").replace("address = \"127.0.0.1:0\"", "address = \"127.0.0.1:1\"");
    std::fs::write(gw.file.path(), refused).expect("write config");
    assert!(gw.control.reload("test").is_err());
    assert!(gw.control.discovery.overlay().contains_key("api"));
    for _ in 0..10 {
        assert_eq!(who(addr), "a");
    }
}

#[test]
fn a_change_the_config_cannot_be_built_with_yet_is_applied_once_it_can() {
    use ringgate_testkit::pki::Pki;
    let (a, b) = (stub("a"), stub("b"));
    let pki = Pki::new();
    let ca = pki.server_ca_path();
    // A second upstream names a CA file: while it is missing, no snapshot builds.
    let side = format!(
        "[[upstreams]]\nname = \"side\"\nendpoints = [\"127.0.0.1:9\"]\n[upstreams.tls]\nca = \"{}\"\nserver_name = \"x\"\n",
        ca.display()
    );
    let gw = Controlled::start("seam-retry.toml", &config(&side));
    let hub = gw.control.discovery.clone();
    hub.update("api", set(&[a.addr()]));
    until_only(gw.addr(), &["a"], 5, "traffic goes to the first set");
    let saved = std::fs::read(&ca).expect("read ca");
    std::fs::remove_file(&ca).expect("remove ca");
    hub.update("api", set(&[b.addr()]));
    // The rebuild fails (the CA is gone): the live snapshot stays...
    for _ in 0..5 {
        assert_eq!(who(gw.addr()), "a");
    }
    // ...and the change is applied once the config builds again, with no new answer.
    std::fs::write(&ca, saved).expect("restore ca");
    until_only(
        gw.addr(),
        &["b"],
        5,
        "the change is applied after the retry",
    );
}
