//! One client connection: read a head, plan the request, run the exchange, repeat.
//!
//! The head is parsed in place in the connection's buffer, and everything the exchange needs
//! from it (route, upstream head, framing, keep-alive) is computed in one synchronous step, so the
//! parsed head never lives across an await and the buffer stays free to be lent to the ring.

use super::buffers::BufPool;
use super::downstream::Downstream;
use super::exchange::{exchange, Outcome};
use super::io::{read_append, read_cancelable_until, ReadFail};
use super::observe::finish;
use super::Worker;
use crate::authn::{AuthOutput, AuthVerdict, LimitStage, LimitVerdict};
use crate::codec::{
    normalize_path, parse_request_head, strip_parameters, BodyKind, HopByHop, MAX_HEADERS,
};
use crate::error::Refusal;
use crate::gateway::{Gateway, RequestPaths, RouteSettings, UnderscoreHeaders, UpstreamSet};
use crate::hygiene::{push_header, write_request_head, ForwardContext};
use crate::resilience::{
    cookie_value, key_hash, Admission, Fallback, HashOn, RouteRuntime, UpstreamRuntime,
};
use crate::respond::write_refusal;
use crate::trace::RequestTrace;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one request did, for metrics and the access log (reset per request).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Status sent to the client (0: none).
    pub(crate) status: u16,
    /// Why the gateway answered itself (empty when the upstream answered).
    pub(crate) reason: &'static str,
    /// Request bytes read from the client (head and body).
    pub(crate) bytes_in: u64,
    /// Response bytes written to the client.
    pub(crate) bytes_out: u64,
    /// The endpoint the request went to.
    pub(crate) upstream: Option<SocketAddr>,
    /// When the request was sent upstream.
    pub(crate) upstream_start: Option<Instant>,
    /// Time from sending the request upstream to the end of its response.
    pub(crate) upstream_us: Option<u64>,
    /// Why authentication refused the request (empty otherwise).
    pub(crate) auth_reason: &'static str,
    /// More about `reason` for the access log (an upstream TLS failure's cause), or empty.
    pub(crate) detail: &'static str,
    /// How the upstream did on the last attempt (`None`: never reached), for the breaker.
    pub(crate) upstream_ok: Option<bool>,
}

/// A client connection and its reused buffers.
///
/// `cbuf`, `ubuf` and `wbuf` come from the core's [`BufPool`] while a request is on the
/// connection, and go back to it when the connection waits with nothing buffered (and when it
/// is dropped): an idle connection holds none of them.
pub(crate) struct Conn {
    /// Where the connection's buffers come from.
    pub(crate) bufs: Rc<BufPool>,
    pub(crate) stream: Downstream,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener the connection came in on (its position in the config).
    pub(crate) listener: usize,
    /// The current request's path, normalized.
    pub(crate) npath: Vec<u8>,
    /// The normalized path without `;parameters` (what routes match), when it had some.
    pub(crate) mpath: Vec<u8>,
    /// The current request's ids.
    pub(crate) trace: RequestTrace,
    /// What the current request did.
    pub(crate) tally: Tally,
    /// Method then path of the current request (for the access log), split at `meta_split`.
    pub(crate) meta: Vec<u8>,
    pub(crate) meta_split: usize,
    /// Header lines the gateway adds to the current response.
    pub(crate) extra: Vec<u8>,
    /// A copy of the upstream request (head and inline body) for response-status retries.
    pub(crate) req_copy: Vec<u8>,
    /// What authentication gave the current request.
    pub(crate) auth: AuthOutput,
    /// Header lines policies add to the current response: the `WWW-Authenticate` challenge of
    /// a refusal, the `RateLimit-*` fields (empty when none).
    pub(crate) policy_headers: Vec<u8>,
    /// The current request already waited for authentication once.
    pub(crate) auth_waited: bool,
    /// The current request already waited for a fail-closed rate limit's store once.
    pub(crate) limit_waited: bool,
    /// The current request passed the limits judged before authentication (a plan made again
    /// after a wait does not count it twice).
    pub(crate) limits_before_done: bool,
    /// The client's IP as text, for `X-Forwarded-For`.
    pub(crate) peer_ip: Box<[u8]>,
    /// Bytes read from the client and not yet consumed (the head, body bytes, pipelined requests).
    pub(crate) cbuf: Vec<u8>,
    /// Heads the gateway writes (upstream request head, client response head).
    pub(crate) wbuf: Vec<u8>,
    /// Bytes read from the upstream.
    pub(crate) ubuf: Vec<u8>,
    /// The rewritten upstream path of the current request.
    pub(crate) path: Vec<u8>,
    /// The client opened with the HTTP/2 preface.
    pub(crate) h2c: bool,
    /// The current request is a gRPC call (refusals then carry `grpc-status`).
    pub(crate) grpc: bool,
}

impl Conn {
    /// Takes the read buffer from the pool (when not held).
    pub(crate) fn hold_read_buffer(&mut self) {
        if self.cbuf.capacity() == 0 {
            self.cbuf = self.bufs.take();
        }
    }

    /// Takes the connection's buffers from the pool (those it does not hold).
    pub(crate) fn hold_buffers(&mut self) {
        super::buffers::hold(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
    }

    /// Gives the buffers back to the pool while the connection waits with nothing buffered, and
    /// lets go of what per-request scratch grew past its usual size.
    pub(crate) fn release_buffers(&mut self) {
        super::buffers::release(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
        self.req_copy = Vec::new();
        for v in [
            &mut self.path,
            &mut self.extra,
            &mut self.meta,
            &mut self.policy_headers,
        ] {
            v.clear();
            v.shrink_to(SCRATCH_KEPT);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        super::buffers::release(&self.bufs, [&mut self.cbuf, &mut self.ubuf, &mut self.wbuf]);
    }
}

/// Bytes of per-request scratch (path, extra header lines) an idle connection keeps.
const SCRATCH_KEPT: usize = 256;

/// What the exchange needs to know about the current request.
pub(crate) struct Plan<'s> {
    pub(crate) head_len: usize,
    pub(crate) body: BodyKind,
    pub(crate) keep_alive: bool,
    pub(crate) http10: bool,
    pub(crate) expect_continue: bool,
    pub(crate) idempotent: bool,
    pub(crate) is_head: bool,
    pub(crate) route: &'s RouteSettings,
    pub(crate) endpoint: SocketAddr,
    /// Index of `endpoint` in the upstream's endpoints.
    pub(crate) endpoint_index: usize,
    /// The upstream (the route's, or the split backend chosen).
    pub(crate) upstream: &'s UpstreamSet,
    /// The upstream's admission of this request (breaker).
    pub(crate) admission: Admission,
    /// The request's consistent-hash key.
    pub(crate) key: Option<u64>,
    /// The request may be retried on another endpoint (idempotent, or carries the route's
    /// idempotency key header).
    pub(crate) retry_ok: bool,
    /// Metric id of the upstream.
    pub(crate) upstream_metric: u32,
    /// When the head was parsed.
    pub(crate) start: Instant,
    /// A WebSocket upgrade the upstream is asked for.
    pub(crate) websocket: bool,
    /// The client's `grpc-timeout`, if it sent one.
    pub(crate) grpc_timeout: Option<Duration>,
}

enum Step<'s> {
    Go(Plan<'s>),
    NeedMore,
    /// Answer with a gateway-made response; when it does not close, `consumed` bytes (the
    /// bodiless request's head) are dropped from the buffer and the connection goes on.
    Refuse {
        r: Refusal,
        consumed: usize,
        /// The request was HTTP/1.0 (a kept connection must then be announced).
        http10: bool,
        /// The route, when the request matched one.
        route: Option<&'s RouteSettings>,
        /// The route's own response to give instead (breaker open).
        fallback: Option<&'s Fallback>,
    },
    /// Authentication (or a fail-closed rate limit, `limits`) waits for work off the core; plan
    /// again when it is done.
    AuthWait {
        ticket: u64,
        within: Duration,
        limits: bool,
    },
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the buffer starts like the HTTP/2 preface: `Some(true)` when all of it is there,
/// `Some(false)` when it may still be (more bytes needed), `None` when it is not.
fn h2_preface(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(H2_PREFACE.len());
    (n > 0 && buf[..n] == H2_PREFACE[..n]).then_some(n == H2_PREFACE.len())
}

/// Where a connection is between requests: kept by the request loop across its idle waits.
#[derive(Default)]
struct Progress {
    /// The connection served a request (a wait with nothing buffered is then keep-alive
    /// idleness, not a first head's wait).
    served_any: bool,
    /// When the current head must be complete (set once its wait began).
    header_deadline: Option<Instant>,
    /// The connection just became readable after an idle wait: read now, do not wait again.
    woke: bool,
}

/// The time a head may still take after the request loop's wait: it runs from its first byte
/// between requests, and from the connection's start for a first request (the wait counted
/// against it).
fn head_time_left<G: Gateway>(st: &Progress, w: &Worker<G>) -> Duration {
    match st.header_deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => w.settings.header_timeout,
    }
}

/// What [`serve_active`] hands back to the request loop.
enum Next {
    /// Nothing is buffered: wait for the client's bytes holding no buffer.
    Wait,
    /// The connection is done (closed, failed, or found to be h2c).
    Close,
}

/// Serves `stream` until the client leaves, a timeout passes, an error closes it, or the process
/// stops.
///
/// Returns the socket and the bytes read when a cleartext client opened with the HTTP/2
/// preface (h2c with prior knowledge): the caller serves it as HTTP/2.
///
/// Only the idle wait runs in this future, which every waiting connection's task holds: serving
/// bytes (reading a head, planning, refusing, the exchange) runs in [`serve_active`], boxed,
/// whose state exists only while the connection is active. That box is the one allocation a
/// request costs here (the exchange was boxed on its own before), and requests that follow
/// without an idle wait (pipelined) share it.
pub(crate) async fn serve<G: Gateway>(
    stream: Downstream,
    peer: SocketAddr,
    listener: usize,
    w: &Worker<G>,
) -> Option<(TcpStream, Vec<u8>)> {
    let mut c = Conn {
        bufs: w.bufs.clone(),
        stream,
        peer,
        listener,
        npath: Vec::new(),
        mpath: Vec::new(),
        trace: RequestTrace::default(),
        tally: Tally::default(),
        meta: Vec::new(),
        meta_split: 0,
        extra: Vec::new(),
        req_copy: Vec::new(),
        auth: AuthOutput::default(),
        policy_headers: Vec::new(),
        auth_waited: false,
        limit_waited: false,
        limits_before_done: false,
        peer_ip: peer.ip().to_string().into_bytes().into_boxed_slice(),
        // Taken from the pool when the client's bytes arrive (see `hold_buffers`).
        cbuf: Vec::new(),
        wbuf: Vec::new(),
        ubuf: Vec::new(),
        path: Vec::new(),
        h2c: false,
        grpc: false,
    };
    let mut st = Progress::default();
    loop {
        if c.cbuf.is_empty() && !st.woke {
            // Waiting for a further request is keep-alive idleness; a new connection's first
            // request must come within the header timeout (a connection that never speaks is
            // not held for the idle time).
            let idle = st.served_any;
            let timeout = if idle {
                w.settings.idle_timeout
            } else {
                let d = *st
                    .header_deadline
                    .get_or_insert_with(|| Instant::now() + w.settings.header_timeout);
                d.saturating_duration_since(Instant::now())
            };
            // No early close here when stopping: a response that left before the stop began
            // was sent keep-alive, and its client may be writing its next request right now;
            // closing would answer that request with a reset. The wait serves whatever arrives
            // within the drain grace (with `Connection: close`) and then closes.
            // Nothing buffered: the connection waits for the client's bytes holding no buffer,
            // and takes its buffers once there is something to read.
            c.release_buffers();
            let drain = idle.then_some(&w.drain);
            if c.stream.wait_readable(timeout, drain).await.is_err() {
                // Nothing received: an idle or silent connection, closed silently.
                break;
            }
            // The read buffer only: a client that closed (the common end of a keep-alive
            // connection) costs one buffer for one read, not three.
            c.hold_read_buffer();
            if let Downstream::Plain(s) = &mut c.stream {
                // A cleartext connection's first read runs here, not in the boxed part: a client
                // that closed costs no box (and 10,000 closing at once no 10,000 boxes).
                let cbuf = std::mem::take(&mut c.cbuf);
                let (res, buf) = read_append(s, cbuf, Some(head_time_left(&st, w))).await;
                c.cbuf = buf;
                if res.is_err() {
                    // Nothing received: closed silently.
                    break;
                }
                c.hold_buffers();
            } else {
                st.woke = true;
            }
        }
        match Box::pin(serve_active(&mut c, w, &mut st)).await {
            Next::Wait => {}
            Next::Close => break,
        }
    }
    if c.h2c {
        if let Downstream::Plain(tcp) = std::mem::replace(&mut c.stream, Downstream::Closed) {
            // The bytes read so far go with the socket; the buffer goes back to the pool.
            return Some((tcp, c.cbuf.clone()));
        }
    }
    c.stream.close().await;
    None
}

/// What [`hot_read`] saw.
enum HotRead {
    /// The next request's first bytes.
    Got,
    /// Nothing within the window (or no window): the request loop waits, holding no buffer.
    Quiet,
    /// The client closed, or the read failed.
    Closed,
}

/// After a response on a cleartext keep-alive connection with nothing buffered, waits up to the
/// profile's `hot_read` for the next request with the read buffer posted: a busy client's next
/// request is then one receive, where the readiness wait of the request loop costs a poll and a
/// second receive per request. A quiet connection is let go to that wait when the window ends;
/// the read is cancelled without losing a byte (a receive that completed meanwhile is kept).
async fn hot_read<G: Gateway>(c: &mut Conn, w: &Worker<G>, st: &Progress) -> HotRead {
    let window = w.settings.hot_read;
    let Downstream::Plain(s) = &mut c.stream else {
        return HotRead::Quiet;
    };
    if window.is_zero() || !st.served_any || w.shutdown.is_stopping() {
        return HotRead::Quiet;
    }
    // Only the read buffer waits; the upstream and head buffers go back to the pool (taken
    // again with the bytes), so a connection in its window holds one buffer.
    for b in [&mut c.ubuf, &mut c.wbuf] {
        if b.capacity() > 0 {
            c.bufs.give(std::mem::take(b));
        }
    }
    if c.cbuf.capacity() == 0 {
        c.cbuf = c.bufs.take();
    }
    let cbuf = std::mem::take(&mut c.cbuf);
    let (res, buf) = read_cancelable_until(s, cbuf, monoio::time::sleep(window)).await;
    c.cbuf = buf;
    match res {
        Ok(_) => {
            c.hold_buffers();
            HotRead::Got
        }
        Err(ReadFail::Timeout) => HotRead::Quiet,
        Err(_) => HotRead::Closed,
    }
}

/// Serves what the client sent: reads heads, plans, refuses or runs exchanges, until nothing is
/// buffered (`Next::Wait`) or the connection ends.
async fn serve_active<G: Gateway>(c: &mut Conn, w: &Worker<G>, st: &mut Progress) -> Next {
    loop {
        let mut snap;
        let plan = 'request: loop {
            // Taken when the head is parsed, not when the connection started waiting for it: an
            // idle keep-alive connection must serve its next request on the newest snapshot.
            snap = w.snapshot.borrow_mut().current();
            let step = if !st.served_any
                && w.settings.http2.cleartext
                && matches!(c.stream, Downstream::Plain(_))
            {
                match h2_preface(&c.cbuf) {
                    Some(true) => {
                        c.h2c = true;
                        return Next::Close;
                    }
                    Some(false) => Step::NeedMore,
                    None => plan_request(c, w, &**snap),
                }
            } else {
                plan_request(c, w, &**snap)
            };
            match step {
                Step::Go(p) => break p,
                Step::Refuse {
                    r,
                    consumed,
                    http10,
                    route,
                    fallback,
                } => {
                    let start = Instant::now();
                    let close = r.close || w.shutdown.is_stopping();
                    let sent = match fallback {
                        Some(f) => respond_fallback(c, w, f, r, close, http10).await,
                        None => refuse(c, w, r, close, http10).await,
                    };
                    c.tally.bytes_in = consumed as u64;
                    finish(w, c, route, start);
                    w.gauges.requests.add(1);
                    if !sent || close {
                        return Next::Close;
                    }
                    c.cbuf.drain(..consumed);
                    c.auth_waited = false;
                    c.limit_waited = false;
                    c.limits_before_done = false;
                    st.header_deadline = None;
                    st.served_any = true;
                    continue 'request;
                }
                Step::AuthWait {
                    ticket,
                    within,
                    limits,
                } => {
                    wait_off_core(w, &**snap, ticket, within, limits).await;
                    if limits {
                        c.limit_waited = true;
                    } else {
                        c.auth_waited = true;
                    }
                    continue 'request;
                }
                Step::NeedMore => {}
            }
            if !c.cbuf.is_empty() && c.cbuf.len() == c.cbuf.capacity() {
                // The parser reports 431 at the limit; this guards a buffer smaller than it.
                let r = Refusal::new(431, "request_header_fields_too_large").closing();
                refuse(c, w, r, true, false).await;
                return Next::Close;
            }
            // Any head once its first byte arrived must come within the header timeout.
            let partial = !c.cbuf.is_empty();
            let timeout = if partial {
                let d = *st
                    .header_deadline
                    .get_or_insert_with(|| Instant::now() + w.settings.header_timeout);
                d.saturating_duration_since(Instant::now())
            } else if std::mem::take(&mut st.woke) {
                // Readable after the request loop's wait.
                head_time_left(st, w)
            } else {
                match hot_read(c, w, st).await {
                    HotRead::Got => continue 'request,
                    HotRead::Quiet => return Next::Wait,
                    HotRead::Closed => return Next::Close,
                }
            };
            let cbuf = std::mem::take(&mut c.cbuf);
            let (res, buf) = c.stream.read_append(cbuf, Some(timeout)).await;
            c.cbuf = buf;
            match res {
                Ok(_) => c.hold_buffers(),
                // A timeout with part of a head received is a 408; with nothing received it is
                // an idle connection, closed silently.
                Err(ReadFail::Timeout) if partial => {
                    let partial_bytes = c.cbuf.len() as u64;
                    begin_unparsed(c, w, partial_bytes);
                    let start = Instant::now();
                    refuse(c, w, Refusal::REQUEST_TIMEOUT, true, false).await;
                    finish(w, c, None, start);
                    w.gauges.requests.add(1);
                    return Next::Close;
                }
                Err(_) => return Next::Close,
            }
        };
        w.gauges.inflight.add(1);
        c.auth_waited = false;
        c.limit_waited = false;
        c.limits_before_done = false;
        let outcome = exchange(c, w, &plan).await;
        w.end_request(plan.upstream, plan.admission, c.tally.upstream_ok);
        finish(w, c, Some(plan.route), plan.start);
        w.gauges.inflight.sub(1);
        w.gauges.requests.add(1);
        st.served_any = true;
        st.header_deadline = None;
        if outcome == Outcome::Close {
            return Next::Close;
        }
    }
}

/// Waits for authentication (or a fail-closed rate limit's store, `limits`) working off the core
/// on `ticket`, at most `within`. Polls on the worker's own timer: the answer is produced on
/// another thread, which cannot wake this core's tasks. Only requests that missed a cache get
/// here, so a millisecond's resolution costs nothing in the common case.
async fn wait_off_core<G: Gateway>(
    w: &Worker<G>,
    snap: &G,
    ticket: u64,
    within: Duration,
    limits: bool,
) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let ready = if limits {
            snap.limits_poll(ticket)
        } else {
            let mut slot = w.auth.borrow_mut();
            let state = slot.get_or_insert_with(|| snap.auth_runtime());
            snap.auth_poll(state, ticket)
        };
        if ready {
            break;
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Judges a request by `route`'s rate limits of `stage` (with whether the request already
/// waited for a limit's store). (The connection's fields come apart: the request head borrows
/// its buffer.)
#[allow(clippy::too_many_arguments)]
fn judge_limits<G: Gateway>(
    w: &Worker<G>,
    snap: &G,
    route: &RouteSettings,
    (stage, waited): (LimitStage, bool),
    headers: &[httparse::Header<'_>],
    peer: std::net::IpAddr,
    auth: &AuthOutput,
    out: &mut Vec<u8>,
) -> LimitVerdict {
    if route.rate_limit.is_none() {
        return LimitVerdict::Pass;
    }
    let mut slot = w.limits.borrow_mut();
    let state = slot.get_or_insert_with(|| snap.limits_runtime(w.index));
    snap.rate_limit(state, route, stage, waited, headers, peer, auth, out)
}

/// What a limit verdict stops the plan with: a refusal (made by `refuse`), a wait for the
/// limit's store, or nothing when it passes.
fn limit_stop<'s>(
    verdict: LimitVerdict,
    refuse: impl FnOnce(Refusal) -> Step<'s>,
) -> Option<Step<'s>> {
    match verdict {
        LimitVerdict::Pass => None,
        LimitVerdict::Refuse { status, code } => Some(refuse(Refusal::new(status, code))),
        LimitVerdict::Wait { ticket, within } => Some(Step::AuthWait {
            ticket,
            within,
            limits: true,
        }),
    }
}

/// Parses the buffered head and, when complete, routes it and writes the upstream head.
fn plan_request<'s, G: Gateway>(c: &mut Conn, w: &Worker<G>, snap: &'s G) -> Step<'s> {
    if c.cbuf.is_empty() {
        return Step::NeedMore;
    }
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let req = match parse_request_head(&c.cbuf, &mut hs, &w.settings.limits) {
        Ok(Some(r)) => r,
        Ok(None) => return Step::NeedMore,
        Err(e) => {
            begin_unparsed(c, w, 0);
            return Step::Refuse {
                r: Refusal::from_codec(&e),
                consumed: 0,
                http10: false,
                route: None,
                fallback: None,
            };
        }
    };
    c.tally = Tally {
        bytes_in: req.head_len as u64,
        ..Tally::default()
    };
    let mut grpc_timeout = None;
    c.grpc = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            c.grpc = h.value.starts_with(b"application/grpc");
        } else if h.name.eq_ignore_ascii_case("grpc-timeout") {
            grpc_timeout = crate::respond::parse_grpc_timeout(h.value.trim_ascii());
        }
    }
    if w.settings.trace {
        c.trace.assign(req.headers, &mut w.ids.borrow_mut());
    }
    if w.log.borrow().is_some() {
        c.meta.clear();
        c.meta.extend_from_slice(req.method.as_bytes());
        c.meta_split = c.meta.len();
        c.meta.extend_from_slice(req.path.as_bytes());
    }
    // A refusal keeps the connection only when the request had no body to skip and the client
    // wants to keep it.
    let reusable = req.body == BodyKind::Empty && req.keep_alive;
    let head_len = req.head_len;
    let http10 = req.minor_version == 0;
    let refuse_with = |r: Refusal, route: Option<&'s RouteSettings>| Step::Refuse {
        r: if reusable { r } else { r.closing() },
        consumed: head_len,
        http10,
        route,
        fallback: None,
    };
    let policy = snap.listener_policy(c.listener);
    if let Err(e) = normalize_path(req.path.as_bytes(), &policy.path, &mut c.npath) {
        return refuse_with(Refusal::new(400, e.code()), None);
    }
    if policy.underscores == UnderscoreHeaders::Reject
        && req.headers.iter().any(|h| h.name.contains('_'))
    {
        return refuse_with(Refusal::new(400, "underscore_in_header_name"), None);
    }
    let stripped = strip_parameters(&c.npath, policy.path.merge_slashes, &mut c.mpath);
    let paths = RequestPaths {
        normalized: &c.npath,
        matching: if stripped { &c.mpath } else { &c.npath },
    };
    c.path.clear();
    let routed = match snap.route(&req, paths, &mut c.path) {
        Ok(r) => r,
        Err(r) => return refuse_with(r, None),
    };
    let hop = match HopByHop::from_headers(req.headers) {
        Ok(h) => h,
        Err(e) => {
            return Step::Refuse {
                r: Refusal::from_codec(&e),
                consumed: 0,
                http10,
                route: Some(routed.route),
                fallback: None,
            }
        }
    };
    let route = routed.route;
    c.auth.clear();
    // Limits that need no identity judge the request before authentication, so refused
    // credentials count against them; once only (not again after an authentication wait).
    if !c.limits_before_done {
        c.policy_headers.clear();
        let stage = (LimitStage::BeforeAuth, c.limit_waited);
        let (peer, auth, out) = (c.peer.ip(), &c.auth, &mut c.policy_headers);
        let verdict = judge_limits(w, snap, route, stage, req.headers, peer, auth, out);
        if let Some(stop) = limit_stop(verdict, |r| refuse_with(r, Some(route))) {
            return stop;
        }
        c.limits_before_done = true;
    }
    if route.auth.is_some() {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = {
            let mut slot = w.auth.borrow_mut();
            let state = slot.get_or_insert_with(|| snap.auth_runtime());
            snap.authenticate(
                state,
                route,
                req.headers,
                c.peer.ip(),
                now_unix,
                c.auth_waited,
                &mut c.auth,
            )
        };
        if let AuthVerdict::Wait { ticket, within } = verdict {
            return Step::AuthWait {
                ticket,
                within,
                limits: false,
            };
        }
        if let AuthVerdict::Refuse {
            status,
            code,
            reason,
            challenge,
        } = verdict
        {
            c.tally.auth_reason = reason;
            if let Some(ch) = challenge {
                push_header(&mut c.policy_headers, b"www-authenticate", ch.as_bytes());
            }
            return refuse_with(Refusal::new(status, code), Some(route));
        }
    }
    if let Some(id) = c.stream.identity() {
        client_cert_identity(&mut c.auth, id);
    } else if route.require_client_cert {
        return refuse_with(
            Refusal::new(403, "client_certificate_required"),
            Some(route),
        );
    }
    let stage = (LimitStage::AfterAuth, c.limit_waited);
    let (peer, auth, out) = (c.peer.ip(), &c.auth, &mut c.policy_headers);
    let verdict = judge_limits(w, snap, route, stage, req.headers, peer, auth, out);
    if let Some(stop) = limit_stop(verdict, |r| refuse_with(r, Some(route))) {
        return stop;
    }
    // A WebSocket handshake (RFC 6455 §4.1: a bodiless HTTP/1.1 GET) is passed on as an upgrade;
    // any other upgrade (h2c...) is dropped and the request goes as a plain one.
    let websocket = route.websocket
        && req.upgrade
        && req.method == "GET"
        && req.minor_version == 1
        && req.body == BodyKind::Empty
        && req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        });
    if websocket && w.tunnels.get() >= w.settings.max_tunnels {
        return refuse_with(Refusal::new(503, "tunnel_limit"), Some(route));
    }
    let up = match &route.split {
        None => routed.upstream,
        Some(split) => {
            let forced = split.override_header.as_deref().and_then(|h| {
                let v = req
                    .headers
                    .iter()
                    .find(|x| x.name.eq_ignore_ascii_case(h))?
                    .value;
                split
                    .upstreams
                    .iter()
                    .filter_map(|&i| snap.upstream(i))
                    .find(|u| u.name.as_bytes() == v.trim_ascii())
            });
            match forced {
                Some(u) => u,
                None => {
                    let key = request_key(&split.on, &req, c.peer, c.auth.key)
                        .unwrap_or_else(|| ip_key(c.peer));
                    let pick = w.with_route(snap, route, |r| r.split(key));
                    split
                        .upstreams
                        .get(pick)
                        .and_then(|&i| snap.upstream(i))
                        .unwrap_or(routed.upstream)
                }
            }
        }
    };
    if up.endpoints.is_empty() {
        return refuse_with(Refusal::NO_ENDPOINT, Some(route));
    }
    let key = request_key(&up.hash_on, &req, c.peer, c.auth.key);
    let now = Instant::now();
    let picked = w.with_upstream(snap, up, |s| {
        if up.max_requests.is_some_and(|m| s.inflight >= m) {
            return Err(Refusal::UPSTREAM_OVERLOADED);
        }
        let a = s.rt.admit(now)?;
        match s.rt.pick(key, 0, now) {
            Some(i) if i < up.endpoints.len() => {
                s.inflight += 1;
                Ok((a, i))
            }
            _ => {
                s.rt.release(a, false, now);
                Err(Refusal::NO_ENDPOINT)
            }
        }
    });
    let (admission, endpoint_index) = match picked {
        Ok(p) => p,
        Err(r) => {
            let fallback = if r == Refusal::UPSTREAM_UNAVAILABLE {
                route.fallback.as_ref()
            } else {
                None
            };
            return Step::Refuse {
                r: if reusable { r } else { r.closing() },
                consumed: head_len,
                http10,
                route: Some(route),
                fallback,
            };
        }
    };
    if route.retry.is_some() {
        w.with_route(snap, route, |r| r.record_request(now));
    }
    let endpoint = up.endpoints[endpoint_index];
    let idempotent = matches!(
        req.method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let retry_ok = idempotent
        || route
            .retry
            .as_ref()
            .and_then(|r| r.idempotency_header.as_deref())
            .is_some_and(|h| req.headers.iter().any(|x| x.name.eq_ignore_ascii_case(h)));
    c.wbuf.clear();
    let fwd = ForwardContext {
        client_ip: &c.peer_ip,
        proto: c.stream.proto(),
        host: &up.host,
        endpoint,
        trace: w.settings.trace.then_some(&c.trace),
        extra: &c.auth.headers,
        drop: snap.managed_headers(),
        strip_credential: c.auth.strip_credential,
        upgrade: websocket.then_some("websocket"),
        drop_underscores: policy.underscores == UnderscoreHeaders::Drop,
    };
    write_request_head(&mut c.wbuf, &req, &hop, &c.path, &fwd);
    let m = req.method;
    Step::Go(Plan {
        head_len: req.head_len,
        body: req.body,
        keep_alive: req.keep_alive,
        http10: req.minor_version == 0,
        // An HTTP/1.0 client does not know 100 Continue: its expectation is ignored (RFC 9110
        // §10.1.1) and its body read as it comes.
        expect_continue: req.expect_continue && req.minor_version == 1,
        idempotent,
        is_head: m == "HEAD",
        route,
        endpoint,
        endpoint_index,
        upstream: up,
        admission,
        key,
        retry_ok,
        upstream_metric: up.metric,
        start: Instant::now(),
        websocket,
        grpc_timeout,
    })
}

/// Adds what a verified client certificate says to the request's identity: the id for rate
/// limits, splits and the access log (unless a credential already named one), and the
/// `x-client-cert-*` headers upstream.
fn client_cert_identity(auth: &mut AuthOutput, id: &crate::tls::CertIdentity) {
    if auth.client_id.is_empty() {
        auth.client_id.extend_from_slice(id.id.as_bytes());
    }
    if auth.identity.is_empty() {
        auth.identity.extend_from_slice(id.id.as_bytes());
    }
    if auth.key.is_none() {
        auth.key = Some(key_hash(id.id.as_bytes()));
    }
    push_header(&mut auth.headers, b"x-client-cert-id", id.id.as_bytes());
    push_header(
        &mut auth.headers,
        b"x-client-cert-subject",
        id.subject.as_bytes(),
    );
    if !id.san_list.is_empty() {
        push_header(
            &mut auth.headers,
            b"x-client-cert-san",
            id.san_list.as_bytes(),
        );
    }
}

/// Starts the record of a request whose head could not be parsed (a 400, or a 408 on a partial
/// head): no method, path or client ids, so fresh ids.
fn begin_unparsed<G: Gateway>(c: &mut Conn, w: &Worker<G>, bytes_in: u64) {
    c.grpc = false;
    c.tally = Tally {
        bytes_in,
        ..Tally::default()
    };
    c.meta.clear();
    c.meta_split = 0;
    if w.settings.trace {
        c.trace.assign(&[], &mut w.ids.borrow_mut());
    }
}

/// The consistent-hash key of a request, per `on`.
fn request_key(
    on: &HashOn,
    req: &crate::codec::RequestHead<'_, '_>,
    peer: SocketAddr,
    identity: Option<u64>,
) -> Option<u64> {
    match on {
        HashOn::None => None,
        HashOn::Identity => identity,
        HashOn::ClientIp => Some(ip_key(peer)),
        HashOn::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| key_hash(h.value)),
        HashOn::Cookie(name) => cookie_value(req.headers, name).map(key_hash),
    }
}

fn ip_key(peer: SocketAddr) -> u64 {
    match peer.ip() {
        std::net::IpAddr::V4(a) => key_hash(&a.octets()),
        std::net::IpAddr::V6(a) => key_hash(&a.octets()),
    }
}

/// Answers with a route's fallback response (instead of a refusal `r`, which names the reason in
/// metrics and logs).
async fn respond_fallback<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    f: &Fallback,
    r: Refusal,
    close: bool,
    http10: bool,
) -> bool {
    use crate::respond::push_u64;
    c.wbuf.clear();
    c.wbuf.extend_from_slice(b"HTTP/1.1 ");
    push_u64(&mut c.wbuf, u64::from(f.status));
    c.wbuf.push(b' ');
    c.wbuf
        .extend_from_slice(crate::error::reason_phrase(f.status).as_bytes());
    c.wbuf.extend_from_slice(b"\r\ncontent-type: ");
    c.wbuf.extend_from_slice(f.content_type.as_bytes());
    c.wbuf.extend_from_slice(b"\r\ncontent-length: ");
    push_u64(&mut c.wbuf, f.body.len() as u64);
    c.wbuf.extend_from_slice(b"\r\n");
    if w.settings.trace {
        push_header(&mut c.wbuf, b"x-request-id", c.trace.request_id());
    }
    if close {
        c.wbuf.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        c.wbuf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    c.wbuf.extend_from_slice(b"\r\n");
    c.wbuf.extend_from_slice(&f.body);
    send_made(c, w, f.status, r.code).await
}

/// Sends a gateway-made response (`close` adds `Connection: close`; a kept HTTP/1.0 connection,
/// `http10`, gets `Connection: keep-alive`). Returns whether it was written.
pub(crate) async fn refuse<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    r: Refusal,
    close: bool,
    http10: bool,
) -> bool {
    c.wbuf.clear();
    c.extra.clear();
    if w.settings.trace {
        push_header(&mut c.extra, b"x-request-id", c.trace.request_id());
    }
    c.extra.extend_from_slice(&c.policy_headers);
    c.policy_headers.clear();
    if c.grpc {
        crate::respond::write_grpc_refusal(&mut c.wbuf, &r, close, &c.extra);
    } else {
        write_refusal(&mut c.wbuf, &r, close, http10 && !close, &c.extra);
    }
    send_made(c, w, r.status, r.code).await
}

/// Writes the gateway-made response in `c.wbuf` and records it (`status`, reason `code`).
async fn send_made<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    status: u16,
    code: &'static str,
) -> bool {
    c.tally.status = status;
    c.tally.reason = code;
    let n = c.wbuf.len() as u64;
    let (res, buf) = c
        .stream
        .write_all(std::mem::take(&mut c.wbuf), w.settings.body_io_timeout)
        .await;
    c.wbuf = buf;
    if res.is_ok() {
        c.tally.bytes_out += n;
    }
    res.is_ok()
}
