//! The operations of [`Ring`]: a send that owns its buffer until the kernel is done with it,
//! and a multishot receive whose data arrives in provided buffers ([`Chunk`]s) that go back to
//! the ring when dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring_07::{cqueue, opcode, squeue, types};

use super::slab::{Cqe, Keep, Slot};
use super::Ring;

/// A one-shot operation in flight. Resolves to its result (a non-negative count or fd, or the
/// error) and the memory it kept; dropped early, the memory stays with the ring until the
/// kernel's completion.
pub struct Op {
    ring: Rc<Ring>,
    slot: u32,
    done: bool,
}

/// A send in flight: resolves to the result and the buffer.
pub struct SendOp(Op);

impl Ring {
    /// Queues the entry `build` makes for the slot's `user_data`, with `keep` held by the slot.
    ///
    /// # Safety
    /// Every pointer in the entry must point into `keep` (whose heap blocks do not move when it
    /// is moved into the slot) or into memory that outlives the ring.
    pub(crate) unsafe fn op(
        self: &Rc<Self>,
        keep: Keep,
        build: impl FnOnce() -> squeue::Entry,
    ) -> io::Result<Op> {
        let e = build();
        let slot = self.slab().insert(Slot::Single {
            waker: None,
            done: None,
            keep,
            orphan: false,
        });
        // SAFETY: the caller guarantees the entry points into `keep`, now held by the slot until
        // the completion (also when the `Op` is dropped first: the slot is orphaned, not freed).
        if let Err(e) = unsafe { self.push(&e.user_data(u64::from(slot))) } {
            self.slab().remove(slot);
            return Err(e);
        }
        Ok(Op {
            ring: Rc::clone(self),
            slot,
            done: false,
        })
    }

    /// Sends all of `buf` on socket `fd`: `MSG_WAITALL` makes the kernel retry until every byte
    /// is sent (one completion per write, however slow the peer) or the send fails; `MSG_NOSIGNAL`
    /// turns a closed peer into `EPIPE`. A cancelled send completes with what it had sent.
    pub fn send(self: &Rc<Self>, fd: RawFd, buf: Vec<u8>) -> io::Result<SendOp> {
        let (ptr, len) = (buf.as_ptr(), u32::try_from(buf.len()).unwrap_or(u32::MAX));
        // SAFETY: `ptr..ptr+len` is the heap block of the `Vec` kept by the slot.
        let op = unsafe {
            self.op(Keep::Bytes(buf), || {
                opcode::Send::new(types::Fd(fd), ptr, len)
                    .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                    .build()
            })
        }?;
        Ok(SendOp(op))
    }

    /// Sends all of `buf` on `fd` without waiting for the result: the buffer goes with the
    /// operation and is freed at its completion; a failure shows on the socket's next read. For
    /// request/response traffic, where nothing more is sent on the socket before the peer has
    /// read all of this (so two sends never overlap).
    pub fn send_detached(self: &Rc<Self>, fd: RawFd, buf: Vec<u8>) -> io::Result<()> {
        drop(self.send(fd, buf)?);
        self.detached.set(self.detached.get() + 1);
        Ok(())
    }

    /// Accepts a connection on listening socket `fd`; resolves to the new socket.
    pub fn accept(self: &Rc<Self>, fd: RawFd) -> io::Result<AcceptOp> {
        // SAFETY: no address is asked for: the entry carries null pointers only.
        let op = unsafe {
            self.op(Keep::None, || {
                opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            })
        }?;
        Ok(AcceptOp(op))
    }

    /// Reads once from `fd` into the spare capacity of `buf` (at most `limit` bytes);
    /// resolves to the count and `buf` with its length grown by it. Works on sockets, pipes and
    /// eventfds (the fallback receive when the buffer ring is empty).
    pub fn read_into(
        self: &Rc<Self>,
        fd: RawFd,
        mut buf: Vec<u8>,
        limit: usize,
    ) -> io::Result<ReadOp> {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (
            spare.as_mut_ptr().cast::<u8>(),
            u32::try_from(spare.len().min(limit)).unwrap_or(u32::MAX),
        );
        // SAFETY: `ptr..ptr+len` is the spare capacity of the `Vec` kept by the slot; nothing
        // reads it until the completion says how much the kernel wrote.
        let op = unsafe {
            self.op(Keep::Bytes(buf), || {
                opcode::Read::new(types::Fd(fd), ptr, len)
                    .offset(u64::MAX)
                    .build()
            })
        }?;
        Ok(ReadOp(op))
    }

    /// Connects socket `fd` to `addr`.
    pub fn connect(self: &Rc<Self>, fd: RawFd, addr: socket2::SockAddr) -> io::Result<Op> {
        let addr = Box::new(addr);
        let (ptr, len) = (addr.as_ptr(), addr.len());
        // SAFETY: `ptr` points into the boxed address kept by the slot (a `Box` does not move its
        // contents when moved).
        unsafe {
            self.op(Keep::Addr(addr), || {
                opcode::Connect::new(types::Fd(fd), ptr.cast(), len).build()
            })
        }
    }

    /// An operation that completes at once (tests, and waking the ring).
    pub fn nop(self: &Rc<Self>) -> io::Result<Op> {
        // SAFETY: a no-op carries no pointer.
        unsafe { self.op(Keep::None, || opcode::Nop::new().build()) }
    }

    /// Arms a multishot receive on socket `fd` (the ring needs provided buffers).
    pub fn recv_multi(self: &Rc<Self>, fd: RawFd) -> io::Result<MultiRecv> {
        let mut m = MultiRecv {
            ring: Rc::clone(self),
            fd,
            slot: None,
        };
        m.arm()?;
        Ok(m)
    }
}

impl Future for Op {
    type Output = (io::Result<u32>, Keep);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ring = Rc::clone(&self.ring);
        let mut slab = ring.slab();
        match slab.get_mut(self.slot) {
            Some(Slot::Single { done: Some(c), .. }) => {
                let c = *c;
                let keep = match slab.remove(self.slot) {
                    Slot::Single { keep, .. } => keep,
                    _ => Keep::None,
                };
                self.done = true;
                let r = if c.result >= 0 {
                    Ok(c.result as u32)
                } else {
                    Err(io::Error::from_raw_os_error(-c.result))
                };
                Poll::Ready((r, keep))
            }
            Some(Slot::Single { waker, .. }) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => {
                self.done = true;
                Poll::Ready((Err(io::Error::other("operation slot lost")), Keep::None))
            }
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slab = self.ring.slab();
        if let Some(Slot::Single { done, orphan, .. }) = slab.get_mut(self.slot) {
            if done.is_some() {
                slab.remove(self.slot);
            } else {
                // The kernel may still use the kept memory: the slot keeps it until the
                // completion.
                *orphan = true;
            }
        }
    }
}

/// An accept in flight: resolves to the accepted socket.
pub struct AcceptOp(Op);

impl Future for AcceptOp {
    type Output = io::Result<OwnedFd>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready((Ok(fd), _)) => {
                // SAFETY: a successful accept's result is a new fd the kernel just installed in
                // this process for us; nothing else owns it.
                Poll::Ready(Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
            }
            Poll::Ready((Err(e), _)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A read in flight: resolves to the count and the buffer, grown by it.
pub struct ReadOp(Op);

impl Future for ReadOp {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready((r, keep)) => {
                let mut buf = match keep {
                    Keep::Bytes(b) => b,
                    _ => Vec::new(),
                };
                if let Ok(n) = r {
                    let n = (n as usize).min(buf.capacity() - buf.len());
                    // SAFETY: the kernel wrote `n` bytes into the spare capacity starting at the
                    // old length (the completion's count, capped by the capacity we offered).
                    unsafe { buf.set_len(buf.len() + n) };
                }
                Poll::Ready((r.map(|n| n as usize), buf))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Future for SendOp {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready((r, keep)) => {
                let buf = match keep {
                    Keep::Bytes(b) => b,
                    _ => Vec::new(),
                };
                Poll::Ready((r.map(|n| n as usize), buf))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a multishot receive delivered.
pub enum RxEvent {
    /// Bytes, in a provided buffer (back to the ring when the chunk is dropped).
    Data(Chunk),
    /// The peer closed its side.
    Eof,
    /// The buffer ring was empty: the receive ended; drop chunks, then [`MultiRecv::arm`] again.
    NoBuffers,
    /// The receive ended without an error (the kernel stopped it): arm again to go on.
    Ended,
    /// The receive failed.
    Err(io::Error),
}

/// A multishot receive on one socket.
pub struct MultiRecv {
    ring: Rc<Ring>,
    fd: RawFd,
    slot: Option<u32>,
}

impl MultiRecv {
    /// Arms the receive unless it is armed already; a receive that ended is armed again once its
    /// delivered events were taken.
    pub fn arm(&mut self) -> io::Result<()> {
        if let Some(i) = self.slot {
            let mut slab = self.ring.slab();
            match slab.get_mut(i) {
                Some(Slot::Multi { ended: false, .. }) => return Ok(()),
                Some(Slot::Multi { queue, .. }) if !queue.is_empty() => return Ok(()),
                _ => {
                    slab.remove(i);
                    self.slot = None;
                }
            }
        }
        let Some(bufs) = self.ring.bufs() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot receive needs a provided buffer ring",
            ));
        };
        let e = opcode::RecvMulti::new(types::Fd(self.fd), bufs.group()).build();
        let slot = self.ring.slab().insert(Slot::Multi {
            waker: None,
            queue: VecDeque::new(),
            ended: false,
            orphan: false,
        });
        // SAFETY: a multishot receive with buffer select carries no pointer of ours: the kernel
        // writes only into provided buffers, which the ring owns until it is dropped.
        if let Err(err) = unsafe { self.ring.push(&e.user_data(u64::from(slot))) } {
            self.ring.slab().remove(slot);
            return Err(err);
        }
        self.slot = Some(slot);
        Ok(())
    }

    /// Armed and not ended.
    pub fn is_armed(&self) -> bool {
        let Some(i) = self.slot else {
            return false;
        };
        matches!(
            self.ring.slab().get_mut(i),
            Some(Slot::Multi { ended: false, .. })
        )
    }

    /// The next event, in arrival order.
    pub fn poll_rx(&mut self, cx: &mut Context<'_>) -> Poll<RxEvent> {
        let Some(i) = self.slot else {
            return Poll::Ready(RxEvent::Ended);
        };
        let c = {
            let mut slab = self.ring.slab();
            match slab.get_mut(i) {
                Some(Slot::Multi {
                    queue,
                    ended,
                    waker,
                    ..
                }) => match queue.pop_front() {
                    Some(c) => c,
                    None if *ended => {
                        slab.remove(i);
                        drop(slab);
                        self.slot = None;
                        return Poll::Ready(RxEvent::Ended);
                    }
                    None => {
                        *waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                },
                _ => return Poll::Ready(RxEvent::Ended),
            }
        };
        Poll::Ready(self.event(c))
    }

    fn event(&self, c: Cqe) -> RxEvent {
        match (c.result, cqueue::buffer_select(c.flags)) {
            (n, Some(bid)) if n > 0 => RxEvent::Data(Chunk {
                ring: Rc::clone(&self.ring),
                bid,
                start: 0,
                len: n as usize,
            }),
            (0, _) => RxEvent::Eof,
            (n, _) if -n == libc::ENOBUFS => RxEvent::NoBuffers,
            (n, _) if n < 0 => RxEvent::Err(io::Error::from_raw_os_error(-n)),
            _ => RxEvent::Err(io::Error::other("receive completed without a buffer")),
        }
    }
}

impl Drop for MultiRecv {
    fn drop(&mut self) {
        let Some(i) = self.slot else {
            return;
        };
        let mut slab = self.ring.slab();
        let Some(Slot::Multi {
            queue,
            ended,
            orphan,
            ..
        }) = slab.get_mut(i)
        else {
            return;
        };
        if let Some(b) = self.ring.bufs() {
            for c in queue.drain(..) {
                if let Some(bid) = cqueue::buffer_select(c.flags) {
                    b.recycle(bid);
                }
            }
        }
        if *ended {
            slab.remove(i);
        } else {
            // Still armed: cancel it; the slot goes at its last completion.
            *orphan = true;
            drop(slab);
            self.ring.cancel(i);
        }
    }
}

/// Received bytes in a provided buffer; the buffer goes back to the ring when dropped.
pub struct Chunk {
    ring: Rc<Ring>,
    bid: u16,
    start: usize,
    len: usize,
}

impl Chunk {
    /// The bytes not yet consumed.
    pub fn bytes(&self) -> &[u8] {
        match self.ring.bufs() {
            Some(b) => &b.bytes(self.bid, self.len)[self.start.min(self.len)..],
            None => &[],
        }
    }

    /// Marks the first `n` bytes consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.len);
    }

    /// Nothing left to consume.
    pub fn is_empty(&self) -> bool {
        self.start >= self.len
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(b) = self.ring.bufs() {
            b.recycle(self.bid);
        }
    }
}
