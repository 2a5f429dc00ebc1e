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

use crate::codec::{
    parse_response_head, BodyKind, ChunkedDecoder, ChunkedLimits, HopByHop, ResponseHead,
    MAX_HEADERS,
};
use crate::engine::io::body_deadline::{BodyClock, Wait};
use crate::engine::io::ops::ReadFail;
use crate::engine::request::{
    answer::refuse,
    state::{Conn, Plan},
};
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::hygiene::{push_header, write_response_head, write_switch_head, ClientFraming};
use crate::metrics::{class_of, UpstreamStats};
use crate::resilience::{AttemptOutcome, RouteRuntime, UpstreamRuntime};
use crate::respond::CONTINUE_100;
use std::time::Instant;

/// Bodies up to this size are copied next to their head and sent in one write.
const INLINE_BODY_MAX: usize = 16 * 1024;

/// Whether the client connection goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    KeepAlive,
    Close,
}

/// Where the request body stands.
struct RequestBody {
    /// End of the body in `cbuf` once it is all consumed (the next request starts there).
    end: usize,
    /// The whole body is in `cbuf[head_len..end]`.
    complete: bool,
    /// Bytes still to read from the client (length framing).
    remaining: u64,
    decoder: Option<ChunkedDecoder>,
}

/// What the response head said.
struct ResponsePlan {
    status: u16,
    head_len: usize,
    body: BodyKind,
    framing: ClientFraming,
    upstream_keep_alive: bool,
    client_close: bool,
}

enum HeadFail {
    /// The connection died before any response byte: safe to retry when the request allows.
    BeforeFirstByte(ProxyError),
    Other(ProxyError),
}

/// Runs the exchange for the planned request whose head is in `c.cbuf` and whose upstream head
/// is in `c.wbuf`.
pub(crate) async fn exchange<G: Gateway>(c: &mut Conn, w: &Worker<G>, p: &Plan<'_>) -> Outcome {
    if let Some(max_streams) = p.upstream.h2_streams {
        return crate::engine::upstream::h2::exchange(c, w, p, max_streams).await;
    }
    let mut body = match inspect_body(c, p) {
        Ok(b) => b,
        Err(e) => return fail_before_response(c, w, p, &e, None).await,
    };
    c.tally.bytes_in += (body.end - p.head_len) as u64;
    c.tally.upstream = Some(p.endpoint);
    if !body.complete && p.expect_continue {
        c.ubuf.clear();
        c.ubuf.extend_from_slice(CONTINUE_100);
        let end = c.ubuf.len();
        let (res, buf) = c
            .stream
            .write_range(
                std::mem::take(&mut c.ubuf),
                0,
                end,
                w.settings.body_io_timeout,
            )
            .await;
        c.ubuf = buf;
        if res.is_err() {
            return Outcome::Close;
        }
    }
    let mut clock = BodyClock::new(
        p.start,
        w.settings.body.with_route(p.route),
        (body.end - p.head_len) as u64,
    );
    if let Err(e) = buffer_small_body(c, w, p, &mut body, &mut clock).await {
        return fail_before_response(c, w, p, &e, None).await;
    }
    let inline = body.complete && body.end - p.head_len <= INLINE_BODY_MAX;
    if inline {
        c.wbuf.extend_from_slice(&c.cbuf[p.head_len..body.end]);
    }
    // Only a body held whole in memory can be sent again: a streamed one is gone once sent (and
    // `body` then describes its last piece, not the request).
    let from_memory = body.complete;
    let retry = p.route.retry.as_ref().filter(|_| p.retry_ok && from_memory);
    // A response-status retry needs the request again after the response head overwrote `wbuf`.
    if retry.is_some_and(|r| !r.on_status.is_empty()) {
        c.req_copy.clear();
        c.req_copy.extend_from_slice(&c.wbuf);
    }
    let connect_timeout = p
        .route
        .connect_timeout
        .unwrap_or(w.settings.connect_timeout);
    let mut ep_index = p.endpoint_index;
    let mut endpoint = p.endpoint;
    let mut tried: u64 = bit(ep_index);
    let mut retries = 0u32;
    // The engine's own retry of a pooled connection the upstream closed while idle: once, on a
    // fresh connection to the same endpoint, outside the route's retry budget.
    let mut stale_retry_left = p.idempotent && from_memory;
    let mut fresh_only = false;
    let (up, resp, guard) = loop {
        let pooled = if fresh_only {
            None
        } else {
            w.pool.borrow_mut().checkout(p.upstream.conn_key(endpoint))
        };
        fresh_only = false;
        if pooled.is_none() && over_connection_cap(w, p) {
            return refuse_overloaded(c, w, p, &body).await;
        }
        let reused = pooled.is_some();
        let t_attempt = Instant::now();
        if c.tally.upstream_start.is_none() {
            c.tally.upstream_start = Some(t_attempt);
        }
        c.tally.upstream = Some(endpoint);
        w.with_upstream_if_current(p.upstream, |s| s.rt.started(ep_index));
        // The connection counts against the upstream's cap from its connect to its release.
        let guard = ConnGuard::new(w, p.upstream);
        let mut up = match pooled {
            Some(s) => {
                count(w, p, |u| u.reused += 1);
                s
            }
            None => {
                match UpStream::connect(endpoint, p.upstream.tls.as_ref(), connect_timeout).await {
                    Ok(s) => {
                        count(w, p, |u| u.connects += 1);
                        s
                    }
                    Err(e) => {
                        drop(guard);
                        crate::engine::request::observe::connect_failed(&mut c.tally, w, p, &e);
                        attempt_done(
                            &mut c.tally,
                            w,
                            p,
                            ep_index,
                            AttemptOutcome::ConnectFailed,
                            t_attempt,
                        );
                        let allowed = retry.is_some_and(|r| r.on_connect_failure);
                        if let Some(next) =
                            next_attempt(c, w, p, retry, allowed, &mut retries, &mut tried).await
                        {
                            (ep_index, endpoint) = next;
                            continue;
                        }
                        let end = body.complete.then_some(body.end);
                        return fail_before_response(c, w, p, &ProxyError::Connect(e), end).await;
                    }
                }
            }
        };
        let sent = send_request(c, w, p, &mut up, &mut body, &mut clock, inline).await;
        if let Err(e) = sent {
            if reused && stale_retry_left && matches!(e, ProxyError::UpstreamIo(_)) {
                stale_retry_left = false;
                fresh_only = true;
                drop(guard);
                w.with_upstream_if_current(p.upstream, |s| s.rt.abandoned(ep_index));
                continue;
            }
            if let Some(r) = early_response(c, w, p, &mut up, &body, &e).await {
                attempt_done(
                    &mut c.tally,
                    w,
                    p,
                    ep_index,
                    AttemptOutcome::Response(r.status),
                    t_attempt,
                );
                break (up, r, guard);
            }
            attempt_done(
                &mut c.tally,
                w,
                p,
                ep_index,
                AttemptOutcome::Failed,
                t_attempt,
            );
            if !streamed_now(&e) {
                // Nothing of this attempt is needed any more: let the connection go before
                // the backoff.
                drop(up);
                drop(guard);
                let allowed = retries_failure(retry, &e);
                if let Some(next) =
                    next_attempt(c, w, p, retry, allowed, &mut retries, &mut tried).await
                {
                    (ep_index, endpoint) = next;
                    continue;
                }
            }
            let end = (body.complete && !streamed_now(&e)).then_some(body.end);
            return fail_before_response(c, w, p, &e, end).await;
        }
        match read_response_head(c, w, p, &mut up, false).await {
            Ok(r) => {
                attempt_done(
                    &mut c.tally,
                    w,
                    p,
                    ep_index,
                    AttemptOutcome::Response(r.status),
                    t_attempt,
                );
                // On a retried status the upstream connection is dropped (its body unread) and
                // the request goes to another endpoint if the budget allows; otherwise this
                // response is relayed.
                let allowed = retry.is_some_and(|rs| rs.on_status.contains(&r.status));
                if allowed {
                    if let Some(next) =
                        next_attempt(c, w, p, retry, allowed, &mut retries, &mut tried).await
                    {
                        drop(up);
                        drop(guard);
                        (ep_index, endpoint) = next;
                        continue;
                    }
                }
                break (up, r, guard);
            }
            Err(HeadFail::BeforeFirstByte(_)) if reused && stale_retry_left => {
                stale_retry_left = false;
                fresh_only = true;
                w.with_upstream_if_current(p.upstream, |s| s.rt.abandoned(ep_index));
                continue;
            }
            Err(HeadFail::BeforeFirstByte(e) | HeadFail::Other(e)) => {
                attempt_done(
                    &mut c.tally,
                    w,
                    p,
                    ep_index,
                    AttemptOutcome::Failed,
                    t_attempt,
                );
                drop(up);
                drop(guard);
                let allowed = retries_failure(retry, &e);
                if let Some(next) =
                    next_attempt(c, w, p, retry, allowed, &mut retries, &mut tried).await
                {
                    (ep_index, endpoint) = next;
                    continue;
                }
                let end = body.complete.then_some(body.end);
                return fail_before_response(c, w, p, &e, end).await;
            }
        }
    };
    if resp.status == 101 {
        // The upstream connection stays counted against its cap for the tunnel's life.
        let outcome = switch_protocols(c, w, up, &resp, body.end).await;
        drop(guard);
        return outcome;
    }
    let outcome = relay_response(c, w, p, up, &resp).await;
    drop(guard);
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
    c.cbuf.drain(..body.end.min(c.cbuf.len()));
    match outcome {
        Ok(()) if !resp.client_close => Outcome::KeepAlive,
        _ => Outcome::Close,
    }
}

/// Sends the `101` head in `c.wbuf` to the client, then tunnels both ways until the upgraded
/// connection ends. The client connection closes afterwards.
async fn switch_protocols<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    up: UpStream,
    resp: &ResponsePlan,
    request_end: usize,
) -> Outcome {
    let t = w.settings.body_io_timeout;
    let head_end = c.wbuf.len();
    let (res, buf) = c
        .stream
        .write_range(std::mem::take(&mut c.wbuf), 0, head_end, t)
        .await;
    c.wbuf = buf;
    if res.is_err() {
        return Outcome::Close;
    }
    c.tally.bytes_out += head_end as u64;
    // What each side sent past the handshake already sits in the buffers: it goes first.
    let mut to_client = std::mem::take(&mut c.ubuf);
    to_client.drain(..resp.head_len.min(to_client.len()));
    let mut to_up = std::mem::take(&mut c.cbuf);
    to_up.drain(..request_end.min(to_up.len()));
    // Both buffers now belong to the tunnel, for its life.
    c.bufs.forget();
    c.bufs.forget();
    let cap = w.settings.read_buffer_bytes;
    to_client.reserve(cap.saturating_sub(to_client.len()));
    to_up.reserve(cap.saturating_sub(to_up.len()));
    w.tunnels.set(w.tunnels.get() + 1);
    w.metrics.borrow_mut().tunnels.0 += 1;
    let client = std::mem::replace(
        &mut c.stream,
        crate::engine::io::downstream::Downstream::Closed,
    );
    let timeouts = crate::engine::tunnel::TunnelTimeouts {
        idle: w.settings.tunnel_idle,
        write: t,
        drain: w.settings.drain_timeout,
    };
    let moved = crate::engine::tunnel::run(client, up, to_up, to_client, timeouts, &w.drain).await;
    w.tunnels.set(w.tunnels.get().saturating_sub(1));
    w.metrics.borrow_mut().tunnels.1 += 1;
    c.tally.bytes_in += moved.to_upstream;
    c.tally.bytes_out += moved.to_client;
    Outcome::Close
}

fn bit(i: usize) -> u64 {
    if i < 64 {
        1u64 << i
    } else {
        0
    }
}

/// Records the end of one attempt at endpoint `i` (`latency` measured from `t0`) in the
/// upstream's per-core state, and the outcome in the tally (the breaker judges the last one).
fn attempt_done<G: Gateway>(
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
    w.with_upstream_if_current(p.upstream, |s| s.rt.finished(i, outcome, latency, now));
}

/// The next endpoint to try, after the backoff, when the route retries (`retry`), this kind of
/// failure is `allowed`, attempts are left and the route's budget has room; `None` otherwise.
/// The endpoint joins `tried`, and the request is back in `c.wbuf`.
async fn next_attempt<G: Gateway>(
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
    let next = w.with_upstream_if_current(p.upstream, |s| s.rt.pick(p.key, *tried, now))??;
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
fn retries_failure(retry: Option<&crate::resilience::RetrySettings>, e: &ProxyError) -> bool {
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
fn over_connection_cap<G: Gateway>(w: &Worker<G>, p: &Plan<'_>) -> bool {
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

/// Answers 503 `upstream_overloaded` before anything was sent.
async fn refuse_overloaded<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    body: &RequestBody,
) -> Outcome {
    let end = body.complete.then_some(body.end);
    fail_before_response(c, w, p, &ProxyError::Overloaded, end).await
}

/// Counts a connection to the upstream as in use while it lives in an exchange.
struct ConnGuard<'a, G: Gateway> {
    w: &'a Worker<G>,
    up: &'a crate::gateway::UpstreamSet,
}

impl<'a, G: Gateway> ConnGuard<'a, G> {
    fn new(w: &'a Worker<G>, up: &'a crate::gateway::UpstreamSet) -> Self {
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

/// Reads more of the client's request body into `c.cbuf`: each read within `t` (no progress),
/// the body as a whole within its `clock`. A stall, a missed deadline, an end or an error before
/// the body is complete fails the exchange.
pub(crate) async fn read_client_more(
    c: &mut Conn,
    clock: &mut BodyClock,
    t: std::time::Duration,
) -> Result<(), ProxyError> {
    let wait = clock.wait(t, Instant::now());
    let (limit, late) = match wait {
        Wait::Io(d) => (d, ProxyError::ClientStalled),
        Wait::Deadline(d) => (d, ProxyError::BodyTooSlow),
    };
    if limit.is_zero() {
        return Err(late);
    }
    let before = c.cbuf.len();
    let (res, buf) = c
        .stream
        .read_append(std::mem::take(&mut c.cbuf), Some(limit))
        .await;
    c.cbuf = buf;
    match res {
        Ok(_) => {
            clock.got(c.cbuf.len().saturating_sub(before));
            Ok(())
        }
        Err(ReadFail::Timeout) => Err(late),
        Err(ReadFail::Eof) => Err(ProxyError::ClientIo(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
        Err(ReadFail::Io(e)) => Err(ProxyError::ClientIo(e)),
    }
}

/// Counts into the upstream's metrics (when metrics are on).
#[inline]
pub(crate) fn count<G: Gateway>(w: &Worker<G>, p: &Plan<'_>, f: impl FnOnce(&mut UpstreamStats)) {
    if w.settings.metrics {
        f(w.metrics.borrow_mut().upstream(p.upstream_metric));
    }
}

/// True for failures while sending that leave the client's side of the request in an unknown
/// state: the client's stream failed or broke the framing, or a write timed out (the buffer it
/// was lent went with the cancelled write, and with it any pipelined bytes).
fn streamed_now(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::ClientIo(_)
            | ProxyError::ClientStalled
            | ProxyError::BodyTooSlow
            | ProxyError::Codec(_)
            | ProxyError::BodyTooLarge
            | ProxyError::UpstreamTimeout
    )
}

/// A failed write to the upstream. A timeout is its own cause: the upstream stopped taking the
/// request (504), and the buffer is gone, so nothing can be sent again from it.
fn upstream_write_error(e: std::io::Error) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamIo(e)
    }
}

/// Checks the body against the route's limit and finds how much of it is already buffered.
fn inspect_body(c: &mut Conn, p: &Plan<'_>) -> Result<RequestBody, ProxyError> {
    let buffered = c.cbuf.len() - p.head_len;
    let max = p.route.max_body_bytes;
    match p.body {
        BodyKind::Empty | BodyKind::UntilClose => Ok(RequestBody {
            end: p.head_len,
            complete: true,
            remaining: 0,
            decoder: None,
        }),
        BodyKind::Length(n) => {
            if max.is_some_and(|m| n > m) {
                return Err(ProxyError::BodyTooLarge);
            }
            let have = (buffered as u64).min(n);
            Ok(RequestBody {
                end: p.head_len + have as usize,
                complete: have == n,
                remaining: n - have,
                decoder: None,
            })
        }
        BodyKind::Chunked => {
            let mut d = ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default());
            let prog = d.feed(&c.cbuf[p.head_len..])?;
            if max.is_some_and(|m| d.payload_len() > m) {
                return Err(ProxyError::BodyTooLarge);
            }
            // Unfinished, the body is sent up to its held-back trailer section; finished, up to
            // its end (the trailer section rewritten without prohibited fields).
            let s = d.settle(&mut c.cbuf, p.head_len, prog);
            Ok(RequestBody {
                end: s.write_end,
                complete: prog.done,
                remaining: 0,
                decoder: Some(d),
            })
        }
    }
}

/// Reads a small body of known length whole into `c.cbuf` before any upstream connection is
/// taken (within the body's deadline), so a slow small upload holds none: up to the profile's
/// `buffer_body_bytes` and the buffer's room. Chunked and larger bodies stream as they come.
async fn buffer_small_body<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    body: &mut RequestBody,
    clock: &mut BodyClock,
) -> Result<(), ProxyError> {
    let BodyKind::Length(n) = p.body else {
        return Ok(());
    };
    let fits = n <= w.settings.buffer_body_bytes as u64
        && p.head_len as u64 + n <= c.cbuf.capacity() as u64;
    if body.complete || !fits {
        return Ok(());
    }
    while !body.complete {
        read_client_more(c, clock, w.settings.body_io_timeout).await?;
        let before = body.end;
        *body = inspect_body(c, p)?;
        c.tally.bytes_in += (body.end - before) as u64;
    }
    Ok(())
}

/// Sends the head (with the inline body) and then whatever body is not inline.
async fn send_request<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    body: &mut RequestBody,
    clock: &mut BodyClock,
    inline: bool,
) -> Result<(), ProxyError> {
    let t = w.settings.body_io_timeout;
    let end = c.wbuf.len();
    let (res, buf) = up.write_range(std::mem::take(&mut c.wbuf), 0, end, t).await;
    c.wbuf = buf;
    res.map_err(upstream_write_error)?;
    if inline {
        return Ok(());
    }
    let (res, buf) = up
        .write_range(std::mem::take(&mut c.cbuf), p.head_len, body.end, t)
        .await;
    c.cbuf = buf;
    res.map_err(upstream_write_error)?;
    if body.complete {
        return Ok(());
    }
    stream_request_body(c, w, p, up, body, clock).await
}

/// Streams the rest of the request body from the client to the upstream through `cbuf`.
async fn stream_request_body<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    body: &mut RequestBody,
    clock: &mut BodyClock,
) -> Result<(), ProxyError> {
    let t = w.settings.body_io_timeout;
    let max = p.route.max_body_bytes;
    // Everything buffered so far was body and has been sent.
    c.cbuf.clear();
    loop {
        read_client_more(c, clock, t).await?;
        let n = c.cbuf.len();
        let (take, done) = match body.decoder.as_mut() {
            None => {
                let take = (n as u64).min(body.remaining) as usize;
                body.remaining -= take as u64;
                (take, body.remaining == 0)
            }
            Some(d) => {
                let prog = d.feed(&c.cbuf[..n])?;
                if max.is_some_and(|m| d.payload_len() > m) {
                    return Err(ProxyError::BodyTooLarge);
                }
                (d.settle(&mut c.cbuf, 0, prog).write_end, prog.done)
            }
        };
        c.tally.bytes_in += take as u64;
        let (res, buf) = up
            .write_range(std::mem::take(&mut c.cbuf), 0, take, t)
            .await;
        c.cbuf = buf;
        res.map_err(upstream_write_error)?;
        if done {
            body.end = take;
            body.complete = true;
            return Ok(());
        }
        c.cbuf.clear();
    }
}

/// The response of an upstream that stopped taking the request part way (typically an error
/// status decided from the head, then a close), if it sent one before the connection failed.
///
/// Only a connection failure is worth a look: the answer is then already in the socket's receive
/// queue (a reset still lets queued bytes be read first). A timeout means the upstream stalled,
/// and waiting again for a head would only double the client's wait. The client connection
/// closes after such a response unless its request was wholly read, and the upstream
/// connection is never reused (it did not read the whole request).
async fn early_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    body: &RequestBody,
    e: &ProxyError,
) -> Option<ResponsePlan> {
    if !matches!(e, ProxyError::UpstreamIo(_)) {
        return None;
    }
    let mut r = read_response_head(c, w, p, up, !body.complete).await.ok()?;
    r.upstream_keep_alive = false;
    Some(r)
}

/// Reads the response head (skipping interim 1xx responses) within the route's timeout and
/// writes the client head into `c.wbuf`; `force_close` closes the client connection after it.
async fn read_response_head<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    up: &mut UpStream,
    force_close: bool,
) -> Result<ResponsePlan, HeadFail> {
    let timeout = p
        .route
        .response_timeout
        .unwrap_or(w.settings.response_timeout);
    let mut deadline = Instant::now() + timeout;
    if let Some(total) = p.route.total_timeout {
        deadline = deadline.min(p.start + total);
    }
    if let Some(g) = p.grpc_timeout {
        deadline = deadline.min(p.start + g);
    }
    let max_head = w.settings.limits.max_head_bytes.max(16 * 1024);
    c.ubuf.clear();
    let mut seen_any = false;
    loop {
        if !c.ubuf.is_empty() {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match parse_response_head(&c.ubuf, &mut hs, p.is_head, max_head) {
                Ok(Some(resp)) if (100..200).contains(&resp.status) && resp.status != 101 => {
                    // Interim response (we answered any 100-continue ourselves): drop it.
                    let n = resp.head_len;
                    c.ubuf.drain(..n);
                    continue;
                }
                Ok(Some(resp)) if resp.status == 101 => {
                    let to_websocket = resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("upgrade")
                            && h.value.trim_ascii().eq_ignore_ascii_case(b"websocket")
                    });
                    if !p.websocket || !to_websocket {
                        return Err(HeadFail::Other(ProxyError::UpstreamIo(
                            std::io::Error::other(
                                "upstream switched protocols without a websocket upgrade request",
                            ),
                        )));
                    }
                    count(w, p, |u| u.responses[class_of(101)] += 1);
                    c.tally.status = 101;
                    fill_response_extra(&mut c.extra, &c.trace, &c.tally, w, p);
                    let hop = HopByHop::from_headers(resp.headers)
                        .map_err(|e| HeadFail::Other(ProxyError::UpstreamProtocol(e)))?;
                    c.wbuf.clear();
                    write_switch_head(&mut c.wbuf, &resp, &hop, "websocket", &c.extra);
                    return Ok(ResponsePlan {
                        status: 101,
                        head_len: resp.head_len,
                        body: BodyKind::Empty,
                        framing: ClientFraming::AsIs,
                        upstream_keep_alive: false,
                        client_close: true,
                    });
                }
                Ok(Some(resp)) => {
                    count(w, p, |u| u.responses[class_of(resp.status)] += 1);
                    c.tally.status = resp.status;
                    fill_response_extra(&mut c.extra, &c.trace, &c.tally, w, p);
                    c.extra.extend_from_slice(&c.admit.policy_headers);
                    return client_response(&mut c.wbuf, &c.extra, w, p, &resp, force_close);
                }
                Ok(None) => {}
                Err(e) => return Err(HeadFail::Other(ProxyError::UpstreamProtocol(e))),
            }
            if c.ubuf.len() == c.ubuf.capacity() {
                return Err(HeadFail::Other(ProxyError::UpstreamIo(
                    std::io::Error::other("upstream response head too large"),
                )));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let (res, buf) = up
            .read_append(std::mem::take(&mut c.ubuf), Some(left))
            .await;
        c.ubuf = buf;
        match res {
            Ok(_) => seen_any = true,
            Err(ReadFail::Timeout) => return Err(HeadFail::Other(ProxyError::UpstreamTimeout)),
            Err(ReadFail::Eof) if !seen_any => {
                return Err(HeadFail::BeforeFirstByte(ProxyError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )))
            }
            Err(ReadFail::Io(e)) if !seen_any => {
                return Err(HeadFail::BeforeFirstByte(ProxyError::UpstreamIo(e)))
            }
            Err(ReadFail::Eof) => {
                return Err(HeadFail::Other(ProxyError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                )))
            }
            Err(ReadFail::Io(e)) => return Err(HeadFail::Other(ProxyError::UpstreamIo(e))),
        }
    }
}

/// Fills `c.extra` with the header lines the gateway adds to the response: the request id, and
/// `Server-Timing` when the route asks for it.
pub(crate) fn fill_response_extra<G: Gateway>(
    extra: &mut Vec<u8>,
    trace: &crate::trace::RequestTrace,
    tally: &crate::engine::request::state::Tally,
    w: &Worker<G>,
    p: &Plan<'_>,
) {
    extra.clear();
    if w.settings.trace {
        push_header(extra, b"x-request-id", trace.request_id());
    }
    if p.route.server_timing {
        let total = p.start.elapsed();
        let upstream = tally
            .upstream_start
            .map_or(std::time::Duration::ZERO, |t| t.elapsed());
        let gateway = total.saturating_sub(upstream);
        use std::io::Write as _;
        let _ = write!(
            extra,
            "server-timing: gateway;dur={:.3}, upstream;dur={:.3}\r\n",
            gateway.as_secs_f64() * 1e3,
            upstream.as_secs_f64() * 1e3
        );
    }
}

/// Decides how the final response `resp` reaches the client and writes the client head into
/// `wbuf`, with the gateway's `extra` header lines; `force_close` closes the client connection
/// after it.
fn client_response<G: Gateway>(
    wbuf: &mut Vec<u8>,
    extra: &[u8],
    w: &Worker<G>,
    p: &Plan<'_>,
    resp: &ResponseHead<'_, '_>,
    force_close: bool,
) -> Result<ResponsePlan, HeadFail> {
    let hop = HopByHop::from_headers(resp.headers)
        .map_err(|e| HeadFail::Other(ProxyError::UpstreamProtocol(e)))?;
    let framing = match resp.body {
        BodyKind::Chunked if p.http10 => ClientFraming::Dechunk,
        BodyKind::UntilClose => ClientFraming::UntilClose,
        _ => ClientFraming::AsIs,
    };
    let client_close =
        force_close || !p.keep_alive || framing != ClientFraming::AsIs || w.shutdown.is_stopping();
    // A HEAD response shows the header fields GET would (RFC 9110 §9.3.2), so a chunked
    // resource keeps its (hop-by-hop, hence rewritten) Transfer-Encoding; HTTP/1.0 clients and
    // 204s are never shown one (RFC 9112 §6.1).
    let mut shown = *resp;
    if p.is_head
        && !p.http10
        && resp.status != 204
        && resp
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        shown.body = BodyKind::Chunked;
    }
    wbuf.clear();
    write_response_head(
        wbuf,
        &shown,
        &hop,
        framing,
        client_close,
        p.http10 && !client_close,
        extra,
    );
    Ok(ResponsePlan {
        status: resp.status,
        head_len: resp.head_len,
        body: resp.body,
        framing,
        upstream_keep_alive: resp.keep_alive,
        client_close,
    })
}

/// Sends the client head and streams the response body; returns the upstream connection to the
/// pool when the exchange ended cleanly on a reusable connection.
async fn relay_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    mut up: UpStream,
    r: &ResponsePlan,
) -> Result<(), ProxyError> {
    let t = w.settings.body_io_timeout;
    let avail = c.ubuf.len() - r.head_len;
    let mut decoder = (r.body == BodyKind::Chunked)
        .then(|| ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default()));
    // Bytes after the body in what was read (the connection is then not reused).
    let mut extra = false;
    // How much of what is buffered belongs to the body, and whether that is all of it.
    let (mut in_buf, mut done, mut remaining) = match r.body {
        BodyKind::Empty => (0, true, 0u64),
        BodyKind::Length(n) => {
            let have = (avail as u64).min(n);
            (have as usize, have == n, n - have)
        }
        BodyKind::Chunked => {
            let d = decoder
                .as_mut()
                .ok_or_else(|| ProxyError::UpstreamIo(std::io::Error::other("no decoder")))?;
            let input = &c.ubuf[r.head_len..];
            let prog = if r.framing == ClientFraming::Dechunk {
                let out = &mut c.wbuf;
                d.feed_with(input, |data| out.extend_from_slice(data))
            } else {
                d.feed(input)
            }
            .map_err(ProxyError::UpstreamProtocol)?;
            let s = d.settle(&mut c.ubuf, r.head_len, prog);
            extra = c.ubuf.len() > s.next;
            (s.write_end - r.head_len, prog.done, 0)
        }
        BodyKind::UntilClose => (avail, false, 0),
    };
    extra |= r.body != BodyKind::Chunked && avail > in_buf;
    // Head, plus the buffered body bytes when they are few: one write.
    let body_start = r.head_len;
    if r.framing != ClientFraming::Dechunk && in_buf <= INLINE_BODY_MAX {
        c.wbuf
            .extend_from_slice(&c.ubuf[body_start..body_start + in_buf]);
    }
    let head_end = c.wbuf.len();
    let (res, buf) = c
        .stream
        .write_range(std::mem::take(&mut c.wbuf), 0, head_end, t)
        .await;
    c.wbuf = buf;
    res.map_err(ProxyError::ClientIo)?;
    c.tally.bytes_out += head_end as u64;
    if r.framing != ClientFraming::Dechunk && in_buf > INLINE_BODY_MAX {
        let (res, buf) = c
            .stream
            .write_range(
                std::mem::take(&mut c.ubuf),
                body_start,
                body_start + in_buf,
                t,
            )
            .await;
        c.ubuf = buf;
        res.map_err(ProxyError::ClientIo)?;
        c.tally.bytes_out += in_buf as u64;
    }
    let total_deadline = p.route.total_timeout.map(|d| p.start + d);
    while !done {
        c.ubuf.clear();
        let t = match total_deadline {
            None => t,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ProxyError::UpstreamTimeout);
                }
                t.min(left)
            }
        };
        let (res, buf) = up.read_append(std::mem::take(&mut c.ubuf), Some(t)).await;
        c.ubuf = buf;
        match res {
            Ok(_) => {}
            Err(ReadFail::Eof) if r.body == BodyKind::UntilClose => break,
            Err(ReadFail::Eof) => {
                return Err(ProxyError::UpstreamIo(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Err(ReadFail::Timeout) => return Err(ProxyError::UpstreamTimeout),
            Err(ReadFail::Io(e)) => return Err(ProxyError::UpstreamIo(e)),
        }
        let n = c.ubuf.len();
        in_buf = match (r.body, decoder.as_mut()) {
            (BodyKind::Length(_), _) => {
                let take = (n as u64).min(remaining) as usize;
                remaining -= take as u64;
                done = remaining == 0;
                take
            }
            (BodyKind::Chunked, Some(d)) => {
                let input = &c.ubuf[..n];
                let prog = if r.framing == ClientFraming::Dechunk {
                    c.wbuf.clear();
                    let out = &mut c.wbuf;
                    d.feed_with(input, |data| out.extend_from_slice(data))
                } else {
                    d.feed(input)
                }
                .map_err(ProxyError::UpstreamProtocol)?;
                done = prog.done;
                let s = d.settle(&mut c.ubuf, 0, prog);
                extra |= c.ubuf.len() > s.next;
                s.write_end
            }
            _ => n,
        };
        extra |= r.body != BodyKind::Chunked && n > in_buf;
        if r.framing == ClientFraming::Dechunk {
            let end = c.wbuf.len();
            let (res, buf) = c
                .stream
                .write_range(std::mem::take(&mut c.wbuf), 0, end, t)
                .await;
            c.wbuf = buf;
            res.map_err(ProxyError::ClientIo)?;
            c.tally.bytes_out += end as u64;
        } else {
            let (res, buf) = c
                .stream
                .write_range(std::mem::take(&mut c.ubuf), 0, in_buf, t)
                .await;
            c.ubuf = buf;
            res.map_err(ProxyError::ClientIo)?;
            c.tally.bytes_out += in_buf as u64;
        }
    }
    if r.upstream_keep_alive && !extra && r.body != BodyKind::UntilClose {
        if let Some(ep) = c.tally.upstream {
            w.pool.borrow_mut().checkin(p.upstream.conn_key(ep), up);
        }
    }
    Ok(())
}

/// Answers a failure that happened before any response byte reached the client. When the
/// request's body was fully consumed (`consumed_to` is where it ended) and the client keeps
/// alive, the connection goes on after the error response; otherwise it closes.
pub(crate) async fn fail_before_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    e: &ProxyError,
    consumed_to: Option<usize>,
) -> Outcome {
    if matches!(
        e,
        ProxyError::UpstreamIo(_) | ProxyError::UpstreamTimeout | ProxyError::UpstreamProtocol(_)
    ) {
        count(w, p, |u| u.failures += 1);
    }
    let Some(r) = e.refusal() else {
        return Outcome::Close;
    };
    let keep = !r.close && p.keep_alive && !w.shutdown.is_stopping();
    match consumed_to {
        Some(end) if keep => {
            if refuse(c, w, r, false, p.http10).await {
                c.cbuf.drain(..end.min(c.cbuf.len()));
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        _ => {
            let _ = refuse(c, w, r, true, p.http10).await;
            Outcome::Close
        }
    }
}
