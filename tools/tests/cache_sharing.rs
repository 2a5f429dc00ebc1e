//! The cache across requests and cores: concurrent misses for one key make one upstream request
//! per core (coalescing), stale responses are served while a background refresh runs or while the
//! upstream fails, purges by tag, prefix and key reach every core and remove exactly what they
//! name, a zone's byte budget holds under a flood of unique keys, and a reload that keeps the
//! zone keeps its objects.

use ringgate_testkit::client::{Client, Response};
use ringgate_testkit::controlled::{metric_in as metric, Controlled};
use ringgate_testkit::gateway::test_profile;
use ringgate_testkit::origin::{Origin, Reply};
use ringgate_testkit::wait::until_named;
use std::net::SocketAddr;
use std::time::Duration;

fn config(
    origin: SocketAddr,
    zone_bytes: u64,
    route_cache: &str,
    admin: Option<SocketAddr>,
) -> String {
    let admin = admin.map_or(String::new(), |a| format!("[admin]\naddress = \"{a}\"\n"));
    format!(
        "version = \"cache\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{admin}\
         [[cache_zones]]\nname = \"z\"\nmax_bytes = {zone_bytes}\nmax_object_bytes = 65536\n\
         [[upstreams]]\nname = \"o\"\nendpoints = [\"{origin}\"]\n\
         [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"o\"\n\
         cache = {{ zone = \"z\"{route_cache} }}\n"
    )
}

fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).get_with(path, &[])
}

fn cache_status(r: &Response) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

/// `n` clients request `path` at once, each on its own connection.
fn at_once(addr: SocketAddr, path: &'static str, n: usize) -> Vec<Response> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut c = Client::connect(addr);
                    b.wait();
                    c.get_with(path, &[])
                })
                .expect("client thread")
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect()
}

#[test]
fn a_thousand_concurrent_misses_make_one_upstream_request_per_core() {
    let origin = Origin::start(|_, _| Reply {
        delay: Duration::from_millis(300),
        ..Reply::ok("shared", &[("cache-control", "max-age=60")])
    });
    let gw = Controlled::start("coalesce.toml", &config(origin.addr, 1 << 20, "", None));
    let answers = at_once(gw.addr(), "/hot", 1000);
    assert!(answers
        .iter()
        .all(|r| r.status == 200 && r.text() == "shared"));
    assert_eq!(origin.count("/hot"), 1, "one fetch for one core");
    let collapsed = answers
        .iter()
        .filter(|r| cache_status(r).contains("collapsed"))
        .count();
    assert!(collapsed > 0, "the waiters were answered from the fill");
    // Two workers: each core fetches once at most.
    let origin2 = Origin::start(|_, _| Reply {
        delay: Duration::from_millis(300),
        ..Reply::ok("shared", &[("cache-control", "max-age=60")])
    });
    let mut p = test_profile();
    p.workers.count = 2;
    let gw2 = Controlled::start_with(
        "coalesce2.toml",
        &config(origin2.addr, 1 << 20, "", None),
        p,
    );
    let answers = at_once(gw2.addr(), "/hot", 400);
    assert!(answers.iter().all(|r| r.status == 200));
    assert!(
        (1..=2).contains(&origin2.count("/hot")),
        "{} fetches",
        origin2.count("/hot")
    );
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok(
                "old",
                &[
                    ("cache-control", "max-age=0, stale-while-revalidate=60"),
                    ("etag", "\"1\""),
                ],
            )
        } else {
            Reply {
                delay: Duration::from_millis(200),
                ..Reply::ok("new", &[("cache-control", "max-age=60"), ("etag", "\"2\"")])
            }
        }
    });
    let gw = Controlled::start("swr.toml", &config(origin.addr, 1 << 20, "", None));
    assert_eq!(get(gw.addr(), "/s").text(), "old");
    let r = get(gw.addr(), "/s");
    assert_eq!(
        r.text(),
        "old",
        "answered stale, not after the slow refresh"
    );
    assert!(
        cache_status(&r).contains("detail=stale-while-revalidate"),
        "{r:?}"
    );
    until_named(
        "the refresh stored the new response",
        Duration::from_secs(10),
        || get(gw.addr(), "/s").text() == "new",
    );
    assert_eq!(origin.count("/s"), 2, "one refresh");
    assert!(cache_status(&get(gw.addr(), "/s")).starts_with("ringgate; hit"));
}

#[test]
fn stale_if_error_serves_the_stored_response_while_the_upstream_fails_or_is_down() {
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok(
                "kept",
                &[
                    ("cache-control", "max-age=0, stale-if-error=300"),
                    ("etag", "\"k\""),
                ],
            )
        } else {
            Reply::status(503, "down", &[])
        }
    });
    let gw = Controlled::start("sie.toml", &config(origin.addr, 1 << 20, "", None));
    assert_eq!(get(gw.addr(), "/e").text(), "kept");
    let r = get(gw.addr(), "/e");
    assert_eq!(
        (r.status, r.text()),
        (200, "kept".into()),
        "a 503 is answered stale"
    );
    assert!(cache_status(&r).contains("detail=stale-if-error"), "{r:?}");
    // The upstream gone altogether: still served.
    let addr = origin.addr;
    drop(origin);
    let _ = std::net::TcpStream::connect(addr); // wakes the stopped accept loop so it lets go
    for _ in 0..3 {
        let r = get(gw.addr(), "/e");
        assert_eq!((r.status, r.text()), (200, "kept".into()));
    }
    // Without stale-if-error the failure shows.
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok("gone", &[("cache-control", "max-age=0"), ("etag", "\"g\"")])
        } else {
            Reply::status(503, "down", &[])
        }
    });
    let gw = Controlled::start("sie2.toml", &config(origin.addr, 1 << 20, "", None));
    get(gw.addr(), "/e");
    assert_eq!(get(gw.addr(), "/e").status, 503);
}

#[test]
fn purges_reach_every_core_and_remove_exactly_what_they_name() {
    let origin = Origin::start(|r, _| {
        let path = r.request_line().split(' ').nth(1).unwrap_or("").to_string();
        let tag = if path.starts_with("/items/") {
            "items"
        } else {
            "other"
        };
        Reply::ok(
            &path,
            &[("cache-control", "max-age=600"), ("surrogate-key", tag)],
        )
    });
    let admin = ringgate_testkit::gateway::free_addr();
    let mut p = test_profile();
    p.workers.count = 2;
    let gw = Controlled::start_with(
        "purge.toml",
        &config(origin.addr, 1 << 20, "", Some(admin)),
        p,
    );
    let paths = ["/items/1", "/items/2", "/users/1"];
    // New connections until both cores hold all three objects.
    until_named(
        "both cores hold every object",
        Duration::from_secs(20),
        || {
            for path in paths {
                get(gw.addr(), path);
            }
            metric(&gw.metrics(), "ringgate_cache_objects{zone=\"z\"}") == 6.0
        },
    );
    let purge = |body: &str| {
        let mut c = Client::connect(admin);
        c.send(
            format!(
                "POST /cache/purge HTTP/1.1\r\nHost: a\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        c.response_to("POST")
    };
    let r = purge(r#"{"zone":"z","tag":"items"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let fetched = |p: &str| origin.count(p);
    let before = (
        fetched("/items/1"),
        fetched("/items/2"),
        fetched("/users/1"),
    );
    // Every core applies it before its next lookup: the tagged objects are gone everywhere, the
    // other one stays everywhere.
    for _ in 0..30 {
        let r = get(gw.addr(), "/users/1");
        assert!(cache_status(&r).starts_with("ringgate; hit"), "{r:?}");
    }
    until_named("purged objects counted", Duration::from_secs(10), || {
        metric(&gw.metrics(), "ringgate_cache_purged_total{zone=\"z\"}") == 4.0
    });
    for _ in 0..30 {
        get(gw.addr(), "/items/1");
    }
    let after = (
        fetched("/items/1"),
        fetched("/items/2"),
        fetched("/users/1"),
    );
    assert!(
        (1..=2).contains(&(after.0 - before.0)),
        "{before:?} {after:?}"
    );
    assert_eq!((after.1, after.2), (before.1, before.2));
    // By prefix and by exact key (host + normalized path), and refusals of bad purges.
    assert_eq!(purge(r#"{"prefix":"t/users/"}"#).status, 200);
    assert_eq!(purge(r#"{"key":"t/items/1"}"#).status, 200);
    until_named(
        "prefix and key purges applied",
        Duration::from_secs(10),
        || {
            get(gw.addr(), "/users/1");
            get(gw.addr(), "/items/1");
            fetched("/users/1") > after.2 && fetched("/items/1") > after.0
        },
    );
    assert_eq!(purge(r#"{"tag":"x","key":"y"}"#).status, 400);
    assert_eq!(purge(r#"{"zone":"nope","all":true}"#).status, 404);
}

/// This process's resident memory, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn memory_stays_bounded_under_a_flood_of_large_unique_objects() {
    // 20,000 unique 8 KiB objects (160 MiB if kept) into a 1 MiB zone: the process (gateway and
    // this test's origin and client) grows by far less than what an unbounded cache would hold.
    let origin =
        Origin::start(|_, _| Reply::ok(&"y".repeat(8192), &[("cache-control", "max-age=600")]));
    let gw = Controlled::start("flood.toml", &config(origin.addr, 1 << 20, "", None));
    let mut c = Client::connect(gw.addr());
    for i in 0..2000 {
        c.get_with(&format!("/warm/{i}"), &[]);
    }
    let before = rss();
    for i in 0..20_000 {
        let r = c.get_with(&format!("/flood/{i}"), &[]);
        assert_eq!(r.body.len(), 8192);
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );
    let mut m = String::new();
    until_named("cache gauges published", Duration::from_secs(10), || {
        m = gw.metrics();
        metric(&m, "ringgate_cache_evictions_total{zone=\"z\"}") > 10_000.0
    });
    assert!(
        metric(&m, "ringgate_cache_bytes{zone=\"z\"}") <= (1 << 20) as f64,
        "{m}"
    );
}

#[test]
fn the_byte_budget_holds_under_a_flood_of_unique_keys_and_a_reload_keeps_the_zone() {
    let origin =
        Origin::start(|_, _| Reply::ok(&"x".repeat(1000), &[("cache-control", "max-age=600")]));
    let budget = 64 * 1024;
    let gw = Controlled::start("budget.toml", &config(origin.addr, budget, "", None));
    get(gw.addr(), "/keep");
    let mut c = Client::connect(gw.addr());
    for i in 0..3000 {
        c.get_with(&format!("/flood/{i}"), &[]);
        if i % 20 == 0 {
            // A key read often survives the flood of keys read once.
            c.get_with("/keep", &[]);
        }
    }
    let mut m = String::new();
    until_named("cache gauges published", Duration::from_secs(10), || {
        m = gw.metrics();
        metric(&m, "ringgate_cache_evictions_total{zone=\"z\"}") > 0.0
    });
    assert!(
        metric(&m, "ringgate_cache_bytes{zone=\"z\"}") <= budget as f64,
        "{m}"
    );
    assert_eq!(origin.count("/keep"), 1, "the hot key was never evicted");
    // A reload that keeps the zone keeps its objects.
    gw.control.reload("test").expect("reload");
    assert!(cache_status(&get(gw.addr(), "/keep")).starts_with("ringgate; hit"));
}
