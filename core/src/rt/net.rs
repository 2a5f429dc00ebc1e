//! TCP on the runtime's driver. On the ring: accepts and connects are ring operations, receives
//! come from one multishot receive per connection into the ring's provided buffers (armed on the
//! first read, so a connection that never reads holds nothing; one plain read when the buffer
//! ring is empty, so a connection is never starved by others holding buffers), and writes are
//! `MSG_WAITALL` sends that own their buffer. On epoll: non-blocking sockets registered once,
//! edge-triggered, read and written until they would block.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::driver::Io;
use super::executor::io;
use super::reactor::{Dir, Reactor};
use crate::ring::{Chunk, MultiRecv, Ring, RxEvent};

/// How a socket is driven.
enum Side {
    Ring {
        ring: Rc<Ring>,
        rx: Option<MultiRecv>,
        /// Received bytes not yet handed out (a provided buffer, back to the ring when consumed).
        held: Option<Chunk>,
    },
    Epoll {
        reactor: Rc<Reactor>,
        token: usize,
    },
}

impl Side {
    /// Drives `sock` with this thread's runtime (epoll: non-blocking and registered).
    fn attach(sock: &Socket) -> io::Result<Side> {
        Ok(match io() {
            Io::Ring(ring) => Side::Ring {
                ring,
                rx: None,
                held: None,
            },
            Io::Epoll(reactor) => {
                sock.set_nonblocking(true)?;
                let token = reactor.register(sock.as_fd())?;
                Side::Epoll { reactor, token }
            }
        })
    }

    fn detach(&mut self, sock: &Socket) {
        if let Side::Epoll { reactor, token } = self {
            reactor.deregister(sock.as_fd(), *token);
        }
    }
}

/// Waits until the epoll-driven socket is ready `dir`-wise (after it would block).
async fn ready(reactor: &Reactor, token: usize, dir: Dir) {
    reactor.clear(token, dir);
    std::future::poll_fn(|cx| reactor.poll_ready(token, dir, cx)).await;
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A listening TCP socket.
pub struct TcpListener {
    sock: Socket,
    side: Side,
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
        let side = Side::attach(&sock)?;
        Ok(TcpListener { sock, side })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        match &self.side {
            Side::Ring { ring, .. } => {
                let fd = ring.accept(self.sock.as_raw_fd())?.await?;
                TcpStream::adopt(Socket::from(fd))
            }
            Side::Epoll { reactor, token } => loop {
                match self.sock.accept() {
                    Ok((s, _)) => return TcpStream::adopt(s),
                    Err(e) if would_block(&e) => ready(reactor, *token, Dir::Read).await,
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.side.detach(&self.sock);
    }
}

/// A connected TCP socket.
pub struct TcpStream {
    sock: Socket,
    side: Side,
    eof: bool,
}

impl TcpStream {
    fn adopt(sock: Socket) -> io::Result<TcpStream> {
        sock.set_tcp_nodelay(true)?;
        let side = Side::attach(&sock)?;
        Ok(TcpStream {
            sock,
            side,
            eof: false,
        })
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
                if let Side::Epoll { reactor, token } = &s.side {
                    std::future::poll_fn(|cx| reactor.poll_ready(*token, Dir::Write, cx)).await;
                }
                match s.sock.take_error()? {
                    Some(e) => Err(e),
                    None => Ok(s),
                }
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    }

    /// Appends up to `max` received bytes to `out`; `Ok(0)` at end of stream.
    pub async fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        match &mut self.side {
            Side::Ring { .. } => self.read_ring(out, max).await,
            Side::Epoll { reactor, token } => {
                let (reactor, token) = (Rc::clone(reactor), *token);
                loop {
                    if self.eof {
                        return Ok(0);
                    }
                    let old = out.len();
                    out.resize(old + max, 0);
                    let r = (&self.sock).read(&mut out[old..]);
                    out.truncate(old + *r.as_ref().unwrap_or(&0));
                    match r {
                        Ok(0) => {
                            self.eof = true;
                            return Ok(0);
                        }
                        Ok(n) => return Ok(n),
                        Err(e) if would_block(&e) => ready(&reactor, token, Dir::Read).await,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    async fn read_ring(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let fd = self.sock.as_raw_fd();
        let Side::Ring { ring, rx, held } = &mut self.side else {
            return Err(io::Error::other("not on a ring"));
        };
        loop {
            if let Some(n) = take_held(held, out, max) {
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let recv = match rx {
                Some(recv) => recv,
                None if !ring.features().buf_ring => {
                    return read_plain(ring, fd, &mut self.eof, out, max).await
                }
                None => rx.insert(ring.recv_multi(fd)?),
            };
            recv.arm()?;
            match std::future::poll_fn(|cx| recv.poll_rx(cx)).await {
                RxEvent::Data(c) => *held = Some(c),
                RxEvent::Eof => self.eof = true,
                RxEvent::Ended => {}
                RxEvent::NoBuffers => return read_plain(ring, fd, &mut self.eof, out, max).await,
                RxEvent::Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `buf`; returns the buffer for reuse.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match &self.side {
            Side::Ring { ring, .. } => {
                let len = buf.len();
                let op = match ring.send(self.sock.as_raw_fd(), buf) {
                    Ok(op) => op,
                    Err(e) => return (Err(e), Vec::new()),
                };
                let (r, buf) = op.await;
                let r = match r {
                    Ok(n) if n == len => Ok(()),
                    Ok(_) => Err(io::ErrorKind::WriteZero.into()),
                    Err(e) => Err(e),
                };
                (r, buf)
            }
            Side::Epoll { reactor, token } => {
                let (reactor, token) = (Rc::clone(reactor), *token);
                let mut pos = 0;
                while pos < buf.len() {
                    match (&self.sock).write(&buf[pos..]) {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => pos += n,
                        Err(e) if would_block(&e) => ready(&reactor, token, Dir::Write).await,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return (Err(e), buf),
                    }
                }
                (Ok(()), buf)
            }
        }
    }

    /// Sends all of `buf` without waiting for the kernel's result on the ring (see
    /// [`crate::ring::Ring::send_detached`]: one enter per wake instead of two); on epoll, the
    /// same as [`TcpStream::write_all`].
    pub async fn write_detached(&mut self, buf: Vec<u8>) -> io::Result<()> {
        match &self.side {
            Side::Ring { ring, .. } => ring.send_detached(self.sock.as_raw_fd(), buf),
            Side::Epoll { .. } => self.write_all(buf).await.0,
        }
    }

    /// Nothing received and not yet handed out, and the peer has not closed: the test a pooled
    /// connection passes before reuse. On the ring it costs no syscall (the armed receive has
    /// delivered stray bytes or EOF if there were any); on epoll it is one `MSG_PEEK`.
    pub fn is_quiet(&mut self) -> bool {
        if self.eof {
            return false;
        }
        match &mut self.side {
            Side::Ring { held, rx, .. } => {
                if held.is_some() {
                    return false;
                }
                let Some(rx) = rx.as_mut() else {
                    return true;
                };
                let mut cx = Context::from_waker(Waker::noop());
                match rx.poll_rx(&mut cx) {
                    Poll::Pending => true,
                    Poll::Ready(RxEvent::Data(c)) => {
                        *held = Some(c);
                        false
                    }
                    Poll::Ready(RxEvent::Ended | RxEvent::NoBuffers) => rx.arm().is_ok(),
                    Poll::Ready(RxEvent::Eof | RxEvent::Err(_)) => {
                        self.eof = true;
                        false
                    }
                }
            }
            Side::Epoll { .. } => {
                let mut b = [MaybeUninit::<u8>::uninit(); 1];
                match self.sock.peek(&mut b) {
                    Err(e) => would_block(&e),
                    Ok(_) => false,
                }
            }
        }
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.side.detach(&self.sock);
    }
}

/// Copies from the held chunk; `None` when there is none.
fn take_held(held: &mut Option<Chunk>, out: &mut Vec<u8>, max: usize) -> Option<usize> {
    let c = held.as_mut()?;
    let b = c.bytes();
    let n = b.len().min(max);
    out.extend_from_slice(&b[..n]);
    c.consume(n);
    if c.is_empty() {
        *held = None;
    }
    Some(n)
}

/// One plain read of at most `max` bytes on the ring (no buffer ring, or it was empty).
async fn read_plain(
    ring: &Rc<Ring>,
    fd: i32,
    eof: &mut bool,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let (r, buf) = ring.read_into(fd, Vec::with_capacity(max), max)?.await;
    let n = r?;
    out.extend_from_slice(&buf);
    if n == 0 {
        *eof = true;
    }
    Ok(n)
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }
}
