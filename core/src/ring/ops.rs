//! The operations of [`Ring`]: a send that owns its buffer until the kernel is done with it,
//! and a multishot receive whose data arrives in provided buffers ([`Chunk`]s) that go back to
//! the ring when dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring_07::{cqueue, opcode, types};

use super::slab::{Cqe, Slot};
use super::Ring;

/// A send in flight. Resolves to the result and the buffer; dropped early, the buffer stays
/// with the ring until the kernel's completion.
pub struct SendOp {
    ring: Rc<Ring>,
    slot: u32,
    done: bool,
}

impl Ring {
    /// Sends all of `buf` on socket `fd`: `MSG_WAITALL` makes the kernel retry until every byte
    /// is sent (one completion per write, however slow the peer) or the send fails; `MSG_NOSIGNAL`
    /// turns a closed peer into `EPIPE`. A cancelled send completes with what it had sent.
    pub fn send(self: &Rc<Self>, fd: RawFd, buf: Vec<u8>) -> io::Result<SendOp> {
        let ptr = buf.as_ptr();
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let slot = self.slab().insert(Slot::Single {
            waker: None,
            done: None,
            keep: Some(buf),
            orphan: false,
        });
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(u64::from(slot));
        // SAFETY: `ptr..ptr+len` is the heap block of the `Vec` now kept in the slot; moving a
        // `Vec` does not move its heap block, and the slot keeps it until the completion (also
        // when this `SendOp` is dropped first: the slot is then orphaned, not freed).
        if let Err(e) = unsafe { self.push(&e) } {
            self.slab().remove(slot);
            return Err(e);
        }
        Ok(SendOp {
            ring: Rc::clone(self),
            slot,
            done: false,
        })
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

impl Future for SendOp {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ring = Rc::clone(&self.ring);
        let mut slab = ring.slab();
        match slab.get_mut(self.slot) {
            Some(Slot::Single { done: Some(c), .. }) => {
                let c = *c;
                let keep = match slab.remove(self.slot) {
                    Slot::Single { keep, .. } => keep.unwrap_or_default(),
                    _ => Vec::new(),
                };
                self.done = true;
                let r = if c.result >= 0 {
                    Ok(c.result as usize)
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
                Poll::Ready((Err(io::Error::other("send slot lost")), Vec::new()))
            }
        }
    }
}

impl Drop for SendOp {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slab = self.ring.slab();
        if let Some(Slot::Single { done, orphan, .. }) = slab.get_mut(self.slot) {
            if done.is_some() {
                slab.remove(self.slot);
            } else {
                // The kernel may still read the buffer: the slot keeps it until the completion.
                *orphan = true;
            }
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
