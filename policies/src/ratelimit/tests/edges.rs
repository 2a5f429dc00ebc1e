//! The edges of rate limiting (issue 14): what the `RateLimit-*` fields state, limits judged
//! before and after authentication, demand-fair shares between nodes, failing open within each
//! node's last share, and failing closed from the first request after an outage begins.

use super::*;

#[test]
fn ratelimit_fields_state_the_rate_over_its_window_and_the_bucket_beside_it() {
    use crate::ratelimit::local::policy_of;
    let tb = |rate, burst| Algo::TokenBucket { rate, burst };
    // Admits 100/s, 20 at once: not "20 per second".
    assert_eq!(policy_of(&tb(100.0, 20.0)), (100, 1, Some(20)));
    assert_eq!(policy_of(&tb(100.0, 200.0)), (200, 2, Some(200)));
    assert_eq!(policy_of(&tb(0.5, 1.0)), (1, 2, Some(1)));
    assert_eq!(policy_of(&tb(1.0, 3.0)), (3, 3, Some(3)));
    let sw = Algo::SlidingWindow {
        limit: 6000.0,
        window_ms: 60_000,
    };
    assert_eq!(policy_of(&sw), (6000, 60, None));

    let s = set(
        KeySource::Header("x-key".into()),
        tb(100.0, 20.0),
        FailMode::Open,
    );
    let mut nodes = [node("a", 1, 0)];
    let mut out = Vec::new();
    assert_eq!(
        ask(&mut nodes[0].cores[0], &s, b"u", &mut out),
        Decision::Allow
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("ratelimit-limit: 100\r\n"), "{text}");
    assert!(text.contains("ratelimit-remaining: 19\r\n"), "{text}");
    assert!(
        text.contains("ratelimit-policy: 100;w=1;burst=20\r\n"),
        "{text}"
    );
}

#[test]
fn limits_of_each_stage_run_apart_and_the_fields_name_the_tightest() {
    // A per-IP limit before authentication (roomy) and a per-client one after it (tight).
    let mut s = set(
        KeySource::ClientIp,
        Algo::TokenBucket {
            rate: 1.0,
            burst: 5.0,
        },
        FailMode::Open,
    );
    s.limits[0].stage = Stage::BeforeAuth;
    s.limits.push(LimitSpec {
        id: LimitSpec::id_of("client"),
        name: "client".into(),
        key: KeySource::ClientId,
        algo: Algo::TokenBucket {
            rate: 1.0,
            burst: 2.0,
        },
        tiers: Vec::new(),
        fail: FailMode::Open,
        missing: Missing::Skip,
        max_keys: 1000,
        stage: Stage::AfterAuth,
    });
    let chain = s.add_chain(&["l", "client"], true).unwrap();
    let mut n = node("a", 1, 0);
    let mut out = Vec::new();
    let judge = |core: &mut CoreLimiter, stage, client: &[u8], out: &mut Vec<u8>| {
        core.check(
            &s,
            chain,
            (stage, false),
            &Caller {
                route: "r",
                peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
                headers: &[],
                client_id: client,
                subject: b"",
                tenant: b"",
                tier: b"",
            },
            out,
        )
    };
    let core = &mut n.cores[0];
    // Before authentication only the per-IP limit counts: three requests whose authentication
    // then fails spend three of its five tokens and none of the client's.
    for left in [4, 3, 2] {
        out.clear();
        assert_eq!(
            judge(core, Stage::BeforeAuth, b"", &mut out),
            Decision::Allow
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(&format!("ratelimit-remaining: {left}\r\n")),
            "{text}"
        );
    }
    // An authenticated request: both stages; the fields are the client's (1 left), once.
    out.clear();
    assert_eq!(
        judge(core, Stage::BeforeAuth, b"", &mut out),
        Decision::Allow
    );
    assert_eq!(
        judge(core, Stage::AfterAuth, b"c", &mut out),
        Decision::Allow
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.matches("ratelimit-limit:").count(), 1, "{text}");
    assert!(text.contains("ratelimit-remaining: 1\r\n"), "{text}");
    // The per-IP limit is now tighter (0 left) than the client's would be for another client.
    out.clear();
    assert_eq!(
        judge(core, Stage::BeforeAuth, b"", &mut out),
        Decision::Allow
    );
    assert_eq!(
        judge(core, Stage::AfterAuth, b"d", &mut out),
        Decision::Allow
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.matches("ratelimit-limit:").count(), 1, "{text}");
    assert!(text.contains("ratelimit-remaining: 0\r\n"), "{text}");
    // Spent: refused before authentication.
    out.clear();
    assert!(matches!(
        judge(core, Stage::BeforeAuth, b"", &mut out),
        Decision::Limit { status: 429, .. }
    ));
}

/// Admitted per node over `secs` (after one second of warm-up), both nodes offering `rate`.
fn per_node_split(algo: Algo, rate: f64, secs: u64, phases: (u64, u64)) -> (u64, u64) {
    let s = set(KeySource::Global, algo, FailMode::Open);
    let mut store = LocalStore::new(1000);
    let mut nodes = vec![node("a", 2, phases.0), node("b", 2, phases.1)];
    run_split(&mut store, &mut nodes, &s, &[rate, rate], 1);
    let got = run_split(&mut store, &mut nodes, &s, &[rate, rate], secs);
    (got[0], got[1])
}

/// Like [`run_skewed`], but counts what each node admitted.
fn run_split<S: Store>(
    store: &mut S,
    nodes: &mut [Node],
    set: &LimitSet,
    rates: &[f64],
    secs: u64,
) -> Vec<u64> {
    let mut got = vec![0u64; nodes.len()];
    let mut acc = vec![0.0f64; nodes.len()];
    let mut rr = vec![0usize; nodes.len()];
    let mut out = Vec::new();
    let start = CLOCK.with(|c| c.get());
    for now in start + 1..=start + secs * 1000 {
        for n in nodes.iter_mut() {
            n.step(store, now);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            acc[i] += rates[i] / 1000.0;
            while acc[i] >= 1.0 {
                acc[i] -= 1.0;
                rr[i] = (rr[i] + 1) % n.cores.len();
                if ask(&mut n.cores[rr[i]], set, b"k", &mut out) == Decision::Allow {
                    got[i] += 1;
                }
            }
        }
    }
    CLOCK.with(|c| c.set(start + secs * 1000));
    got
}

thread_local! {
    /// The simulated clock of [`run_split`] (it continues where the last run ended).
    static CLOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn equal_demand_gets_equal_shares() {
    for (algo, phases) in [
        (
            Algo::TokenBucket {
                rate: 200.0,
                burst: 200.0,
            },
            (0, 7),
        ),
        (
            Algo::TokenBucket {
                rate: 200.0,
                burst: 20.0,
            },
            (0, 10),
        ),
        (
            Algo::TokenBucket {
                rate: 1000.0,
                burst: 100.0,
            },
            (3, 5),
        ),
        (
            Algo::SlidingWindow {
                limit: 2000.0,
                window_ms: 10000,
            },
            (0, 7),
        ),
    ] {
        let (a, b) = per_node_split(algo, 3.0 * algo.rate(), 10, phases);
        eprintln!("{algo:?} {phases:?}: a {a}, b {b}");
        let (lo, hi) = (a.min(b) as f64, a.max(b) as f64);
        assert!(hi <= 1.1 * lo, "{algo:?}: a {a}, b {b}");
        // And together they hold a token bucket's limit (10 s of it; the bucket was spent in
        // the warm-up).
        if let Algo::TokenBucket { rate, .. } = algo {
            let (total, limit) = ((a + b) as f64, 10.0 * rate);
            assert!(
                (total - limit).abs() <= 0.05 * limit,
                "{algo:?}: a {a}, b {b}"
            );
        }
    }
}

/// What two nodes admitted in the last second before a 10 s outage and during it (the store
/// refusing every sync), each node offered `rates`.
fn outage_split(algo: Algo, rates: [f64; 2], quiet_secs: u64) -> ([u64; 2], [u64; 2]) {
    let s = set(KeySource::Global, algo, FailMode::Open);
    let mut store = Lossy {
        inner: LocalStore::new(1000),
        mode: Mode::Up,
    };
    let mut nodes = vec![node("a", 2, 0), node("b", 2, 7)];
    run_split(&mut store, &mut nodes, &s, &rates, 2);
    let before = run_split(&mut store, &mut nodes, &s, &rates, 1);
    // No traffic for a while (the keys' demand decays) before the outage.
    run_split(&mut store, &mut nodes, &s, &[0.0, 0.0], quiet_secs);
    store.mode = Mode::Refused;
    let during = run_split(&mut store, &mut nodes, &s, &rates, 10);
    assert!(nodes[0].rec.store_down() && nodes[1].rec.store_down());
    ([before[0], before[1]], [during[0], during[1]])
}

#[test]
fn failing_open_keeps_each_node_to_its_last_share() {
    for (algo, rates) in [
        (LIMIT, [1800.0, 200.0]),
        (LIMIT, [1500.0, 1500.0]),
        (
            Algo::TokenBucket {
                rate: 400.0,
                burst: 40.0,
            },
            [450.0, 150.0],
        ),
        (
            Algo::TokenBucket {
                rate: 200.0,
                burst: 200.0,
            },
            [300.0, 300.0],
        ),
        (
            Algo::TokenBucket {
                rate: 1000.0,
                burst: 1000.0,
            },
            [700.0, 600.0],
        ),
    ] {
        for quiet in [0, 1] {
            let (before, during) = outage_split(algo, rates, quiet);
            eprintln!("{algo:?} {rates:?} quiet {quiet}: before {before:?}, during {during:?}");
            let limit = 10.0 * algo.rate();
            let total = (during[0] + during[1]) as f64;
            assert!(
                total <= 1.05 * limit,
                "{algo:?} {rates:?}: admitted {total} in a 10 s outage, limit {limit}"
            );
            for i in 0..2 {
                // Its last second's admissions, ten times over (and 5% of the limit to spare).
                let share = 10.0 * before[i] as f64;
                assert!(
                during[i] as f64 <= share + 0.05 * limit,
                "{algo:?} {rates:?}: node {i} admitted {} in the outage, {share} at its last share",
                during[i]
            );
            }
            // And it keeps admitting: failing open is not failing closed.
            assert!(
                total >= 0.8 * limit.min(10.0 * (rates[0] + rates[1])),
                "{total}"
            );
        }
    }
}

const UNAVAILABLE: Decision = Decision::Limit {
    status: 503,
    code: "rate_limit_unavailable",
    limit: 0,
};

/// Asks for `key` on node `n`'s first core at simulated time `now`; a request told to wait
/// for the store waits (the simulation runs on) until the reconciler's published ticks reach
/// its ticket, then is judged again, finally.
fn ask_closed<S: Store>(
    n: &mut Node,
    store: &mut S,
    now: &mut u64,
    s: &LimitSet,
    key: &[u8],
) -> Decision {
    let mut out = Vec::new();
    let d = ask(&mut n.cores[0], s, key, &mut out);
    let Decision::Wait { ticket } = d else {
        return d;
    };
    while n.progress.load(std::sync::atomic::Ordering::Acquire) < ticket {
        *now += 1;
        n.step(store, *now);
    }
    let headers = [httparse::Header {
        name: "x-key",
        value: key,
    }];
    n.cores[0].check(
        s,
        0,
        (Stage::AfterAuth, true),
        &Caller {
            route: "r",
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            headers: &headers,
            client_id: b"",
            subject: b"",
            tenant: b"",
            tier: b"",
        },
        &mut out,
    )
}

/// Runs node `n` with no traffic until `until`.
fn idle<S: Store>(n: &mut Node, store: &mut S, now: &mut u64, until: u64) {
    while *now < until {
        *now += 1;
        n.step(store, *now);
    }
}

#[test]
fn fail_closed_refuses_while_the_store_is_down() {
    let s = set(KeySource::Global, LIMIT, FailMode::Closed { status: 503 });
    let mut store = Lossy {
        inner: LocalStore::new(1000),
        mode: Mode::Refused,
    };
    let mut n = node("a", 1, 0);
    let mut now = 0;
    // A new key's first request waits for the store, which does not answer: refused.
    assert_eq!(
        ask_closed(&mut n, &mut store, &mut now, &s, b"k"),
        UNAVAILABLE
    );
    // Known down: refused at once.
    n.cores[0].tick();
    let mut out = Vec::new();
    assert_eq!(ask(&mut n.cores[0], &s, b"k", &mut out), UNAVAILABLE);
    store.mode = Mode::Up;
    idle(&mut n, &mut store, &mut now, 400);
    assert_eq!(
        ask_closed(&mut n, &mut store, &mut now, &s, b"k"),
        Decision::Allow
    );
}

#[test]
fn fail_closed_is_exact_from_the_first_request_after_an_outage_begins() {
    let s = set(KeySource::Global, LIMIT, FailMode::Closed { status: 503 });
    let mut store = Lossy {
        inner: LocalStore::new(1000),
        mode: Mode::Up,
    };
    let mut n = node("a", 1, 0);
    let mut now = 0;
    let mut allowed = 0;
    for _ in 0..20 {
        if ask_closed(&mut n, &mut store, &mut now, &s, b"k") == Decision::Allow {
            allowed += 1;
        }
        now += 1;
        n.step(&mut store, now);
    }
    assert_eq!(allowed, 20);
    // The key goes idle; the store fails while nothing talks to it, so nobody noticed yet.
    idle(&mut n, &mut store, &mut now, 3000);
    store.mode = Mode::Refused;
    // The very first request after the outage began is refused, on the idle key as on a new
    // one (before: both passed on their free shares until a sync failed).
    assert_eq!(
        ask_closed(&mut n, &mut store, &mut now, &s, b"k"),
        UNAVAILABLE
    );
    let s2 = set(
        KeySource::Header("x-key".into()),
        LIMIT,
        FailMode::Closed { status: 503 },
    );
    let mut n2 = node("b", 1, 0);
    let mut now2 = 0;
    store.mode = Mode::Up;
    assert_eq!(
        ask_closed(&mut n2, &mut store, &mut now2, &s2, b"old"),
        Decision::Allow
    );
    idle(&mut n2, &mut store, &mut now2, 3000);
    store.mode = Mode::Refused;
    assert_eq!(
        ask_closed(&mut n2, &mut store, &mut now2, &s2, b"old"),
        UNAVAILABLE
    );
    assert_eq!(
        ask_closed(&mut n2, &mut store, &mut now2, &s2, b"new"),
        UNAVAILABLE
    );
    // And while the store answers, a busy key never waits.
    store.mode = Mode::Up;
    idle(&mut n2, &mut store, &mut now2, 6000);
    let mut out = Vec::new();
    assert_eq!(
        ask_closed(&mut n2, &mut store, &mut now2, &s2, b"busy"),
        Decision::Allow
    );
    for _ in 0..200 {
        now2 += 1;
        n2.step(&mut store, now2);
        assert_eq!(
            ask(&mut n2.cores[0], &s2, b"busy", &mut out),
            Decision::Allow,
            "at {now2}"
        );
    }
}

#[test]
fn fail_closed_recovers_when_the_store_returns_even_without_traffic() {
    let s = set(KeySource::Global, LIMIT, FailMode::Closed { status: 503 });
    let mut store = Lossy {
        inner: LocalStore::new(1000),
        mode: Mode::Refused,
    };
    let mut n = node("a", 1, 0);
    let mut now = 0;
    assert_eq!(
        ask_closed(&mut n, &mut store, &mut now, &s, b"k"),
        UNAVAILABLE
    );
    // Quiet: the refusals above spend nothing, so there is nothing to sync; the store comes
    // back and the reconciler must notice it by itself.
    idle(&mut n, &mut store, &mut now, 3000);
    store.mode = Mode::Up;
    idle(&mut n, &mut store, &mut now, 3100);
    n.cores[0].tick();
    assert_eq!(
        ask_closed(&mut n, &mut store, &mut now, &s, b"k"),
        Decision::Allow
    );
}
