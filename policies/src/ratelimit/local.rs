//! One core's side of rate limiting: per-key entries it alone owns, judged with no lock and no
//! shared atomic, and the once-per-tick exchange with the reconciler.
//!
//! An entry spends, in order, tokens *leased* to this core (its demand-weighted part of the
//! node's lease) and its optimistic *free* share (an equal part, among every core of every node,
//! of what nobody leased). A request passes only when every limit of its chain has a token; only
//! then are the tokens taken, so a request refused by one limit costs nothing from the others.
//! A key new to the core starts with a free share of a full quota, so the first requests of a
//! new client pass at once. Everything spent, and every refusal (demand), is reported at the next
//! tick; grants come back with the next lease and free share.

use super::reconcile::{CoreReport, GrantItem, Grants, LimitCounters, ReportItem};
use super::spec::{FailMode, KeySource, LimitSet, LimitSpec, Missing, Stage, MAX_CHAIN};
use super::store::Algo;
pub use crate::idhash::IdHasher;
use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// What a request is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The matched route's id.
    pub route: &'a str,
    /// The TCP peer.
    pub peer: IpAddr,
    /// The request headers.
    pub headers: &'a [httparse::Header<'a>],
    /// The authenticated client id (empty: none).
    pub client_id: &'a [u8],
    /// The authenticated subject (empty: none).
    pub subject: &'a [u8],
    /// The caller's tenant (empty: none).
    pub tenant: &'a [u8],
    /// The caller's rate-limit tier (empty: none).
    pub tier: &'a [u8],
}

/// The outcome of judging a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Refuse it with `status` and `{"error":code}`; `limit` names the limit (an index into the
    /// set's limits).
    Limit {
        /// 429, or a fail-closed limit's status.
        status: u16,
        /// `rate_limited`, or `rate_limit_unavailable` when a fail-closed limit cannot reach its
        /// store.
        code: &'static str,
        /// Which limit refused.
        limit: usize,
    },
    /// A fail-closed limit has no fresh word from the store on this key (it is new to the core,
    /// or idle for a while): the key was sent to the reconciler at once; judge the request
    /// again, with `waited`, once the reconciler's published ticks reach `ticket` (see
    /// [`CoreLimiter::watching`]). Nothing was spent.
    Wait {
        /// The count of reconciler ticks to wait for.
        ticket: u64,
    },
}

/// A fail-closed limit's entry may be spent only while the store answered for it within this
/// many of the core's ticks; after that its next request waits for a sync (so no request
/// passes on a word the store gave before an outage began, however idle the key was).
const FRESH_TICKS: u64 = 2;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    algo: Algo,
    lease: i64,
    free: i64,
    spent_lease: u32,
    spent_free: u32,
    denied: u32,
    /// Tokens left globally as last heard, less what this core spent since.
    remaining: i64,
    reset_ms: u64,
    retry_ms: u64,
    /// In the table's dirty list (something to report).
    dirty: bool,
    /// The limit fails closed, and the core tick of the last grant the store answered for
    /// (0: never).
    closed: bool,
    granted_tick: u64,
    /// The free share as last granted (or first guessed), and whether the reconciler has heard
    /// of the key; a key with room to spare is reported every few ticks, not every tick.
    free_granted: i64,
    announced: bool,
    held_ticks: u8,
}

/// The largest quota (config validation refuses more); keeps integer conversions exact.
pub const MAX_QUOTA: f64 = 1e15;

/// A key with room to spare (no lease, nothing refused, under half its free share spent) is
/// reported at least every this many ticks.
const MAX_HELD_TICKS: u8 = 25;

#[derive(Debug, Default)]
struct Table {
    entries: IdMap<Entry>,
    dirty: Vec<u64>,
    nodes_hint: u32,
    closed: bool,
    counters: LimitCounters,
}

/// One core's rate-limit state. Kept across reloads: entries of limits that still exist keep
/// their tokens.
pub struct CoreLimiter {
    core: usize,
    workers: u32,
    hasher: RandomState,
    tables: IdMap<Table>,
    tx: Sender<CoreReport>,
    rx: Receiver<Grants>,
    store_down: bool,
    /// The key count in the last report (a change is reported even with nothing else to say).
    reported_keys: usize,
    /// This core's ticks (from 1), and the reconciler's published ticks (grants sent).
    tick_no: u64,
    progress: Arc<AtomicU64>,
}

impl std::fmt::Debug for CoreLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreLimiter")
            .field("core", &self.core)
            .field("limits", &self.tables.len())
            .finish()
    }
}

/// Where a chain's tokens come from, found in the check pass and spent in the commit pass.
#[derive(Clone, Copy)]
struct Pick {
    id: u64,
    local: u64,
}

/// What one limit of a chain says about a request, before any token is taken.
enum Judged {
    /// The limit does not apply (no key, or no room for a new key on this core).
    Skip,
    /// The limit has a token for the request, taken only if every limit has one.
    Pick(Pick),
    /// A fail-closed limit without a fresh grant: the request waits for the store.
    Ask,
    /// The limit refuses the request.
    Refuse(Decision),
}

/// The refusal of a fail-closed limit (number `limit`) whose store is not answering.
#[inline]
fn unavailable(status: u16, limit: usize) -> Decision {
    Decision::Limit {
        status,
        code: "rate_limit_unavailable",
        limit,
    }
}

/// Queues entry `local` for the next tick's report unless it already is.
#[inline]
fn mark_dirty(e: &mut Entry, dirty: &mut Vec<u64>, local: u64) {
    if !e.dirty {
        e.dirty = true;
        dirty.push(local);
    }
}

impl CoreLimiter {
    /// Core `core` of `workers`, talking to the reconciler through `tx`/`rx`. `hasher` must be
    /// the same (a clone) on every core of the process: grants name entries by its hashes.
    pub fn new(
        core: usize,
        workers: usize,
        hasher: RandomState,
        tx: Sender<CoreReport>,
        rx: Receiver<Grants>,
    ) -> Self {
        Self {
            core,
            workers: workers.max(1) as u32,
            hasher,
            tables: IdMap::default(),
            tx,
            rx,
            store_down: false,
            reported_keys: 0,
            tick_no: 1,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Watches `progress`, the count of reconciler ticks whose grants were sent: a request
    /// that waits for a fail-closed limit's store ([`Decision::Wait`]) waits for it.
    pub fn watching(mut self, progress: Arc<AtomicU64>) -> Self {
        self.progress = progress;
        self
    }

    /// Keys this core tracks, over all limits.
    pub fn keys(&self) -> usize {
        self.tables.values().map(|t| t.entries.len()).sum()
    }

    /// Judges a request against the limits of chain `chain` of `set` that run at `stage`.
    /// Writes the `RateLimit-*` lines (and `Retry-After` on a refusal) into `out` when the chain
    /// asks for them or the request is refused. A request is judged by both stages, before and
    /// after authentication, with the same `out`: the lines describe the tightest limit of both
    /// (the lines the first stage wrote are replaced when the second has a tighter limit or
    /// refuses).
    ///
    /// `waited`: the request already waited once ([`Decision::Wait`]); the answer is then final
    /// (a fail-closed limit the store did not answer for meanwhile refuses).
    pub fn check(
        &mut self,
        set: &LimitSet,
        chain: usize,
        (stage, waited): (Stage, bool),
        caller: &Caller<'_>,
        out: &mut Vec<u8>,
    ) -> Decision {
        let Some(ch) = set.chains.get(chain) else {
            return Decision::Allow;
        };
        if waited {
            // The grants the wait was for.
            while let Ok(g) = self.rx.try_recv() {
                self.apply(g);
            }
        }
        let mut ask = false;
        let mut picks = [Pick { id: 0, local: 0 }; MAX_CHAIN];
        let mut n = 0;
        for &li in ch.limits.iter().take(MAX_CHAIN) {
            let Some(spec) = set.limits.get(li).filter(|s| s.stage == stage) else {
                continue;
            };
            match self.judge_limit(set, (li, spec), caller, waited, out) {
                Judged::Skip => {}
                Judged::Pick(p) => {
                    picks[n] = p;
                    n += 1;
                }
                Judged::Ask => {
                    ask = true;
                    break;
                }
                Judged::Refuse(d) => return d,
            }
        }
        if ask {
            let ticket = self.progress.load(Ordering::Acquire) + 2;
            self.exchange();
            return Decision::Wait { ticket };
        }
        // Every limit has a token: take them, and report the tightest limit.
        if let Some((id, local)) = self.take_tokens(&picks[..n], ch.headers) {
            self.write_tightest(id, local, out);
        }
        Decision::Allow
    }

    /// Judges one limit `spec` (number `li` of `set`) of a request's chain, without spending:
    /// whether it does not apply (no key, or its core table is full), has a token to take,
    /// needs the store first (a fail-closed limit with no fresh grant), or refuses. Creates the
    /// caller's entry when new, and writes the refusal's lines into `out`.
    #[inline]
    fn judge_limit(
        &mut self,
        set: &LimitSet,
        (li, spec): (usize, &LimitSpec),
        caller: &Caller<'_>,
        waited: bool,
        out: &mut Vec<u8>,
    ) -> Judged {
        let mut key_buf = [0u8; 16];
        let Some(key) = key_of(spec, caller, set, &mut key_buf) else {
            return Judged::Skip;
        };
        let (algo, tier) = spec.algo_for(caller.tier);
        let local = {
            let mut h = self.hasher.build_hasher();
            h.write_u64(spec.id);
            // Length-prefixed, so no tier and key pair can pose as another.
            h.write_usize(tier.len());
            h.write(tier.as_bytes());
            h.write(key);
            h.finish()
        };
        let tick_no = self.tick_no;
        let workers = self.workers;
        let down = self.store_down;
        let table = self.tables.entry(spec.id).or_insert_with(|| Table {
            nodes_hint: 1,
            closed: down,
            ..Table::default()
        });
        if table.closed {
            if let FailMode::Closed { status } = spec.fail {
                table.counters.limited += 1;
                return Judged::Refuse(unavailable(status, li));
            }
        }
        let full = table.entries.len() >= spec.max_keys;
        let e = match table.entries.entry(local) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if full => {
                table.counters.overflow += 1;
                return Judged::Skip;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                // Announced at the next tick even if a later limit refuses this request, so
                // the reconciler knows it and can expire it.
                table.dirty.push(local);
                let mut e = new_entry(spec, algo, tier, key, table.nodes_hint, workers);
                e.dirty = true;
                v.insert(e)
            }
        };
        // A reload may have changed the limit: the store judges by what the core reports.
        e.algo = algo;
        e.closed = matches!(spec.fail, FailMode::Closed { .. });
        if let FailMode::Closed { status } = spec.fail {
            if e.granted_tick == 0 || tick_no > e.granted_tick + FRESH_TICKS {
                if waited {
                    table.counters.limited += 1;
                    return Judged::Refuse(unavailable(status, li));
                }
                // Counted as demand, so the reconciler syncs the key at its next tick.
                e.denied = e.denied.saturating_add(1);
                mark_dirty(e, &mut table.dirty, local);
                return Judged::Ask;
            }
        }
        if e.lease + e.free < 1 {
            e.denied = e.denied.saturating_add(1);
            mark_dirty(e, &mut table.dirty, local);
            table.counters.limited += 1;
            take_block(out);
            write_headers(out, e, true);
            return Judged::Refuse(Decision::Limit {
                status: 429,
                code: "rate_limited",
                limit: li,
            });
        }
        Judged::Pick(Pick { id: spec.id, local })
    }

    /// Takes one token (leased first, then free) from every picked entry, and returns the entry
    /// with the fewest remaining when the chain writes `RateLimit-*` lines (`headers`).
    #[inline]
    fn take_tokens(&mut self, picks: &[Pick], headers: bool) -> Option<(u64, u64)> {
        let mut tightest: Option<(i64, u64, u64)> = None;
        for p in picks {
            let Some(t) = self.tables.get_mut(&p.id) else {
                continue;
            };
            let Some(e) = t.entries.get_mut(&p.local) else {
                continue;
            };
            if e.lease >= 1 {
                e.lease -= 1;
                e.spent_lease = e.spent_lease.saturating_add(1);
            } else {
                e.free -= 1;
                e.spent_free = e.spent_free.saturating_add(1);
            }
            e.remaining -= 1;
            mark_dirty(e, &mut t.dirty, p.local);
            t.counters.allowed += 1;
            if headers && tightest.is_none_or(|(r, _, _)| e.remaining < r) {
                tightest = Some((e.remaining, p.id, p.local));
            }
        }
        tightest.map(|(_, id, local)| (id, local))
    }

    /// Writes the `RateLimit-*` lines of entry `local` of limit `id` into `out`, unless the
    /// lines an earlier stage wrote there describe a limit at least as tight (they stay).
    #[inline]
    fn write_tightest(&self, id: u64, local: u64, out: &mut Vec<u8>) {
        let Some(e) = self.tables.get(&id).and_then(|t| t.entries.get(&local)) else {
            return;
        };
        let mut kept = false;
        if let Some(earlier) = take_block(out) {
            // The earlier stage's limit is at least as tight: its lines stay.
            if earlier.remaining <= header_remaining(e) {
                out.extend_from_slice(&earlier.text);
                kept = true;
            }
        }
        if !kept {
            write_headers(out, e, false);
        }
    }

    /// The per-tick exchange: applies every grant that arrived, then reports what was spent and
    /// refused since the last tick. Returns whether the reconciler is still there.
    pub fn tick(&mut self) -> bool {
        self.tick_no += 1;
        self.exchange()
    }

    /// Applies the grants that arrived and reports what there is to report.
    fn exchange(&mut self) -> bool {
        while let Ok(g) = self.rx.try_recv() {
            self.apply(g);
        }
        let mut items = Vec::with_capacity(self.tables.values().map(|t| t.dirty.len()).sum());
        let mut counters = Vec::new();
        for (&id, t) in self.tables.iter_mut() {
            let Table { dirty, entries, .. } = t;
            dirty.retain(|local| {
                let Some(e) = entries.get_mut(local) else {
                    return false;
                };
                let roomy = e.announced
                    && !e.closed
                    && e.denied == 0
                    && e.spent_lease == 0
                    && e.lease <= 0
                    && 2 * e.free > e.free_granted
                    && e.held_ticks < MAX_HELD_TICKS;
                if roomy {
                    e.held_ticks += 1;
                    return true;
                }
                items.push(report_of(id, *local, e, false));
                false
            });
            if t.counters != LimitCounters::default() {
                counters.push((id, std::mem::take(&mut t.counters)));
            }
        }
        let keys = self.keys();
        if items.is_empty() && counters.is_empty() && keys == self.reported_keys {
            return true;
        }
        self.reported_keys = keys;
        self.tx
            .send(CoreReport {
                core: self.core,
                items,
                counters,
                keys,
            })
            .is_ok()
    }

    fn apply(&mut self, g: Grants) {
        let tick_no = self.tick_no;
        if g.store_down != self.store_down {
            self.store_down = g.store_down;
            for t in self.tables.values_mut() {
                t.closed = g.store_down;
            }
        }
        for (id, nodes) in g.nodes {
            if let Some(t) = self.tables.get_mut(&id) {
                t.nodes_hint = nodes.max(1);
            }
        }
        let mut gone = Vec::new();
        for GrantItem {
            limit,
            local,
            add,
            free,
            remaining,
            reset_ms,
            retry_ms,
            expire,
        } in g.items
        {
            let Some(t) = self.tables.get_mut(&limit) else {
                continue;
            };
            if expire {
                // Always said, even with nothing spent since: a report that crossed the expiry
                // may have made the reconciler count this entry again.
                if let Some(mut e) = t.entries.remove(&local) {
                    gone.push(report_of(limit, local, &mut e, true));
                }
                continue;
            }
            if let Some(e) = t.entries.get_mut(&local) {
                e.lease += add;
                e.free = free;
                e.free_granted = free;
                e.remaining = remaining;
                e.reset_ms = reset_ms;
                e.retry_ms = retry_ms;
                if !g.store_down {
                    e.granted_tick = tick_no;
                }
            }
        }
        if !gone.is_empty() {
            let _ = self.tx.send(CoreReport {
                core: self.core,
                items: gone,
                counters: Vec::new(),
                keys: self.keys(),
            });
        }
    }
}

fn report_of(limit: u64, local: u64, e: &mut Entry, gone: bool) -> ReportItem {
    let r = ReportItem {
        limit,
        local,
        name: e.name.clone(),
        algo: e.algo,
        closed: e.closed,
        spent_lease: e.spent_lease,
        spent_free: e.spent_free,
        denied: e.denied,
        gone,
    };
    e.spent_lease = 0;
    e.spent_free = 0;
    e.denied = 0;
    e.dirty = false;
    e.announced = true;
    e.held_ticks = 0;
    r
}

/// The key bytes of `caller` for `spec` (`None`: the limit does not apply).
fn key_of<'a>(
    spec: &LimitSpec,
    caller: &Caller<'a>,
    set: &LimitSet,
    buf: &'a mut [u8; 16],
) -> Option<&'a [u8]> {
    let v: &[u8] = match &spec.key {
        KeySource::Global => return Some(b"*"),
        KeySource::Route => return Some(caller.route.as_bytes()),
        KeySource::ClientId => caller.client_id,
        KeySource::Subject => caller.subject,
        KeySource::Tenant => caller.tenant,
        KeySource::ClientIp => {
            let ip = set.trusted.client_ip(caller.peer, caller.headers);
            *buf = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            return Some(&buf[..]);
        }
        KeySource::Header(name) => caller
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map_or(&b""[..], |h| h.value.trim_ascii()),
    };
    if !v.is_empty() {
        Some(v)
    } else if spec.missing == Missing::Shared {
        Some(b"")
    } else {
        None
    }
}

/// A key new to this core: a free share of a full quota.
fn new_entry(
    spec: &LimitSpec,
    algo: Algo,
    tier: &str,
    key: &[u8],
    nodes: u32,
    workers: u32,
) -> Entry {
    let digest = Sha256::digest(key);
    let mut name = String::with_capacity(spec.name.len() + tier.len() + 40);
    name.push_str("{rl:");
    name.push_str(&spec.name);
    name.push_str("}:");
    name.push_str(tier);
    name.push(':');
    for b in &digest[..16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        name.push(HEX[usize::from(b >> 4)] as char);
        name.push(HEX[usize::from(b & 15)] as char);
    }
    let quota = algo.quota();
    let share = (quota / (f64::from(nodes.max(1)) * f64::from(workers.max(1)))).floor() as i64;
    Entry {
        name: name.into(),
        algo,
        lease: 0,
        free: share.max(1),
        spent_lease: 0,
        spent_free: 0,
        denied: 0,
        remaining: quota as i64,
        reset_ms: 0,
        // Until the store says better: the time one token takes.
        retry_ms: (1000.0 / algo.rate().max(f64::MIN_POSITIVE)).ceil() as u64,
        dirty: false,
        closed: matches!(spec.fail, FailMode::Closed { .. }),
        granted_tick: 0,
        free_granted: share.max(1),
        announced: false,
        held_ticks: 0,
    }
}

/// What `RateLimit-Limit` and `RateLimit-Policy` state for `algo`: the quota, its window in
/// whole seconds, and a token bucket's size.
///
/// A token bucket admits `rate` a second in the long run and `burst` at once: its quota is the
/// rate over the shortest whole-second window that holds at least the bucket (`rate = 100,
/// burst = 20`: 100 per 1 s; `rate = 100, burst = 200`: 200 per 2 s; `rate = 0.5`: 1 per 2 s),
/// so `RateLimit-Remaining` (tokens now, at most the bucket) never exceeds the limit, and the
/// bucket is stated beside it (`;burst=20`). A sliding window is its limit and its window.
pub fn policy_of(algo: &Algo) -> (u64, u64, Option<u64>) {
    /// Windows are capped (a rate of one token a century would overflow nothing, but say
    /// nothing useful either).
    const MAX_WINDOW: f64 = 1e9;
    match *algo {
        Algo::TokenBucket { rate, burst } => {
            let rate = rate.max(f64::MIN_POSITIVE);
            let w = (burst.max(1.0) / rate).ceil().clamp(1.0, MAX_WINDOW);
            let q = (rate * w).floor().clamp(1.0, MAX_QUOTA);
            (
                q as u64,
                w as u64,
                Some(burst.floor().clamp(1.0, MAX_QUOTA) as u64),
            )
        }
        Algo::SlidingWindow { limit, window_ms } => {
            let w = window_ms.div_ceil(1000).max(1);
            (limit.floor().clamp(1.0, MAX_QUOTA) as u64, w, None)
        }
    }
}

/// `RateLimit-Remaining` of an entry that admitted its request: the tokens left globally, at most
/// the bucket (or the window's limit).
fn header_remaining(e: &Entry) -> i64 {
    let most = e.algo.quota().floor().clamp(0.0, MAX_QUOTA) as i64;
    e.remaining.clamp(0, most)
}

/// The `RateLimit-*` lines an earlier stage wrote.
struct Block {
    remaining: i64,
    text: Vec<u8>,
}

/// Removes the `RateLimit-*` lines [`write_headers`] wrote into `out` (a block of four lines
/// starting with `ratelimit-limit:`), if any, and returns them.
fn take_block(out: &mut Vec<u8>) -> Option<Block> {
    const FIRST: &[u8] = b"ratelimit-limit: ";
    const REM: &[u8] = b"ratelimit-remaining: ";
    let start = (0..out.len())
        .find(|&i| (i == 0 || out[..i].ends_with(b"\r\n")) && out[i..].starts_with(FIRST))?;
    let mut end = start;
    let mut remaining = 0;
    for _ in 0..4 {
        let len = out[end..].windows(2).position(|w| w == b"\r\n")? + 2;
        let line = &out[end..end + len - 2];
        if let Some(v) = line.strip_prefix(REM) {
            remaining = std::str::from_utf8(v).ok()?.parse().ok()?;
        }
        end += len;
    }
    let text = out.drain(start..end).collect();
    Some(Block { remaining, text })
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` (IETF httpapi draft; see
/// [`policy_of`]), and `Retry-After` on a refusal. `-Reset` is the seconds until the bucket is
/// full again (or the window has passed).
fn write_headers(out: &mut Vec<u8>, e: &Entry, refused: bool) {
    use std::io::Write as _;
    let (quota, window, burst) = policy_of(&e.algo);
    let remaining = if refused { 0 } else { header_remaining(e) };
    let reset = e.reset_ms.div_ceil(1000);
    let _ = write!(
        out,
        "ratelimit-limit: {quota}\r\nratelimit-remaining: {remaining}\r\nratelimit-reset: {reset}\r\nratelimit-policy: {quota};w={window}"
    );
    if let Some(b) = burst {
        let _ = write!(out, ";burst={b}");
    }
    out.extend_from_slice(b"\r\n");
    if refused {
        let after = e.retry_ms.div_ceil(1000).max(1);
        let _ = write!(out, "retry-after: {after}\r\n");
    }
}
