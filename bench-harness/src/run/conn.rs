//! One generator connection: a non-blocking std socket registered with the thread's epoll, its
//! buffers, the response reader and the request in flight. No pipelining: one request at a time
//! per connection, like wrk2 and oha, so a slow response never hides another's send time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::http1::response::ResponseReader;

/// Read buffer per connection; response bodies stream through it.
const READ_BUF: usize = 64 * 1024;

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
    /// Requests completed on this connection (a reused connection may be stale).
    pub served: u64,
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
            served: 0,
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

    /// Writes as much of the pending request as the socket takes; `Ok(true)` when all is sent.
    pub fn write_pending(&mut self) -> io::Result<bool> {
        while self.wpos < self.wbuf.len() {
            match (&self.sock).write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
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
}
