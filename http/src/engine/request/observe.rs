//! What a worker records about each request: at its end, [`finish`] counts it in the worker's
//! own metrics (plain fields, no lock) and hands an access-log entry to the worker's log writer
//! (a copy into a batch; the JSON is made on the log thread).

use crate::accesslog::AccessEntry;
use crate::engine::request::state::Conn;
use crate::engine::worker::Worker;
use crate::gateway::{Gateway, RouteSettings};
use crate::metrics::{class_of, NO_ROUTE_ID};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
            cache: c.cache.outcome.map_or("", |o| o.word()),
            worker: w.index as u16,
        });
    }
}
