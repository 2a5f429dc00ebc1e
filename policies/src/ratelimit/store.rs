//! Where the global state of a limit lives: the [`Store`] contract and its in-process
//! implementation, [`LocalStore`].
//!
//! A store keeps, per limit key, the key's *capacity* (the tokens of a token bucket, or what a
//! sliding window still allows) and the *lease* each node holds: tokens taken out of the capacity
//! in advance, which the node's cores spend without asking anyone. Once per reconcile tick a node
//! sends, for every key it touched, what its cores spent, how many of those spends were made
//! beyond any lease (the optimistic "free" share, see [`SyncResult::free`]), how many tokens it
//! wants leased for the coming ticks and its current demand. The store debits the spends,
//! refills the capacity, and resizes the node's lease: towards what the node wants, but under
//! contention to at most the node's demand-weighted share of the capacity, so a node with 90% of
//! the traffic gets 90% of the tokens and no node is starved by an even split.
//!
//! The Redis store (in the `ringgate` crate) runs the same arithmetic in one Lua script per tick;
//! [`LocalStore`] is the reference, used when no Redis is configured (the embedded mode: one
//! node, its cores reconciled in-process) and while Redis is unreachable (fail open).
//!
//! Time is in milliseconds. Leases and demands of a node that stopped syncing for `lease_ttl`
//! are reclaimed, so a crashed node's tokens come back by themselves.
//!
//! Syncs are idempotent: beside what it spent since its last *successful* sync, a node sends
//! the running total of its spends on the key (see [`SyncItem::total`]), and the store keeps the
//! total it last applied per node. A node cannot tell a sync the store never received from one
//! whose answer was lost, so it resends the spends of every failed sync; the store debits only
//! the part beyond what it already applied. Only replayed spends can repeat, and those are all
//! provisional, so the repeated part comes off the provisional count too.

use std::collections::HashMap;

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algo {
    /// A token bucket: `rate` tokens per second, holding at most `burst`.
    TokenBucket {
        /// Tokens per second.
        rate: f64,
        /// Bucket size (the most admitted at once after an idle period).
        burst: f64,
    },
    /// A sliding window: at most `limit` requests in any `window_ms` (estimated from the current
    /// and the previous fixed window, weighted by overlap).
    SlidingWindow {
        /// Requests per window.
        limit: f64,
        /// Window length in milliseconds.
        window_ms: u64,
    },
}

impl Algo {
    /// The most admitted at once: the bucket size, or the window's limit.
    pub fn quota(&self) -> f64 {
        match *self {
            Algo::TokenBucket { burst, .. } => burst,
            Algo::SlidingWindow { limit, .. } => limit,
        }
    }

    /// Tokens per second in the long run.
    pub fn rate(&self) -> f64 {
        match *self {
            Algo::TokenBucket { rate, .. } => rate,
            Algo::SlidingWindow { limit, window_ms } => limit * 1000.0 / window_ms.max(1) as f64,
        }
    }

    /// How long an untouched key's state must be kept before dropping it changes nothing (the
    /// bucket refilled even from the deepest debt, or two windows passed), in milliseconds.
    pub fn idle_ms(&self) -> u64 {
        match *self {
            Algo::TokenBucket { rate, burst } => {
                (2.0 * burst / rate.max(f64::MIN_POSITIVE) * 1000.0).ceil() as u64
            }
            Algo::SlidingWindow { window_ms, .. } => 2 * window_ms,
        }
    }

    /// The same algorithm with `share` (0..=1) of its rate and size: what a node may admit alone
    /// while the shared store is unreachable.
    pub fn scaled(&self, share: f64) -> Algo {
        let s = share.clamp(0.0, 1.0);
        match *self {
            Algo::TokenBucket { rate, burst } => Algo::TokenBucket {
                rate: rate * s,
                burst: (burst * s).max(1.0),
            },
            Algo::SlidingWindow { limit, window_ms } => Algo::SlidingWindow {
                limit: (limit * s).max(1.0),
                window_ms,
            },
        }
    }
}

/// One key's report in a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncItem {
    /// The store key (hash-tagged per limit, e.g. `{rl:per-key}:gold:<digest>`); shared, so a
    /// tick's batch costs no string copies.
    pub key: std::sync::Arc<str>,
    /// The limit's algorithm for this key.
    pub algo: Algo,
    /// Tokens the node's cores spent since its last sync of this key (lease and free).
    pub spent: u64,
    /// Of `spent`, how many were spent beyond the node's lease (optimistic shares, or admissions
    /// made while the store was unreachable): they are debited from the capacity only.
    pub provisional: u64,
    /// The lease the node would like to hold until its next sync.
    pub want: u64,
    /// The node's demand (requests per tick, admitted or not), which weighs its share.
    pub demand: f64,
    /// Which of this node's counts of the key `total` belongs to: a new one whenever the node
    /// starts counting the key afresh (it forgot the key, or restarted). 0: no deduplication,
    /// `spent` is applied whole.
    pub epoch: u64,
    /// The node's spends on this key reported so far under `epoch`, this item's new spends
    /// included. `spent` may repeat spends of syncs that failed from the node's side (a replay);
    /// a store that already applied a sync up to some total debits only what lies beyond it,
    /// so a sync that was applied but whose answer was lost (a timeout, a cluster shard that
    /// failed after others had applied their part) is not billed twice.
    pub total: u64,
}

/// What the store answers for one [`SyncItem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncResult {
    /// The node's lease now (absolute): tokens its cores may spend.
    pub lease: i64,
    /// Capacity not leased to any node (negative while the key is in debt). Every core of every
    /// node may spend an equal part of it optimistically until its next grant.
    pub free: i64,
    /// Nodes with a live lease or demand on this key (this one included).
    pub nodes: u32,
    /// Milliseconds until one more token is free (0: some are free now).
    pub retry_ms: u64,
    /// Milliseconds until the key is back to its full quota.
    pub reset_ms: u64,
}

/// Why a sync failed (the reconciler then falls back as each limit says).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this code does not understand.
    #[error("rate-limit store answered unexpectedly: {0}")]
    Protocol(String),
}

/// The global state of every limit key.
pub trait Store {
    /// Applies `items` for `node` and appends one result per item to `out`, in order. `now_ms`
    /// is the caller's clock; a shared store uses its own instead, so nodes' clocks may differ.
    fn sync(
        &mut self,
        node: &str,
        now_ms: u64,
        items: &[SyncItem],
        out: &mut Vec<SyncResult>,
    ) -> Result<(), StoreError>;

    /// Whether the store answers, without changing anything: the reconciler asks while the
    /// store is down and no key needs a sync, so recovery is noticed even then.
    fn probe(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One node's lease and demand on a key, and the total of its spends applied so far.
#[derive(Debug, Clone, Default)]
struct NodeShare {
    lease: i64,
    demand: f64,
    seen_ms: u64,
    epoch: u64,
    applied: u64,
}

/// What of `it` is new to a store that applied `applied` under `epoch` for its node: `(spent,
/// provisional)` without the spends already applied.
fn fresh_part(epoch: u64, applied: u64, it: &SyncItem) -> (u64, u64) {
    if it.epoch != 0 && epoch == it.epoch && it.total >= applied {
        let fresh = it.spent.min(it.total - applied);
        let repeated = it.spent - fresh;
        (fresh, it.provisional.saturating_sub(repeated))
    } else {
        (it.spent, it.provisional)
    }
}

/// One key's state.
#[derive(Debug, Clone, Default)]
struct KeyState {
    /// Token bucket: tokens (may be negative: debt).
    tokens: f64,
    /// Token bucket: when it was last refilled.
    ts: u64,
    /// Sliding window: start of the current window, its count, and the previous window's.
    window_start: u64,
    current: f64,
    previous: f64,
    /// Whether the capacity fields were ever set.
    init: bool,
    nodes: Vec<(String, NodeShare)>,
    /// When the key stops mattering (see [`Algo::idle_ms`]).
    expires_ms: u64,
}

/// The in-process store: exactly the arithmetic of the Redis script, in memory.
#[derive(Debug)]
pub struct LocalStore {
    keys: HashMap<std::sync::Arc<str>, KeyState>,
    lease_ttl_ms: u64,
    last_sweep_ms: u64,
}

impl LocalStore {
    /// An empty store; a node's lease lapses after `lease_ttl_ms` without a sync.
    pub fn new(lease_ttl_ms: u64) -> Self {
        Self {
            keys: HashMap::new(),
            lease_ttl_ms,
            last_sweep_ms: 0,
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets keys whose time passed (called by `sync` about once a second).
    pub fn sweep(&mut self, now_ms: u64) {
        self.keys.retain(|_, k| k.expires_ms > now_ms);
        self.last_sweep_ms = now_ms;
    }

    /// Sliding-window counts (current and previous window) of every key (tests: what was
    /// billed).
    #[cfg(test)]
    pub(crate) fn window_counts(&self) -> Vec<f64> {
        self.keys.values().map(|k| k.current + k.previous).collect()
    }

    /// Drops everything (tests: a store that lost its state, like a restarted Redis).
    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

/// Applies one item to one key's state: the reference semantics of the Redis script.
fn apply(k: &mut KeyState, node: &str, now: u64, ttl: u64, it: &SyncItem) -> SyncResult {
    if k.expires_ms != 0 && k.expires_ms <= now {
        *k = KeyState::default();
    }
    k.nodes.retain(|(_, s)| s.seen_ms + ttl > now);
    let pos = match k.nodes.iter().position(|(n, _)| n == node) {
        Some(p) => p,
        None => {
            k.nodes.push((node.to_owned(), NodeShare::default()));
            k.nodes.len() - 1
        }
    };
    let (spent, provisional) = {
        let sh = &k.nodes[pos].1;
        fresh_part(sh.epoch, sh.applied, it)
    };
    k.nodes[pos].1.epoch = it.epoch;
    k.nodes[pos].1.applied = it.total;
    // The capacity: refill, then debit what was spent.
    let capacity = match it.algo {
        Algo::TokenBucket { rate, burst } => {
            if !k.init {
                k.tokens = burst;
                k.ts = now;
                k.init = true;
            }
            let elapsed = now.saturating_sub(k.ts) as f64;
            k.tokens = (k.tokens + rate * elapsed / 1000.0).min(burst);
            k.ts = now.max(k.ts);
            // Debt is capped at one bucket: a long outage's admissions are not billed forever.
            k.tokens = (k.tokens - spent as f64).max(-burst);
            k.tokens
        }
        Algo::SlidingWindow { limit, window_ms } => {
            let w = window_ms.max(1);
            let start = now / w * w;
            if !k.init {
                k.window_start = start;
                k.current = 0.0;
                k.previous = 0.0;
                k.init = true;
            }
            if start != k.window_start {
                k.previous = if start == k.window_start + w {
                    k.current
                } else {
                    0.0
                };
                k.current = 0.0;
                k.window_start = start;
            }
            k.current = (k.current + spent as f64).min(2.0 * limit);
            let weight = 1.0 - (now - start) as f64 / w as f64;
            limit - (k.previous * weight + k.current)
        }
    };
    // This node's share: its lease shrinks by what it spent out of it.
    let from_lease = spent.saturating_sub(provisional) as i64;
    let mut lease = (k.nodes[pos].1.lease - from_lease).max(0);
    k.nodes[pos].1.demand = it.demand.max(0.0);
    k.nodes[pos].1.seen_ms = now;
    let others: i64 = k
        .nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != pos)
        .map(|(_, (_, s))| s.lease)
        .sum();
    let total_demand: f64 = k.nodes.iter().map(|(_, s)| s.demand).sum();
    let share = if total_demand > 0.0 {
        it.demand.max(0.0) / total_demand
    } else {
        1.0
    };
    let target = (it.want as f64).min((capacity.max(0.0) * share).floor()) as i64;
    if target > lease {
        let unleased = (capacity - others as f64 - lease as f64).floor() as i64;
        lease += (target - lease).min(unleased.max(0));
    } else {
        lease = target;
    }
    k.nodes[pos].1.lease = lease;
    if lease == 0 && it.demand <= 0.0 {
        k.nodes.swap_remove(pos);
    }
    let free_f = capacity - others as f64 - lease as f64;
    let nodes = k.nodes.len().max(1) as u32;
    let (retry_ms, reset_ms) = timing(&it.algo, k, capacity, free_f, now);
    k.expires_ms = now.saturating_add(it.algo.idle_ms()).saturating_add(ttl);
    SyncResult {
        lease,
        free: free_f.floor() as i64,
        nodes,
        retry_ms,
        reset_ms,
    }
}

/// Milliseconds until one token is free, and until the quota is whole again.
fn timing(algo: &Algo, k: &KeyState, capacity: f64, free: f64, now: u64) -> (u64, u64) {
    match *algo {
        Algo::TokenBucket { rate, burst } => {
            let per_ms = rate.max(f64::MIN_POSITIVE) / 1000.0;
            let retry = if free >= 1.0 {
                0.0
            } else {
                (1.0 - free) / per_ms
            };
            let reset = (burst - capacity).max(0.0) / per_ms;
            (retry.ceil() as u64, reset.ceil() as u64)
        }
        Algo::SlidingWindow { limit, window_ms } => {
            let w = window_ms.max(1);
            let to_end = (k.window_start + w).saturating_sub(now);
            let retry = if free >= 1.0 {
                0
            } else if k.previous > 0.0 {
                // The previous window's weight falls by previous/w per ms.
                let ms = ((1.0 - free) / (k.previous / w as f64)).ceil() as u64;
                ms.min(to_end + if k.current >= limit { w } else { 0 })
            } else {
                to_end
            };
            let reset = if k.current > 0.0 { to_end + w } else { to_end };
            (retry, reset)
        }
    }
}

impl Store for LocalStore {
    fn sync(
        &mut self,
        node: &str,
        now_ms: u64,
        items: &[SyncItem],
        out: &mut Vec<SyncResult>,
    ) -> Result<(), StoreError> {
        for it in items {
            let k = match self.keys.get_mut(&*it.key) {
                Some(k) => k,
                None => self.keys.entry(it.key.clone()).or_default(),
            };
            out.push(apply(k, node, now_ms, self.lease_ttl_ms, it));
        }
        if now_ms.saturating_sub(self.last_sweep_ms) >= 1000 {
            self.sweep(now_ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: Algo = Algo::TokenBucket {
        rate: 1000.0,
        burst: 100.0,
    };

    fn item(spent: u64, provisional: u64, want: u64, demand: f64) -> SyncItem {
        SyncItem {
            key: "{rl:t}:k".into(),
            algo: TB,
            spent,
            provisional,
            want,
            demand,
            epoch: 0,
            total: 0,
        }
    }

    #[test]
    fn a_resent_sync_is_billed_once() {
        let mut s = LocalStore::new(1000);
        let mark = |spent, provisional, epoch, total| SyncItem {
            epoch,
            total,
            ..item(spent, provisional, 0, 1.0)
        };
        // 30 spent; the answer is lost, so the node resends them (provisional now) with 10 new.
        one(&mut s, "a", 1000, mark(30, 0, 7, 30));
        let r = one(&mut s, "a", 1000, mark(40, 30, 7, 40));
        assert_eq!(
            r.free, 60,
            "100 - 30 - 10: the resent 30 were not billed again"
        );
        // The same sync twice changes nothing.
        let r = one(&mut s, "a", 1000, mark(10, 0, 7, 40));
        assert_eq!(r.free, 60);
        // A new count (the node forgot the key) is applied whole, even with a small total.
        let r = one(&mut s, "a", 1000, mark(5, 0, 8, 5));
        assert_eq!(r.free, 55);
        // Epoch 0 never deduplicates, and another node's totals are its own.
        let r = one(&mut s, "a", 1000, mark(5, 0, 0, 5));
        assert_eq!(r.free, 50);
        let r = one(&mut s, "b", 1000, mark(5, 0, 8, 5));
        assert_eq!(r.free, 45);
    }

    fn one(s: &mut LocalStore, node: &str, now: u64, it: SyncItem) -> SyncResult {
        let mut out = Vec::new();
        s.sync(node, now, &[it], &mut out).unwrap();
        out[0]
    }

    #[test]
    fn a_new_key_starts_full_and_leases_what_is_wanted() {
        let mut s = LocalStore::new(1000);
        let r = one(&mut s, "a", 1000, item(0, 0, 30, 15.0));
        assert_eq!(r.lease, 30);
        assert_eq!(r.free, 70);
        assert_eq!(r.nodes, 1);
        assert_eq!(r.retry_ms, 0);
    }

    #[test]
    fn spends_from_the_lease_shrink_it_and_the_capacity() {
        let mut s = LocalStore::new(1000);
        one(&mut s, "a", 1000, item(0, 0, 30, 15.0));
        // 20 spent out of the lease, 10 ms later (10 tokens refilled, capped at 100).
        let r = one(&mut s, "a", 1010, item(20, 0, 30, 15.0));
        // capacity 100 - 20 = 80; lease 10 -> topped up to 30; free = 50.
        assert_eq!(r.lease, 30);
        assert_eq!(r.free, 50);
    }

    #[test]
    fn contention_splits_by_demand() {
        let mut s = LocalStore::new(1000);
        // Both nodes want far more than exists; a has 9x b's demand.
        let mut now = 1000;
        let (mut la, mut lb) = (0i64, 0i64);
        let mut admitted = 0i64;
        for _ in 0..500 {
            now += 10;
            let a = one(&mut s, "a", now, item(la as u64, 0, 1000, 90.0));
            admitted += la;
            la = a.lease;
            now += 10;
            let b = one(&mut s, "b", now, item(lb as u64, 0, 1000, 10.0));
            admitted += lb;
            lb = b.lease;
        }
        // 10 s at 1000/s plus the initial bucket: everything leased was spent.
        let expect = 10_000 + 100;
        assert!(
            (admitted - expect).abs() < 300,
            "admitted {admitted}, expected about {expect}"
        );
        assert!(la > 5 * lb, "a's lease {la} should dwarf b's {lb}");
    }

    #[test]
    fn provisional_spends_put_the_key_in_bounded_debt() {
        let mut s = LocalStore::new(1000);
        let r = one(&mut s, "a", 1000, item(500, 500, 0, 50.0));
        // 100 - 500, capped at one bucket of debt.
        assert_eq!(r.free, -100);
        assert_eq!(r.lease, 0);
        // 1 token at 1000/s takes 1 ms, from -100 that is 101 ms.
        assert_eq!(r.retry_ms, 101);
        assert_eq!(r.reset_ms, 200);
    }

    #[test]
    fn a_silent_node_loses_its_lease() {
        let mut s = LocalStore::new(100);
        let a = one(&mut s, "a", 1000, item(0, 0, 80, 40.0));
        assert_eq!(a.lease, 80);
        let b = one(&mut s, "b", 1050, item(0, 0, 80, 40.0));
        assert_eq!(b.nodes, 2);
        assert!(b.lease <= 20, "a still holds its lease: {b:?}");
        let b = one(&mut s, "b", 1200, item(0, 0, 80, 40.0));
        assert_eq!(b.nodes, 1);
        assert_eq!(b.lease, 80);
    }

    #[test]
    fn releasing_returns_tokens() {
        let mut s = LocalStore::new(1000);
        one(&mut s, "a", 1000, item(0, 0, 60, 30.0));
        let r = one(&mut s, "a", 1000, item(0, 0, 0, 0.0));
        assert_eq!(r.lease, 0);
        assert_eq!(r.free, 100);
    }

    #[test]
    fn sliding_window_counts_spends_and_slides() {
        let algo = Algo::SlidingWindow {
            limit: 100.0,
            window_ms: 1000,
        };
        let mut s = LocalStore::new(1000);
        let mut it = item(80, 80, 0, 1.0);
        it.algo = algo;
        let r = one(&mut s, "a", 10_000, it.clone());
        assert_eq!(r.free, 20);
        // Half way into the next window the previous 80 weigh 40.
        it.spent = 0;
        let r = one(&mut s, "a", 11_500, it.clone());
        assert_eq!(r.free, 60);
        // Two windows later nothing is left.
        let r = one(&mut s, "a", 13_000, it);
        assert_eq!(r.free, 100);
    }

    #[test]
    fn idle_keys_are_swept() {
        let mut s = LocalStore::new(100);
        for i in 0..1000 {
            let mut it = item(1, 1, 0, 0.0);
            it.key = format!("k{i}").into();
            one(&mut s, "a", 1000, it);
        }
        assert_eq!(s.len(), 1000);
        s.sweep(1000 + TB.idle_ms() + 101);
        assert!(s.is_empty());
    }
}
