//! The response body on its way down: relayed as it arrives (by length, chunk by chunk,
//! validated and passed through verbatim or de-chunked for HTTP/1.0, or until the upstream
//! closes), the upstream connection pooled again when it ended cleanly; and a `101` switch to a
//! tunnel.

use crate::codec::{BodyKind, ChunkedDecoder, ChunkedLimits};
use crate::engine::cache::fill as keep;
use crate::engine::io::ops::ReadFail;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::Outcome;
use crate::engine::request::state::{Conn, Plan};
use crate::engine::upstream::request_body::INLINE_BODY_MAX;
use crate::engine::upstream::response::ResponsePlan;
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::hygiene::ClientFraming;
use std::time::{Duration, Instant};

/// Where the response body stands while it is relayed.
struct Relay {
    /// The upstream's chunked body, decoded as it passes (validated, trailers filtered).
    decoder: Option<ChunkedDecoder>,
    /// Bytes still to come of a body of known length.
    remaining: u64,
    /// The whole body was relayed.
    done: bool,
    /// Bytes came after the body (the upstream connection is then not reused).
    extra: bool,
}

impl Relay {
    fn new(r: &ResponsePlan) -> Self {
        Relay {
            decoder: (r.body == BodyKind::Chunked)
                .then(|| ChunkedDecoder::dropping_prohibited_trailers(ChunkedLimits::default())),
            remaining: 0,
            done: false,
            extra: false,
        }
    }

    /// Takes `n` bytes just read into `c.ubuf` from `from`: how many of them go to the client
    /// (for a de-chunked body the payload is put in `c.wbuf` instead).
    fn take(&mut self, c: &mut Conn, r: &ResponsePlan, from: usize) -> Result<usize, ProxyError> {
        let n = c.ubuf.len() - from;
        let in_buf = match r.body {
            BodyKind::Empty => {
                self.done = true;
                0
            }
            BodyKind::Length(_) => {
                let take = (n as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                self.done = self.remaining == 0;
                if keep::keeping(&c.cache) {
                    keep::tee(&mut c.cache, &c.ubuf[from..from + take]);
                }
                take
            }
            BodyKind::Chunked => {
                let d = self
                    .decoder
                    .as_mut()
                    .ok_or_else(|| ProxyError::UpstreamIo(std::io::Error::other("no decoder")))?;
                let input = &c.ubuf[from..];
                let kept = &mut c.cache;
                let prog = if r.framing == ClientFraming::Dechunk {
                    let out = &mut c.wbuf;
                    d.feed_with(input, |data| {
                        keep::tee(kept, data);
                        out.extend_from_slice(data);
                    })
                } else if keep::keeping(kept) {
                    d.feed_with(input, |data| keep::tee(kept, data))
                } else {
                    d.feed(input)
                }
                .map_err(ProxyError::UpstreamProtocol)?;
                self.done = prog.done;
                let s = d.settle(&mut c.ubuf, from, prog);
                self.extra |= c.ubuf.len() > s.next;
                s.write_end - from
            }
            BodyKind::UntilClose => n,
        };
        self.extra |= r.body != BodyKind::Chunked && n > in_buf;
        Ok(in_buf)
    }
}

/// Sends the client head and streams the response body; returns the upstream connection to the
/// pool when the exchange ended cleanly on a reusable connection.
pub(crate) async fn relay_response<G: Gateway>(
    c: &mut Conn,
    w: &Worker<G>,
    p: &Plan<'_>,
    mut up: UpStream,
    r: &ResponsePlan,
) -> Result<(), ProxyError> {
    let t = w.settings.body_io_timeout;
    let mut relay = Relay::new(r);
    if let BodyKind::Length(n) = r.body {
        relay.remaining = n;
    }
    // The body bytes read with the head go with it.
    let in_buf = relay.take(c, r, r.head_len)?;
    if relay.done {
        // Stored (and its waiters released) as soon as the whole body is in, not after a slow
        // client took it.
        keep::complete(&mut c.cache, w);
    }
    send_head(c, r, in_buf, t).await?;
    let total_deadline = p.route.total_timeout.map(|d| p.start + d);
    while !relay.done {
        let t = within_total(t, total_deadline)?;
        c.ubuf.clear();
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
        if r.framing == ClientFraming::Dechunk {
            c.wbuf.clear();
        }
        let in_buf = relay.take(c, r, 0)?;
        if relay.done {
            keep::complete(&mut c.cache, w);
        }
        send_piece(c, r, in_buf, t).await?;
    }
    if r.upstream_keep_alive && !relay.extra && r.body != BodyKind::UntilClose {
        if let Some(ep) = c.tally.upstream {
            w.pool.borrow_mut().checkin(p.upstream.conn_key(ep), up);
        }
    }
    // A body that ended with the upstream's close is not kept (see `fill::on_head`).
    Ok(())
}

/// The time a body read or write may take: the per-operation time, cut by the exchange's total
/// deadline (past it, a timeout).
fn within_total(t: Duration, total: Option<Instant>) -> Result<Duration, ProxyError> {
    match total {
        None => Ok(t),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProxyError::UpstreamTimeout);
            }
            Ok(t.min(left))
        }
    }
}

/// Sends the client head in `c.wbuf`, with the `in_buf` body bytes read with it (in the same
/// write when they are few).
async fn send_head(
    c: &mut Conn,
    r: &ResponsePlan,
    in_buf: usize,
    t: Duration,
) -> Result<(), ProxyError> {
    let body_start = r.head_len;
    let dechunk = r.framing == ClientFraming::Dechunk;
    if !dechunk && in_buf <= INLINE_BODY_MAX {
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
    if !dechunk && in_buf > INLINE_BODY_MAX {
        let end = body_start + in_buf;
        let (res, buf) = c
            .stream
            .write_range(std::mem::take(&mut c.ubuf), body_start, end, t)
            .await;
        c.ubuf = buf;
        res.map_err(ProxyError::ClientIo)?;
        c.tally.bytes_out += in_buf as u64;
    }
    Ok(())
}

/// Sends a piece of the body: the de-chunked payload in `c.wbuf`, or `in_buf` bytes of `c.ubuf`.
async fn send_piece(
    c: &mut Conn,
    r: &ResponsePlan,
    in_buf: usize,
    t: Duration,
) -> Result<(), ProxyError> {
    let dechunk = r.framing == ClientFraming::Dechunk;
    let held = if dechunk { &mut c.wbuf } else { &mut c.ubuf };
    let end = if dechunk { held.len() } else { in_buf };
    let (res, buf) = c.stream.write_range(std::mem::take(held), 0, end, t).await;
    if dechunk {
        c.wbuf = buf;
    } else {
        c.ubuf = buf;
    }
    res.map_err(ProxyError::ClientIo)?;
    c.tally.bytes_out += end as u64;
    Ok(())
}

/// Sends the `101` head in `c.wbuf` to the client, then tunnels both ways until the upgraded
/// connection ends. The client connection closes afterwards.
pub(crate) async fn switch_protocols<G: Gateway>(
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
