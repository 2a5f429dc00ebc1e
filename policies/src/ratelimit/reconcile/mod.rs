//! The node's side of rate limiting: the reconciler that the control thread runs every tick.
//!
//! It gathers what every core spent and was refused ([`CoreReport`]), syncs the node's totals
//! per key with the [`Store`] (one batch per tick, however many requests), and splits what the
//! store leased to the node among the cores by their recent demand, so a key hot on one core is
//! not starved by an even split ([`Grants`]). Keys nobody touched for a while are forgotten here
//! and on the cores, which bounds memory.
//!
//! When the store fails, limits that fail open carry on against an in-process [`LocalStore`]
//! sized to this node's last known share of each limit (its demand-weighted share as the store
//! last computed it, so the nodes' shares add up to the limit), starting from what the node last
//! knew it could spend rather than a full bucket, and what they admit meanwhile is billed
//! to the store when it is back (at most one quota per key), so recovery brings no burst of
//! over-admission. Limits that fail closed are refused by the cores until the store answers.
//!
//! Sans-IO: the thread, the channels and the store's network live in the `ringgate` crate.

mod distribute;
mod tick;

use super::local::IdHasher;
use super::store::{Algo, LocalStore, Store, SyncItem, SyncResult};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// A key as the cores name it: (limit id, the process-wide hash of tier and key).
type KeyId = (u64, u64);

/// At most this many ticks pass between syncs of a key with room to spare (its cores hold no
/// lease and have used less than half their free share): other nodes see its spending late by
/// at most this, and only while the key is far from its limit.
const MAX_LAZY_TICKS: u32 = 25;

/// How long a node's share of a limit is averaged over (in milliseconds), for failing open.
const SHARE_MEMORY_MS: f64 = 500.0;

/// One key's activity on one core since its last report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportItem {
    /// The limit's id.
    pub limit: u64,
    /// The core's name for the key (the same on every core of the process).
    pub local: u64,
    /// The store key.
    pub name: Arc<str>,
    /// The key's algorithm.
    pub algo: Algo,
    /// The limit fails closed: its key is synced every tick while in demand (a core spends it
    /// only on a fresh word from the store).
    pub closed: bool,
    /// Tokens spent out of the core's lease.
    pub spent_lease: u32,
    /// Tokens spent out of the core's free share.
    pub spent_free: u32,
    /// Requests refused.
    pub denied: u32,
    /// The core dropped the key (after an expiry): its lease went with it.
    pub gone: bool,
}

/// Decisions of one core for one limit since its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounters {
    /// Requests the limit let through.
    pub allowed: u64,
    /// Requests it refused.
    pub limited: u64,
    /// New keys admitted untracked because the core's table was full.
    pub overflow: u64,
}

/// One core's report for a tick.
#[derive(Debug, Clone, Default)]
pub struct CoreReport {
    /// Which core.
    pub core: usize,
    /// Keys with activity.
    pub items: Vec<ReportItem>,
    /// Decisions per limit id.
    pub counters: Vec<(u64, LimitCounters)>,
    /// Keys the core tracks.
    pub keys: usize,
}

/// What a core is given for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantItem {
    /// The limit's id.
    pub limit: u64,
    /// The core's name for the key.
    pub local: u64,
    /// Added to the core's lease (negative: taken back).
    pub add: i64,
    /// The core's free share until the next grant (replaces the previous one).
    pub free: i64,
    /// Tokens left globally, for `RateLimit-Remaining`.
    pub remaining: i64,
    /// Milliseconds until the quota is whole again.
    pub reset_ms: u64,
    /// Milliseconds until a token is free.
    pub retry_ms: u64,
    /// Forget the key (nothing happened to it for long enough).
    pub expire: bool,
}

/// One core's grants for a tick.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Per key.
    pub items: Vec<GrantItem>,
    /// Nodes active per limit id (sizes the free share of keys new to a core).
    pub nodes: Vec<(u64, u32)>,
    /// The store is unreachable: fail-closed limits refuse.
    pub store_down: bool,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Keys sent to the store.
    pub synced: usize,
    /// Whether the store answered (`true` also when there was nothing to send).
    pub store_ok: bool,
    /// Keys known to the reconciler.
    pub keys: usize,
    /// Keys forgotten this tick.
    pub expired: usize,
}

#[derive(Debug, Clone, Default)]
struct CoreRec {
    outstanding: i64,
    demand: f64,
    pending: u32,
    has_entry: bool,
    /// The free share last granted, and how much of it was spent since.
    free_given: i64,
    free_spent: i64,
}

#[derive(Debug)]
struct Record {
    name: Arc<str>,
    limit: u64,
    local: u64,
    algo: Algo,
    closed: bool,
    cores: Vec<CoreRec>,
    unsynced: u64,
    unsynced_prov: u64,
    /// Admitted while the store was down, to bill when it is back.
    replay: u64,
    /// This record's count of the key (see [`SyncItem::epoch`]) and the running total of its
    /// spends sent under it ([`SyncItem::total`]): a resent replay is billed once.
    epoch: u64,
    total: u64,
    lease: i64,
    last_active_ms: u64,
    active: bool,
    /// The share of the limit this node keeps while the store is down, fixed when the outage
    /// began.
    outage_share: Option<f64>,
    /// Capacity nobody leased as the store last said, and this node's share of the limit as
    /// it said lately.
    last_free: i64,
    last_share: f64,
    /// The store answered for this key at least once, and the tick it last did.
    synced_ok: bool,
    share_tick: u64,
    nodes: u32,
    /// A core refused a request since the last sync: it needs fresh numbers even when nothing
    /// was spent.
    refused: bool,
    /// Synced at least once (a new key's first free shares were the cores' own guess).
    synced_once: bool,
    /// The tick of the last sync, of the last demand update, of the last visit, and the tick a
    /// deferred sync is due (0: none).
    last_sync_tick: u64,
    last_decay_tick: u64,
    seen_tick: u64,
    due_tick: u64,
}

/// Tuning of the reconciler.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileSettings {
    /// Cores of this node.
    pub workers: usize,
    /// The tick, in milliseconds.
    pub tick_ms: u64,
    /// How many ticks of demand a lease covers (the grant arrives one tick late).
    pub horizon_ticks: f64,
    /// A silent node's lease lapses after this, in milliseconds (the fallback store's too).
    pub lease_ttl_ms: u64,
}

/// The reconciler of one node.
#[derive(Debug)]
pub struct Reconciler {
    cfg: ReconcileSettings,
    records: HashMap<KeyId, Record, BuildHasherDefault<PairHasher>>,
    /// Only keys with something to do are visited in a tick: those reported on, those holding a
    /// lease or owing a replay, and those whose deferred sync is due (a ring by tick).
    tick_no: u64,
    touched: Vec<KeyId>,
    hot: Vec<KeyId>,
    due: Vec<Vec<KeyId>>,
    fallback: LocalStore,
    down: bool,
    nodes: HashMap<u64, u32>,
    counters: HashMap<u64, LimitCounters>,
    core_keys: Vec<usize>,
    last_sweep_ms: u64,
    items: Vec<SyncItem>,
    names: Vec<KeyId>,
    results: Vec<SyncResult>,
    scratch: Vec<i64>,
    /// Cores that ever reported: only they drain grants, so only they are sent broadcasts.
    core_seen: Vec<bool>,
    /// The epoch the next new record counts under; never 0, different from any earlier
    /// record's in this process, and (time-seeded) most likely from any earlier process's.
    next_epoch: u64,
}

/// Hashes a [`KeyId`] (already a hash) with one multiply.
#[derive(Default, Clone, Copy)]
struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = IdHasher::default();
        h.write(bytes);
        self.0 ^= h.finish();
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Reconciler {
    /// A reconciler for `cfg.workers` cores.
    pub fn new(cfg: ReconcileSettings) -> Self {
        Self {
            cfg,
            records: HashMap::default(),
            tick_no: 0,
            touched: Vec::new(),
            hot: Vec::new(),
            due: vec![Vec::new(); MAX_LAZY_TICKS as usize + 1],
            fallback: LocalStore::new(cfg.lease_ttl_ms),
            down: false,
            nodes: HashMap::new(),
            counters: HashMap::new(),
            core_keys: vec![0; cfg.workers],
            last_sweep_ms: 0,
            items: Vec::new(),
            names: Vec::new(),
            results: Vec::new(),
            scratch: Vec::new(),
            core_seen: vec![false; cfg.workers],
            next_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1,
        }
    }

    /// Whether the last sync failed.
    pub fn store_down(&self) -> bool {
        self.down
    }

    /// Keys known to the reconciler.
    pub fn keys(&self) -> usize {
        self.records.len()
    }

    /// Keys tracked by each core, as last reported.
    pub fn core_keys(&self) -> &[usize] {
        &self.core_keys
    }

    /// Decisions per limit id since start.
    pub fn counters(&self) -> &HashMap<u64, LimitCounters> {
        &self.counters
    }

    /// Takes in one core's report.
    pub fn ingest(&mut self, r: CoreReport, now_ms: u64) {
        let workers = self.cfg.workers;
        if let Some(k) = self.core_keys.get_mut(r.core) {
            *k = r.keys;
        }
        for (id, c) in r.counters {
            let t = self.counters.entry(id).or_default();
            t.allowed += c.allowed;
            t.limited += c.limited;
            t.overflow += c.overflow;
        }
        if let Some(seen) = self.core_seen.get_mut(r.core) {
            *seen = true;
        }
        for it in r.items {
            if r.core >= workers {
                continue;
            }
            let id = (it.limit, it.local);
            let idle_gone = it.gone && it.spent_lease == 0 && it.spent_free == 0 && it.denied == 0;
            if idle_gone && !self.records.contains_key(&id) {
                // An expiry confirmed: nothing to count.
                continue;
            }
            let rec = self.records.entry(id).or_insert_with(|| Record {
                name: it.name.clone(),
                limit: it.limit,
                local: it.local,
                algo: it.algo,
                closed: it.closed,
                cores: vec![CoreRec::default(); workers],
                unsynced: 0,
                unsynced_prov: 0,
                replay: 0,
                epoch: {
                    // Odd, so never 0.
                    let e = self.next_epoch;
                    self.next_epoch = e.wrapping_add(2);
                    e
                },
                total: 0,
                lease: 0,
                last_active_ms: now_ms,
                active: false,
                outage_share: None,
                last_free: 0,
                last_share: 0.0,
                synced_ok: false,
                share_tick: 0,
                nodes: 1,
                refused: false,
                synced_once: false,
                last_sync_tick: 0,
                last_decay_tick: 0,
                seen_tick: 0,
                due_tick: 0,
            });
            rec.algo = it.algo;
            rec.closed = it.closed;
            let spent = u64::from(it.spent_lease) + u64::from(it.spent_free);
            let c = &mut rec.cores[r.core];
            c.outstanding -= i64::from(it.spent_lease);
            c.free_spent += i64::from(it.spent_free);
            c.pending = c
                .pending
                .saturating_add(it.spent_lease + it.spent_free + it.denied);
            if it.gone {
                c.outstanding = 0;
                c.has_entry = false;
            } else {
                c.has_entry = true;
            }
            rec.refused |= it.denied > 0;
            rec.unsynced += spent;
            rec.unsynced_prov += u64::from(it.spent_free);
            rec.last_active_ms = now_ms;
            if rec.last_decay_tick == 0 {
                rec.last_decay_tick = self.tick_no;
            }
            rec.active = true;
            self.touched.push(id);
        }
    }

    /// The store failed this tick: fail-open keys sync against the fallback store at this
    /// node's share; fail-closed keys are refused by the cores (their results hold no lease).
    fn fail_open(&mut self, now_ms: u64) {
        self.results.clear();
        for (i, id) in self.names.iter().enumerate() {
            let Some(rec) = self.records.get_mut(id) else {
                self.results.push(SyncResult {
                    lease: 0,
                    free: 0,
                    nodes: 1,
                    retry_ms: 1000,
                    reset_ms: 0,
                    share_ppm: 0,
                });
                continue;
            };
            // The node's last share, fixed for the outage: its demand-weighted share of the
            // limit as the store last computed it (the nodes' shares add up to the limit), or an
            // equal part for a key the store never answered for.
            let nodes = rec.nodes.max(1);
            let (synced, last_share) = (rec.synced_ok, rec.last_share);
            let share = *rec.outage_share.get_or_insert_with(|| {
                if synced {
                    last_share
                } else {
                    1.0 / f64::from(nodes)
                }
            });
            let mut it = self.items[i].clone();
            it.algo = rec.algo.scaled(share);
            // Only this outage's spends: the replay is for the shared store (and the fallback
            // sees each of them once: no deduplication).
            it.spent = rec.unsynced;
            it.provisional = rec.unsynced_prov;
            it.epoch = 0;
            if !self.fallback.contains(&it.key) {
                // The outage's first sync of the key: the node's bucket starts with what it
                // last knew it could spend (its lease and its part of the free capacity), not
                // full, or each node would add a bucket to the limit.
                let most = it.algo.quota().floor() as i64;
                let node_free = (rec.last_free.max(0) as u64).div_ceil(u64::from(nodes)) as i64;
                let start = (rec.lease.max(0) + node_free).clamp(0, most);
                let gone = (most - start) as u64;
                it.spent += gone;
                it.provisional += gone;
            }
            let mut out = Vec::with_capacity(1);
            let r = match self.fallback.sync("local", now_ms, &[it], &mut out) {
                Ok(()) => out.first().copied(),
                Err(_) => None,
            };
            self.results.push(r.unwrap_or(SyncResult {
                lease: 0,
                free: 0,
                nodes: 1,
                retry_ms: 1000,
                reset_ms: 0,
                share_ppm: 0,
            }));
        }
    }

    /// Forgets keys idle past their algorithm's memory; returns how many.
    fn sweep(&mut self, now_ms: u64, grants: &mut [Option<Grants>]) -> usize {
        let mut expired = 0;
        self.records.retain(|_, rec| {
            let idle = now_ms.saturating_sub(rec.last_active_ms);
            if rec.active || idle < rec.algo.idle_ms().saturating_add(1000) {
                return true;
            }
            for (c, cr) in rec.cores.iter().enumerate() {
                if cr.has_entry {
                    if let Some(g) = grants.get_mut(c) {
                        g.get_or_insert_with(Grants::default).items.push(GrantItem {
                            limit: rec.limit,
                            local: rec.local,
                            add: 0,
                            free: 0,
                            remaining: 0,
                            reset_ms: 0,
                            retry_ms: 0,
                            expire: true,
                        });
                    }
                }
            }
            expired += 1;
            false
        });
        self.fallback.sweep(now_ms);
        expired
    }
}
