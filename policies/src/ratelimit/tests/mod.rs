//! Whole-loop simulations: cores, reconcilers and a shared store on a simulated clock.

use super::clientip::TrustedProxies;
use super::local::{Caller, CoreLimiter, Decision};
use super::reconcile::{ReconcileSettings, Reconciler};
use super::spec::{FailMode, KeySource, LimitSet, LimitSpec, Missing, Stage};
use super::store::{Algo, LocalStore, Store, StoreError, SyncItem, SyncResult};
use std::hash::RandomState;
use std::net::{IpAddr, Ipv4Addr};

const TICK: u64 = 20;

fn set(key: KeySource, algo: Algo, fail: FailMode) -> LimitSet {
    let mut s = LimitSet {
        limits: vec![LimitSpec {
            id: LimitSpec::id_of("l"),
            name: "l".into(),
            key,
            algo,
            tiers: Vec::new(),
            fail,
            missing: Missing::Skip,
            max_keys: 1000,
            stage: Stage::AfterAuth,
        }],
        chains: Vec::new(),
        trusted: TrustedProxies::default(),
    };
    s.add_chain(&["l"], true).unwrap();
    s
}

struct Node {
    name: String,
    rec: Reconciler,
    cores: Vec<CoreLimiter>,
    rx: crossbeam_channel::Receiver<super::reconcile::CoreReport>,
    txs: Vec<crossbeam_channel::Sender<super::reconcile::Grants>>,
    phase: u64,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn node(name: &str, workers: usize, phase: u64) -> Node {
    let (rtx, rrx) = crossbeam_channel::unbounded();
    let hasher = RandomState::new();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut cores = Vec::new();
    let mut txs = Vec::new();
    for i in 0..workers {
        let (gtx, grx) = crossbeam_channel::unbounded();
        cores.push(
            CoreLimiter::new(i, workers, hasher.clone(), rtx.clone(), grx)
                .watching(progress.clone()),
        );
        txs.push(gtx);
    }
    Node {
        name: name.into(),
        rec: Reconciler::new(ReconcileSettings {
            workers,
            tick_ms: TICK,
            horizon_ticks: 2.0,
            lease_ttl_ms: 1000,
        }),
        cores,
        rx: rrx,
        txs,
        phase,
        progress,
    }
}

impl Node {
    fn step<S: Store>(&mut self, store: &mut S, now: u64) {
        if now % TICK == self.phase {
            for c in &mut self.cores {
                c.tick();
            }
            while let Ok(r) = self.rx.try_recv() {
                self.rec.ingest(r, now);
            }
            let (grants, _) = self.rec.tick(store, &self.name, now);
            for (i, g) in grants.into_iter().enumerate() {
                if let Some(g) = g {
                    self.txs[i].send(g).unwrap();
                }
            }
            self.progress
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }
}

fn ask(core: &mut CoreLimiter, set: &LimitSet, key: &[u8], out: &mut Vec<u8>) -> Decision {
    out.clear();
    let headers = [httparse::Header {
        name: "x-key",
        value: key,
    }];
    core.check(
        set,
        0,
        (Stage::AfterAuth, false),
        &Caller {
            route: "r",
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            headers: &headers,
            client_id: b"",
            subject: b"",
            tenant: b"",
            tier: b"",
        },
        out,
    )
}

/// Runs `secs` of load: `rates[n]` requests per second on node n (spread over its cores), all
/// on one key; returns the admitted count per second of simulated time.
fn run_skewed<S: Store>(
    store: &mut S,
    nodes: &mut [Node],
    set: &LimitSet,
    rates: &[f64],
    secs: u64,
) -> Vec<u64> {
    let mut per_sec = vec![0u64; secs as usize];
    let mut acc = vec![0.0f64; nodes.len()];
    let mut rr = vec![0usize; nodes.len()];
    let mut out = Vec::new();
    for now in 1..=secs * 1000 {
        for n in nodes.iter_mut() {
            n.step(store, now);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            acc[i] += rates[i] / 1000.0;
            while acc[i] >= 1.0 {
                acc[i] -= 1.0;
                rr[i] = (rr[i] + 1) % n.cores.len();
                match ask(&mut n.cores[rr[i]], set, b"k", &mut out) {
                    Decision::Allow => per_sec[((now - 1) / 1000) as usize] += 1,
                    _ => REFUSED.with(|r| r.set(r.get() + 1)),
                }
            }
        }
    }
    per_sec
}

thread_local! {
    /// Requests refused by [`run_skewed`] on this test's thread.
    static REFUSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

const LIMIT: Algo = Algo::TokenBucket {
    rate: 1000.0,
    burst: 100.0,
};

#[test]
fn two_nodes_skewed_90_10_hold_one_global_limit() {
    let s = set(KeySource::Global, LIMIT, FailMode::Open);
    let mut store = LocalStore::new(1000);
    let mut nodes = vec![node("a", 2, 0), node("b", 2, 7)];
    let per_sec = run_skewed(&mut store, &mut nodes, &s, &[1800.0, 200.0], 10);
    let total: u64 = per_sec.iter().sum();
    // 10 s at 1000/s, plus the initial bucket.
    assert!(
        (total as f64 - 10_100.0).abs() < 0.05 * 10_000.0,
        "admitted {total} ({per_sec:?})"
    );
    for (i, v) in per_sec.iter().enumerate().skip(1) {
        assert!(
            (900..=1100).contains(v),
            "second {i}: {v} admitted ({per_sec:?})"
        );
    }
}

#[test]
fn one_node_four_cores_one_key() {
    let s = set(KeySource::Header("x-key".into()), LIMIT, FailMode::Open);
    let mut store = LocalStore::new(1000);
    let mut nodes = vec![node("a", 4, 3)];
    let per_sec = run_skewed(&mut store, &mut nodes, &s, &[3000.0], 5);
    let total: u64 = per_sec.iter().sum();
    assert!(
        (total as f64 - 5_100.0).abs() < 0.05 * 5_000.0,
        "admitted {total} ({per_sec:?})"
    );
}

#[test]
fn under_the_limit_nothing_is_refused() {
    let s = set(KeySource::Global, LIMIT, FailMode::Open);
    let mut store = LocalStore::new(1000);
    let mut nodes = vec![node("a", 2, 0), node("b", 2, 11)];
    let per_sec = run_skewed(&mut store, &mut nodes, &s, &[600.0, 300.0], 5);
    assert_eq!(REFUSED.with(|r| r.get()), 0, "{per_sec:?}");
}

/// A store that can be switched off: its syncs refused (never applied), or lost (applied, but
/// the answer never arrives: a timeout after Redis ran the script, or a cluster shard failing
/// after others applied their chunks).
struct Lossy {
    inner: LocalStore,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Up,
    Refused,
    Lost,
}

impl Store for Lossy {
    fn sync(
        &mut self,
        node: &str,
        now_ms: u64,
        items: &[SyncItem],
        out: &mut Vec<SyncResult>,
    ) -> Result<(), StoreError> {
        match self.mode {
            Mode::Up => self.inner.sync(node, now_ms, items, out),
            Mode::Refused => Err(StoreError::Unavailable("refused".into())),
            Mode::Lost => {
                let mut dropped = Vec::new();
                self.inner.sync(node, now_ms, items, &mut dropped)?;
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        match self.mode {
            Mode::Up => Ok(()),
            _ => Err(StoreError::Unavailable("down".into())),
        }
    }
}

#[test]
fn syncs_applied_but_unanswered_are_billed_once() {
    // A window far larger than the traffic, so its count is exactly what was billed.
    let algo = Algo::SlidingWindow {
        limit: 1_000_000.0,
        window_ms: 3_600_000,
    };
    let s = set(KeySource::Global, algo, FailMode::Open);
    for mode in [Mode::Refused, Mode::Lost] {
        let mut store = Lossy {
            inner: LocalStore::new(1000),
            mode: Mode::Up,
        };
        let mut nodes = vec![node("a", 2, 0)];
        let mut admitted = 0u64;
        for (m, rate) in [
            (Mode::Up, 500.0),
            (mode, 500.0),
            (Mode::Up, 500.0),
            (Mode::Up, 0.0),
        ] {
            store.mode = m;
            admitted += run_skewed(&mut store, &mut nodes, &s, &[rate], 1)
                .iter()
                .sum::<u64>();
        }
        assert!(admitted >= 1400, "{mode:?}: admitted {admitted}");
        assert_eq!(
            store.inner.window_counts(),
            vec![admitted as f64],
            "{mode:?}: every admitted request billed exactly once"
        );
    }
}

#[test]
fn store_outage_fails_open_at_the_last_share_and_recovers_without_a_burst() {
    let s = set(KeySource::Global, LIMIT, FailMode::Open);
    let mut store = Lossy {
        inner: LocalStore::new(1000),
        mode: Mode::Up,
    };
    let mut nodes = vec![node("a", 2, 0), node("b", 2, 7)];
    let rates = [1800.0, 200.0];
    let before = run_skewed(&mut store, &mut nodes, &s, &rates, 3);
    store.mode = Mode::Refused;
    let during = run_skewed(&mut store, &mut nodes, &s, &rates, 3);
    assert!(nodes[0].rec.store_down());
    // Restarted empty, like a Redis without persistence.
    store.inner.clear();
    store.mode = Mode::Up;
    let after = run_skewed(&mut store, &mut nodes, &s, &rates, 3);
    assert!(!nodes[0].rec.store_down());
    // Each node keeps admitting about its share: the total stays near the limit.
    for v in during.iter().skip(1) {
        assert!((800..=1600).contains(v), "during the outage: {during:?}");
    }
    // After recovery: no burst beyond the bucket, and back to the limit.
    assert!(
        after[0] <= 1000 + 2 * 100,
        "after: {after:?} (before {before:?})"
    );
    for v in after.iter().skip(1) {
        assert!((900..=1100).contains(v), "after: {after:?}");
    }
}

#[test]
fn refusals_carry_retry_after_and_ratelimit_fields() {
    let algo = Algo::TokenBucket {
        rate: 1.0,
        burst: 2.0,
    };
    let s = set(KeySource::Header("x-key".into()), algo, FailMode::Open);
    let mut nodes = [node("a", 1, 0)];
    let mut out = Vec::new();
    assert_eq!(
        ask(&mut nodes[0].cores[0], &s, b"u", &mut out),
        Decision::Allow
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("ratelimit-limit: 2\r\n"), "{text}");
    assert!(text.contains("ratelimit-remaining: 1\r\n"), "{text}");
    assert!(
        text.contains("ratelimit-policy: 2;w=2;burst=2\r\n"),
        "{text}"
    );
    assert_eq!(
        ask(&mut nodes[0].cores[0], &s, b"u", &mut out),
        Decision::Allow
    );
    let d = ask(&mut nodes[0].cores[0], &s, b"u", &mut out);
    assert!(matches!(d, Decision::Limit { status: 429, .. }));
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("ratelimit-remaining: 0\r\n"), "{text}");
    assert!(text.contains("retry-after: 1\r\n"), "{text}");
    // Another key is not affected.
    assert_eq!(
        ask(&mut nodes[0].cores[0], &s, b"v", &mut out),
        Decision::Allow
    );
}

#[test]
fn many_distinct_keys_are_forgotten() {
    let algo = Algo::TokenBucket {
        rate: 100.0,
        burst: 10.0,
    };
    let s = set(KeySource::Header("x-key".into()), algo, FailMode::Open);
    let mut store = LocalStore::new(200);
    let mut nodes = [node("a", 2, 0)];
    let mut out = Vec::new();
    let mut peak = 0;
    for now in 1..=6000u64 {
        nodes[0].step(&mut store, now);
        if now <= 2000 {
            for j in 0..5 {
                let key = format!("key-{now}-{j}");
                let c = (now as usize + j) % 2;
                assert_eq!(
                    ask(&mut nodes[0].cores[c], &s, key.as_bytes(), &mut out),
                    Decision::Allow
                );
            }
        }
        peak = peak.max(nodes[0].cores.iter().map(|c| c.keys()).sum::<usize>());
    }
    assert!(peak >= 1000, "the table held {peak} keys at most");
    for c in &mut nodes[0].cores {
        c.tick();
    }
    let left: usize = nodes[0].cores.iter().map(|c| c.keys()).sum();
    assert_eq!(left, 0, "cores still hold {left} keys");
    assert_eq!(nodes[0].rec.keys(), 0);
    store.sweep(7000);
    assert_eq!(store.len(), 0);
}

#[test]
fn entries_made_for_a_request_another_limit_refused_are_forgotten() {
    // The header limit is spent at once; the client-IP limit, checked first (cheaper), passes
    // every new address and so makes an entry for each before the header limit refuses.
    let spent = Algo::TokenBucket {
        rate: 0.001,
        burst: 1.0,
    };
    let mut s = set(KeySource::Header("x-key".into()), spent, FailMode::Open);
    s.limits.push(LimitSpec {
        id: LimitSpec::id_of("ip"),
        name: "ip".into(),
        key: KeySource::ClientIp,
        algo: Algo::TokenBucket {
            rate: 100.0,
            burst: 10.0,
        },
        tiers: Vec::new(),
        fail: FailMode::Open,
        missing: Missing::Skip,
        max_keys: 1000,
        stage: Stage::AfterAuth,
    });
    let chain = s.add_chain(&["l", "ip"], false).unwrap();
    let mut store = LocalStore::new(200);
    let mut n = node("a", 1, 0);
    let mut out = Vec::new();
    let headers = [httparse::Header {
        name: "x-key",
        value: b"same",
    }];
    for i in 0..51u32 {
        let d = n.cores[0].check(
            &s,
            chain,
            (Stage::AfterAuth, false),
            &Caller {
                route: "r",
                peer: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                headers: &headers,
                client_id: b"",
                subject: b"",
                tenant: b"",
                tier: b"",
            },
            &mut out,
        );
        assert_eq!(d == Decision::Allow, i == 0, "request {i}");
    }
    assert_eq!(n.cores[0].keys(), 52);
    for now in 1..=5000 {
        n.step(&mut store, now);
    }
    n.cores[0].tick();
    // Every address is forgotten; only the header key, deep in debt, may still be held.
    let left = n.cores[0].keys();
    assert!(left <= 1, "{left} entries left");
}

mod edges;
