//! DNS discovery end to end: a gateway started the way `ringgate serve` starts one, whose
//! upstreams are `dns` or `dns_srv` names answered by testkit's DNS server on a loopback port.
//! The records change under load (no request fails, the new endpoint gets the traffic, the
//! removed one none), SRV weights shape the traffic, and a DNS outage keeps the last good
//! endpoints and shows in `/metrics`.

use ringbench::run::{self, Plan, RunConfig, SimpleRequest, Target};
use ringgate_stubs::UpstreamConfig;
use ringgate_testkit::client::get;
use ringgate_testkit::controlled::Controlled;
use ringgate_testkit::dns::DnsServer;
use ringgate_testkit::stub::{stub, stub_with};
use ringgate_testkit::wait::until_named;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A gateway config with one upstream `api` (its TOML body in `upstream`), resolved through
/// `dns` with a TTL clamp of [100 ms, 1 s].
fn config(dns: SocketAddr, upstream: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [discovery]\ninitial_wait = \"5s\"\n\
         [discovery.dns]\nservers = [\"{dns}\"]\nmin_ttl = \"100ms\"\nmax_ttl = \"1s\"\n\
         timeout = \"300ms\"\nretry = \"200ms\"\n\
         [[upstreams]]\nname = \"api\"\n{upstream}\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"api\"\n"
    )
}

/// Who answered `GET /` (the stub's `x-upstream`), or the status when nobody did.
fn who(gw: SocketAddr) -> String {
    let r = get(gw, "api.test", "/");
    match r.header("x-upstream") {
        Some(name) => name.to_string(),
        None => format!("status {}", r.status),
    }
}

/// The value of the first `/metrics` line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_a_record_that_moves_under_load_moves_the_traffic_with_no_failed_request() {
    let dns = DnsServer::start();
    let a = stub("a");
    let port = a.addr().port();
    // The same port on another loopback address: the name's A record is all that changes.
    let b = stub_with(UpstreamConfig {
        name: "b".into(),
        listen: vec![SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port))],
        ..UpstreamConfig::default()
    });
    dns.set_a("api.svc.test", vec![Ipv4Addr::new(127, 0, 0, 1)], 1);
    let upstream = format!("discovery = \"dns\"\nendpoints = [\"api.svc.test:{port}\"]\n");
    let gw = Controlled::start("dns-move.toml", &config(dns.addr, &upstream));
    assert_eq!(who(gw.addr()), "a", "started with the first answer");

    let target = Target::parse(&format!("http://{}/x", gw.addr())).expect("target");
    let plan = Plan::single(&target, &SimpleRequest::default()).expect("plan");
    let mut rc = RunConfig::simple(target, plan, 1000.0, Duration::from_secs(6));
    rc.conns = 8;
    let load = std::thread::spawn(move || run::run(&rc).expect("load runs"));
    until_named("the load reaches a", WAIT, || a.requests_served() > 500);

    dns.set_a("api.svc.test", vec![Ipv4Addr::new(127, 0, 0, 2)], 1);
    until_named("b gets the traffic", WAIT, || b.requests_served() > 100);
    let a_after = a.requests_served();
    let b_then = b.requests_served();
    until_named("b keeps getting it", WAIT, || {
        b.requests_served() > b_then + 200
    });
    assert_eq!(
        a.requests_served(),
        a_after,
        "the removed endpoint got requests after the change had reached the workers"
    );

    let report = load.join().expect("load thread");
    assert_eq!(report.counts.errors, 0, "{:?}", report.counts.error_kinds);
    assert_eq!(report.counts.timeouts, 0);
    let ok = report.counts.statuses.get("200").copied().unwrap_or(0);
    assert_eq!(ok, report.counts.completed, "{:?}", report.counts.statuses);
    assert!(ok >= 4000, "the load ran: {ok} answers");
    let st = gw.control.state();
    assert_eq!((st.reloads_ok, st.reloads_failed), (0, 0), "no reload");
}

#[test]
fn srv_weights_shape_the_traffic() {
    let dns = DnsServer::start();
    let (heavy, light, backup) = (stub("heavy"), stub("light"), stub("backup"));
    let name = "_http._tcp.api.svc.test";
    dns.set_a("h.svc.test", vec![Ipv4Addr::LOCALHOST], 30);
    dns.set_srv(
        name,
        vec![
            (10, 3, heavy.addr().port(), "h.svc.test".into()),
            (10, 1, light.addr().port(), "h.svc.test".into()),
            (20, 1, backup.addr().port(), "h.svc.test".into()),
        ],
        30,
    );
    // An SRV upstream balances by the records' weights by default (weighted round robin).
    let upstream = format!("discovery = \"dns_srv\"\nendpoints = [\"{name}\"]\n");
    let gw = Controlled::start("dns-srv.toml", &config(dns.addr, &upstream));
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        *seen.entry(who(gw.addr())).or_default() += 1;
    }
    let (h, l) = (seen.get("heavy").copied(), seen.get("light").copied());
    assert_eq!(seen.len(), 2, "only the preferred priority: {seen:?}");
    let (h, l) = (h.unwrap_or(0), l.unwrap_or(0));
    assert!(
        (280..=320).contains(&h) && (80..=120).contains(&l),
        "3:1 within 10 %: {seen:?}"
    );
}

#[test]
fn a_dns_outage_keeps_the_last_good_endpoints_and_shows_in_metrics() {
    let mut dns = DnsServer::start();
    let a = stub("a");
    dns.set_a("api.svc.test", vec![Ipv4Addr::LOCALHOST], 0);
    let upstream = format!(
        "discovery = \"dns\"\nendpoints = [\"api.svc.test:{}\"]\n",
        a.addr().port()
    );
    let gw = Controlled::start("dns-outage.toml", &config(dns.addr, &upstream));
    assert_eq!(who(gw.addr()), "a");
    let errors = "ringgate_discovery_errors_total{upstream=\"api\",source=\"dns\"}";
    let before = metric(&gw.metrics(), errors).unwrap_or(0.0);

    dns.stop();
    until_named("the outage is counted", WAIT, || {
        metric(&gw.metrics(), errors).unwrap_or(0.0) >= before + 2.0
    });
    for _ in 0..20 {
        assert_eq!(who(gw.addr()), "a", "served on the last good set");
    }
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "ringgate_discovery_endpoints{upstream=\"api\",source=\"dns\"}"
        ),
        Some(1.0),
        "{m}"
    );
}
