//! The response body on its way down: relayed as it arrives (by length, chunk by chunk,
//! validated and passed through verbatim or de-chunked for HTTP/1.0, or until the upstream
//! closes), the upstream connection pooled again when it ended cleanly; and a `101` switch to a
//! tunnel.

use crate::codec::{BodyKind, ChunkedDecoder, ChunkedLimits};
use crate::engine::io::ops::ReadFail;
use crate::engine::request::state::Outcome;
use crate::engine::request::state::{Conn, Plan};
use crate::engine::upstream::request_body::INLINE_BODY_MAX;
use crate::engine::upstream::response::ResponsePlan;
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::hygiene::ClientFraming;
use std::time::Instant;

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
