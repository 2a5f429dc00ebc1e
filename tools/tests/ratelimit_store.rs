//! The Redis rate-limit store against a real `redis-server`: the same results as the in-process
//! reference (`LocalStore`) for a long pseudo-random run, and sane behaviour when Redis restarts,
//! stops or hangs (bounded waits, backoff, script reloaded), and keys that expire by themselves.

use ringgate::rlstore::{Clock, RedisOptions, RedisStore, RedisTarget};
use ringgate_policies::ratelimit::store::{
    Algo, LocalStore, Store, StoreError, SyncItem, SyncResult,
};
use ringgate_testkit::redis::RedisServer;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const TTL: u64 = 1000;

fn opts(clock: Clock, lease_ttl_ms: u64) -> RedisOptions {
    RedisOptions {
        connect_timeout: Duration::from_millis(500),
        io_timeout: Duration::from_millis(500),
        lease_ttl_ms,
        clock,
    }
}

fn store(url: String, clock: Clock, lease_ttl_ms: u64) -> RedisStore {
    RedisStore::new(RedisTarget::Single(url), opts(clock, lease_ttl_ms))
}

fn item(key: &str, algo: Algo, spent: u64, want: u64, demand: f64) -> SyncItem {
    SyncItem {
        key: key.into(),
        algo,
        spent,
        provisional: 0,
        want,
        demand,
        epoch: 0,
        total: 0,
    }
}

const TB: Algo = Algo::TokenBucket {
    rate: 100.0,
    burst: 100.0,
};

fn sync1(s: &mut RedisStore, node: &str, it: &SyncItem) -> Result<SyncResult, StoreError> {
    let mut out = Vec::new();
    s.sync(node, 1, std::slice::from_ref(it), &mut out)?;
    assert_eq!(out.len(), 1);
    Ok(out[0])
}

fn raw_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect")
}

/// A tiny deterministic generator (64-bit LCG, high bits out): no dependency, same run every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The key set: 20 keys over two hash tags, both algorithms, several sizes (some expire fast).
fn keys() -> Vec<(String, Algo)> {
    let algos = [
        Algo::TokenBucket {
            rate: 100.0,
            burst: 100.0,
        },
        Algo::SlidingWindow {
            limit: 50.0,
            window_ms: 1000,
        },
        Algo::TokenBucket {
            rate: 1000.0,
            burst: 40.0,
        },
        Algo::SlidingWindow {
            limit: 20.0,
            window_ms: 250,
        },
        Algo::TokenBucket {
            rate: 10.0,
            burst: 30.0,
        },
    ];
    let mut out = Vec::new();
    for (t, tag) in ["{rl:a}", "{rl:b}"].iter().enumerate() {
        for i in 0..10 {
            out.push((format!("{tag}:k{i}"), algos[(i + t) % algos.len()]));
        }
    }
    out
}

#[test]
fn redis_matches_the_local_reference() {
    let srv = RedisServer::start();
    let mut redis = RedisStore::new(RedisTarget::Single(srv.url()), opts(Clock::Client, 300));
    let compared = differential(&mut redis, 300, 2000);
    // Single mode: one EVALSHA per chunk, never one per key.
    assert!(redis.commands_sent() < compared as u64);
}

#[test]
fn a_redis_cluster_matches_the_local_reference_too() {
    let srv = RedisServer::start_cluster();
    let target = RedisTarget::Cluster(vec![srv.url()]);
    let mut redis = RedisStore::new(target, opts(Clock::Client, 300));
    let compared = differential(&mut redis, 300, 600);
    assert!(redis.commands_sent() < compared as u64);
}

/// Runs `steps` pseudo-random syncs against `redis` and a `LocalStore`, asserting every result
/// equal; returns how many results were compared.
fn differential(redis: &mut RedisStore, ttl: u64, steps: usize) -> usize {
    let mut local = LocalStore::new(ttl);
    let keys = keys();
    let nodes = ["node-a", "node-b", "node-c"];
    // What each node believes it holds per key, to spend around it.
    let mut held = vec![[0u64; 3]; keys.len()];
    // Each node's (epoch, running total) per key, to send resends and new counts.
    let mut marks = vec![[(1u64, 0u64); 3]; keys.len()];
    let mut resent = 0usize;
    let mut rng = Lcg(0x5eed_1234_abcd_0001);
    let mut now: u64 = 1_000_000;
    let (mut compared, mut multi_chunk) = (0usize, 0usize);
    // How often the interesting branches showed up (the run must reach them to prove anything).
    let (mut shared, mut debt, mut waits, mut leased, mut windows) = (0, 0, 0, 0, 0);

    for step in 0..steps {
        now += rng.below(50);
        let n = rng.below(3) as usize;
        // Usually a handful of keys; now and then a batch longer than one script call holds.
        let count = if step % 400 == 399 {
            300
        } else {
            1 + rng.below(8) as usize
        };
        let mut items = Vec::with_capacity(count);
        let mut picked = Vec::with_capacity(count);
        for _ in 0..count {
            let k = rng.below(keys.len() as u64) as usize;
            let lease = held[k][n];
            let spent = match rng.below(4) {
                0 => 0,
                1 => rng.below(lease + 1),
                _ => rng.below(lease + 15),
            };
            // Beyond the lease a spend is provisional; some inside it may be too.
            let provisional = if spent > lease {
                spent - lease + rng.below(lease + 1)
            } else {
                rng.below(3)
            };
            let (want, demand) = if rng.below(8) == 0 {
                (0, 0.0) // release
            } else {
                (rng.below(60), rng.below(25) as f64)
            };
            // Now and then a resend (part of `spent` repeats earlier syncs), a new count, no
            // count at all, or a total that went back.
            let (epoch, total) = &mut marks[k][n];
            let fresh = match rng.below(6) {
                0 => {
                    resent += 1;
                    rng.below(spent + 1)
                }
                _ => spent,
            };
            match rng.below(30) {
                0 => (*epoch, *total) = (*epoch + 1, 0),
                1 => *total = total.saturating_sub(rng.below(20)),
                _ => {}
            }
            *total += fresh;
            let sent_epoch = if rng.below(25) == 0 { 0 } else { *epoch };
            items.push(SyncItem {
                key: keys[k].0.as_str().into(),
                algo: keys[k].1,
                spent,
                provisional: provisional.min(spent),
                want,
                demand,
                epoch: sent_epoch,
                total: *total,
            });
            picked.push(k);
        }
        if rng.below(3) == 0 {
            // Group by tag now and then (fewer chunks); otherwise tags interleave.
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by_key(|&i| items[i].key.starts_with("{rl:b}"));
            items = order.iter().map(|&i| items[i].clone()).collect();
            picked = order.iter().map(|&i| picked[i]).collect();
        }
        let mut want_out = Vec::new();
        let mut got_out = Vec::new();
        local
            .sync(nodes[n], now, &items, &mut want_out)
            .expect("local sync");
        redis
            .sync(nodes[n], now, &items, &mut got_out)
            .unwrap_or_else(|e| panic!("redis sync at step {step}: {e}"));
        assert_eq!(got_out.len(), items.len());
        for (i, (w, g)) in want_out.iter().zip(&got_out).enumerate() {
            assert_eq!(
                w, g,
                "step {step} (now {now}, {}), item {i}: {:?}",
                nodes[n], items[i]
            );
            held[picked[i]][n] = w.lease.max(0) as u64;
            compared += 1;
            shared += usize::from(w.nodes > 1);
            debt += usize::from(w.free < 0);
            waits += usize::from(w.retry_ms > 0);
            leased += usize::from(w.lease > 0);
            windows += usize::from(matches!(items[i].algo, Algo::SlidingWindow { .. }));
        }
        if items.windows(2).any(|p| p[0].key[..6] != p[1].key[..6]) || items.len() > 256 {
            multi_chunk += 1;
        }
    }
    assert!(compared > steps * 2, "compared {compared} results");
    eprintln!(
        "compared {compared}: {shared} shared, {debt} in debt, {waits} with a wait, \
         {leased} leased, {windows} windows, {multi_chunk} multi-chunk syncs"
    );
    for (what, n) in [
        ("shared", shared),
        ("debt", debt),
        ("wait", waits),
        ("leased", leased),
        ("window", windows),
        ("resent", resent),
    ] {
        assert!(n > compared / 20, "only {n} results of kind {what}");
    }
    assert!(
        multi_chunk > steps / 20,
        "only {multi_chunk} syncs took several chunks"
    );
    compared
}

#[test]
fn a_restarted_redis_is_reconnected_and_gets_the_script_again() {
    let mut srv = RedisServer::start();
    let mut s = store(srv.url(), Clock::Server, TTL);
    let it = item("{rl:r}:k", TB, 0, 30, 5.0);
    let r = sync1(&mut s, "a", &it).expect("first sync");
    assert_eq!((r.lease, r.free, r.nodes), (30, 70, 1));

    // The script cache flushed behind our back: reloaded, and the call sent again, transparently.
    let mut side = raw_conn(&srv.url());
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut side)
        .expect("flush");
    let before = s.commands_sent();
    let r = sync1(&mut s, "a", &it).expect("sync after SCRIPT FLUSH");
    assert_eq!(r.lease, 30);
    assert_eq!(
        s.commands_sent() - before,
        2,
        "EVALSHA refused, then sent again"
    );

    srv.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    let r = loop {
        match sync1(&mut s, "a", &it) {
            Ok(r) => break r,
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                failures += 1;
                assert!(Instant::now() < deadline, "no recovery: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert!(failures >= 1, "the old connection cannot have survived");
    // A fresh Redis: the key starts over, full.
    assert_eq!((r.lease, r.free, r.nodes), (30, 70, 1));
    let before = s.commands_sent();
    sync1(&mut s, "a", &it).expect("steady again");
    assert_eq!(s.commands_sent() - before, 1, "the script is loaded again");
}

/// A sync to an unreachable store fails as `Unavailable` within `first_within`, and the next
/// one, inside the backoff, is refused (`backing off`) within a second.
fn unavailable_then_backing_off(s: &mut RedisStore, it: &SyncItem, first_within: Duration) {
    let t = Instant::now();
    let e = sync1(s, "a", it).expect_err("the store is unreachable");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(t.elapsed() < first_within, "{:?}", t.elapsed());
    let t = Instant::now();
    let e = sync1(s, "a", it).expect_err("backing off");
    assert!(e.to_string().contains("backing off"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn a_stopped_redis_fails_fast_and_backs_off() {
    let mut srv = RedisServer::start();
    let mut s = store(srv.url(), Clock::Server, TTL);
    let it = item("{rl:s}:k", TB, 0, 10, 1.0);
    sync1(&mut s, "a", &it).expect("first sync");
    srv.stop();

    // Unavailable within 3 s; then, within the backoff, refused at once without trying the
    // network.
    unavailable_then_backing_off(&mut s, &it, Duration::from_secs(3));

    // Back up: the store finds it again by itself.
    srv.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = sync1(&mut s, "a", &it) {
        assert!(Instant::now() < deadline, "no recovery: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_silent_server_costs_at_most_the_timeouts() {
    // The kernel completes the handshakes into the backlog; nobody ever reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut s = store(format!("redis://127.0.0.1:{port}/"), Clock::Server, TTL);
    let it = item("{rl:h}:k", TB, 0, 10, 1.0);
    // connect_timeout + io_timeout is 1 s; allow for a loaded machine.
    unavailable_then_backing_off(&mut s, &it, Duration::from_secs(5));
    drop(listener);
}

#[test]
fn keys_expire_by_themselves() {
    let srv = RedisServer::start();
    let mut s = store(srv.url(), Clock::Server, TTL);
    let window = Algo::SlidingWindow {
        limit: 10.0,
        window_ms: 500,
    };
    let tb = item("{rl:e}:bucket", TB, 1, 5, 2.0);
    let sw = item("{rl:e}:window", window, 1, 5, 2.0);
    let mut out = Vec::new();
    s.sync("a", 1, &[tb, sw], &mut out).expect("sync");
    assert_eq!(out[0].lease, 5);
    assert_eq!(out[1].lease, 5);

    let mut c = raw_conn(&srv.url());
    let pttl = |c: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("PTTL").arg(key).query(c).expect("PTTL")
    };
    // Bucket: refill from a full debt (2 * 100 / 100/s = 2 s) plus the lease TTL.
    let t = pttl(&mut c, "{rl:e}:bucket");
    assert!(t > 1000 && t <= 3000, "bucket PTTL {t}");
    // Window: two windows (1 s) plus the lease TTL.
    let t = pttl(&mut c, "{rl:e}:window");
    assert!(t > 0 && t <= 2000, "window PTTL {t}");

    // The node's share lives in the key's hash; releasing removes it.
    let has_node = |c: &mut redis::Connection| -> bool {
        redis::cmd("HEXISTS")
            .arg("{rl:e}:bucket")
            .arg("l:a")
            .query(c)
            .expect("HEXISTS")
    };
    assert!(has_node(&mut c));
    let release = item("{rl:e}:bucket", TB, 0, 0, 0.0);
    let r = sync1(&mut s, "a", &release).expect("release");
    assert_eq!(r.lease, 0);
    assert!(!has_node(&mut c));
}
