//! The request body on its way up: checked against the route's limit, read whole first when it
//! is small and of known length (so a slow small upload holds no upstream connection), sent
//! with the head in one write when it is all buffered, else streamed through the connection's
//! buffer under the body's deadline.

use crate::codec::{BodyKind, ChunkedDecoder, ChunkedLimits};
use crate::engine::io::body_deadline::{BodyClock, Wait};
use crate::engine::io::ops::ReadFail;
use crate::engine::io::stream::ByteStream;
use crate::engine::request::state::{Conn, Plan};
use crate::engine::upstream::stream::UpStream;
use crate::engine::worker::Worker;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use std::time::Instant;

/// Bodies up to this size are copied next to their head and sent in one write.
pub(crate) const INLINE_BODY_MAX: usize = 16 * 1024;

/// Where the request body stands.
pub(crate) struct RequestBody {
    /// End of the body in `cbuf` once it is all consumed (the next request starts there).
    pub(crate) end: usize,
    /// The whole body is in `cbuf[head_len..end]`.
    pub(crate) complete: bool,
    /// Bytes still to read from the client (length framing).
    pub(crate) remaining: u64,
    pub(crate) decoder: Option<ChunkedDecoder>,
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

/// True for failures while sending that leave the client's side of the request in an unknown
/// state: the client's stream failed or broke the framing, or a write timed out (the buffer it
/// was lent went with the cancelled write, and with it any pipelined bytes).
pub(crate) fn streamed_now(e: &ProxyError) -> bool {
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
pub(crate) fn upstream_write_error(e: std::io::Error) -> ProxyError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamIo(e)
    }
}

/// Checks the body against the route's limit and finds how much of it is already buffered.
pub(crate) fn inspect_body(c: &mut Conn, p: &Plan<'_>) -> Result<RequestBody, ProxyError> {
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
pub(crate) async fn buffer_small_body<G: Gateway>(
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
pub(crate) async fn send_request<G: Gateway>(
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
pub(crate) async fn stream_request_body<G: Gateway>(
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
