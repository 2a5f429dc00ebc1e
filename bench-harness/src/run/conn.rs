//! One generator connection: a non-blocking std socket registered with the thread's epoll, its
//! buffers, the response reader and the request in flight. No pipelining: one request at a time
//! per connection, like wrk2 and oha, so a slow response never hides another's send time.
//!
//! Over `https://` the connection also owns a rustls `ClientConnection` ([`Conn::tls`]); reads
//! and writes then go through [`super::tls`], which hands the same plaintext to the same buffers,
//! so the response reader cannot tell the difference. Each I/O call branches once on that
//! `Option`, so the plaintext path does no extra work.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConnection;

use super::tls;
use crate::http1::response::ResponseReader;

/// Read buffer per connection; response bodies stream through it.
const READ_BUF: usize = 64 * 1024;

/// Most bytes one connection writes per loop turn, so a 10 MiB upload interleaves with the
/// schedule instead of holding the loop for milliseconds (level-triggered `EPOLLOUT` brings the
/// connection back on the next turn).
const WRITE_TURN: usize = 256 * 1024;

/// Most bytes one connection reads per loop turn, for the same reason (level-triggered `EPOLLIN`).
pub const READ_TURN: usize = 256 * 1024;

/// The request a connection is carrying.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    /// When it was due.
    pub intended: Instant,
    /// When it was written.
    pub sent: Instant,
    /// First response byte.
    pub first_byte: Option<Instant>,
    /// Index of its kind in the plan.
    pub kind: u16,
    /// Inside the measured window.
    pub measured: bool,
    /// HEAD request.
    pub head_only: bool,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug)]
pub enum State {
    /// Non-blocking connect under way since then.
    Connecting(Instant),
    /// TCP is up and the TLS handshake is under way; not yet usable for requests.
    Handshaking {
        /// When the connect started.
        started: Instant,
        /// When TCP was connected (the handshake's start).
        tcp_done: Instant,
    },
    /// Open, nothing in flight.
    Idle,
    /// Carrying a request.
    Busy(InFlight),
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket (non-blocking).
    pub sock: TcpStream,
    /// Life stage.
    pub state: State,
    /// Frames responses.
    pub reader: ResponseReader,
    /// Received bytes not yet framed are `rbuf[..rlen]`.
    pub rbuf: Box<[u8]>,
    /// Filled length of `rbuf`.
    pub rlen: usize,
    /// The request being written; `wbuf[wpos..]` is still unsent.
    pub wbuf: Vec<u8>,
    /// Sent prefix of `wbuf`.
    pub wpos: usize,
    /// A large request body shared with the plan, sent after `wbuf`; `body[bpos..]` is unsent.
    pub body: Option<Arc<[u8]>>,
    /// Sent prefix of `body`.
    pub bpos: usize,
    /// Requests completed on this connection (a reused connection may be stale).
    pub served: u64,
    /// TLS state for `https://` targets (boxed: the plaintext path keeps a small `Conn`).
    pub tls: Option<Box<ClientConnection>>,
    /// When the connect started.
    pub opened: Instant,
    /// How long connect (and TLS handshake) took, once the connection is usable.
    pub setup_ns: u64,
}

impl Conn {
    /// Starts a non-blocking connect to `addr`.
    pub fn connect(addr: SocketAddr, now: Instant) -> io::Result<Self> {
        let domain = socket2::Domain::for_address(addr);
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        match s.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            sock: s.into(),
            state: State::Connecting(now),
            reader: ResponseReader::default(),
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            rlen: 0,
            wbuf: Vec::with_capacity(1024),
            wpos: 0,
            body: None,
            bpos: 0,
            served: 0,
            tls: None,
            opened: now,
            setup_ns: 0,
        })
    }

    /// The raw fd (for epoll).
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// The result of a finished non-blocking connect.
    pub fn connect_result(&self) -> io::Result<()> {
        match self.sock.take_error()? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes as much of the pending request (head, then a large body) as the socket takes, at
    /// most [`WRITE_TURN`] bytes of body per call; `Ok(true)` when all is sent (over TLS: every
    /// record of it is on the socket).
    pub fn write_pending(&mut self) -> io::Result<bool> {
        if !self.write_head()? {
            return Ok(false);
        }
        let Some(body) = self.body.clone() else {
            return Ok(true);
        };
        let end = body.len().min(self.bpos + WRITE_TURN);
        let (mut pos, sock) = (self.bpos, &self.sock);
        let part_done = match self.tls.as_deref_mut() {
            Some(t) => tls::write(t, sock, &body[..end], &mut pos)?,
            None => write_plain(sock, &body[..end], &mut pos)?,
        };
        self.bpos = pos;
        Ok(part_done && self.bpos == body.len())
    }

    /// Writes the rendered head (and small body) in `wbuf`.
    fn write_head(&mut self) -> io::Result<bool> {
        match self.tls.as_deref_mut() {
            Some(t) => tls::write(t, &self.sock, &self.wbuf, &mut self.wpos),
            None => write_plain(&self.sock, &self.wbuf, &mut self.wpos),
        }
    }

    /// Reads into the free part of the buffer. `Ok(None)`: nothing available now; `Ok(Some(0))`:
    /// end of file.
    pub fn read_some(&mut self) -> io::Result<Option<usize>> {
        if self.rlen == self.rbuf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        if let Some(t) = self.tls.as_deref_mut() {
            let n = tls::read(t, &self.sock, &mut self.rbuf[self.rlen..])?;
            self.rlen += n.unwrap_or(0);
            return Ok(n);
        }
        loop {
            match (&self.sock).read(&mut self.rbuf[self.rlen..]) {
                Ok(n) => {
                    self.rlen += n;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the first `used` bytes of the read buffer.
    pub fn consume(&mut self, used: usize) {
        if used == 0 {
            return;
        }
        self.rbuf.copy_within(used..self.rlen, 0);
        self.rlen -= used;
    }

    /// Something is still to be written: request bytes, or TLS records rustls queued.
    pub fn has_unsent(&self) -> bool {
        self.wpos < self.wbuf.len()
            || self.body.as_ref().is_some_and(|b| self.bpos < b.len())
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// A short read left nothing behind: over TCP the socket is drained (epoll will say when
    /// more arrives); over TLS that is only known once a read returns `Ok(None)`, since rustls
    /// may hold decrypted bytes the socket no longer signals.
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// After a response ended, bytes remain that belong to no request.
    pub fn has_leftover(&mut self) -> bool {
        self.rlen > 0 || self.tls.as_deref_mut().is_some_and(tls::plaintext_pending)
    }

    /// Before the client closes a connection on its own: a TLS `close_notify`, best effort.
    pub fn say_goodbye(&mut self) {
        if let Some(t) = self.tls.as_deref_mut() {
            tls::close_notify(t, &self.sock);
        }
    }
}

/// Writes `buf[*pos..]` to a non-blocking socket until it would block; `Ok(true)` when all is
/// written.
fn write_plain(mut sock: &TcpStream, buf: &[u8], pos: &mut usize) -> io::Result<bool> {
    while *pos < buf.len() {
        match sock.write(&buf[*pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
