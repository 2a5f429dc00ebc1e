//! TCP on the ring: a listener whose accepts are ring operations, and a stream whose receives
//! come from one multishot receive into the ring's provided buffers (armed on the first read, so
//! a connection that never reads holds nothing) and whose writes are `MSG_WAITALL` sends that
//! own their buffer. When the buffer ring is empty the stream falls back to one plain read into
//! the caller's buffer, so a connection is never starved by others holding buffers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::executor::ring;
use crate::ring::{Chunk, MultiRecv, RxEvent};

/// A listening TCP socket.
pub struct TcpListener {
    sock: Socket,
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
        Ok(TcpListener { sock })
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
        let fd = ring().accept(self.sock.as_raw_fd())?.await?;
        TcpStream::from_fd(fd)
    }
}

/// A connected TCP socket on the ring.
pub struct TcpStream {
    sock: Socket,
    rx: Option<MultiRecv>,
    /// Received bytes not yet handed out (a provided buffer, back to the ring when consumed).
    held: Option<Chunk>,
    eof: bool,
}

impl TcpStream {
    fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        let sock = Socket::from(fd);
        sock.set_tcp_nodelay(true)?;
        Ok(TcpStream {
            sock,
            rx: None,
            held: None,
            eof: false,
        })
    }

    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        let fd = sock.as_raw_fd();
        let (r, _) = ring().connect(fd, SockAddr::from(addr))?.await;
        r?;
        TcpStream::from_fd(OwnedFd::from(sock))
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
        loop {
            if let Some(n) = self.take_held(out, max) {
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let fd = self.sock.as_raw_fd();
            let rx = match &mut self.rx {
                Some(rx) => rx,
                None if !ring().features().buf_ring => return self.read_plain(out, max).await,
                None => self.rx.insert(ring().recv_multi(fd)?),
            };
            rx.arm()?;
            match std::future::poll_fn(|cx| rx.poll_rx(cx)).await {
                RxEvent::Data(c) => self.held = Some(c),
                RxEvent::Eof => self.eof = true,
                RxEvent::Ended => {}
                RxEvent::NoBuffers => return self.read_plain(out, max).await,
                RxEvent::Err(e) => return Err(e),
            }
        }
    }

    /// Copies from the held chunk; `None` when there is none.
    fn take_held(&mut self, out: &mut Vec<u8>, max: usize) -> Option<usize> {
        let c = self.held.as_mut()?;
        let b = c.bytes();
        let n = b.len().min(max);
        out.extend_from_slice(&b[..n]);
        c.consume(n);
        if c.is_empty() {
            self.held = None;
        }
        Some(n)
    }

    /// One plain read of at most `max` bytes (the buffer ring was empty).
    async fn read_plain(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let op = ring().read_into(self.sock.as_raw_fd(), Vec::with_capacity(max), max)?;
        let (r, buf) = op.await;
        let n = r?;
        out.extend_from_slice(&buf);
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Sends all of `buf` without waiting for the kernel's result (see
    /// [`crate::ring::Ring::send_detached`]): one enter per wake instead of two.
    pub fn write_detached(&mut self, buf: Vec<u8>) -> io::Result<()> {
        ring().send_detached(self.sock.as_raw_fd(), buf)
    }

    /// Writes all of `buf`; returns the buffer for reuse.
    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let len = buf.len();
        let op = match ring().send(self.sock.as_raw_fd(), buf) {
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

    /// Nothing received and not yet handed out, and the peer has not closed: the test a pooled
    /// connection passes before reuse (no `MSG_PEEK` syscall: the armed receive would have
    /// delivered stray bytes or EOF).
    pub fn is_quiet(&mut self) -> bool {
        if self.held.is_some() || self.eof {
            return false;
        }
        let Some(rx) = self.rx.as_mut() else {
            return true;
        };
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match rx.poll_rx(&mut cx) {
            std::task::Poll::Pending => true,
            std::task::Poll::Ready(RxEvent::Data(c)) => {
                self.held = Some(c);
                false
            }
            std::task::Poll::Ready(RxEvent::Ended | RxEvent::NoBuffers) => rx.arm().is_ok(),
            std::task::Poll::Ready(RxEvent::Eof | RxEvent::Err(_)) => {
                self.eof = true;
                false
            }
        }
    }
}
