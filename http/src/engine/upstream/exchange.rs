//! One proxied exchange: request to the upstream, response back to the client.
//!
//! The request is sent from memory in one write when its whole body is already buffered (the
//! common small-body case), otherwise its body streams through the connection's bounded buffer.
//! A reused pooled connection may have been closed by the upstream while idle; if such a
//! connection fails before the first response byte, and the request is idempotent and was sent
//! entirely from memory, it is sent once more on a fresh connection. The response body streams
//! back as it arrives: by length, chunk by chunk (validated and passed through verbatim), or until
//! the upstream closes. Framing errors after the response head was sent can only abort. An
//! upstream that answers before taking the whole request body and then drops the connection (an
//! early 413 or 401) has its answer relayed, and the client connection closes behind it.

use crate::engine::io::body_deadline::BodyClock;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::{Conn, Outcome, Plan};
use crate::engine::upstream::attempt::{
    attempt_done, bit, connect_failed, count, next_attempt, over_connection_cap, retries_failure,
    ConnGuard,
};
use crate::engine::upstream::fail::{fail_before_response, refuse_overloaded};
use crate::engine::upstream::relay::{relay_response, switch_protocols};
use crate::engine::upstream::request_body::{
    buffer_small_body, inspect_body, send_request, streamed_now, RequestBody, INLINE_BODY_MAX,
};
use crate::engine::upstream::response::{
    early_response, read_response_head, HeadFail, ResponsePlan,
};
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::resilience::{AttemptOutcome, RetrySettings, UpstreamRuntime};
use crate::respond::CONTINUE_100;
use std::time::Instant;

/// Runs the exchange for the planned request whose head is in `c.cbuf` and whose upstream head
/// is in `c.wbuf`: the body made ready, attempts until one answers (or the request fails), then
/// the response relayed.
pub(crate) async fn exchange<G: Gateway>(c: &mut Conn, w: &Worker<G>, p: &Plan<'_>) -> Outcome {
    if let Some(max_streams) = p.upstream.h2_streams {
        return crate::engine::upstream::h2::exchange(c, w, p, max_streams).await;
    }
    let (mut body, mut clock) = match ready_body(c, w, p).await {
        Ok(b) => b,
        Err(o) => return o,
    };
    // Attempts until one answers, a failure is final, or the retries run out: the "next attempt
    // or fail" decision is made here, once, for every kind of failure. (In this function rather
    // than a helper: one future less to poll through on every completion.)
    let mut a = Attempts::new(c, p, &body);
    let (up, resp, guard) = loop {
        let (allowed, (e, end)) = match attempt(c, w, p, &mut a, &mut body, &mut clock).await {
            Tried::Answered(up, r, guard) => break (up, r, guard),
            Tried::Done(o) => return o,
            Tried::Stale => {
                a.fresh_only = true;
                continue;
            }
            Tried::RetryStatus(up, r, guard) => {
                // The upstream connection is dropped (its body unread) when another attempt
                // is made; otherwise this response is relayed.
                let next = next_attempt(c, w, p, a.retry, true, &mut a.retries, &mut a.tried);
                match next.await {
                    Some(n) => {
                        drop((up, guard));
                        (a.ep_index, a.endpoint) = n;
                        continue;
                    }
                    None => break (up, r, guard),
                }
            }
            Tried::Failed { e, allowed, end } => (allowed, (e, end)),
        };
        let next = next_attempt(c, w, p, a.retry, allowed, &mut a.retries, &mut a.tried);
        if let Some(n) = next.await {
            (a.ep_index, a.endpoint) = n;
            continue;
        }
        if let Some(o) = cache_instead(c, w, p, end.unwrap_or(body.end)).await {
            return o;
        }
        return fail_before_response(c, w, p, &e, end).await;
    };
    let up = match cache_answers(c, w, p, up, &resp, body.end).await {
        Ok(o) => {
            drop(guard);
            return o;
        }
        Err(up) => up,
    };
    if resp.status == 101 {
        // The upstream connection stays counted against its cap for the tunnel's life.
        let outcome = switch_protocols(c, w, up, &resp, body.end).await;
        drop(guard);
        return outcome;
    }
    let outcome = relay_response(c, w, p, up, &resp).await;
    drop(guard);
    relayed(c, w, p, outcome, &resp, body.end)
}

/// The response head from the upstream, on a cached route, may be answered from the cache: a
/// `304` to a validation refreshes the stored response (the upstream connection goes back to the
/// pool), a `5xx` when the stored response may be served stale on error. `Err(up)` hands the
/// connection back when the response is relayed as usual.
async fn cache_answers<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: UpStream,
    resp: &ResponsePlan,
    request_end: usize,
) -> Result<Outcome, UpStream> {
    let validating = c.cache.ticket.as_ref().is_some_and(|t| t.validating);
    if !validating {
        return Err(up);
    }
    if resp.status == 304 {
        let head = &c.ubuf[..resp.head_len.min(c.ubuf.len())];
        let Some(obj) = crate::engine::cache::fill::revalidated(&mut c.cache, w, head) else {
            return Err(up);
        };
        let (inm, ims, get) = match c.cache.ticket.as_ref() {
            Some(t) => (t.if_none_match.clone(), t.if_modified_since.clone(), t.get),
            None => (None, None, true),
        };
        if resp.upstream_keep_alive && c.ubuf.len() == resp.head_len {
            if let Some(ep) = c.tally.upstream {
                w.pool.borrow_mut().checkin(p.upstream.conn_key(ep), up);
            }
        }
        let not_modified = ringgate_cache::conditional::not_modified(
            inm.as_deref(),
            ims.as_deref(),
            obj.etag.as_deref(),
            obj.last_modified.as_deref(),
        );
        let ttl = obj.fresh.lifetime.saturating_sub(obj.fresh.initial_age);
        let a = crate::engine::cache::serve::Answer {
            outcome: ringgate_cache::status::Outcome::Revalidated,
            ttl: ringgate_cache::status::ttl_secs(ttl, true),
            detail: "",
            not_modified,
            head_only: !get,
            close: !p.keep_alive || w.shutdown.is_stopping(),
            http10: p.http10,
            obj,
        };
        return Ok(served(c, w, &a, request_end).await);
    }
    if resp.status >= 500 && crate::engine::cache::stale::stale_if_error(&c.cache).is_some() {
        // The upstream's error response is not read: its connection goes.
        drop(up);
        if let Some(o) = cache_instead(c, w, p, request_end).await {
            return Ok(o);
        }
        return Ok(Outcome::Close);
    }
    Err(up)
}

/// The upstream failed (no response, or a `5xx` one): the stored response answers instead when
/// it may be served stale on error.
async fn cache_instead<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    request_end: usize,
) -> Option<Outcome> {
    let u = crate::engine::cache::stale::stale_if_error(&c.cache)?;
    let a = crate::engine::cache::serve::Answer {
        obj: u.obj,
        outcome: ringgate_cache::status::Outcome::StaleIfError,
        ttl: u.ttl,
        detail: "stale-if-error",
        not_modified: u.not_modified,
        head_only: u.head_only,
        close: !p.keep_alive || w.shutdown.is_stopping(),
        http10: p.http10,
    };
    // The stored response is no longer validated by this request: its fetch ends now.
    c.cache.ticket = None;
    Some(served(c, w, &a, request_end).await)
}

/// Sends a stored response in place of the upstream's, and ends the exchange like a relay does.
async fn served<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    a: &crate::engine::cache::serve::Answer,
    request_end: usize,
) -> Outcome {
    let sent = crate::engine::cache::serve::send(c, w, a).await;
    c.cbuf.drain(..request_end.min(c.cbuf.len()));
    if sent && !a.close {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    }
}

/// Checks the body, answers `Expect: 100-continue`, starts the body's clock and reads a small
/// body whole; the inline body joins the upstream head in `c.wbuf`.
async fn ready_body<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
) -> Result<(RequestBody, BodyClock), Outcome> {
    let mut body = match inspect_body(c, p) {
        Ok(b) => b,
        Err(e) => return Err(fail_before_response(c, w, p, &e, None).await),
    };
    c.tally.bytes_in += (body.end - p.head_len) as u64;
    c.tally.upstream = Some(p.endpoint);
    if !body.complete && p.expect_continue {
        c.ubuf.clear();
        c.ubuf.extend_from_slice(CONTINUE_100);
        let end = c.ubuf.len();
        let t = w.settings.body_io_timeout;
        let (res, buf) = c
            .stream
            .write_range(std::mem::take(&mut c.ubuf), 0, end, t)
            .await;
        c.ubuf = buf;
        if res.is_err() {
            return Err(Outcome::Close);
        }
    }
    let mut clock = BodyClock::new(
        p.start,
        w.settings.body.with_route(p.route),
        (body.end - p.head_len) as u64,
    );
    if let Err(e) = buffer_small_body(c, w, p, &mut body, &mut clock).await {
        return Err(fail_before_response(c, w, p, &e, None).await);
    }
    if body.complete && body.end - p.head_len <= INLINE_BODY_MAX {
        c.wbuf.extend_from_slice(&c.cbuf[p.head_len..body.end]);
    }
    Ok((body, clock))
}

/// Where the attempts of one request stand.
struct Attempts<'r> {
    /// The route's retry settings, when this request may be retried (idempotent or keyed, and
    /// its body held whole in memory: a streamed body is gone once sent).
    retry: Option<&'r RetrySettings>,
    /// The endpoint of the current attempt and its index.
    ep_index: usize,
    endpoint: std::net::SocketAddr,
    /// Endpoints tried (a bit per index).
    tried: u64,
    retries: u32,
    /// The engine's own retry of a pooled connection the upstream closed while idle: once, on a
    /// fresh connection to the same endpoint, outside the route's retry budget.
    stale_retry_left: bool,
    fresh_only: bool,
    /// The body went into `c.wbuf` beside the head (sent in one write).
    inline: bool,
}

/// What one attempt came to.
enum Tried<'a, G: Gateway> {
    /// A response to relay.
    Answered(UpStream, ResponsePlan, ConnGuard<'a, G>),
    /// A response whose status the route retries on (relayed if no attempt is left).
    RetryStatus(UpStream, ResponsePlan, ConnGuard<'a, G>),
    /// A pooled connection the upstream had closed: try again on a fresh one.
    Stale,
    /// The attempt failed; `allowed`: the route retries this kind of failure; `end`: where the
    /// request's body ended when the client's side of it is intact.
    Failed {
        e: ProxyError,
        allowed: bool,
        end: Option<usize>,
    },
    /// Already answered (overloaded): the outcome.
    Done(Outcome),
}

impl<'r> Attempts<'r> {
    /// The attempts of the planned request `p` whose body stands as `body`. A response-status
    /// retry keeps a copy of the request (the response head overwrites `wbuf`).
    fn new(c: &mut Conn, p: &'r Plan<'_>, body: &RequestBody) -> Self {
        let from_memory = body.complete;
        let retry = p.route.retry.as_ref().filter(|_| p.retry_ok && from_memory);
        if retry.is_some_and(|r| !r.on_status.is_empty()) {
            c.req_copy.clear();
            c.req_copy.extend_from_slice(&c.wbuf);
        }
        Attempts {
            retry,
            ep_index: p.endpoint_index,
            endpoint: p.endpoint,
            tried: bit(p.endpoint_index),
            retries: 0,
            stale_retry_left: p.idempotent && from_memory,
            fresh_only: false,
            inline: body.complete && body.end - p.head_len <= INLINE_BODY_MAX,
        }
    }
}

/// One attempt at `a.endpoint`: a connection (pooled or new), the request sent, the response
/// head read.
async fn attempt<'a, G: Gateway>(
    c: &mut Conn,
    w: &'a Worker<G>,
    p: &'a Plan<'_>,
    a: &mut Attempts<'_>,
    body: &mut RequestBody,
    clock: &mut BodyClock,
) -> Tried<'a, G> {
    let pooled = if std::mem::take(&mut a.fresh_only) {
        None
    } else {
        w.pool
            .borrow_mut()
            .checkout(p.upstream.conn_key(a.endpoint))
    };
    if pooled.is_none() && over_connection_cap(w, p) {
        return Tried::Done(refuse_overloaded(c, w, p, body).await);
    }
    let reused = pooled.is_some();
    let t0 = Instant::now();
    if c.tally.upstream_start.is_none() {
        c.tally.upstream_start = Some(t0);
    }
    c.tally.upstream = Some(a.endpoint);
    let i = a.ep_index;
    w.with_endpoint(p.upstream, i, |rt, j| rt.started(j));
    // The connection counts against the upstream's cap from its connect to its release.
    let guard = ConnGuard::new(w, p.upstream);
    let mut up = match pooled {
        Some(s) => {
            count(w, p, |u| u.reused += 1);
            s
        }
        None => match connect(c, w, p, a, t0).await {
            Ok(s) => s,
            Err(e) => {
                let allowed = a.retry.is_some_and(|r| r.on_connect_failure);
                let end = body.complete.then_some(body.end);
                return Tried::Failed { e, allowed, end };
            }
        },
    };
    if let Err(e) = send_request(c, w, p, &mut up, body, clock, a.inline).await {
        if reused && a.stale_retry_left && matches!(e, ProxyError::UpstreamIo(_)) {
            a.stale_retry_left = false;
            w.with_endpoint(p.upstream, i, |rt, j| rt.abandoned(j));
            return Tried::Stale;
        }
        if let Some(r) = early_response(c, w, p, &mut up, body, &e).await {
            attempt_done(
                &mut c.tally,
                w,
                p,
                i,
                AttemptOutcome::Response(r.status),
                t0,
            );
            return Tried::Answered(up, r, guard);
        }
        attempt_done(&mut c.tally, w, p, i, AttemptOutcome::Failed, t0);
        let streamed = streamed_now(&e);
        // A failure that left the client's side in an unknown state is final; otherwise the
        // connection goes before any backoff.
        let allowed = !streamed && retries_failure(a.retry, &e);
        let end = (body.complete && !streamed).then_some(body.end);
        return Tried::Failed { e, allowed, end };
    }
    match read_response_head(c, w, p, &mut up, false).await {
        Ok(r) => {
            attempt_done(
                &mut c.tally,
                w,
                p,
                i,
                AttemptOutcome::Response(r.status),
                t0,
            );
            if a.retry.is_some_and(|rs| rs.on_status.contains(&r.status)) {
                Tried::RetryStatus(up, r, guard)
            } else {
                Tried::Answered(up, r, guard)
            }
        }
        Err(HeadFail::BeforeFirstByte(_)) if reused && a.stale_retry_left => {
            a.stale_retry_left = false;
            w.with_endpoint(p.upstream, i, |rt, j| rt.abandoned(j));
            Tried::Stale
        }
        Err(HeadFail::BeforeFirstByte(e) | HeadFail::Other(e)) => {
            attempt_done(&mut c.tally, w, p, i, AttemptOutcome::Failed, t0);
            let allowed = retries_failure(a.retry, &e);
            let end = body.complete.then_some(body.end);
            Tried::Failed { e, allowed, end }
        }
    }
}

/// A new connection to the attempt's endpoint (within the route's connect timeout); a failure
/// is counted and recorded as the attempt's end.
async fn connect<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    a: &Attempts<'_>,
    t0: Instant,
) -> Result<UpStream, ProxyError> {
    let timeout = p
        .route
        .connect_timeout
        .unwrap_or(w.settings.connect_timeout);
    match UpStream::connect(a.endpoint, p.upstream.tls.as_ref(), timeout).await {
        Ok(s) => {
            count(w, p, |u| u.connects += 1);
            Ok(s)
        }
        Err(e) => {
            connect_failed(&mut c.tally, w, p, &e);
            attempt_done(
                &mut c.tally,
                w,
                p,
                a.ep_index,
                AttemptOutcome::ConnectFailed,
                t0,
            );
            Err(ProxyError::Connect(e))
        }
    }
}

/// Ends an exchange whose response head went out: the upstream's duration recorded, a broken
/// body counted against the upstream and closed with a reset, pipelined bytes kept.
fn relayed<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    outcome: Result<(), ProxyError>,
    resp: &ResponsePlan,
    request_end: usize,
) -> Outcome {
    if let Some(t0) = c.tally.upstream_start {
        let d = t0.elapsed();
        c.tally.upstream_us = Some(d.as_micros() as u64);
        if w.settings.metrics {
            w.metrics
                .borrow_mut()
                .upstream(p.upstream_metric)
                .duration
                .record(d);
        }
    }
    if outcome.as_ref().is_err_and(|e| {
        matches!(
            e,
            ProxyError::UpstreamIo(_)
                | ProxyError::UpstreamTimeout
                | ProxyError::UpstreamProtocol(_)
        )
    }) {
        count(w, p, |u| u.failures += 1);
        c.tally.upstream_ok = Some(false);
    }
    if outcome.is_err() {
        // The response head is out, its body is not complete: the connection closes, and it
        // must close with a reset so that a close-delimited body does not look complete.
        c.stream.reset_on_close();
    }
    // Pipelined bytes after this request's body become the start of the buffer.
    c.cbuf.drain(..request_end.min(c.cbuf.len()));
    match outcome {
        Ok(()) if !resp.client_close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}
