//! Resilience (issue 6): balancing, health, ejection, breaker, bulkheads, retries, splits.

use ringbench::upstream::{ErrorInjection, LatencyDist, UpstreamConfig, UpstreamHandle};
use ringgate::admin::metrics_text;
use ringgate::config::RawConfig;
use ringgate::control::{ConfigSource, Control};
use ringgate::server::{start, RunningGateway};
use ringgate::snapshot::{text_hash, Snapshot};
use ringgate_testkit::client::{get, Client};
use ringgate_testkit::gateway::test_profile;
use ringgate_testkit::stub::{stub, stub_with};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Gw {
    gw: Option<RunningGateway>,
    control: Arc<Control>,
}

impl Gw {
    fn start(text: &str) -> Self {
        let raw = RawConfig::parse(text).expect("parse");
        let snap = Snapshot::build(&raw, text_hash(text)).unwrap_or_else(|e| panic!("{e}"));
        let gw = start(snap, &test_profile()).expect("start");
        let control = Control::new(
            ConfigSource::Inline {
                label: "test".into(),
                text: text.into(),
            },
            raw,
            &gw,
        );
        Gw {
            gw: Some(gw),
            control,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.as_ref().expect("running").addrs[0]
    }

    fn metric(&self, series: &str) -> f64 {
        let m = metrics_text(&self.control);
        m.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(g) = self.gw.take() {
            g.stop();
        }
    }
}

fn head(name: &str, eps: &[SocketAddr]) -> String {
    let list: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[upstreams]]\nname = \"{name}\"\nendpoints = [{}]\n",
        list.join(", ")
    )
}

const LISTEN: &str = "version = \"t\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n";

fn failing(name: &str, share_503: f64, latency: Duration) -> UpstreamHandle {
    stub_with(UpstreamConfig {
        name: name.into(),
        latency: LatencyDist::Fixed(latency),
        errors: ErrorInjection {
            statuses: vec![(503, share_503)],
            ..ErrorInjection::default()
        },
        ..UpstreamConfig::default()
    })
}

#[test]
fn weighted_balancing_follows_the_weights() {
    let (a, b) = (stub("A"), stub("B"));
    let text = format!(
        "{LISTEN}{}weights = [3, 1]\n[[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"u\"\n",
        head("u", &[a.addr(), b.addr()])
    );
    let gw = Gw::start(&text);
    let mut c = Client::connect(gw.addr());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        *seen
            .entry(r.header("x-upstream").unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.get("A"), Some(&300), "{seen:?}");
    assert_eq!(seen.get("B"), Some(&100), "{seen:?}");
}

#[test]
fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let (a, b, c3) = (stub("A"), stub("B"), stub("C"));
    let text = format!(
        "{LISTEN}{}balance = \"consistent_hash\"\nhash_on = {{ header = \"x-user\" }}\n[[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"u\"\n",
        head("u", &[a.addr(), b.addr(), c3.addr()])
    );
    let gw = Gw::start(&text);
    let mut c = Client::connect(gw.addr());
    let mut spread: HashMap<String, usize> = HashMap::new();
    for user in 0..60 {
        let mut first = None;
        for _ in 0..5 {
            c.send(format!("GET / HTTP/1.1\r\nHost: h\r\nx-user: u{user}\r\n\r\n").as_bytes());
            let who = c.response().header("x-upstream").unwrap_or("").to_string();
            assert_eq!(
                first.get_or_insert_with(|| who.clone()),
                &who,
                "user {user} moved"
            );
        }
        *spread.entry(first.unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(
        spread.len(),
        3,
        "keys spread over every endpoint: {spread:?}"
    );
}

#[test]
fn a_failing_upstream_is_contained_by_its_breaker_and_caps() {
    let good = stub("good");
    let bad = failing("bad", 0.3, Duration::from_millis(200));
    let text = format!(
        "{LISTEN}{}{}max_requests = 16\nmax_connections = 16\n[upstreams.circuit_breaker]\nerror_ratio = 0.1\nmin_requests = 10\nwindow = \"2s\"\nopen_for = \"1s\"\n\
         [[routes]]\nid = \"good\"\npath = {{ prefix = \"/good\" }}\nupstream = \"good\"\n\
         [[routes]]\nid = \"bad\"\npath = {{ prefix = \"/bad\" }}\nupstream = \"bad\"\n",
        head("good", &[good.addr()]),
        head("bad", &[bad.addr()])
    );
    let gw = Gw::start(&text);
    let addr = gw.addr();
    let t0 = Instant::now();
    // 32 clients hammer the bad route while one client uses the good one.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opened_at = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let bad_clients: Vec<_> = (0..32)
        .map(|_| {
            let stop = stop.clone();
            let opened_at = opened_at.clone();
            std::thread::spawn(move || {
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                let mut c = Client::connect(addr);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.send(b"GET /bad HTTP/1.1\r\nHost: h\r\n\r\n");
                    let Some(r) = c.try_response_to("GET") else {
                        c = Client::connect(addr);
                        continue;
                    };
                    if r.status == 503 && r.text().contains("upstream_unavailable") {
                        let mut o = opened_at.lock().expect("lock");
                        o.get_or_insert(t0.elapsed());
                    }
                    *statuses.entry(r.status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut good_client = Client::connect(addr);
    // The good route is used for 3 s and at least 20 times: a count, not a
    // rate, so a slow CI machine (32 busy client threads on 2 cores) only
    // makes the loop longer, never the test red.
    let mut good_ok = 0;
    while t0.elapsed() < Duration::from_secs(3) || good_ok < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the healthy route stalled after {good_ok} responses"
        );
        good_client.send(b"GET /good HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = good_client.response();
        assert_eq!(r.status, 200, "the healthy route must not fail");
        good_ok += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all: HashMap<u16, usize> = HashMap::new();
    for t in bad_clients {
        for (k, v) in t.join().expect("client") {
            *all.entry(k).or_default() += v;
        }
    }
    let opened = opened_at.lock().expect("lock").expect("the breaker opened");
    // The breaker judges a 2 s window; it must open within it.
    assert!(
        opened < Duration::from_secs(2),
        "breaker opened after {opened:?}"
    );
    assert!(all.get(&503).copied().unwrap_or(0) > 0, "{all:?}");
    assert!(
        bad.connections_accepted() <= 16,
        "connections to the bad upstream: {} (cap 16)",
        bad.connections_accepted()
    );
    assert!(
        gw.metric("ringgate_upstream_breaker_transitions_total{upstream=\"bad\",to=\"open\"}")
            >= 1.0
    );
    assert!(
        gw.metric(
            "ringgate_gateway_responses_total{reason=\"upstream_unavailable\",status=\"503\"}"
        ) >= 1.0
    );
}

#[test]
fn a_killed_endpoint_is_avoided_by_retries_then_by_health_checks() {
    let a = stub("A");
    let b = stub("B");
    let a_addr = a.addr();
    let text = format!(
        "{LISTEN}{}[upstreams.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 2\n\
         [[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"u\"\n[routes.retry]\nattempts = 1\non = [\"connect_failure\", \"reset\"]\nbackoff = \"1ms\"\nmax_backoff = \"2ms\"\n",
        head("u", &[a_addr, b.addr()])
    );
    let gw = Gw::start(&text);
    assert_eq!(get(gw.addr(), "h", "/").status, 200);
    a.stop();
    let mut c = Client::connect(gw.addr());
    let t0 = Instant::now();
    let mut failures_at_1s = None;
    while t0.elapsed() < Duration::from_secs(2) {
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = c.response();
        assert_eq!(
            r.status, 200,
            "a killed endpoint must not fail requests (retried)"
        );
        assert_eq!(r.header("x-upstream"), Some("B"));
        if failures_at_1s.is_none() && t0.elapsed() > Duration::from_secs(1) {
            failures_at_1s =
                Some(gw.metric("ringgate_upstream_connect_failures_total{upstream=\"u\"}"));
        }
    }
    let later = gw.metric("ringgate_upstream_connect_failures_total{upstream=\"u\"}");
    assert_eq!(
        Some(later),
        failures_at_1s,
        "after the health checks marked it down, the dead endpoint gets no more attempts"
    );
    assert!(
        later >= 1.0,
        "the first attempts hit the dead endpoint and were retried"
    );
    let ups = ringgate::admin::metrics_text(&gw.control);
    assert!(
        ups.contains("ringgate_upstream_retries_total{upstream=\"u\"}"),
        "{ups}"
    );
}

fn amplification(budget_ratio: f64) -> f64 {
    let ups: Vec<UpstreamHandle> = (0..4)
        .map(|i| failing(&format!("f{i}"), 1.0, Duration::ZERO))
        .collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr()).collect();
    let text = format!(
        "{LISTEN}{}[[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"u\"\n[routes.retry]\nattempts = 3\non = [\"503\"]\nbackoff = \"1ms\"\nmax_backoff = \"1ms\"\nbudget_ratio = {budget_ratio}\nbudget_min_per_sec = 0\nbudget_window = \"60s\"\n",
        head("u", &addrs)
    );
    let gw = Gw::start(&text);
    let mut c = Client::connect(gw.addr());
    let n = 500;
    for _ in 0..n {
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 503);
    }
    let upstream: u64 = ups.iter().map(|u| u.requests_served()).sum();
    upstream as f64 / n as f64
}

#[test]
fn a_retry_budget_bounds_the_amplification_of_an_outage() {
    let naive = amplification(10.0);
    let budgeted = amplification(0.2);
    assert!(
        naive > 3.5,
        "unbudgeted retries amplify up to 1 + attempts: {naive}"
    );
    assert!(
        budgeted <= 1.2 + 0.01,
        "budgeted amplification {budgeted} over 1 + budget"
    );
    assert!(budgeted > 1.1, "the budget is used: {budgeted}");
}

#[test]
fn a_canary_split_is_accurate_and_sticky() {
    let (stable, canary) = (stub("stable"), stub("canary"));
    let text = format!(
        "{LISTEN}{}{}[[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nsplit = [{{ upstream = \"stable\", weight = 95 }}, {{ upstream = \"canary\", weight = 5 }}]\nsplit_on = {{ header = \"x-user\" }}\nsplit_override_header = \"x-canary\"\n",
        head("stable", &[stable.addr()]),
        head("canary", &[canary.addr()])
    );
    let gw = Gw::start(&text);
    let addr = gw.addr();
    let n = 100_000u32;
    let threads = 4;
    let per = n / threads;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut canary_users = Vec::new();
                for i in 0..per {
                    let user = t * per + i;
                    c.send(
                        format!("GET / HTTP/1.1\r\nHost: h\r\nx-user: user-{user}\r\n\r\n")
                            .as_bytes(),
                    );
                    if c.response().header("x-upstream") == Some("canary") {
                        canary_users.push(user);
                    }
                }
                canary_users
            })
        })
        .collect();
    let canary_users: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client"))
        .collect();
    let share = canary_users.len() as f64 / f64::from(n);
    assert!((0.04..=0.06).contains(&share), "canary share {share}");
    // Sticky: the same users land on the same side again.
    let mut c = Client::connect(addr);
    for &u in canary_users.iter().take(50) {
        c.send(format!("GET / HTTP/1.1\r\nHost: h\r\nx-user: user-{u}\r\n\r\n").as_bytes());
        assert_eq!(c.response().header("x-upstream"), Some("canary"));
    }
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nx-user: user-0\r\nx-canary: canary\r\n\r\n");
    assert_eq!(
        c.response().header("x-upstream"),
        Some("canary"),
        "override header"
    );
}

#[test]
fn an_open_breaker_serves_the_route_fallback() {
    let bad = failing("bad", 1.0, Duration::ZERO);
    let text = format!(
        "{LISTEN}{}[upstreams.circuit_breaker]\nerror_ratio = 0.5\nmin_requests = 5\nwindow = \"10s\"\nopen_for = \"10s\"\n\
         [[routes]]\nid = \"r\"\npath = {{ prefix = \"/\" }}\nupstream = \"bad\"\n[routes.fallback]\nstatus = 200\nbody = '{{\"items\":[]}}'\n",
        head("bad", &[bad.addr()])
    );
    let gw = Gw::start(&text);
    let mut c = Client::connect(gw.addr());
    for _ in 0..5 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.response().status, 503);
    }
    let served = bad.requests_served();
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, "{\"items\":[]}".to_string()));
    assert_eq!(bad.requests_served(), served, "no attempt while open");
}
