//! What a worker records about its requests, and its periodic tick.
//!
//! At the end of every request [`finish`] counts it in the worker's own metrics (plain fields,
//! no lock) and hands an access-log entry to the worker's log writer (a copy into a batch; the
//! JSON is made on the log thread). The [`tick`] task runs every 50 ms beside the connections:
//! it measures the event loop's lag, publishes a copy of the metrics when a scrape asked for one,
//! flushes the access-log batch, sweeps the upstream pool, and turns the process-wide stop flag
//! into the worker-local drain signal that wakes idle keep-alive connections.

use crate::accesslog::AccessEntry;
use crate::engine::request::state::Conn;
use crate::engine::worker::Worker;
use crate::gateway::{Gateway, RouteSettings};
use crate::metrics::{class_of, NO_ROUTE_ID};
use crate::resilience::UpstreamRuntime;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the tick runs.
const TICK: Duration = Duration::from_millis(50);

/// Records the request that just ended on `c`.
pub(crate) fn finish<G: Gateway>(
    w: &Worker<G>,
    c: &Conn,
    route: Option<&RouteSettings>,
    start: Instant,
) {
    let total = start.elapsed();
    let t = &c.tally;
    if w.settings.metrics {
        let mut m = w.metrics.borrow_mut();
        let r = m.route(route.map_or(NO_ROUTE_ID, |r| r.metric));
        if t.status != 0 {
            r.responses[class_of(t.status)] += 1;
        }
        r.duration.record(total);
        if !t.auth_reason.is_empty() {
            m.gateway_response(t.auth_reason, t.status);
        } else if !t.reason.is_empty() {
            m.gateway_response(t.reason, t.status);
        }
    }
    let mut log = w.log.borrow_mut();
    if let Some(log) = log.as_mut() {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let total_us = total.as_micros() as u64;
        let (method, path) = c.meta.split_at(c.meta_split.min(c.meta.len()));
        log.log(&AccessEntry {
            start_unix_micros: now_us.saturating_sub(total_us),
            request_id: if w.settings.trace {
                c.trace.request_id()
            } else {
                b""
            },
            trace_id: if w.settings.trace {
                c.trace.trace_id()
            } else {
                b""
            },
            method,
            path,
            route: route.map_or(&b""[..], |r| r.id.as_bytes()),
            upstream: t.upstream,
            status: t.status,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            total_micros: total_us,
            upstream_micros: t.upstream_us,
            client_ip: c.peer.ip(),
            identity: &c.admit.auth.identity,
            reason: if t.auth_reason.is_empty() {
                t.reason
            } else {
                t.auth_reason
            },
            detail: t.detail,
            worker: w.index as u16,
        });
    }
}

/// Counts a failed connect to the upstream of `p`; a failed TLS handshake also by its reason,
/// which goes to the access log when this was the request's last attempt.
pub(crate) fn connect_failed<G: Gateway>(
    tally: &mut crate::engine::request::state::Tally,
    w: &Worker<G>,
    p: &crate::engine::request::state::Plan<'_>,
    e: &std::io::Error,
) {
    let tls = crate::tls::UpstreamTlsFail::of_io(e);
    crate::engine::upstream::exchange::count(w, p, |u| {
        u.connect_failures += 1;
        if let Some(r) = tls {
            u.tls_failures[r.index()] += 1;
        }
    });
    tally.detail = tls.map_or("", crate::tls::UpstreamTlsFail::as_str);
}

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
                m.conn_buffers = w.bufs.stats();
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
