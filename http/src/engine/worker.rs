//! One worker's state, shared by its connection tasks through an `Rc`: its settings, its view of
//! the snapshot, its upstream pools, its per-core policy state, its metrics and log writer.
//!
//! Per-upstream and per-route resilience state is kept across config reloads: it is indexed by
//! the stable metric id of the upstream or route (names keep their id for the life of the
//! process), and rebuilt only when the snapshot's fingerprint for it changes (endpoints, weights,
//! policies): a reload that leaves an upstream alone leaves its balancer, ejections, breaker and
//! bulkhead counts alone too.

use super::drain::DrainSignal;
use super::io::buffers::BufPool;
use super::settings::EngineSettings;
use super::upstream::h2pool::H2Clients;
use super::upstream::pool::Pool;
use crate::accesslog::AccessLogWriter;
use crate::gateway::{Gateway, RouteSettings, UpstreamSet};
use crate::metrics::{MetricsHub, WorkerMetrics};
use crate::resilience::{Admission, UpstreamRuntime};
use crate::trace::IdGen;
use ringgate_core::shutdown::{Shutdown, WorkerGauges};
use ringgate_core::snapshot::SnapshotView;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// One worker's state, shared by its connection tasks.
pub(crate) struct Worker<G: Gateway> {
    pub(crate) settings: EngineSettings,
    pub(crate) snapshot: RefCell<SnapshotView<G>>,
    pub(crate) pool: RefCell<Pool>,
    pub(crate) upstreams: RefCell<Vec<Option<UpstreamSlot<G::Upstream>>>>,
    pub(crate) routes: RefCell<Vec<Option<RouteSlot<G::Route>>>>,
    pub(crate) auth: RefCell<Option<G::Auth>>,
    pub(crate) limits: RefCell<Option<G::Limits>>,
    pub(crate) gauges: Arc<WorkerGauges>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) index: usize,
    pub(crate) metrics: RefCell<WorkerMetrics>,
    pub(crate) ids: RefCell<IdGen>,
    pub(crate) log: RefCell<Option<AccessLogWriter>>,
    pub(crate) drain: DrainSignal,
    pub(crate) hub: Arc<MetricsHub>,
    /// Upgraded tunnels open now.
    pub(crate) tunnels: std::cell::Cell<usize>,
    /// HTTP/2 connections to upstreams.
    pub(crate) h2up: RefCell<H2Clients>,
    /// Client connections' buffers.
    pub(crate) bufs: Rc<BufPool>,
    /// This core's cache zones.
    pub(crate) caches: RefCell<super::cache::state::Caches>,
    /// The worker itself (for tasks it starts on its own: background cache refreshes).
    pub(crate) me: std::rc::Weak<Worker<G>>,
}

/// One upstream's state on this core.
pub(crate) struct UpstreamSlot<U> {
    pub(crate) fingerprint: u64,
    pub(crate) rt: U,
    /// Requests in flight to the upstream (bulkhead).
    pub(crate) inflight: u32,
    /// Connections to the upstream in use (checked out or connecting).
    pub(crate) conns: u32,
    /// The endpoints `rt` indexes, in its order (to find an endpoint again after a change).
    pub(crate) endpoints: Vec<SocketAddr>,
}

impl<U> UpstreamSlot<U> {
    /// The index in this state of the endpoint a request's snapshot `up` has at `i`: `i` itself
    /// while the state was built from that snapshot's upstream, else found by address (`None`:
    /// the endpoint left).
    fn index_of(&self, up: &UpstreamSet, i: usize) -> Option<usize> {
        if self.fingerprint == up.fingerprint {
            return Some(i);
        }
        let addr = up.endpoints.get(i)?;
        self.endpoints.iter().position(|a| a == addr)
    }
}

/// One route's state on this core.
pub(crate) struct RouteSlot<R> {
    pub(crate) fingerprint: u64,
    pub(crate) rt: R,
}

impl<G: Gateway> Worker<G> {
    /// Runs `f` on the state of `up`, creating or rebuilding it from `snap` as needed.
    pub(crate) fn with_upstream<T>(
        &self,
        snap: &G,
        up: &UpstreamSet,
        f: impl FnOnce(&mut UpstreamSlot<G::Upstream>) -> T,
    ) -> T {
        let mut slots = self.upstreams.borrow_mut();
        let i = up.metric as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        let fresh = !matches!(&slots[i], Some(s) if s.fingerprint == up.fingerprint);
        if fresh {
            let seed = self.ids.borrow_mut().next_u64();
            let mut rt = snap.upstream_runtime(up, seed);
            let old = slots[i].take();
            // Requests in flight keep counting against the bulkhead across a rebuild, and the
            // endpoints that stayed keep their state (found by address).
            let (inflight, conns) = old.as_ref().map_or((0, 0), |s| (s.inflight, s.conns));
            if let Some(old) = old {
                let map: Vec<Option<usize>> = up
                    .endpoints
                    .iter()
                    .map(|a| old.endpoints.iter().position(|b| b == a))
                    .collect();
                rt.carry_from(old.rt, &map);
            }
            slots[i] = Some(UpstreamSlot {
                fingerprint: up.fingerprint,
                rt,
                inflight,
                conns,
                endpoints: up.endpoints.clone(),
            });
        }
        match slots[i].as_mut() {
            Some(s) => f(s),
            // Filled just above.
            None => unreachable_slot(),
        }
    }

    /// Runs `f` on the state of `up` with the index there of endpoint `i` of the request's
    /// snapshot: an attempt that began before the upstream's state was rebuilt (a reload, an
    /// endpoint change) ends on the endpoint it went to, found by address; nothing is recorded
    /// when that endpoint has left.
    pub(crate) fn with_endpoint<T>(
        &self,
        up: &UpstreamSet,
        i: usize,
        f: impl FnOnce(&mut G::Upstream, usize) -> T,
    ) -> Option<T> {
        let mut slots = self.upstreams.borrow_mut();
        let Some(Some(s)) = slots.get_mut(up.metric as usize) else {
            return None;
        };
        let j = s.index_of(up, i)?;
        Some(f(&mut s.rt, j))
    }

    /// Picks the next endpoint of `up` not in `tried` (both in the request's snapshot's indices)
    /// from the upstream's current state; an endpoint the request's snapshot does not have
    /// (added since) is not offered.
    pub(crate) fn pick_again(
        &self,
        up: &UpstreamSet,
        key: Option<u64>,
        tried: u64,
        now: Instant,
    ) -> Option<usize> {
        let mut slots = self.upstreams.borrow_mut();
        let Some(Some(s)) = slots.get_mut(up.metric as usize) else {
            return None;
        };
        if s.fingerprint == up.fingerprint {
            return s.rt.pick(key, tried, now);
        }
        let mut mapped = 0u64;
        for i in (0..up.endpoints.len().min(64)).filter(|i| tried & (1u64 << i) != 0) {
            if let Some(j) = s.index_of(up, i).filter(|j| *j < 64) {
                mapped |= 1u64 << j;
            }
        }
        let j = s.rt.pick(key, mapped, now)?;
        let addr = s.endpoints.get(j)?;
        up.endpoints.iter().position(|a| a == addr)
    }

    /// Adjusts the bulkhead counts of `up` whatever its fingerprint (they survive rebuilds).
    pub(crate) fn with_upstream_counts(
        &self,
        up: &UpstreamSet,
        f: impl FnOnce(&mut u32, &mut u32),
    ) {
        let mut slots = self.upstreams.borrow_mut();
        if let Some(Some(s)) = slots.get_mut(up.metric as usize) {
            f(&mut s.inflight, &mut s.conns);
        }
    }

    /// A request admitted to `up` ended: it leaves the bulkhead, and the breaker learns how the
    /// upstream did (`upstream_ok`). The breaker judges the upstream, not the client: a request
    /// that never reached it (client gone, refused before sending) is not recorded, except that
    /// a half-open probe which never probed counts as failed (the breaker re-opens rather than
    /// stay stuck). One borrow of the slots, on the request path.
    pub(crate) fn end_request(&self, up: &UpstreamSet, a: Admission, upstream_ok: Option<bool>) {
        let mut slots = self.upstreams.borrow_mut();
        let Some(Some(s)) = slots.get_mut(up.metric as usize) else {
            return;
        };
        s.inflight = s.inflight.saturating_sub(1);
        if s.fingerprint != up.fingerprint {
            return;
        }
        let ok = match upstream_ok {
            Some(ok) => ok,
            None if a.probe => false,
            None => return,
        };
        s.rt.release(a, ok, Instant::now());
    }

    /// Runs `f` on the state of `route`, creating or rebuilding it from `snap` as needed.
    pub(crate) fn with_route<T>(
        &self,
        snap: &G,
        route: &RouteSettings,
        f: impl FnOnce(&mut G::Route) -> T,
    ) -> T {
        let fingerprint = route.fingerprint;
        let mut slots = self.routes.borrow_mut();
        let i = route.metric as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        if !matches!(&slots[i], Some(s) if s.fingerprint == fingerprint) {
            let seed = self.ids.borrow_mut().next_u64();
            slots[i] = Some(RouteSlot {
                fingerprint,
                rt: snap.route_runtime(route, seed),
            });
        }
        match slots[i].as_mut() {
            Some(s) => f(&mut s.rt),
            None => unreachable_slot(),
        }
    }

    /// Runs `f` on the state of `route` if it exists.
    pub(crate) fn with_route_if_present<T>(
        &self,
        route: &RouteSettings,
        f: impl FnOnce(&mut G::Route) -> T,
    ) -> Option<T> {
        let mut slots = self.routes.borrow_mut();
        match slots.get_mut(route.metric as usize) {
            Some(Some(s)) => Some(f(&mut s.rt)),
            _ => None,
        }
    }
}

#[cold]
fn unreachable_slot() -> ! {
    // Both callers fill the slot right before reading it.
    unreachable!("slot filled just before use")
}
