//! An upgraded connection (WebSocket): once the upstream answered `101 Switching Protocols`,
//! the gateway stops reading HTTP and copies bytes both ways until both sides are done.
//!
//! Each side's socket is split into a read half and a write half, so the two directions run as
//! two loops joined in the connection's own task (no spawn, no lock). A TLS side (client or
//! upstream) shares its rustls session between its halves through a `RefCell` borrowed only
//! between awaits. When one direction ends (its source closed), the other peer is told by a
//! half-close (`close_notify` over TLS) and the other direction gets a short grace to finish.
//! Reads wait with cancellable reads, so the idle check never loses a received byte; the tunnel
//! closes after
//! `timeouts.tunnel_idle` without a byte either way.
//!
//! A drain leaves tunnels open until shortly before its deadline; then each direction puts a
//! close frame with status 1001 (going away) into its stream at the next frame boundary (see
//! [`crate::engine::tunnel::wsframe`]) and stops relaying data, the peers get a moment to answer and close, and
//! the tunnel ends before the process does.

pub(crate) mod wsframe;

use crate::engine::drain::DrainSignal;
use crate::engine::io::downstream::Downstream;
use crate::engine::io::ops::{read_cancelable, write_range, ReadFail};
use crate::engine::upstream::stream::UpStream;
use crate::tls::stream::{TlsReadHalf, TlsWriteHalf};
use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use std::cell::Cell;
use std::time::{Duration, Instant};
use wsframe::{going_away, mask_key, FrameTracker};

/// How long the remaining direction may go on once the other ended.
const HALF_CLOSED_GRACE: Duration = Duration::from_secs(5);
/// A waiting read is cancelled and re-armed this often to look at the other direction (the
/// cancel keeps whatever arrived meanwhile).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Bytes a tunnel moved.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moved {
    /// From the client to the upstream.
    pub(crate) to_upstream: u64,
    /// From the upstream to the client.
    pub(crate) to_client: u64,
}

/// The timing knobs of a tunnel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TunnelTimeouts {
    /// Close after this long without a byte either way.
    pub(crate) idle: Duration,
    /// A write making no progress this long ends the tunnel.
    pub(crate) write: Duration,
    /// The process's drain deadline (`timeouts.drain`).
    pub(crate) drain: Duration,
}

/// When a draining tunnel says goodbye, from when the drain began on this worker.
#[derive(Debug, Clone, Copy)]
struct Closing {
    /// Send the 1001 close frames (at each direction's next frame boundary).
    at: Instant,
    /// Stop waiting for the peers and end the tunnel (before the drain's deadline).
    give_up: Instant,
}

impl Closing {
    /// The plan once the drain fired: the close frames a grace before the deadline (a quarter of
    /// it, at most 2 s), the end a quarter of that grace before the deadline (the worker's view of
    /// the drain starts up to one tick after the control thread's).
    fn of(drain: &DrainSignal, deadline: Duration) -> Option<Closing> {
        let fired = drain.fired_at()?;
        let grace = (deadline / 4).min(Duration::from_secs(2));
        let at = fired + deadline.saturating_sub(grace);
        Some(Closing {
            at,
            give_up: at + grace * 3 / 4,
        })
    }
}

/// What one direction of a tunnel is.
#[derive(Clone, Copy)]
struct Direction {
    /// Towards the upstream: a close frame the gateway sends there is masked (it is the client).
    to_upstream: bool,
}

enum Rd {
    Tcp(OwnedReadHalf<TcpStream>),
    Tls(TlsReadHalf),
    /// An HTTP/2 stream's DATA (RFC 8441), with what did not fit the last read.
    H2(h2::RecvStream, bytes::Bytes),
}

enum Wr {
    Tcp(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriteHalf),
    H2(h2::SendStream<bytes::Bytes>),
}

impl Rd {
    async fn read(&mut self, buf: Vec<u8>, wait: Duration) -> (Result<usize, ReadFail>, Vec<u8>) {
        match self {
            Rd::Tcp(r) => read_cancelable(r, buf, wait).await,
            Rd::Tls(r) => r.read_append(buf, wait).await,
            Rd::H2(r, rest) => read_h2(r, rest, buf, wait).await,
        }
    }
}

/// Reads an HTTP/2 stream's data into the spare capacity of `buf` (waiting is drop-safe: a
/// frame stays in the stream until it is taken).
async fn read_h2(
    r: &mut h2::RecvStream,
    rest: &mut bytes::Bytes,
    mut buf: Vec<u8>,
    wait: Duration,
) -> (Result<usize, ReadFail>, Vec<u8>) {
    if rest.is_empty() {
        let next = std::future::poll_fn(|cx| r.poll_data(cx));
        match monoio::time::timeout(wait, next).await {
            Err(_) => return (Err(ReadFail::Timeout), buf),
            Ok(None) => return (Err(ReadFail::Eof), buf),
            Ok(Some(Err(e))) => return (Err(ReadFail::Io(std::io::Error::other(e))), buf),
            Ok(Some(Ok(data))) => {
                let _ = r.flow_control().release_capacity(data.len());
                *rest = data;
            }
        }
    }
    let n = (buf.capacity() - buf.len()).min(rest.len());
    buf.extend_from_slice(&rest.split_to(n));
    if n == 0 {
        return (Err(ReadFail::Timeout), buf);
    }
    (Ok(n), buf)
}

impl Wr {
    async fn write(&mut self, buf: Vec<u8>, t: Duration) -> (std::io::Result<()>, Vec<u8>) {
        let end = buf.len();
        match self {
            Wr::Tcp(w) => write_range(w, buf, 0, end, t).await,
            Wr::Tls(w) => w.write_range(buf, 0, end, t).await,
            Wr::H2(w) => {
                let data = bytes::Bytes::copy_from_slice(&buf);
                let res = crate::engine::h2::stream::send_within_window(w, data, false, t).await;
                (res, buf)
            }
        }
    }

    async fn shutdown(&mut self) {
        match self {
            Wr::Tcp(w) => {
                let _ = w.shutdown().await;
            }
            Wr::Tls(w) => w.shutdown().await,
            Wr::H2(w) => {
                let _ = w.send_data(bytes::Bytes::new(), true);
            }
        }
    }
}

struct Shared {
    /// The last time a byte moved either way.
    last: Cell<Instant>,
    /// When one direction ended.
    half_closed: Cell<Option<Instant>>,
}

/// Copies both ways between `client` and `up` until both directions end or the tunnel idles.
/// `to_up` and `to_client` hold bytes already read from each side (sent first); their
/// capacities are the copy buffers.
pub(crate) async fn run(
    client: Downstream,
    up: UpStream,
    to_up: Vec<u8>,
    to_client: Vec<u8>,
    t: TunnelTimeouts,
    drain: &DrainSignal,
) -> Moved {
    let (cr, cw) = match client {
        Downstream::Plain(s) => {
            let (r, w) = s.into_split();
            (Rd::Tcp(r), Wr::Tcp(w))
        }
        Downstream::Tls(s) => {
            let (r, w) = s.into_split();
            (Rd::Tls(r), Wr::Tls(w))
        }
        Downstream::H2(s) => match s.into_tunnel() {
            Some((r, w)) => (Rd::H2(r, bytes::Bytes::new()), Wr::H2(w)),
            None => return Moved::default(),
        },
        Downstream::Closed | Downstream::Sink => return Moved::default(),
    };
    let (ur, uw) = match up {
        UpStream::Plain(s) => {
            let (r, w) = s.into_split();
            (Rd::Tcp(r), Wr::Tcp(w))
        }
        UpStream::Tls(s) => {
            let (r, w) = s.into_split();
            (Rd::Tls(r), Wr::Tls(w))
        }
    };
    let shared = Shared {
        last: Cell::new(Instant::now()),
        half_closed: Cell::new(None),
    };
    let (to_upstream, to_client) = monoio::join!(
        pump(
            cr,
            uw,
            to_up,
            &shared,
            t,
            (drain, Direction { to_upstream: true })
        ),
        pump(
            ur,
            cw,
            to_client,
            &shared,
            t,
            (drain, Direction { to_upstream: false })
        )
    );
    Moved {
        to_upstream,
        to_client,
    }
}

/// One direction: read from `src`, write to `dst`, until `src` ends, a write fails, the tunnel
/// idles, or a drain's close frame was sent and answered (or its grace ran out). Returns the
/// bytes written.
async fn pump(
    mut src: Rd,
    mut dst: Wr,
    mut buf: Vec<u8>,
    s: &Shared,
    t: TunnelTimeouts,
    (drain, dir): (&DrainSignal, Direction),
) -> u64 {
    let mut moved = 0u64;
    let mut frames = FrameTracker::default();
    // This direction sent its last frame (the gateway's close, or the peer's own).
    let mut finished = false;
    loop {
        let closing = Closing::of(drain, t.drain);
        let now = Instant::now();
        if closing.is_some_and(|c| now >= c.give_up) {
            break;
        }
        let due = !finished && closing.is_some_and(|c| now >= c.at);
        if finished {
            // Nothing may follow a close frame: what still comes is dropped.
            buf.clear();
        }
        if !buf.is_empty() {
            // When closing, only up to the end of the frame in progress.
            let take = if due {
                frames.advance_to_boundary(&buf)
            } else {
                frames.advance(&buf);
                buf.len()
            };
            buf.truncate(take);
            if take > 0 {
                let (res, b) = dst.write(buf, t.write).await;
                buf = b;
                if res.is_err() {
                    break;
                }
                moved += take as u64;
                s.last.set(Instant::now());
            }
            buf.clear();
        }
        if due && frames.closed() {
            finished = true;
        } else if due && frames.at_boundary() {
            let frame = going_away(dir.to_upstream.then(mask_key));
            let (res, b) = dst.write(frame, t.write).await;
            drop(b);
            if res.is_err() {
                break;
            }
            finished = true;
        }
        let mut wait = CHECK_EVERY.min(t.idle);
        if let Some(c) = closing {
            let next = if finished { c.give_up } else { c.at };
            let left = next.saturating_duration_since(Instant::now());
            wait = wait.min(left.max(Duration::from_millis(1)));
        }
        let (res, b) = src.read(buf, wait).await;
        buf = b;
        match res {
            Ok(_) => s.last.set(Instant::now()),
            Err(ReadFail::Timeout) => {
                let quiet = s.last.get().elapsed() >= t.idle;
                let grace_over = s
                    .half_closed
                    .get()
                    .is_some_and(|at| at.elapsed() >= HALF_CLOSED_GRACE);
                if quiet || grace_over {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if s.half_closed.get().is_none() {
        s.half_closed.set(Some(Instant::now()));
    }
    dst.shutdown().await;
    moved
}
