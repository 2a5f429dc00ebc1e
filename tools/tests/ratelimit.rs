//! Rate limits end to end: the embedded (no Redis) mode in-process, then two gateway processes
//! of two workers each sharing one global limit through a real `redis-server`: shares by
//! demand (equal demand, equal shares), the server killed (by its PID) and restarted mid-run
//! (failing open within each node's last share, failing closed from the first request), and a
//! flood of distinct keys.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::{metric, Client};
use ringgate_testkit::config;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::{free_addr, gateway, serve_child, ChildGateway};
use ringgate_testkit::redis::RedisServer;
use ringgate_testkit::stub::stub;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// Route keys: the `per-key` limit, with the rate-limit header fields.
const KEYED_HEADERS: &str = "rate_limits = [\"per-key\"]\nrate_limit_headers = true";

/// The embedded-mode config: per-key, per-IP and sliding-window limits on `/keyed`, `/ip` and
/// `/win`, then `extra_routes` (raw text).
fn embedded_config(up: SocketAddr, extra_routes: &str) -> String {
    let key = r#"{ header = "x-key" }"#;
    let sections = [
        "[rate_limit]\ntick = \"10ms\"\ntrusted_proxies = [\"127.0.0.1\"]\n".to_owned(),
        config::rate_limit("per-key", key, 1.0, 3, ""),
        config::rate_limit("per-ip", "\"client_ip\"", 1.0, 2, ""),
        format!("[[rate_limits]]\nname = \"window\"\nkey = {key}\nalgorithm = \"sliding_window\"\nlimit = 2\nwindow = \"1h\"\n"),
    ];
    let routes = [
        config::route("keyed", "/keyed", "up", KEYED_HEADERS),
        config::route("ip", "/ip", "up", "rate_limits = [\"per-ip\"]"),
        config::route("win", "/win", "up", "rate_limits = [\"window\"]"),
        extra_routes.to_owned(),
    ];
    config::one_upstream("rl", up, &sections.concat(), &routes)
}

#[test]
fn embedded_limits_refuse_with_429_and_the_ratelimit_fields() {
    let up = stub("up");
    let fast = [
        config::rate_limit("fast", r#"{ header = "x-key" }"#, 100.0, 20, ""),
        config::route(
            "fast",
            "/fast",
            "up",
            KEYED_HEADERS.replace("per-key", "fast").as_str(),
        ),
    ]
    .concat();
    let gw = gateway(&embedded_config(up.addr(), &fast));
    let mut c = Client::connect(gw.addr);
    // 1 a second with a bucket of 3: 3 per 3 s, the bucket beside it.
    for left in [2, 1, 0] {
        let r = c.get_with("/keyed", &[("x-key", "alice")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
        assert_eq!(r.header("ratelimit-policy"), Some("3;w=3;burst=3"));
        assert!(r.header("ratelimit-reset").is_some());
    }
    // 100 a second with a bucket of 20 admits 100/s: not "20 per second".
    let r = c.get_with("/fast", &[("x-key", "carol")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("100"));
    assert_eq!(r.header("ratelimit-remaining"), Some("19"));
    assert_eq!(r.header("ratelimit-policy"), Some("100;w=1;burst=20"));
    let r = c.get_with("/keyed", &[("x-key", "alice")]);
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), r#"{"error":"rate_limited"}"#);
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&after), "retry-after {after}");
    // The connection is kept, other keys are untouched, and a request without the key is not
    // limited (missing_key = skip).
    assert_eq!(c.get_with("/keyed", &[("x-key", "bob")]).status, 200);
    for _ in 0..5 {
        assert_eq!(c.get_with("/keyed", &[]).status, 200);
    }
    // One token a second: alice is back within about a second.
    let t0 = Instant::now();
    loop {
        let r = c.get_with("/keyed", &[("x-key", "alice")]);
        if r.status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "alice never refilled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Decisions reach the counters at the next reconcile tick.
    let id = ringgate_policies::ratelimit::spec::LimitSpec::id_of("per-key");
    let t0 = Instant::now();
    loop {
        let st = gw.inner().limiter.stats();
        assert_eq!(st.store, "local");
        let c = st.counters.get(&id).copied().unwrap_or_default();
        if c.allowed == 5 && c.limited >= 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{c:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_ip_limits_believe_only_trusted_proxies() {
    let up = stub("up");
    let gw = gateway(&embedded_config(up.addr(), ""));
    let mut c = Client::connect(gw.addr);
    // The peer (127.0.0.1) is trusted: each forwarded client has its own bucket of 2.
    for client in ["203.0.113.7", "203.0.113.8"] {
        let xff = format!("198.51.100.1, {client}");
        assert_eq!(c.get_with("/ip", &[("x-forwarded-for", &xff)]).status, 200);
        assert_eq!(c.get_with("/ip", &[("x-forwarded-for", &xff)]).status, 200);
        let r = c.get_with("/ip", &[("x-forwarded-for", &xff)]);
        assert_eq!(r.status, 429, "{client}");
        // Refusals carry the fields even when the route does not ask for them on success.
        assert_eq!(r.header("ratelimit-limit"), Some("2"));
    }
    // A client prepending a fake address does not get a fresh bucket.
    let spoof = "10.9.9.9, 203.0.113.7";
    assert_eq!(c.get_with("/ip", &[("x-forwarded-for", spoof)]).status, 429);
    // Allowed responses of this route carry no fields.
    let r = c.get_with("/ip", &[("x-forwarded-for", "192.0.2.1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), None);
}

#[test]
fn sliding_window_counts_within_the_window() {
    let up = stub("up");
    let gw = gateway(&embedded_config(up.addr(), ""));
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.get_with("/win", &[("x-key", "w")]).status, 200);
    assert_eq!(c.get_with("/win", &[("x-key", "w")]).status, 200);
    let r = c.get_with("/win", &[("x-key", "w")]);
    assert_eq!(r.status, 429);
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        after > 60,
        "an hour window retries later than a minute: {after}"
    );
    assert_eq!(c.get_with("/win", &[("x-key", "v")]).status, 200);
}

#[test]
fn several_limits_must_all_pass_and_a_refusal_spends_nothing() {
    let up = stub("up");
    let routes = config::route(
        "both",
        "/both",
        "up",
        r#"rate_limits = ["per-key", "per-ip"]"#,
    );
    let gw = gateway(&embedded_config(up.addr(), &routes));
    let mut c = Client::connect(gw.addr);
    let xff = [("x-forwarded-for", "203.0.113.50"), ("x-key", "k1")];
    assert_eq!(c.get_with("/both", &xff).status, 200);
    assert_eq!(c.get_with("/both", &xff).status, 200);
    // per-ip (2) is spent; per-key (3) still has one, which the refusal must not take.
    assert_eq!(c.get_with("/both", &xff).status, 429);
    let other_ip = [("x-forwarded-for", "203.0.113.51"), ("x-key", "k1")];
    assert_eq!(c.get_with("/both", &other_ip).status, 200);
    assert_eq!(c.get_with("/both", &other_ip).status, 429);
}

#[test]
fn bad_rate_limit_config_is_refused_with_every_reason() {
    let up = stub("up");
    let identity =
        "[[rate_limits]]\nname = \"who\"\nkey = \"client_id\"\nrate = 1\nstage = \"before_auth\"\n";
    let text = embedded_config(up.addr(), identity)
        .replace("rate = 1\nburst = 3", "rate = 0\nburst = 3")
        .replace("key = \"client_ip\"", "key = \"shoe_size\"")
        .replace("rate_limits = [\"window\"]", "rate_limits = [\"nope\"]");
    let err = match ringgate::snapshot_from_text(&text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("rate must be above 0"), "{err}");
    assert!(err.contains("shoe_size"), "{err}");
    assert!(err.contains("no rate limit is named \"nope\""), "{err}");
    assert!(
        err.contains("rate_limits[3].stage: before_auth needs a key"),
        "{err}"
    );
}

// ---- Two gateway processes sharing Redis ----

/// The tests below run gateways and paced load whose counts suffer when they starve each other
/// of the machine's cores: one at a time.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

struct Node {
    gw: ChildGateway,
    admin: SocketAddr,
    _files: (TempFile, TempFile),
}

/// A gateway process of two workers sharing limits through `redis`: `global` on `/open` fails
/// open, `strict` on `/closed` fails closed with 503; both `rate`/`burst` per `x-key`.
fn node(name: &str, redis: &RedisServer, up: SocketAddr, rate: u32, burst: u32) -> Node {
    let admin = free_addr();
    let key = r#"{ header = "x-key" }"#;
    let (rate, url) = (f64::from(rate), redis.url());
    let sections = [
        format!("[admin]\naddress = \"{admin}\"\n[rate_limit]\nredis = \"{url}\"\nnode_id = \"{name}\"\ntick = \"20ms\"\n"),
        config::rate_limit("global", key, rate, burst, ""),
        config::rate_limit("strict", key, rate, burst, "on_store_failure = \"closed\"\nclosed_status = 503"),
    ];
    let routes = [
        config::route("open", "/open", "up", "rate_limits = [\"global\"]"),
        config::route("closed", "/closed", "up", "rate_limits = [\"strict\"]"),
    ];
    let text = config::one_upstream(&format!("rl-{name}"), up, &sections.concat(), &routes);
    let (gw, files) = serve_child(BIN, &format!("rl-{name}"), &text, 2);
    Node {
        gw,
        admin,
        _files: files,
    }
}

/// The start of every Redis test: the one-at-a-time lock, a fresh `redis-server`, a stub
/// upstream, and one [`node`] per name, each limited to `rate`/`burst`.
fn rig(
    names: &[&str],
    rate: u32,
    burst: u32,
) -> (
    std::sync::MutexGuard<'static, ()>,
    RedisServer,
    ringgate_stubs::UpstreamHandle,
    Vec<Node>,
) {
    let guard = heavy();
    let redis = RedisServer::start();
    let up = stub("up");
    let nodes = names
        .iter()
        .map(|n| node(n, &redis, up.addr(), rate, burst))
        .collect();
    (guard, redis, up, nodes)
}

/// One response as the load saw it: when it was sent (ms since the run's start), its status
/// (0: transport error) and how long it took.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at_ms: u64,
    status: u16,
    took: Duration,
}

/// Paced load: `rate` requests per second over `conns` keep-alive connections to `addr`, all
/// with the same key, for `secs`. Stops by itself.
fn load(
    addr: SocketAddr,
    path: &'static str,
    rate: f64,
    conns: usize,
    secs: f64,
    t0: Instant,
) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let per_conn = rate / conns as f64;
        let handles: Vec<_> = (0..conns)
            .map(|i| {
                std::thread::spawn(move || {
                    let gap = Duration::from_secs_f64(1.0 / per_conn);
                    let mut next = t0 + gap.mul_f64(i as f64 / conns as f64);
                    let end = t0 + Duration::from_secs_f64(secs);
                    let mut c = Client::connect(addr);
                    let mut seen = Vec::new();
                    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nx-key: one\r\n\r\n");
                    while next < end {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        let sent = Instant::now();
                        let status = match std::io::Write::write_all(&mut c.stream, req.as_bytes())
                        {
                            Ok(()) => c.try_response_to("GET").map_or(0, |r| r.status),
                            Err(_) => 0,
                        };
                        seen.push(Seen {
                            at_ms: sent.duration_since(t0).as_millis() as u64,
                            status,
                            took: sent.elapsed(),
                        });
                        if status == 0 {
                            c = Client::connect(addr);
                        }
                        next += gap;
                    }
                    seen
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Paced load on `/open` of both nodes at once for `secs`, each side `(rate, conns)`: what
/// node a's clients saw and what node b's did.
fn load_both(
    a: &Node,
    b: &Node,
    on_a: (f64, usize),
    on_b: (f64, usize),
    secs: f64,
) -> (Vec<Seen>, Vec<Seen>) {
    let t0 = Instant::now() + Duration::from_millis(200);
    let la = load(a.gw.addr, "/open", on_a.0, on_a.1, secs, t0);
    let lb = load(b.gw.addr, "/open", on_b.0, on_b.1, secs, t0);
    (la.join().unwrap(), lb.join().unwrap())
}

/// How many of `seen` were sent in `[from_ms, to_ms)` and got `status`.
fn count(seen: &[Seen], from_ms: u64, to_ms: u64, status: u16) -> usize {
    seen.iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms && s.status == status)
        .count()
}

#[test]
fn two_nodes_share_one_global_limit_through_redis() {
    let (_one_at_a_time, _redis, _up, nodes) = rig(&["a", "b"], 1000, 100);
    let (a, b) = (&nodes[0], &nodes[1]);
    // 1,500 req/s offered on one key, 90% on node a and 10% on node b, for 10 s.
    let (mut seen, on_b) = load_both(a, b, (1350.0, 6), (150.0, 2), 10.0);
    seen.extend(on_b);
    let ok = count(&seen, 0, 10_000, 200);
    let limited = count(&seen, 0, 10_000, 429);
    let other = seen
        .iter()
        .filter(|s| s.status != 200 && s.status != 429)
        .count();
    let odd: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.status != 200 && s.status != 429)
        .take(5)
        .collect();
    assert_eq!(other, 0, "only 200 and 429 expected: {odd:?}");
    // 10 s at 1000/s plus the initial burst of 100: within 5%.
    let rate = ok as f64 / 10.0;
    eprintln!("admitted {ok} in 10 s ({rate:.0}/s), limited {limited}");
    assert!(
        (rate - 1010.0).abs() <= 0.05 * 1000.0,
        "admitted {rate:.0}/s, limit 1000/s"
    );
    // Both nodes got some: b is not starved by a's demand.
    assert!(
        metric(
            b.admin,
            "ringgate_ratelimit_decisions_total{limit=\"global\",result=\"allowed\"}"
        ) > 100.0
    );
    // Syncs are per tick, not per request: two nodes at 50 ticks/s for about 10 s.
    let cmds = metric(a.admin, "ringgate_ratelimit_store_commands_total")
        + metric(b.admin, "ringgate_ratelimit_store_commands_total");
    assert!(
        cmds < 2.0 * 60.0 * 12.0,
        "{cmds} Redis commands for {ok} admissions"
    );
}

#[test]
fn redis_outage_fails_open_or_closed_and_recovery_has_no_burst() {
    let (_one_at_a_time, mut redis, _up, nodes) = rig(&["a"], 500, 50);
    let a = &nodes[0];
    let t0 = Instant::now() + Duration::from_millis(200);
    let stop = Arc::new(AtomicBool::new(false));
    // 800 req/s on the fail-open route, 100 req/s on the fail-closed one, for 9 s: Redis is
    // killed at 3 s and restarted at 6 s.
    let open = load(a.gw.addr, "/open", 800.0, 4, 9.0, t0);
    let closed = load(a.gw.addr, "/closed", 100.0, 1, 9.0, t0);
    let killer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(
                (t0 + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
            );
            redis.stop();
            std::thread::sleep(
                (t0 + Duration::from_secs(6)).saturating_duration_since(Instant::now()),
            );
            redis.restart();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            redis
        })
    };
    let open = open.join().unwrap();
    let closed = closed.join().unwrap();
    let down_metric = metric(a.admin, "ringgate_ratelimit_store_errors_total");
    stop.store(true, Ordering::Relaxed);
    let _redis = killer.join().unwrap();
    // Fail open: nothing but 200 and 429, and no request waited on Redis.
    let bad: Vec<_> = open
        .iter()
        .filter(|s| s.status != 200 && s.status != 429)
        .collect();
    assert!(
        bad.is_empty(),
        "fail-open route answered {:?}",
        &bad[..bad.len().min(5)]
    );
    let slowest = open.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    // While Redis is down the node keeps admitting (its share is the whole limit here).
    let during = count(&open, 3_500, 5_500, 200) as f64 / 2.0;
    assert!(during > 250.0, "admitted {during}/s during the outage");
    // Fail closed: 503 while down (after the first failed tick), 200s before and after.
    assert!(
        count(&closed, 3_500, 5_500, 503) > 100,
        "{:?}",
        closed.len()
    );
    assert!(count(&closed, 500, 2_900, 200) > 150);
    assert!(count(&closed, 7_000, 9_000, 200) > 150);
    // Recovery: a restarted Redis starts every bucket full, yet what the node admitted while
    // failing open is billed, so the second after the restart admits at most the limit plus
    // one bucket.
    let after = count(&open, 6_000, 7_000, 200);
    assert!(
        after <= 500 + 50 + 50,
        "admitted {after} in the second after recovery"
    );
    let steady = count(&open, 7_000, 9_000, 200) as f64 / 2.0;
    assert!(
        (steady - 500.0).abs() < 50.0,
        "admitted {steady}/s after recovery"
    );
    assert!(down_metric >= 1.0);
    assert_eq!(metric(a.admin, "ringgate_ratelimit_store_up"), 1.0);
}

#[test]
fn two_nodes_with_equal_demand_get_equal_shares() {
    let (_one_at_a_time, _redis, _up, nodes) = rig(&["a", "b"], 200, 20);
    let (a, b) = (&nodes[0], &nodes[1]);
    // 300 req/s on each node, one key, 200/s between them, for 8 s.
    let (sa, sb) = load_both(a, b, (300.0, 3), (300.0, 3), 8.0);
    // After the first second (the bucket of 20 and the first grants).
    let (oka, okb) = (count(&sa, 1_000, 8_000, 200), count(&sb, 1_000, 8_000, 200));
    eprintln!("equal demand: node a admitted {oka}, node b {okb} in 7 s");
    // Within 10% on a quiet machine (perf-reports/0007-hardening/ratelimit-fairness.md; the
    // simulation `equal_demand_gets_equal_shares` holds it exactly); here within 20%, since on
    // two shared cores the load threads and the nodes' ticks are late by whole ticks. Before
    // the demand-fair shares, nodes split 75/125 and worse (0.66 in the report).
    let (lo, hi) = (oka.min(okb) as f64, oka.max(okb) as f64);
    assert!(hi <= 1.2 * lo, "a {oka}, b {okb}: not within 20%");
    assert!(
        (oka + okb) as f64 <= 1.05 * 200.0 * 7.0 + 20.0,
        "a {oka} + b {okb} over the limit"
    );
}

#[test]
fn a_redis_killed_mid_run_keeps_each_node_to_its_share_and_fails_closed_at_once() {
    let (_one_at_a_time, mut redis, _up, nodes) = rig(&["a", "b"], 400, 40);
    let (a, b) = (&nodes[0], &nodes[1]);
    // 450 and 150 req/s on the fail-open route for 9 s; Redis is killed at 3 s and stays down.
    // The fail-closed route is busy until 2 s, then idle until after the kill.
    let t0 = Instant::now() + Duration::from_millis(200);
    let la = load(a.gw.addr, "/open", 450.0, 3, 9.0, t0);
    let lb = load(b.gw.addr, "/open", 150.0, 1, 9.0, t0);
    let before = load(a.gw.addr, "/closed", 50.0, 1, 2.0, t0);
    std::thread::sleep((t0 + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    redis.stop();
    let after = load(a.gw.addr, "/closed", 50.0, 1, 2.0, Instant::now());
    let (sa, sb) = (la.join().unwrap(), lb.join().unwrap());
    let (before, after) = (before.join().unwrap(), after.join().unwrap());
    // Each node's share in the second before the kill, and what it admitted in the 5 s from
    // half a second after the kill (the tick in flight settled).
    let last = |s: &[Seen]| count(s, 2_000, 3_000, 200) as f64;
    let down = |s: &[Seen]| count(s, 3_500, 8_500, 200) as f64;
    let (la_, lb_, da, db) = (last(&sa), last(&sb), down(&sa), down(&sb));
    eprintln!(
        "fail open: last second a {la_} b {lb_}; 5 s down a {da} b {db}; closed after the kill: {} passed, {} refused; store up {} {}",
        after.iter().filter(|s| s.status == 200).count(),
        after.iter().filter(|s| s.status == 503).count(),
        metric(a.admin, "ringgate_ratelimit_store_up"),
        metric(b.admin, "ringgate_ratelimit_store_up"),
    );
    assert!(
        da + db <= 1.05 * 400.0 * 5.0,
        "admitted {} in 5 s of outage, limit 2000",
        da + db
    );
    for (last, down, n) in [(la_, da, "a"), (lb_, db, "b")] {
        assert!(
            down <= 5.0 * last + 0.05 * 2000.0,
            "node {n}: {down} in 5 s down, {last} in its last second"
        );
    }
    assert!(da + db >= 0.5 * 2000.0, "failing open still admits");
    // Fail closed: 200s while Redis is up; after the kill, not one request passes, the first
    // included (the key was idle when the outage began).
    assert!(count(&before, 0, 2_000, 200) > 50, "{before:?}");
    let passed = after.iter().filter(|s| s.status == 200).count();
    let refused = after.iter().filter(|s| s.status == 503).count();
    assert_eq!(passed, 0, "{passed} passed after the kill");
    assert!(refused > 50, "{refused} refused");
}

#[test]
fn a_flood_of_distinct_keys_is_forgotten_here_and_in_redis() {
    // A tiny limit so keys expire quickly: 100/s with a bucket of 10 is whole again in 0.2 s.
    let (_one_at_a_time, redis, _up, nodes) = rig(&["a"], 100, 10);
    let a = &nodes[0];
    let conns = 8;
    let per_conn = 100_000 / conns;
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let addr = a.gw.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut ok = 0;
                for j in 0..per_conn {
                    let req = format!("GET /open HTTP/1.1\r\nHost: t\r\nx-key: k{i}-{j}\r\n\r\n");
                    c.send(req.as_bytes());
                    if c.response().status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(ok, conns * per_conn, "every new key has its whole bucket");
    let peak_keys = metric(a.admin, "ringgate_ratelimit_keys{where=\"reconciler\"}");
    // Idle keys are forgotten by the reconciler, the cores and Redis (key TTLs).
    let t0 = Instant::now();
    let mut client = redis_client(&redis);
    loop {
        let node_keys = metric(a.admin, "ringgate_ratelimit_keys{where=\"reconciler\"}");
        let core_keys = metric(a.admin, "ringgate_ratelimit_keys{where=\"cores\"}");
        let db = dbsize(&mut client);
        if node_keys == 0.0 && core_keys == 0.0 && db == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "keys left: reconciler {node_keys}, cores {core_keys}, redis {db} (peak {peak_keys})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(metric(a.admin, "ringgate_ratelimit_expired_keys_total") >= 100_000.0);
}

fn redis_client(r: &RedisServer) -> std::net::TcpStream {
    std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap()
}

fn dbsize(s: &mut std::net::TcpStream) -> u64 {
    use std::io::{Read, Write};
    s.write_all(b"DBSIZE\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let t = String::from_utf8_lossy(&buf[..n]);
    t.trim().trim_start_matches(':').parse().unwrap_or(u64::MAX)
}
