//! The reconciler's tick, one named step at a time: plan which due keys to sync, sync them with
//! the store (or fall back to the local one), fold the store's answers into each key's record,
//! and tell the cores what changed. Kept apart from `mod.rs`, which holds the records and the
//! cores' reports.

use super::super::store::{Store, SyncItem, SyncResult};
use super::distribute::distribute;
use super::{Grants, Reconciler, Record, TickStats, MAX_LAZY_TICKS, SHARE_MEMORY_MS};
use std::collections::HashMap;

/// What a due key needs this tick.
enum KeyPlan {
    /// Nothing: already visited this tick, gone quiet, or already queued for a later tick.
    Nothing,
    /// Room to spare: queue it for a sync at tick `.0`.
    Requeue(u64),
    /// Sync it now with this item.
    Sync(SyncItem),
}

impl Reconciler {
    /// One tick: sync the active keys with `store` as `node`, then return each core's grants
    /// (`None` for a core with nothing new).
    pub fn tick<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        node: &str,
        now_ms: u64,
    ) -> (Vec<Option<Grants>>, TickStats) {
        self.items.clear();
        self.names.clear();
        self.tick_no += 1;
        self.plan_due(now_ms);
        let mut stats = TickStats {
            synced: self.items.len(),
            store_ok: true,
            ..TickStats::default()
        };
        let mut grants: Vec<Option<Grants>> = vec![None; self.cfg.workers];
        let was_down = self.down;
        stats.store_ok = self.sync_store(store, node, now_ms);
        let nodes_seen = self.absorb_results(&mut grants);
        self.announce(&mut grants, nodes_seen, was_down);
        if now_ms.saturating_sub(self.last_sweep_ms) >= 1000 {
            stats.expired = self.sweep(now_ms, &mut grants);
            self.last_sweep_ms = now_ms;
        }
        for g in grants.iter_mut().flatten() {
            g.store_down = self.down;
        }
        stats.keys = self.records.len();
        (grants, stats)
    }

    /// Visits the keys due this tick (hot, just reported, or deferred to now) and fills
    /// `items`/`names` with those to sync now; keys with room to spare are deferred.
    fn plan_due(&mut self, now_ms: u64) {
        let t = self.tick_no;
        let ring = self.due.len() as u64;
        let (horizon, down) = (self.cfg.horizon_ticks, self.down);
        let mut work = std::mem::take(&mut self.hot);
        work.append(&mut self.touched);
        work.append(&mut self.due[(t % ring) as usize]);
        for id in work {
            let Some(rec) = self.records.get_mut(&id) else {
                continue;
            };
            match plan_key(rec, (t, now_ms), horizon, down) {
                KeyPlan::Nothing => {}
                KeyPlan::Requeue(at) => self.due[(at % ring) as usize].push(id),
                KeyPlan::Sync(item) => {
                    self.items.push(item);
                    self.names.push(id);
                }
            }
        }
    }

    /// Syncs this tick's items with `store` (with none to sync and the store down, probes it),
    /// and on failure serves them from the fallback store. Returns whether the store answered.
    fn sync_store<S: Store + ?Sized>(&mut self, store: &mut S, node: &str, now_ms: u64) -> bool {
        let mut ok = true;
        self.results.clear();
        let was_down = self.down;
        if !self.items.is_empty() {
            match store.sync(node, now_ms, &self.items, &mut self.results) {
                Ok(()) if self.results.len() == self.items.len() => {
                    self.down = false;
                }
                _ => {
                    self.down = true;
                    ok = false;
                }
            }
        } else if self.down {
            // Nothing to sync, but fail-closed limits refuse until the store is seen again.
            match store.probe() {
                Ok(()) => self.down = false,
                Err(_) => ok = false,
            }
        }
        if self.down {
            self.fail_open(now_ms);
        } else if was_down {
            self.fallback.clear();
        }
        ok
    }

    /// Folds each synced key's result into its record and splits its grant among the cores
    /// into `grants`; keys still busy stay hot. Returns the node count the store saw per limit.
    fn absorb_results(&mut self, grants: &mut [Option<Grants>]) -> HashMap<u64, u32> {
        let workers = self.cfg.workers;
        let (tick_no, tick_ms) = (self.tick_no, self.cfg.tick_ms);
        let mut nodes_seen: HashMap<u64, u32> = HashMap::new();
        for (i, id) in self.names.iter().enumerate() {
            let (Some(rec), Some(r)) = (self.records.get_mut(id), self.results.get(i)) else {
                continue;
            };
            let spent = rec.unsynced;
            rec.unsynced = 0;
            rec.unsynced_prov = 0;
            if self.down {
                // Billed once the store is back, at most one quota.
                rec.replay = (rec.replay + spent).min(rec.algo.quota().ceil() as u64);
            } else {
                take_answer(rec, r, tick_no, tick_ms);
                let n = nodes_seen.entry(rec.limit).or_insert(0);
                *n = (*n).max(rec.nodes);
            }
            rec.lease = r.lease;
            distribute(rec, r, workers, grants, &mut self.scratch);
            // Keys holding a lease, owing a replay or in demand are visited every tick; the
            // others wait for their next report.
            let busy = rec.lease != 0
                || rec.replay > 0
                || rec.cores.iter().any(|c| c.demand >= 1.0)
                || (rec.closed && rec.cores.iter().any(|c| c.demand > 0.0));
            rec.active = busy || rec.due_tick > self.tick_no;
            if busy {
                self.hot.push(*id);
            }
        }
        nodes_seen
    }

    /// Tells the cores that have reported what changed beyond their keys' grants: a limit's new
    /// node count, and (with an empty grant) that the store went down or came back.
    fn announce(
        &mut self,
        grants: &mut [Option<Grants>],
        nodes_seen: HashMap<u64, u32>,
        was_down: bool,
    ) {
        for (id, n) in nodes_seen {
            if self.nodes.insert(id, n) != Some(n) {
                for (g, _) in grants.iter_mut().zip(&self.core_seen).filter(|(_, s)| **s) {
                    g.get_or_insert_with(Grants::default).nodes.push((id, n));
                }
            }
        }
        if self.down != was_down {
            for (g, _) in grants.iter_mut().zip(&self.core_seen).filter(|(_, s)| **s) {
                g.get_or_insert_with(Grants::default);
            }
        }
    }
}

/// Decides what key `rec` needs at tick `t` (`now_ms`): nothing, a later sync, or a sync now
/// asking for a lease over `horizon` ticks of its demand. `down`: the store failed last tick.
fn plan_key(rec: &mut Record, (t, now_ms): (u64, u64), horizon: f64, down: bool) -> KeyPlan {
    if rec.seen_tick == t {
        return KeyPlan::Nothing;
    }
    rec.seen_tick = t;
    let demand = decay_demand(rec, t);
    // Admissions of an outage older than the key's memory no longer matter (the bucket
    // or window refilled meanwhile): billing them would only punish the key.
    if rec.replay > 0 && now_ms.saturating_sub(rec.last_active_ms) >= rec.algo.idle_ms() {
        rec.replay = 0;
    }
    // Below one request a tick the free share serves the key: no lease to keep in sync.
    let want = if demand < 1.0 {
        0
    } else {
        (demand * horizon).ceil().min(rec.algo.quota().ceil()) as u64
    };
    // A fail-closed key in demand is synced every tick: its cores spend it only on a
    // fresh word from the store.
    let quiet = rec.unsynced == 0
        && rec.replay == 0
        && want == 0
        && rec.lease == 0
        && !rec.refused
        && !(rec.closed && demand > 0.0);
    let refused = std::mem::take(&mut rec.refused);
    if quiet && rec.cores.iter().all(|c| c.outstanding == 0) {
        rec.active = false;
        return KeyPlan::Nothing;
    }
    // A key with room to spare waits: its spending is billed a few ticks later.
    let roomy = rec.synced_once
        && !rec.closed
        && !refused
        && rec.replay == 0
        && want == 0
        && rec.lease == 0
        && rec
            .cores
            .iter()
            .all(|c| c.outstanding == 0 && (!c.has_entry || 2 * c.free_spent < c.free_given));
    if roomy && !down && t - rec.last_sync_tick < u64::from(MAX_LAZY_TICKS) {
        let at = rec.last_sync_tick + u64::from(MAX_LAZY_TICKS);
        if rec.due_tick == at {
            return KeyPlan::Nothing;
        }
        rec.due_tick = at;
        return KeyPlan::Requeue(at);
    }
    rec.last_sync_tick = t;
    rec.synced_once = true;
    rec.total += rec.unsynced;
    KeyPlan::Sync(SyncItem {
        key: rec.name.clone(),
        algo: rec.algo,
        spent: rec.unsynced + rec.replay,
        provisional: rec.unsynced_prov + rec.replay,
        want,
        demand,
        epoch: rec.epoch,
        total: rec.total,
    })
}

/// Decays each core's demand of `rec` to tick `t` (it halves every tick; a key not visited for
/// a while catches up at once), adds the requests refused since, and returns the key's demand.
fn decay_demand(rec: &mut Record, t: u64) -> f64 {
    let elapsed = t.saturating_sub(rec.last_decay_tick).clamp(1, 64) as i32;
    rec.last_decay_tick = t;
    let keep = 0.5f64.powi(elapsed);
    let mut demand = 0.0;
    for c in &mut rec.cores {
        c.demand = keep * c.demand + 0.5 * f64::from(c.pending);
        if c.demand < 0.05 {
            c.demand = 0.0;
        }
        c.pending = 0;
        demand += c.demand;
    }
    demand
}

/// Records the store's answer `r` for `rec` at tick `tick_no`: the outage replay is settled,
/// and the node's share of the limit is averaged for failing open later.
fn take_answer(rec: &mut Record, r: &SyncResult, tick_no: u64, tick_ms: u64) {
    rec.replay = 0;
    rec.outage_share = None;
    rec.last_free = r.free;
    // Averaged over half a second: one sync's share swings with the demand of a
    // single tick. Only while the node is busy on the key (a request a tick or
    // more): a node going quiet syncs with its demand decayed against the others'
    // last demands, which says nothing of its share.
    let share = f64::from(r.share_ppm.min(1_000_000)) / 1e6;
    let busy = rec.cores.iter().map(|c| c.demand).sum::<f64>() >= 1.0;
    rec.last_share = if rec.synced_ok && !busy {
        rec.last_share
    } else if rec.synced_ok {
        let ms = tick_no.saturating_sub(rec.share_tick) * tick_ms;
        let keep = (-(ms as f64) / SHARE_MEMORY_MS).exp();
        keep * rec.last_share + (1.0 - keep) * share
    } else {
        share
    };
    rec.share_tick = tick_no;
    rec.synced_ok = true;
    rec.nodes = r.nodes.max(1);
}
