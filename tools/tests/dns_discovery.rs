//! The DNS discovery source against a real DNS server (testkit's, on a loopback port) whose
//! records the test changes while the source runs, reporting to a sink that records everything.

use ringgate_control::config::discovery::{DiscoveryKind, DnsSettings};
use ringgate_control::discovery::{dns, EndpointSet, Found, Sink, Watch};
use ringgate_testkit::dns::DnsServer;
use ringgate_testkit::wait::until_named;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Every report, in order.
#[derive(Default)]
struct Recorder {
    updates: Mutex<Vec<(String, EndpointSet)>>,
    failures: Mutex<Vec<(String, DiscoveryKind, String)>>,
}

impl Sink for Recorder {
    fn update(&self, upstream: &str, set: EndpointSet) {
        self.updates
            .lock()
            .expect("lock")
            .push((upstream.to_string(), set));
    }
    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String) {
        self.failures
            .lock()
            .expect("lock")
            .push((upstream.to_string(), source, why));
    }
}

impl Recorder {
    fn sets(&self, upstream: &str) -> Vec<Vec<Found>> {
        let updates = self.updates.lock().expect("lock");
        updates
            .iter()
            .filter(|(u, _)| u == upstream)
            .map(|(_, s)| s.endpoints.clone())
            .collect()
    }
    fn last(&self, upstream: &str) -> Option<Vec<Found>> {
        self.sets(upstream).pop()
    }
    fn failures(&self, upstream: &str) -> Vec<String> {
        let failures = self.failures.lock().expect("lock");
        failures
            .iter()
            .filter(|(u, _, _)| u == upstream)
            .map(|(_, _, why)| why.clone())
            .collect()
    }
    fn no_empty_update(&self) {
        let updates = self.updates.lock().expect("lock");
        assert!(
            updates.iter().all(|(_, s)| !s.endpoints.is_empty()),
            "an empty set was reported as an update"
        );
    }
}

/// A running source; stops (and checks the thread ends) on `finish`.
struct Source {
    sink: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Source {
    fn start(settings: DnsSettings, watches: Vec<Watch>) -> Source {
        let sink = Arc::new(Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = dns::spawn(&settings, watches, sink.clone(), stop.clone()).expect("spawn");
        Source { sink, stop, thread }
    }

    fn finish(self) -> Arc<Recorder> {
        self.stop.store(true, Ordering::Relaxed);
        until_named("the resolver thread ends", WAIT, || {
            self.thread.is_finished()
        });
        self.thread.join().expect("resolver thread did not panic");
        self.sink.no_empty_update();
        self.sink
    }
}

fn settings(server: SocketAddr, min_ttl: Duration, max_ttl: Duration) -> DnsSettings {
    DnsSettings {
        servers: vec![server.to_string()],
        min_ttl,
        max_ttl,
        timeout: Duration::from_millis(300),
        retry: Duration::from_millis(200),
    }
}

fn fast(server: SocketAddr) -> DnsSettings {
    settings(server, Duration::ZERO, Duration::from_secs(300))
}

fn watch(upstream: &str, kind: DiscoveryKind, targets: &[&str]) -> Watch {
    Watch {
        upstream: upstream.to_string(),
        kind,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
}

fn eps(list: &[(&str, u32)]) -> Vec<Found> {
    list.iter()
        .map(|(a, weight)| Found {
            addr: a.parse().expect("socket address"),
            weight: *weight,
        })
        .collect()
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn wait_for_set(src: &Source, upstream: &str, want: &[Found]) {
    until_named(&format!("{upstream} reported as {want:?}"), WAIT, || {
        src.sink.last(upstream).as_deref() == Some(want)
    });
}

#[test]
fn a_record_change_is_reported_once_the_ttl_expires() {
    let server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 1);
    server.set_aaaa("api.test", vec!["::1".parse().expect("v6")], 1);
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:8080"])],
    );
    wait_for_set(
        &src,
        "api",
        &eps(&[("127.0.0.1:8080", 1), ("[::1]:8080", 1)]),
    );

    server.set_a("api.test", vec![ip(3), ip(2)], 1);
    server.set_aaaa("api.test", vec![], 1);
    wait_for_set(
        &src,
        "api",
        &eps(&[("127.0.0.2:8080", 1), ("127.0.0.3:8080", 1)]),
    );
    let sink = src.finish();
    assert!(
        sink.failures("api").is_empty(),
        "{:?}",
        sink.failures("api")
    );
}

/// The alias has a short TTL, the addresses a long one: a moved alias is seen as the alias's TTL
/// says (the shortest TTL of the whole answer, CNAME included).
#[test]
fn a_cname_that_moves_is_seen_after_its_own_ttl() {
    let server = DnsServer::start();
    server.set_a("x.test", vec![ip(1)], 3600);
    server.set_a("y.test", vec![ip(2)], 3600);
    server.set_cname("api.test", "x.test", 1);
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])],
    );
    wait_for_set(&src, "api", &eps(&[("127.0.0.1:80", 1)]));
    server.set_cname("api.test", "y.test", 1);
    wait_for_set(&src, "api", &eps(&[("127.0.0.2:80", 1)]));
    src.finish();
}

#[test]
fn targets_of_an_upstream_are_united() {
    let server = DnsServer::start();
    server.set_a("one.test", vec![ip(1)], 30);
    server.set_a("two.test", vec![ip(2), ip(1)], 30);
    let src = Source::start(
        fast(server.addr),
        vec![watch(
            "api",
            DiscoveryKind::Dns,
            &["one.test:80", "two.test:81", "127.0.0.9:82"],
        )],
    );
    wait_for_set(
        &src,
        "api",
        &eps(&[
            ("127.0.0.1:80", 1),
            ("127.0.0.1:81", 1),
            ("127.0.0.2:81", 1),
            ("127.0.0.9:82", 1),
        ]),
    );
    src.finish();
}

#[test]
fn ttl_floor_bounds_how_often_a_name_is_asked() {
    let server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 0);
    let t0 = Instant::now();
    let src = Source::start(
        settings(
            server.addr,
            Duration::from_secs(1),
            Duration::from_secs(300),
        ),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])],
    );
    until_named("three answers", WAIT, || src.sink.sets("api").len() >= 3);
    let elapsed = t0.elapsed();
    let asked = server.queries_of("api.test", 1);
    let sink = src.finish();
    // TTL 0 raised to 1 s: at most one A query per second since the start, and the first.
    let bound = elapsed.as_secs_f64().ceil() as u64 + 1;
    assert!(
        asked <= bound,
        "{asked} A queries in {elapsed:?} with a 1 s TTL floor"
    );
    assert!(sink.failures("api").is_empty());
}

#[test]
fn ttl_ceiling_bounds_how_long_an_answer_is_kept() {
    let server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 3600);
    let src = Source::start(
        settings(server.addr, Duration::ZERO, Duration::from_millis(500)),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])],
    );
    wait_for_set(&src, "api", &eps(&[("127.0.0.1:80", 1)]));
    server.set_a("api.test", vec![ip(2)], 3600);
    wait_for_set(&src, "api", &eps(&[("127.0.0.2:80", 1)]));
    src.finish();
}

#[test]
fn nxdomain_and_empty_answers_fail_and_keep_the_last_set() {
    let server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 0);
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])],
    );
    let good = eps(&[("127.0.0.1:80", 1)]);
    wait_for_set(&src, "api", &good);

    server.remove("api.test");
    until_named("NXDOMAIN reported", WAIT, || {
        !src.sink.failures("api").is_empty()
    });
    let failed = src.sink.failures("api").len();
    // An empty answer (the name exists, no addresses) is a failure too.
    server.set_a("api.test", vec![], 0);
    until_named("NODATA reported", WAIT, || {
        src.sink.failures("api").len() > failed + 1
    });
    assert_eq!(
        src.sink.last("api"),
        Some(good),
        "the last set is still the good one"
    );

    server.set_a("api.test", vec![ip(2)], 0);
    wait_for_set(&src, "api", &eps(&[("127.0.0.2:80", 1)]));
    src.finish();
}

#[test]
fn a_server_that_is_down_is_reported_and_the_set_stays() {
    let mut server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 0);
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])],
    );
    let good = eps(&[("127.0.0.1:80", 1)]);
    wait_for_set(&src, "api", &good);
    server.stop();
    let answers = src.sink.sets("api").len();
    until_named("the outage reported", WAIT, || {
        src.sink.failures("api").len() >= 2
    });
    let sets = src.sink.sets("api");
    // At most one answer was in flight when the server stopped.
    assert!(sets.len() <= answers + 1);
    assert_eq!(sets.last(), Some(&good));
    src.finish();
}

#[test]
fn srv_records_give_ports_and_weights_of_the_lowest_priority() {
    let server = DnsServer::start();
    let name = "_http._tcp.api.test";
    server.set_a("a.api.test", vec![ip(1)], 30);
    server.set_a("b.api.test", vec![ip(2)], 30);
    server.set_a("c.api.test", vec![ip(3)], 30);
    server.set_srv(
        name,
        vec![
            (10, 3, 8081, "a.api.test".into()),
            (10, 1, 8082, "b.api.test".into()),
            (20, 5, 8083, "c.api.test".into()),
            (10, 0, 8084, "c.api.test".into()),
        ],
        1,
    );
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::DnsSrv, &[name])],
    );
    wait_for_set(
        &src,
        "api",
        &eps(&[("127.0.0.1:8081", 3), ("127.0.0.2:8082", 1)]),
    );

    // The preferred group goes away: the next priority takes over; all weights 0 count as 1.
    server.set_srv(
        name,
        vec![
            (20, 0, 8083, "c.api.test".into()),
            (20, 0, 8085, "a.api.test".into()),
        ],
        1,
    );
    wait_for_set(
        &src,
        "api",
        &eps(&[("127.0.0.1:8085", 1), ("127.0.0.3:8083", 1)]),
    );
    let sink = src.finish();
    assert!(
        sink.failures("api").is_empty(),
        "{:?}",
        sink.failures("api")
    );
}

#[test]
fn srv_target_without_addresses_fails_the_answer() {
    let server = DnsServer::start();
    let name = "_http._tcp.api.test";
    server.set_a("a.api.test", vec![ip(1)], 30);
    server.set_srv(name, vec![(0, 1, 80, "a.api.test".into())], 0);
    let src = Source::start(
        fast(server.addr),
        vec![watch("api", DiscoveryKind::DnsSrv, &[name])],
    );
    let good = eps(&[("127.0.0.1:80", 1)]);
    wait_for_set(&src, "api", &good);
    server.set_srv(
        name,
        vec![
            (0, 1, 80, "a.api.test".into()),
            (0, 1, 81, "gone.api.test".into()),
        ],
        0,
    );
    until_named("the missing target reported", WAIT, || {
        !src.sink.failures("api").is_empty()
    });
    assert_eq!(src.sink.last("api"), Some(good));
    src.finish();
}

/// Forty records naming one host: the answer is too long for UDP, and the host's address comes
/// forty times in the additional section (once per record naming it): one address per record.
#[test]
fn a_long_srv_answer_comes_over_tcp() {
    let server = DnsServer::start();
    let name = "_http._tcp.many.test";
    server.set_a("host.many.test", vec![ip(1)], 30);
    let records: Vec<_> = (0..40)
        .map(|i| (0, 1, 9000 + i, "host.many.test".to_string()))
        .collect();
    server.set_srv(name, records, 30);
    let src = Source::start(
        fast(server.addr),
        vec![watch("many", DiscoveryKind::DnsSrv, &[name])],
    );
    let want: Vec<Found> = (0..40)
        .map(|i| Found {
            addr: SocketAddr::from((ip(1), 9000 + i)),
            weight: 1,
        })
        .collect();
    wait_for_set(&src, "many", &want);
    assert!(server.tcp_queries() > 0, "asked again over TCP");
    src.finish();
}

#[test]
fn ip_literal_targets_are_reported_once_and_never_asked_for() {
    let server = DnsServer::start();
    server.set_a("api.test", vec![ip(1)], 0);
    let src = Source::start(
        settings(
            server.addr,
            Duration::from_millis(100),
            Duration::from_secs(300),
        ),
        vec![
            watch("fixed", DiscoveryKind::Dns, &["127.0.0.5:80", "[::1]:81"]),
            watch("named", DiscoveryKind::Dns, &["api.test:80"]),
        ],
    );
    // The named upstream re-resolved a few times: the fixed one had all the time to do so too.
    until_named("named re-resolved", WAIT, || {
        src.sink.sets("named").len() >= 4
    });
    let sink = src.finish();
    assert_eq!(
        sink.sets("fixed"),
        vec![eps(&[("127.0.0.5:80", 1), ("[::1]:81", 1)])]
    );
    assert_eq!(server.queries("127.0.0.5"), 0);
}

#[test]
fn stop_ends_the_thread_while_a_lookup_hangs() {
    // A "server" that never answers, and a long timeout: the lookup is pending when stopped.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut s = settings(
        silent.local_addr().expect("addr"),
        Duration::ZERO,
        Duration::from_secs(300),
    );
    s.timeout = Duration::from_secs(30);
    let src = Source::start(s, vec![watch("api", DiscoveryKind::Dns, &["api.test:80"])]);
    let mut buf = [0u8; 512];
    silent.set_read_timeout(Some(WAIT)).expect("read timeout");
    silent.recv_from(&mut buf).expect("the source asked");
    let sink = src.finish();
    assert!(sink.sets("api").is_empty());
}
