//! The cache's state: this core's zones, what the cache phase gave the current request (its
//! ticket upstream, the response being kept), and an answer from the cache. In a file of its own
//! because every part of the cache phase and the connection loop share it.

use super::pending::{self, Pendings};
use crate::cache::purge::{log_for, Purge, PurgeLog};
use crate::cache::{CacheZone, RouteCache};
use crate::gateway::RouteSettings;
use ringgate_cache::directives::RequestDirectives;
use ringgate_cache::status::Outcome;
use ringgate_cache::store::{Object, Store};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// One zone on this core.
pub(crate) struct ZoneCache {
    pub(crate) store: Store,
    zone: Arc<CacheZone>,
    log: Arc<PurgeLog>,
    applied: u64,
    /// Keys being fetched now.
    pub(crate) pending: Rc<Pendings>,
}

/// This core's zones, by name (kept across reloads that keep the zone; resized when its budget
/// changes).
#[derive(Default)]
pub(crate) struct Caches {
    zones: HashMap<Box<str>, ZoneCache>,
}

impl Caches {
    /// Zone `z` on this core (made on first use), with every purge published so far applied.
    pub(crate) fn zone(&mut self, z: &Arc<CacheZone>, workers: usize) -> &mut ZoneCache {
        let budget = (z.max_bytes / workers.max(1) as u64) as usize;
        if !self.zones.contains_key(&*z.name) {
            self.zones.insert(z.name.clone(), Self::make(z, budget));
        }
        let Some(zc) = self.zones.get_mut(&*z.name) else {
            unreachable!("the zone was inserted just above when missing")
        };
        // (The zone's settings are compared by pointer first: no shared count is touched on a
        // lookup of an unchanged zone.)
        if !Arc::ptr_eq(&zc.zone, z) {
            if zc.zone.max_bytes != z.max_bytes {
                zc.store.set_budget(budget);
            }
            zc.zone = z.clone();
        }
        let g = zc.log.generation();
        if g != zc.applied {
            match zc.log.since(zc.applied) {
                Some(purges) => {
                    for p in purges {
                        match p {
                            Purge::Key(k) => zc.store.purge_key(&k),
                            Purge::Prefix(k) => zc.store.purge_prefix(&k),
                            Purge::Tag(t) => zc.store.purge_tag(&t),
                            Purge::All => zc.store.purge_all(),
                        };
                    }
                }
                None => {
                    zc.store.purge_all();
                }
            }
            zc.applied = g;
        }
        zc
    }

    fn make(z: &Arc<CacheZone>, budget: usize) -> ZoneCache {
        let log = log_for(&z.name);
        ZoneCache {
            store: Store::new(budget),
            zone: z.clone(),
            applied: log.generation(),
            log,
            pending: Rc::default(),
        }
    }

    /// Every zone's name, bytes, objects and store counters (for metrics).
    pub(crate) fn each(&self, mut f: impl FnMut(&str, &Store)) {
        for (name, z) in &self.zones {
            f(name, &z.store);
        }
    }
}

/// What the cache phase gave the current request and what its response is doing.
#[derive(Default)]
pub(crate) struct CacheReq {
    /// Going upstream on a cached route: what to store, validate or fall back to. (Boxed: the
    /// connection task holds this state, and most requests carry none.)
    pub(crate) ticket: Option<Box<Ticket>>,
    /// The response being stored as it streams.
    pub(crate) filling: Option<Box<Filling>>,
    /// What the cache did (logs and metrics), once known.
    pub(crate) outcome: Option<Outcome>,
    /// Why not stored / which stale kind.
    pub(crate) detail: &'static str,
    /// The request already waited for another request's fetch (it does not wait twice).
    pub(crate) waited: bool,
    /// This connection is a background refresh (no client).
    pub(crate) refresh: bool,
    /// The route (its address in the snapshot) the request was admitted on before it waited.
    pub(crate) waited_route: usize,
}

impl CacheReq {
    /// Forgets the request that ended (its ticket goes: a fetch it owned is released).
    pub(crate) fn next_request(&mut self) {
        self.ticket = None;
        self.filling = None;
        self.outcome = None;
        self.detail = "";
        self.waited = false;
        self.waited_route = 0;
    }
}

/// A request on a cached route that goes upstream.
pub(crate) struct Ticket {
    pub(crate) route: Arc<RouteCache>,
    pub(crate) key: Box<[u8]>,
    /// The stored response being validated, or kept to serve if the upstream fails.
    pub(crate) stale: Option<Rc<Object>>,
    /// This request fetches the key for the core (others wait for it): released on drop.
    pub(crate) fetch: Option<pending::Fetch>,
    /// The request's fields (for the `Vary` of the response).
    pub(crate) fields: Vec<(Box<str>, Box<[u8]>)>,
    pub(crate) directives: RequestDirectives,
    pub(crate) authorization: bool,
    pub(crate) get: bool,
    /// An unsafe method: a success invalidates the key on this core (RFC 9111 §4.4).
    pub(crate) invalidate: bool,
    /// The upstream request carries the stored response's validators (a 304 refreshes it).
    pub(crate) validating: bool,
    /// The client's own validators (answered 304 when a stored response matches).
    pub(crate) if_none_match: Option<Box<[u8]>>,
    pub(crate) if_modified_since: Option<Box<[u8]>>,
    /// When the request went upstream.
    pub(crate) sent: std::time::Instant,
}

impl Ticket {
    /// The value of the request's field `name`; sent on several lines, the marker
    /// [`REPEATED`] (such a response is not stored).
    pub(crate) fn field(&self, name: &str) -> Option<&[u8]> {
        let mut lines = self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = lines.next()?;
        Some(if lines.next().is_some() {
            REPEATED
        } else {
            &first.1
        })
    }
}

/// A request the cache answers.
pub(crate) struct Cached<'s> {
    /// A background refresh to start (stale-while-revalidate), run by the connection loop.
    pub(crate) refresh: Option<RefreshJob>,
    pub(crate) obj: Rc<Object>,
    pub(crate) outcome: Outcome,
    /// Freshness left, negative when stale (seconds).
    pub(crate) ttl: i64,
    pub(crate) detail: &'static str,
    /// The client's validators match: answer 304.
    pub(crate) not_modified: bool,
    /// A `HEAD`: the head only.
    pub(crate) head_only: bool,
    /// The request's head length (consumed from the buffer).
    pub(crate) consumed: usize,
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    pub(crate) route: &'s RouteSettings,
}

/// A background refresh: the replayed request's head and the key's fetch it holds.
pub(crate) struct RefreshJob {
    pub(crate) head: Vec<u8>,
    pub(crate) fetch: pending::Fetch,
}

/// A response being kept as it streams.
pub(crate) struct Filling {
    pub(crate) status: u16,
    pub(crate) fields: Vec<u8>,
    pub(crate) etag: Option<Box<[u8]>>,
    pub(crate) last_modified: Option<Box<[u8]>>,
    pub(crate) vary: Vec<ringgate_cache::store::VaryField>,
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) fresh: ringgate_cache::freshness::Freshness,
    pub(crate) body: Vec<u8>,
    pub(crate) max: usize,
    pub(crate) arrived: std::time::Instant,
}

/// The value a field sent on several lines stands for in keys and `Vary` matching: no stored
/// response is ever stored under it (such a request's response is not stored), so it never
/// matches.
pub(crate) const REPEATED: &[u8] = b"\0repeated";
