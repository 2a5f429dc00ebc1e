//! One attempt's bookkeeping and the choice of the next: the attempt's end recorded for the
//! balancer, outlier detection and the breaker; retry eligibility, the route's retry budget and
//! backoff; the upstream's per-core connection cap; the upstream's counters.

use crate::engine::request::state::{Conn, Plan, Tally};
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::metrics::UpstreamStats;
use crate::resilience::{AttemptOutcome, RouteRuntime, UpstreamRuntime};
use std::time::Instant;

pub(crate) fn bit(i: usize) -> u64 {
    if i < 64 {
        1u64 << i
    } else {
        0
    }
}

/// Records the end of one attempt at endpoint `i` (`latency` measured from `t0`) in the
/// upstream's per-core state, and the outcome in the tally (the breaker judges the last one).
pub(crate) fn attempt_done<G: Gateway>(
    tally: &mut crate::engine::request::state::Tally,
    w: &Worker<G>,
    p: &Plan<'_>,
    i: usize,
    outcome: AttemptOutcome,
    t0: Instant,
) {
    let now = Instant::now();
    let latency = now.duration_since(t0);
    tally.upstream_ok = Some(!outcome.is_error());
    w.with_endpoint(p.upstream, i, |rt, j| rt.finished(j, outcome, latency, now));
}

/// The next endpoint to try, after the backoff, when the route retries (`retry`), this kind of
/// failure is `allowed`, attempts are left and the route's budget has room; `None` otherwise.
/// The endpoint joins `tried`, and the request is back in `c.wbuf`.
pub(crate) async fn next_attempt<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    retry: Option<&crate::resilience::RetrySettings>,
    allowed: bool,
    retries: &mut u32,
    tried: &mut u64,
) -> Option<(usize, std::net::SocketAddr)> {
    let rs = retry.filter(|_| allowed)?;
    if *retries >= rs.attempts {
        return None;
    }
    let now = Instant::now();
    let next = w.pick_again(p.upstream, p.key, *tried, now)?;
    let ep = *p.upstream.endpoints.get(next)?;
    if !w.with_route_if_present(p.route, |r| r.try_retry(now))? {
        return None;
    }
    *retries += 1;
    count(w, p, |u| u.retries += 1);
    let pause = w.with_route_if_present(p.route, |r| r.backoff(*retries))?;
    if !pause.is_zero() {
        monoio::time::sleep(pause).await;
    }
    *tried |= bit(next);
    // A response head may have replaced the request in `wbuf` (status retries keep a copy).
    if !rs.on_status.is_empty() {
        c.wbuf.clear();
        c.wbuf.extend_from_slice(&c.req_copy);
    }
    Some((next, ep))
}

/// Whether the route retries failure `e`: a timeout, or a reset/close before any response byte.
pub(crate) fn retries_failure(
    retry: Option<&crate::resilience::RetrySettings>,
    e: &ProxyError,
) -> bool {
    retry.is_some_and(|r| {
        if matches!(e, ProxyError::UpstreamTimeout) {
            r.on_timeout
        } else {
            r.on_reset
        }
    })
}

/// Whether opening one more connection to the upstream would pass its per-core cap. At the cap,
/// an idle pooled connection of the upstream (to any endpoint) is closed to make room first.
pub(crate) fn over_connection_cap<G: Gateway>(w: &Worker<G>, p: &Plan<'_>) -> bool {
    let Some(max) = p.upstream.max_connections else {
        return false;
    };
    let mut in_use = 0u32;
    w.with_upstream_counts(p.upstream, |_, conns| in_use = *conns);
    let mut pool = w.pool.borrow_mut();
    let idle: usize = p
        .upstream
        .endpoints
        .iter()
        .map(|e| pool.idle_for(p.upstream.conn_key(*e)))
        .sum();
    if u64::from(in_use) + idle as u64 >= u64::from(max) {
        let transport = p.upstream.conn_key(p.endpoint).transport;
        return !(idle > 0 && pool.evict_one_of(&p.upstream.endpoints, transport));
    }
    false
}

/// Counts a connection to the upstream as in use while it lives in an exchange.
pub(crate) struct ConnGuard<'a, G: Gateway> {
    pub(crate) w: &'a Worker<G>,
    pub(crate) up: &'a crate::gateway::UpstreamSet,
}

impl<'a, G: Gateway> ConnGuard<'a, G> {
    pub(crate) fn new(w: &'a Worker<G>, up: &'a crate::gateway::UpstreamSet) -> Self {
        w.with_upstream_counts(up, |_, conns| *conns += 1);
        Self { w, up }
    }
}

impl<G: Gateway> Drop for ConnGuard<'_, G> {
    fn drop(&mut self) {
        self.w
            .with_upstream_counts(self.up, |_, conns| *conns = conns.saturating_sub(1));
    }
}

/// Counts into the upstream's metrics (when metrics are on).
#[inline]
pub(crate) fn count<G: Gateway>(w: &Worker<G>, p: &Plan<'_>, f: impl FnOnce(&mut UpstreamStats)) {
    if w.settings.metrics {
        f(w.metrics.borrow_mut().upstream(p.upstream_metric));
    }
}

/// Counts a failed connect to the upstream of `p`; a failed TLS handshake also by its reason,
/// which goes to the access log when this was the request's last attempt.
pub(crate) fn connect_failed<G: Gateway>(
    tally: &mut Tally,
    w: &Worker<G>,
    p: &Plan<'_>,
    e: &std::io::Error,
) {
    let tls = crate::tls::UpstreamTlsFail::of_io(e);
    count(w, p, |u| {
        u.connect_failures += 1;
        if let Some(r) = tls {
            u.tls_failures[r.index()] += 1;
        }
    });
    tally.detail = tls.map_or("", crate::tls::UpstreamTlsFail::as_str);
}
