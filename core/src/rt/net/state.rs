//! The two directions of a TCP socket on the runtime, kept apart so a stream can be split into
//! halves (tunnels, full-duplex TLS) that read and write at once: [`Reader`] (one multishot
//! receive on the ring and its held chunk, or an epoll readiness wait) and [`Writer`] (sends that
//! own their buffer, with a write-behind slot for poll-style callers).

use std::future::Future;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use socket2::Socket;

use crate::ring::{Chunk, MultiRecv, ReadOp, Ring, RxEvent, SendOp};
use crate::rt::reactor::{Dir, Reactor};

/// How a socket is driven; shared by its halves, and deregistered when the last one goes.
pub(crate) struct Sock {
    pub(crate) sock: Socket,
    pub(crate) driver: Driver,
}

pub(crate) enum Driver {
    Ring(Rc<Ring>),
    Epoll { reactor: Rc<Reactor>, token: usize },
}

impl Drop for Sock {
    fn drop(&mut self) {
        if let Driver::Epoll { reactor, token } = &self.driver {
            reactor.deregister(self.sock.as_fd(), *token);
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Epoll: after an operation would block, wait for readiness `dir`-wise.
fn poll_wait(reactor: &Reactor, token: usize, dir: Dir, cx: &mut Context<'_>) -> Poll<()> {
    reactor.clear(token, dir);
    reactor.poll_ready(token, dir, cx)
}

/// The receiving direction.
#[derive(Default)]
pub(crate) struct Reader {
    rx: Option<MultiRecv>,
    /// Received bytes not yet handed out (a provided buffer, back to the ring when consumed).
    held: Option<Chunk>,
    /// A plain read in flight (no buffer ring, or it was empty); its bytes are kept when the
    /// caller gave up waiting, and handed out next time.
    plain: Option<ReadOp>,
    /// Epoll reads land here first.
    scratch: Vec<u8>,
    eof: bool,
}

impl Reader {
    /// Hands up to `max` received bytes to `sink`; `Ok(0)` at end of stream. Cancel-safe: bytes
    /// that arrive for an abandoned call are kept for the next.
    pub(crate) fn poll_take(
        &mut self,
        s: &Sock,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        match &s.driver {
            Driver::Ring(ring) => self.poll_ring(ring, s.sock.as_raw_fd(), cx, max, sink),
            Driver::Epoll { reactor, token } => loop {
                if self.eof {
                    return Poll::Ready(Ok(0));
                }
                self.scratch.resize(max, 0);
                match (&s.sock).read(&mut self.scratch[..max]) {
                    Ok(0) => {
                        self.eof = true;
                        return Poll::Ready(Ok(0));
                    }
                    Ok(n) => {
                        sink(&self.scratch[..n]);
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if would_block(&e) => {
                        if poll_wait(reactor, *token, Dir::Read, cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }

    fn poll_ring(
        &mut self,
        ring: &Rc<Ring>,
        fd: i32,
        cx: &mut Context<'_>,
        max: usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(c) = self.held.as_mut() {
                let b = c.bytes();
                let n = b.len().min(max);
                sink(&b[..n]);
                c.consume(n);
                if c.is_empty() {
                    self.held = None;
                }
                return Poll::Ready(Ok(n));
            }
            if let Some(op) = self.plain.as_mut() {
                let (r, buf) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
                self.plain = None;
                let n = r?;
                if n == 0 {
                    self.eof = true;
                }
                sink(&buf[..n.min(buf.len())]);
                return Poll::Ready(Ok(n));
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            if !ring.features().buf_ring {
                self.plain = Some(ring.read_into(fd, Vec::with_capacity(max), max)?);
                continue;
            }
            let rx = match &mut self.rx {
                Some(rx) => rx,
                None => self.rx.insert(ring.recv_multi(fd)?),
            };
            rx.arm()?;
            match std::task::ready!(rx.poll_rx(cx)) {
                RxEvent::Data(c) => self.held = Some(c),
                RxEvent::Eof => self.eof = true,
                RxEvent::Ended => {}
                RxEvent::NoBuffers => {
                    self.plain = Some(ring.read_into(fd, Vec::with_capacity(max), max)?);
                }
                RxEvent::Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Nothing received and not yet handed out, and the peer has not closed: the test a pooled
    /// connection passes before reuse. On the ring it costs no syscall (the armed receive has
    /// delivered stray bytes or EOF if there were any); on epoll it is one `MSG_PEEK`.
    pub(crate) fn is_quiet(&mut self, s: &Sock) -> bool {
        if self.eof || self.held.is_some() || self.plain.is_some() {
            return false;
        }
        match &s.driver {
            Driver::Ring(_) => {
                let Some(rx) = self.rx.as_mut() else {
                    return true;
                };
                let mut cx = Context::from_waker(Waker::noop());
                match rx.poll_rx(&mut cx) {
                    Poll::Pending => true,
                    Poll::Ready(RxEvent::Data(c)) => {
                        self.held = Some(c);
                        false
                    }
                    Poll::Ready(RxEvent::Ended | RxEvent::NoBuffers) => rx.arm().is_ok(),
                    Poll::Ready(RxEvent::Eof | RxEvent::Err(_)) => {
                        self.eof = true;
                        false
                    }
                }
            }
            Driver::Epoll { .. } => {
                let mut b = [MaybeUninit::<u8>::uninit(); 1];
                match s.sock.peek(&mut b) {
                    Err(e) => would_block(&e),
                    Ok(_) => false,
                }
            }
        }
    }
}

/// The sending direction.
#[derive(Default)]
pub(crate) struct Writer {
    /// A write-behind send of [`Writer::poll_write`] and its length.
    behind: Option<(SendOp, usize)>,
    /// A buffer back from a finished write-behind, reused by the next.
    spare: Vec<u8>,
}

impl Writer {
    /// Waits for the write-behind send, if any; its failure is reported here.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((op, len)) = self.behind.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let len = *len;
        let (r, mut buf) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
        self.behind = None;
        buf.clear();
        self.spare = buf;
        Poll::Ready(match r {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(io::ErrorKind::WriteZero.into()),
            Err(e) => Err(e),
        })
    }

    /// Accepts `buf` for sending: on the ring it is copied and sent behind the caller's back
    /// (one send in flight; the next call or a flush waits for it), on epoll written until the
    /// socket would block.
    pub(crate) fn poll_write(
        &mut self,
        s: &Sock,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &s.driver {
            Driver::Ring(ring) => {
                std::task::ready!(self.poll_flush(cx))?;
                let mut v = std::mem::take(&mut self.spare);
                v.extend_from_slice(buf);
                let op = ring.send(s.sock.as_raw_fd(), v)?;
                self.behind = Some((op, buf.len()));
                Poll::Ready(Ok(buf.len()))
            }
            Driver::Epoll { reactor, token } => loop {
                match (&s.sock).write(buf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if would_block(&e) => {
                        if poll_wait(reactor, *token, Dir::Write, cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }

    /// Writes all of `buf` (after any write-behind); returns the buffer for reuse.
    pub(crate) async fn write_all(&mut self, s: &Sock, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        if let Err(e) = std::future::poll_fn(|cx| self.poll_flush(cx)).await {
            return (Err(e), buf);
        }
        match &s.driver {
            Driver::Ring(ring) => {
                let len = buf.len();
                let op = match ring.send(s.sock.as_raw_fd(), buf) {
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
            Driver::Epoll { .. } => {
                let mut pos = 0;
                while pos < buf.len() {
                    let r = std::future::poll_fn(|cx| self.poll_write(s, cx, &buf[pos..])).await;
                    match r {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => pos += n,
                        Err(e) => return (Err(e), buf),
                    }
                }
                (Ok(()), buf)
            }
        }
    }

    /// Sends all of `buf` without waiting for the result on the ring (see
    /// [`crate::ring::Ring::send_detached`]); on epoll the same as [`Writer::write_all`].
    pub(crate) async fn write_detached(&mut self, s: &Sock, buf: Vec<u8>) -> io::Result<()> {
        match &s.driver {
            Driver::Ring(ring) => {
                std::future::poll_fn(|cx| self.poll_flush(cx)).await?;
                ring.send_detached(s.sock.as_raw_fd(), buf)
            }
            Driver::Epoll { .. } => self.write_all(s, buf).await.0,
        }
    }
}
