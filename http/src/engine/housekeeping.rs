//! A worker's periodic housekeeping beside its connections: the event loop's lag, the access
//! log's flush, idle pool sweeps, metrics published when scraped, and the per-core side of rate
//! limiting (the reconciler's grants applied, this core's spending reported). The tick also
//! turns the process-wide stop flag into the worker-local drain signal that wakes idle
//! keep-alive connections.

use crate::engine::worker::Worker;
use crate::gateway::Gateway;
use crate::resilience::UpstreamRuntime;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the tick runs.
const TICK: Duration = Duration::from_millis(50);

/// The worker's periodic housekeeping; ends once the worker drained and has no connection left.
pub(crate) async fn tick<G: Gateway>(w: Rc<Worker<G>>) {
    let sweep_every = (w.settings.pool_idle_timeout / 2)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut last_sweep = Instant::now();
    let mut published = 0u64;
    loop {
        let before = Instant::now();
        monoio::time::sleep(TICK).await;
        let now = Instant::now();
        // Timers have 1 ms resolution: lag under a millisecond is rounding, not load.
        let lag_us = now.duration_since(before).saturating_sub(TICK).as_micros() as u64;
        {
            let mut m = w.metrics.borrow_mut();
            m.loop_lag_last_us = lag_us;
            m.loop_lag_max_us = m.loop_lag_max_us.max(lag_us);
        }
        if w.shutdown.is_stopping() {
            w.drain.fire();
        }
        if let Some(l) = w.log.borrow_mut().as_mut() {
            l.flush();
        }
        if now.duration_since(last_sweep) >= sweep_every {
            w.pool.borrow_mut().sweep();
            w.h2up.borrow_mut().sweep(w.settings.pool_idle_timeout);
            last_sweep = now;
        }
        let want = w.hub.wanted();
        if want > published {
            let copy = {
                let pool = w.pool.borrow();
                let mut m = w.metrics.borrow_mut();
                for (id, slot) in w.upstreams.borrow().iter().enumerate() {
                    if let Some(s) = slot {
                        let u = m.upstream(id as u32);
                        u.breaker_transitions = s.rt.breaker_transitions();
                        u.breaker_open = u64::from(s.rt.breaker_state(now) == "open");
                        u.ejected = s.rt.ejected(now) as u64;
                    }
                }
                m.pool = pool.stats();
                m.pool_idle = pool.idle_count() as u64;
                m.h2_upstream_open = w.h2up.borrow().open() as u64;
                m.conn_buffers = w.bufs.stats();
                w.caches.borrow().each(|zone, store| {
                    let z = m.cache_zone(zone);
                    let st = store.stats();
                    z.bytes = store.bytes() as u64;
                    z.objects = store.objects() as u64;
                    z.evictions = st.evictions;
                    z.purged = st.purged;
                    z.too_large = st.too_large;
                });
                let copy = m.clone();
                m.loop_lag_max_us = 0;
                copy
            };
            w.hub.publish(w.index, want, copy);
            published = want;
        }
        if w.drain.fired() && w.gauges.connections.get() == 0 && w.gauges.inflight.get() == 0 {
            return;
        }
    }
}

/// The per-core side of rate limiting: apply the reconciler's grants and report this core's
/// spending once per reconcile tick (the only place a core touches the channels, so the request
/// path never does). Idle until a limited route was used on this core.
pub(crate) async fn limits_tick<G: Gateway>(w: Rc<Worker<G>>) {
    loop {
        let next = {
            let snap = w.snapshot.borrow_mut().current();
            let mut slot = w.limits.borrow_mut();
            match slot.as_mut() {
                Some(st) => snap.limits_tick(st),
                None => Duration::from_millis(100),
            }
        };
        monoio::time::sleep(next).await;
        if w.drain.fired() && w.gauges.connections.get() == 0 && w.gauges.inflight.get() == 0 {
            // A last report, so what this core spent is billed.
            let snap = w.snapshot.borrow_mut().current();
            if let Some(st) = w.limits.borrow_mut().as_mut() {
                snap.limits_tick(st);
            }
            return;
        }
    }
}
