//! `stale-while-revalidate`: the request that found its stored response stale (within the
//! window) is answered with it at once, and this core fetches a fresh one in the background: the
//! request is replayed, as a plain `GET` without validators or cache directives, on a connection
//! that has no client (its response goes to the cache only). The replay goes through the same
//! pipeline, admission included (it counts against the route's limits like any request); it
//! holds the key's fetch, so one refresh runs per key per core and stale answers meanwhile do
//! not start more.

use super::pending::Fetch;
use super::state::RefreshJob;
use crate::engine::io::downstream::Downstream;
use crate::engine::request::state::Conn;
use crate::engine::request::stop::Stop;
use crate::engine::upstream::exchange::exchange;
use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use std::net::SocketAddr;
use std::rc::Rc;

/// Starts the background refresh `job` for a request that came from `from` (peer, listener).
pub(crate) fn start<G: Gateway>(w: &Worker<G>, job: RefreshJob, from: (SocketAddr, usize)) {
    let Some(me) = w.me.upgrade() else {
        return;
    };
    monoio::spawn(run(me, job.head, from, job.fetch));
}

async fn run<G: Gateway>(w: Rc<Worker<G>>, head: Vec<u8>, from: (SocketAddr, usize), fetch: Fetch) {
    let mut c = Conn::new(Downstream::Sink, from.0, from.1, w.bufs.clone());
    c.hold_buffers();
    c.cbuf.extend_from_slice(&head);
    c.cache.refresh = true;
    let snap = w.snapshot.borrow_mut().current();
    // Admission may wait off the core (a token's keys, a fail-closed limit's store): wait, and
    // plan again, as a client's request would (a few times at most).
    let mut planned = crate::engine::request::plan(&mut c, &w, &**snap);
    for _ in 0..3 {
        let Err(Stop::Wait(o)) = planned else {
            break;
        };
        crate::engine::request::wait::off_core(&w, &**snap, o).await;
        if o.limits {
            c.admit.limit_waited = true;
        } else {
            c.admit.auth_waited = true;
        }
        planned = crate::engine::request::plan(&mut c, &w, &**snap);
    }
    if let Ok(plan) = planned {
        w.gauges.inflight.add(1);
        let _ = exchange(&mut c, &w, &plan).await;
        w.end_request(plan.upstream, plan.admission, c.tally.upstream_ok);
        w.gauges.inflight.sub(1);
        w.metrics.borrow_mut().cache_refreshes += 1;
    }
    drop(fetch);
}
