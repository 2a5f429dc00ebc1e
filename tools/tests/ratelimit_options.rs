//! Rate-limit options end to end (the parts `ratelimit.rs` leaves out): the tier and tenant a limit keys
//! on come from real API keys made by `ringgate keys create`; a published snapshot changes a
//! limit that already has spent keys; a gateway process of two workers enforces one limit
//! through a real one-node Redis Cluster and reports the store up; `[rate_limit] global` limits
//! apply to (and are shared by) every route; and `missing_key = "shared"` puts every request
//! without the key in one bucket.

#![allow(clippy::unwrap_used)]

use ringgate_testkit::client::{metric, Client};
use ringgate_testkit::config;
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::{free_addr, gateway, serve_child};
use ringgate_testkit::redis::RedisServer;
use ringgate_testkit::run;
use ringgate_testkit::stub::stub;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// The statuses of `n` requests in a row.
fn statuses(c: &mut Client, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    (0..n).map(|_| c.get_with(path, headers).status).collect()
}

/// `ringgate keys create args...`: the secret and the `[[keys]]` entry it printed.
fn create_key(args: &[&str]) -> (String, String) {
    run::create_key(BIN, args)
}

#[test]
fn tiers_come_from_the_api_key() {
    let up = stub("up");
    let (plain, plain_entry) = create_key(&["--client-id", "plain-app"]);
    let (gold, gold_entry) = create_key(&["--client-id", "gold-app", "--tier", "gold"]);
    let (acme1, acme1_entry) = create_key(&["--client-id", "acme-one", "--tenant", "acme"]);
    let (acme2, acme2_entry) = create_key(&["--client-id", "acme-two", "--tenant", "acme"]);
    let (globex, globex_entry) = create_key(&["--client-id", "globex-one", "--tenant", "globex"]);
    assert!(gold_entry.contains("gold"), "{gold_entry}");
    assert!(!plain_entry.contains("tier"), "{plain_entry}");
    let kf = TempFile::new(
        "keys.toml",
        &[
            plain_entry,
            gold_entry,
            acme1_entry,
            acme2_entry,
            globex_entry,
        ]
        .join("\n"),
    );
    let sections = [
        format!(
            "[auth]\napi_keys_file = \"{}\"\n[rate_limit]\ntick = \"10ms\"\n",
            kf.arg()
        ),
        config::rate_limit(
            "per-client",
            "\"client_id\"",
            1.0,
            2,
            "tiers = { gold = { rate = 1, burst = 5 } }",
        ),
        config::rate_limit("per-tenant", "\"tenant\"", 0.001, 3, ""),
    ];
    let routes = [
        config::route(
            "client",
            "/client",
            "up",
            "auth = { mode = \"required\" }\nrate_limits = [\"per-client\"]",
        ),
        config::route(
            "tenant",
            "/tenant",
            "up",
            "auth = { mode = \"required\" }\nrate_limits = [\"per-tenant\"]",
        ),
    ];
    let text = config::one_upstream("tiers", up.addr(), &sections.concat(), &routes);
    let gw = gateway(&text);
    let mut c = Client::connect(gw.addr);
    // No key: refused by authentication, before any limit.
    assert_eq!(c.get_with("/client", &[]).status, 401);

    // The key without a tier gets the limit's own bucket of 2.
    let plain_h = [("X-API-Key", plain.as_str())];
    assert_eq!(statuses(&mut c, "/client", &plain_h, 2), [200, 200]);
    let r = c.get_with("/client", &plain_h);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert_eq!(r.header("ratelimit-policy"), Some("2;w=2;burst=2"));

    // The gold key's tier, read from its key entry, gives it the gold bucket of 5.
    let gold_h = [("X-API-Key", gold.as_str())];
    assert_eq!(
        statuses(&mut c, "/client", &gold_h, 5),
        [200, 200, 200, 200, 200]
    );
    let r = c.get_with("/client", &gold_h);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("5"));
    assert_eq!(r.header("ratelimit-policy"), Some("5;w=5;burst=5"));

    // Two keys of tenant acme share one bucket of 3 on the tenant-keyed route.
    let a1 = [("X-API-Key", acme1.as_str())];
    let a2 = [("X-API-Key", acme2.as_str())];
    assert_eq!(statuses(&mut c, "/tenant", &a1, 2), [200, 200]);
    assert_eq!(c.get_with("/tenant", &a2).status, 200);
    let r = c.get_with("/tenant", &a2);
    assert_eq!(r.status, 429, "acme's second key has acme's bucket");
    assert_eq!(r.header("ratelimit-limit"), Some("3"));
    assert_eq!(c.get_with("/tenant", &a1).status, 429);
    // Another tenant has its own bucket.
    let g = [("X-API-Key", globex.as_str())];
    assert_eq!(statuses(&mut c, "/tenant", &g, 3), [200, 200, 200]);
    assert_eq!(c.get_with("/tenant", &g).status, 429);
    // A key with no tenant: the tenant limit does not apply (missing_key = skip).
    assert_eq!(
        statuses(&mut c, "/tenant", &plain_h, 6),
        [200, 200, 200, 200, 200, 200]
    );
}

/// One per-`x-key` limit of `rate`/`burst` on `/keyed`, with the rate-limit header fields.
fn reload_config(up: SocketAddr, rate: f64, burst: u32) -> String {
    let limit = config::rate_limit("per-key", r#"{ header = "x-key" }"#, rate, burst, "");
    let route = config::route(
        "keyed",
        "/keyed",
        "up",
        "rate_limits = [\"per-key\"]\nrate_limit_headers = true",
    );
    let sections = format!("[rate_limit]\ntick = \"10ms\"\n{limit}");
    config::one_upstream(&format!("reload-{burst}"), up, &sections, &[route])
}

#[test]
fn a_reload_changes_a_limit() {
    let up = stub("up");
    // A bucket of 2 that refills one token in about 17 minutes: any pass after it is spent
    // comes from the reload, not from refill.
    let gw = gateway(&reload_config(up.addr(), 0.001, 2));
    let mut c = Client::connect(gw.addr);
    let k = [("x-key", "alice")];
    for left in ["1", "0"] {
        let r = c.get_with("/keyed", &k);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit"), Some("2"));
        assert_eq!(r.header("ratelimit-remaining"), Some(left));
    }
    let r = c.get_with("/keyed", &k);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-limit"), Some("2"));

    let next = ringgate::snapshot_from_text(&reload_config(up.addr(), 100.0, 50)).unwrap();
    gw.inner().publish(next);

    // The spent key passes again soon, now under the new limit.
    let t0 = Instant::now();
    let first_ok = loop {
        let r = c.get_with("/keyed", &k);
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "alice still refused {:?} after the reload: {:?}",
            t0.elapsed(),
            r.headers
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("alice passed again {:?} after the reload", t0.elapsed());
    // 100 a second with a bucket of 50.
    assert_eq!(first_ok.header("ratelimit-limit"), Some("100"));
    assert_eq!(
        first_ok.header("ratelimit-policy"),
        Some("100;w=1;burst=50")
    );
    // A key new since the reload starts with the new, whole bucket.
    let r = c.get_with("/keyed", &[("x-key", "bob")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("100"));
    assert_eq!(r.header("ratelimit-remaining"), Some("49"));
}

#[test]
fn redis_cluster_enforces_one_limit() {
    let redis = RedisServer::start_cluster();
    let up = stub("up");
    let admin = free_addr();
    let url = redis.url();
    let limit = config::rate_limit("clustered", r#"{ header = "x-key" }"#, 50.0, 20, "");
    let sections = format!("[admin]\naddress = \"{admin}\"\n[rate_limit]\nredis_cluster = [\"{url}\"]\nnode_id = \"cluster-node\"\ntick = \"20ms\"\n{limit}");
    let route = config::route("limited", "/limited", "up", "rate_limits = [\"clustered\"]");
    let text = config::one_upstream("rl-cluster", up.addr(), &sections, &[route]);
    let (gw, _files) = serve_child(BIN, "rl-cluster", &text, 2);
    // 300 requests paced over about a second, one key, one keep-alive connection.
    let mut c = Client::connect(gw.addr);
    let gap = Duration::from_secs_f64(1.0 / 300.0);
    let t0 = Instant::now();
    let mut next = t0;
    let (mut ok, mut limited) = (0usize, 0usize);
    for i in 0..300 {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let r = c.get_with("/limited", &[("x-key", "one")]);
        match r.status {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("request {i}: status {s}: {}", r.text()),
        }
        next += gap;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("cluster: admitted {ok}, limited {limited} in {secs:.2} s");
    // The bucket of 20 plus 50/s over the run, within a factor of two either way of the rate.
    let low = 20.0 + 50.0 * 0.5 * secs.min(1.0);
    let high = 20.0 + 50.0 * 2.0 * secs.max(1.0);
    assert!(
        (ok as f64) >= low && (ok as f64) <= high,
        "admitted {ok} in {secs:.2} s: expected {low:.0}..={high:.0}"
    );
    assert!(limited > 0);
    // The store in use is the cluster, reached, and actually sent commands; the counters
    // (reported at the reconcile tick) agree with what the client saw.
    let up_line = "ringgate_ratelimit_store_up{store=\"redis-cluster\"}";
    let allowed_line = "ringgate_ratelimit_decisions_total{limit=\"clustered\",result=\"allowed\"}";
    let t1 = Instant::now();
    loop {
        let store_up = metric(admin, up_line);
        let allowed = metric(admin, allowed_line);
        if store_up == 1.0 && allowed == ok as f64 {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "{up_line} = {store_up}, allowed = {allowed} (client saw {ok})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cmds = metric(admin, "ringgate_ratelimit_store_commands_total");
    assert!(cmds >= 1.0, "{cmds} commands sent to the cluster");
    drop(gw);
    drop(redis);
}

#[test]
fn global_limits_apply_to_every_route() {
    let up = stub("up");
    let all = config::rate_limit("all", "\"global\"", 0.001, 3, "");
    let sections = format!("[rate_limit]\ntick = \"10ms\"\nglobal = [\"all\"]\n{all}");
    let routes = [
        config::route("a", "/a", "up", ""),
        config::route("b", "/b", "up", ""),
    ];
    let text = config::one_upstream("global", up.addr(), &sections, &routes);
    let gw = gateway(&text);
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.get_with("/a", &[]).status, 200);
    assert_eq!(c.get_with("/b", &[]).status, 200);
    assert_eq!(c.get_with("/a", &[]).status, 200);
    // The three tokens are shared: both routes are now refused, on any connection.
    let r = c.get_with("/b", &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("3"));
    assert_eq!(c.get_with("/a", &[]).status, 429);
    let mut other = Client::connect(gw.addr);
    assert_eq!(other.get_with("/a", &[("x-anything", "1")]).status, 429);
    assert_eq!(other.get_with("/b", &[]).status, 429);
}

#[test]
fn missing_key_shared_puts_anonymous_callers_in_one_bucket() {
    let up = stub("up");
    let limit = config::rate_limit(
        "per-key",
        r#"{ header = "x-key" }"#,
        0.001,
        2,
        "missing_key = \"shared\"",
    );
    let sections = format!("[rate_limit]\ntick = \"10ms\"\n{limit}");
    let route = config::route("keyed", "/keyed", "up", "rate_limits = [\"per-key\"]");
    let text = config::one_upstream("shared", up.addr(), &sections, &[route]);
    let gw = gateway(&text);
    // Two anonymous callers on two connections spend the one shared bucket of 2.
    let mut a = Client::connect(gw.addr);
    let mut b = Client::connect(gw.addr);
    assert_eq!(a.get_with("/keyed", &[]).status, 200);
    assert_eq!(b.get_with("/keyed", &[]).status, 200);
    let r = a.get_with("/keyed", &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert_eq!(b.get_with("/keyed", &[]).status, 429);
    // A blank value is no key either.
    assert_eq!(b.get_with("/keyed", &[("x-key", "  ")]).status, 429);
    // Callers that send the key still have their own buckets.
    assert_eq!(
        statuses(&mut a, "/keyed", &[("x-key", "carol")], 3),
        [200, 200, 429]
    );
    assert_eq!(b.get_with("/keyed", &[("x-key", "dave")]).status, 200);
}
