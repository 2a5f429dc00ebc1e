//! One HTTP/1.1 client connection (cleartext or TLS; also one HTTP/2 stream, rendered as an
//! HTTP/1.1 exchange): wait for bytes holding no buffer, read a head, run the request pipeline
//! (`request/`), refuse or forward (`upstream/exchange.rs`), record, repeat.
//!
//! The head is parsed in place in the connection's buffer, and everything the exchange needs
//! from it (route, upstream head, framing, keep-alive) is computed in one synchronous step, so the
//! parsed head never lives across an await and the buffer stays free to be lent to the ring.

use crate::engine::io::downstream::Downstream;
use crate::engine::io::ops::{read_append, read_cancelable_until, ReadFail};
use crate::engine::io::stream::ByteStream;
use crate::engine::request::answer::{refuse, respond_fallback};
use crate::engine::request::observe::finish;
use crate::engine::request::parse::begin_unparsed;
use crate::engine::request::state::{Conn, Outcome, Plan};
use crate::engine::request::stop::Stop;
use crate::engine::request::{self, wait};
use crate::engine::upstream::exchange::exchange;
use crate::engine::worker::Worker;
use crate::error::Refusal;
use crate::gateway::Gateway;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    let mut c = Conn::new(stream, peer, listener, w.bufs.clone());
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
                if matches!(c.stream, Downstream::H2(_)) {
                    // An HTTP/2 stream's head is here already (typed, not read): the request
                    // goes on without a read, so it takes all its buffers now.
                    c.hold_buffers();
                }
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
        let plan = loop {
            // Taken when the head is parsed, not when the connection started waiting for it: an
            // idle keep-alive connection must serve its next request on the newest snapshot.
            snap = w.snapshot.borrow_mut().current();
            let planned = if !st.served_any
                && w.settings.http2.cleartext
                && matches!(c.stream, Downstream::Plain(_))
            {
                match h2_preface(&c.cbuf) {
                    Some(true) => {
                        c.h2c = true;
                        return Next::Close;
                    }
                    Some(false) => Err(Stop::NeedMore),
                    None => request::plan(c, w, &**snap),
                }
            } else {
                request::plan(c, w, &**snap)
            };
            match planned {
                Ok(p) => break p,
                Err(Stop::Refuse {
                    r,
                    consumed,
                    http10,
                    route,
                    fallback,
                }) => {
                    let start = Instant::now();
                    let close = r.close || w.shutdown.is_stopping();
                    let sent = match fallback {
                        Some(f) => respond_fallback(c, w, f, r, close, http10).await,
                        None => refuse(c, w, r, close, http10).await,
                    };
                    c.tally.bytes_in = consumed as u64;
                    c.stream.h2_head_done();
                    finish(w, c, route, start);
                    w.gauges.requests.add(1);
                    if !sent || close {
                        return Next::Close;
                    }
                    c.cbuf.drain(..consumed);
                    c.admit.next_request();
                    c.cache.next_request();
                    st.header_deadline = None;
                    st.served_any = true;
                }
                Err(Stop::Cached(mut cached)) => {
                    if let Some(job) = cached.refresh.take() {
                        crate::engine::cache::refresh::start(w, job, (c.peer, c.listener));
                    }
                    let start = Instant::now();
                    let close = !cached.keep_alive || w.shutdown.is_stopping();
                    let a = crate::engine::cache::serve::Answer::of(&cached, close);
                    let sent = crate::engine::cache::serve::send(c, w, &a).await;
                    if let Some(rc) = cached.route.cache.as_ref() {
                        crate::engine::cache::serve::record(w, &rc.zone, a.outcome);
                    }
                    c.tally.bytes_in = cached.consumed as u64;
                    c.stream.h2_head_done();
                    finish(w, c, Some(cached.route), start);
                    w.gauges.requests.add(1);
                    c.cache.next_request();
                    c.admit.next_request();
                    if !sent || close {
                        return Next::Close;
                    }
                    c.cbuf.drain(..cached.consumed);
                    st.header_deadline = None;
                    st.served_any = true;
                }
                Err(Stop::CacheWait(pending, max)) => {
                    pending.wait(max).await;
                    c.cache.waited = true;
                }
                Err(Stop::Wait(o)) => {
                    wait::off_core(w, &**snap, o).await;
                    if o.limits {
                        c.admit.limit_waited = true;
                    } else {
                        c.admit.auth_waited = true;
                    }
                }
                Err(Stop::NeedMore) => {
                    if let Some(next) = read_more(c, w, st).await {
                        return next;
                    }
                }
            }
        };
        // The exchange is awaited here, not in a helper: one future less to poll through on
        // every completion of the request's I/O.
        begin_forward(c, w);
        let outcome = exchange(c, w, &plan).await;
        end_forward(c, w, st, &plan);
        if outcome == Outcome::Close {
            return Next::Close;
        }
    }
}

/// Counts the planned request in flight (its exchange runs next).
fn begin_forward<G: Gateway>(c: &mut Conn, w: &Worker<G>) {
    w.gauges.inflight.add(1);
    c.admit.next_request();
}

/// Records the request whose exchange just ended.
fn end_forward<G: Gateway>(c: &mut Conn, w: &Worker<G>, st: &mut Progress, plan: &Plan<'_>) {
    c.stream.h2_head_done();
    if let (Some(rc), Some(o)) = (plan.route.cache.as_ref(), c.cache.outcome) {
        crate::engine::cache::serve::record(w, &rc.zone, o);
    }
    w.end_request(plan.upstream, plan.admission, c.tally.upstream_ok);
    finish(w, c, Some(plan.route), plan.start);
    w.gauges.inflight.sub(1);
    w.gauges.requests.add(1);
    st.served_any = true;
    st.header_deadline = None;
    c.cache.next_request();
}

/// Reads more of a head (or waits for the next request in the hot-read window). `None`: bytes
/// arrived, plan again; `Some`: what the request loop does next.
async fn read_more<G: Gateway>(c: &mut Conn, w: &Worker<G>, st: &mut Progress) -> Option<Next> {
    if !c.cbuf.is_empty() && c.cbuf.len() == c.cbuf.capacity() {
        // The parser reports 431 at the limit; this guards a buffer smaller than it.
        let r = Refusal::new(431, "request_header_fields_too_large").closing();
        refuse(c, w, r, true, false).await;
        return Some(Next::Close);
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
        return match hot_read(c, w, st).await {
            HotRead::Got => None,
            HotRead::Quiet => Some(Next::Wait),
            HotRead::Closed => Some(Next::Close),
        };
    };
    let cbuf = std::mem::take(&mut c.cbuf);
    let (res, buf) = c.stream.read_append(cbuf, Some(timeout)).await;
    c.cbuf = buf;
    match res {
        Ok(_) => {
            c.hold_buffers();
            None
        }
        // A timeout with part of a head received is a 408; with nothing received it is an idle
        // connection, closed silently.
        Err(ReadFail::Timeout) if partial => {
            let partial_bytes = c.cbuf.len() as u64;
            begin_unparsed(w, &mut c.record(), partial_bytes);
            let start = Instant::now();
            refuse(c, w, Refusal::REQUEST_TIMEOUT, true, false).await;
            finish(w, c, None, start);
            w.gauges.requests.add(1);
            Some(Next::Close)
        }
        Err(_) => Some(Next::Close),
    }
}
