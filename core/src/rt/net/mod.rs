//! TCP on the runtime's driver. On the ring: accepts and connects are ring operations, receives
//! come from one multishot receive per connection into the ring's provided buffers (armed on the
//! first read, so a connection that never reads holds nothing; one plain read when the buffer
//! ring is empty, so a connection is never starved by others holding buffers), and writes are
//! `MSG_WAITALL` sends that own their buffer. On epoll: non-blocking sockets registered once,
//! edge-triggered, read and written until they would block. Both directions live in
//! [`state`], so a stream splits into halves that read and write at once.

mod state;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::driver::Io;
use super::executor::io;
use super::reactor::Dir;
use state::{Driver, Reader, Sock, Writer};

/// Drives `sock` with this thread's runtime (epoll: non-blocking and registered).
fn attach(sock: Socket) -> io::Result<Rc<Sock>> {
    let driver = match io() {
        Io::Ring(ring) => Driver::Ring(ring),
        Io::Epoll(reactor) => {
            sock.set_nonblocking(true)?;
            let token = reactor.register(sock.as_fd())?;
            Driver::Epoll { reactor, token }
        }
    };
    Ok(Rc::new(Sock { sock, driver }))
}

fn inet(a: io::Result<SockAddr>) -> io::Result<SocketAddr> {
    a?.as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))
}

/// A listening TCP socket.
pub struct TcpListener {
    s: Rc<Sock>,
}

impl TcpListener {
    /// Binds `addr` (with `SO_REUSEADDR`; `reuse_port` adds `SO_REUSEPORT`, one listener per
    /// core) and listens.
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        if reuse_port {
            sock.set_reuse_port(true)?;
        }
        sock.bind(&addr.into())?;
        sock.listen(4096)?;
        Ok(TcpListener { s: attach(sock)? })
    }

    /// Serves an already listening socket (one handed over by a previous process).
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            s: attach(Socket::from(OwnedFd::from(l)))?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(self.s.sock.local_addr())
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let sock = match &self.s.driver {
            Driver::Ring(ring) => Socket::from(ring.accept(self.s.sock.as_raw_fd())?.await?),
            Driver::Epoll { reactor, token } => loop {
                match self.s.sock.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        reactor.clear(*token, Dir::Read);
                        std::future::poll_fn(|cx| reactor.poll_ready(*token, Dir::Read, cx)).await;
                    }
                    Err(e) => return Err(e),
                }
            },
        };
        let peer = inet(sock.peer_addr())?;
        Ok((TcpStream::adopt(sock)?, peer))
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> i32 {
        self.s.sock.as_raw_fd()
    }
}

/// A connected TCP socket.
pub struct TcpStream {
    s: Rc<Sock>,
    rd: Reader,
    wr: Writer,
}

impl TcpStream {
    fn adopt(sock: Socket) -> io::Result<TcpStream> {
        sock.set_tcp_nodelay(true)?;
        Ok(TcpStream {
            s: attach(sock)?,
            rd: Reader::default(),
            wr: Writer::default(),
        })
    }

    /// Serves an already connected socket.
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        TcpStream::adopt(Socket::from(OwnedFd::from(s)))
    }

    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        match io() {
            Io::Ring(ring) => {
                let (r, _) = ring.connect(sock.as_raw_fd(), SockAddr::from(addr))?.await;
                r?;
                TcpStream::adopt(sock)
            }
            Io::Epoll(_) => {
                // Registered after the connect starts: an unconnected socket reports itself
                // writable (and hung up), which would end the wait at once.
                sock.set_nonblocking(true)?;
                match sock.connect(&addr.into()) {
                    Ok(()) => return TcpStream::adopt(sock),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                let s = TcpStream::adopt(sock)?;
                if let Driver::Epoll { reactor, token } = &s.s.driver {
                    std::future::poll_fn(|cx| reactor.poll_ready(*token, Dir::Write, cx)).await;
                }
                match s.s.sock.take_error()? {
                    Some(e) => Err(e),
                    None => Ok(s),
                }
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(self.s.sock.peer_addr())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(self.s.sock.local_addr())
    }

    /// Appends up to `max` received bytes to `out`; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let (s, rd) = (&self.s, &mut self.rd);
        std::future::poll_fn(|cx| rd.poll_take(s, cx, max, &mut |b| out.extend_from_slice(b))).await
    }

    /// Fills the front of `buf` with received bytes; `Ok(0)` at end of stream.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let max = buf.len();
        self.rd
            .poll_take(&self.s, cx, max, &mut |b| buf[..b.len()].copy_from_slice(b))
    }

    /// Accepts bytes for sending (see [`TcpStream::poll_flush`] for the write-behind).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.wr.poll_write(&self.s, cx, buf)
    }

    /// Waits until what `poll_write` accepted is sent.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wr.poll_flush(cx)
    }

    /// Writes all of `buf`; returns the buffer for reuse.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.wr.write_all(&self.s, buf).await
    }

    /// Sends all of `buf` without waiting for the kernel's result on the ring (see
    /// [`crate::ring::Ring::send_detached`]: one enter per wake instead of two); on epoll, the
    /// same as [`TcpStream::write_all`].
    pub async fn write_detached(&mut self, buf: Vec<u8>) -> io::Result<()> {
        self.wr.write_detached(&self.s, buf).await
    }

    /// Nothing received and not yet handed out, and the peer has not closed (a pooled
    /// connection's check before reuse; no syscall on the ring).
    pub fn is_quiet(&mut self) -> bool {
        self.rd.is_quiet(&self.s)
    }

    /// Ends the sending direction (a FIN after what was sent).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.s.sock.shutdown(Shutdown::Write)
    }

    /// Halves that read and write at once (a tunnel); the socket closes when both are gone.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                s: Rc::clone(&self.s),
                rd: self.rd,
            },
            WriteHalf {
                s: self.s,
                wr: self.wr,
            },
        )
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> i32 {
        self.s.sock.as_raw_fd()
    }
}

/// The receiving half of a split [`TcpStream`].
pub struct ReadHalf {
    s: Rc<Sock>,
    rd: Reader,
}

impl ReadHalf {
    /// Appends up to `max` received bytes to `out`; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let (s, rd) = (&self.s, &mut self.rd);
        std::future::poll_fn(|cx| rd.poll_take(s, cx, max, &mut |b| out.extend_from_slice(b))).await
    }
}

/// The sending half of a split [`TcpStream`].
pub struct WriteHalf {
    s: Rc<Sock>,
    wr: Writer,
}

impl WriteHalf {
    /// Writes all of `buf`; returns the buffer for reuse.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.wr.write_all(&self.s, buf).await
    }

    /// Ends the sending direction.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.s.sock.shutdown(Shutdown::Write)
    }
}
