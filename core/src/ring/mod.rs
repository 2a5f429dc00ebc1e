//! ringgate's own io_uring layer (issue 16): a worker's ring with the kernel features monoio
//! 0.2.4 does not reach. monoio keeps its ring private, so receives there are single-shot into a
//! buffer each connection holds, pooled connections are checked with a `MSG_PEEK` syscall, and
//! every wake is one enter. Here:
//! - a **provided buffer ring** ([`BufRing`]) and **multishot receive** ([`MultiRecv`]): a
//!   connection holds no receive buffer while idle, no receive is posted per read, and an armed
//!   receive on a pooled connection sees EOF or stray bytes when they happen;
//! - **sends own their buffers** ([`SendOp`]) until the kernel's completion, even when the
//!   future is dropped (the slot keeps the `Vec`), so cancellation can never free memory the
//!   kernel still reads;
//! - a **registered ring fd** and one `io_uring_enter` per [`Ring::park`] (submit and wait
//!   together), with waits bounded by a timeout.
//!
//! The ring is per thread (`!Send`: `Rc`, `RefCell`), like everything on a worker. This module
//! is the only one of the crate allowed `unsafe`: memory shared with the kernel (the buffer ring,
//! send buffers, the SQ/CQ handles of the leaked ring) is what it is for. Each block says why it
//! holds; core/tests/ring.rs exercises each path on real sockets.
//!
//! Not yet here (the rest of issue 16): the executor and timers on top, fixed files, linked
//! send+receive, `min_wait` waits, and the engine's move onto it.

mod bufring;
mod config;
mod ops;
mod slab;

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring_07::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring_07::{cqueue, opcode, squeue, IoUring, Submitter};

pub use bufring::BufRing;
pub use config::{Features, RingConfig, TaskRun};
pub use ops::{AcceptOp, Chunk, MultiRecv, Op, ReadOp, RxEvent, SendOp};
pub use slab::{Cqe, Keep};
use slab::{Slab, Slot};

/// `user_data` of cancel requests: their completions wake nobody.
const CANCEL_UD: u64 = u64::MAX;

/// How long dropping a ring waits for its cancelled operations to complete.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// Most completions taken from the queue per batch (the queue handle is released before any
/// slot is touched).
const BATCH: usize = 64;

/// One worker's ring.
pub struct Ring {
    /// The one submitter of the ring: it keeps the registered ring fd's index (a fresh
    /// `IoUring::submitter()` would not). Dropped before `uring` is freed.
    sub: ManuallyDrop<Submitter<'static>>,
    /// The ring itself, leaked from a `Box` so `sub` can borrow it for the ring's life; freed in
    /// `Drop`.
    uring: NonNull<IoUring>,
    slab: RefCell<Slab>,
    /// Provided buffers (group 0), dropped in `Drop` after the kernel let go of them.
    bufs: ManuallyDrop<Option<BufRing>>,
    features: Features,
    /// Detached sends queued since the last park: their completions wake nobody, so the park
    /// waits for that many more (they usually complete inside the same enter).
    detached: Cell<u32>,
}

impl Ring {
    /// Builds a ring as `cfg` says.
    pub fn new(cfg: &RingConfig) -> io::Result<Ring> {
        let mut b = IoUring::builder();
        b.setup_cqsize(cfg.cq.max(cfg.sq.saturating_mul(2)));
        match cfg.taskrun {
            TaskRun::Plain => {}
            TaskRun::Coop => {
                b.setup_coop_taskrun();
                b.setup_taskrun_flag();
            }
            TaskRun::Defer => {
                b.setup_single_issuer();
                b.setup_defer_taskrun();
            }
        }
        let uring = b.build(cfg.sq)?;
        let min_wait = uring.params().is_feature_min_timeout();
        let uring = NonNull::from(Box::leak(Box::new(uring)));
        // SAFETY: `uring` points to a leaked `Box` that is freed only in `Drop`, after `sub`
        // (the only borrower) is dropped; no `&mut IoUring` is ever made from it, so this shared
        // borrow may live as long as the ring.
        let sub: Submitter<'static> = unsafe { (*uring.as_ptr()).submitter() };
        let mut ring = Ring {
            sub: ManuallyDrop::new(sub),
            uring,
            slab: RefCell::new(Slab::default()),
            bufs: ManuallyDrop::new(None),
            features: Features {
                min_wait,
                ..Features::default()
            },
            detached: Cell::new(0),
        };
        if cfg.register_ring_fd {
            ring.features.registered_ring_fd = ring.sub.register_ring_fd().is_ok();
        }
        if cfg.buffers > 0 {
            *ring.bufs = Some(BufRing::new(&ring.sub, 0, cfg.buffers, cfg.buffer_size)?);
            ring.features.buf_ring = true;
        }
        Ok(ring)
    }

    /// What the built ring has.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Operations the kernel has not finished (including those whose futures were dropped).
    pub fn in_flight(&self) -> usize {
        self.slab.borrow().live()
    }

    /// Provided buffers filled by the kernel and not yet recycled.
    pub fn buffers_out(&self) -> u32 {
        self.bufs().map_or(0, BufRing::outstanding)
    }

    fn uring(&self) -> &IoUring {
        // SAFETY: valid from `new` until `Drop` frees it; only shared borrows are ever made.
        unsafe { self.uring.as_ref() }
    }

    pub(crate) fn bufs(&self) -> Option<&BufRing> {
        Option::as_ref(&self.bufs)
    }

    pub(crate) fn slab(&self) -> std::cell::RefMut<'_, Slab> {
        self.slab.borrow_mut()
    }

    /// Queues `e`, submitting what is queued first when the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `e` must stay valid until the operation's last completion (the caller's
    /// slot keeps the memory).
    pub(crate) unsafe fn push(&self, e: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: the ring is used by this thread only (`Ring` is `!Send`) and no other
            // `SubmissionQueue` exists: each is a temporary inside this function.
            let mut sq = unsafe { self.uring().submission_shared() };
            // SAFETY: the caller guarantees the entry's pointers outlive the operation.
            if unsafe { sq.push(e) }.is_ok() {
                return Ok(());
            }
            drop(sq);
            self.submit()?;
        }
        Err(io::Error::other("submission queue full"))
    }

    /// Entries queued and not yet submitted.
    pub fn unsubmitted(&self) -> usize {
        // SAFETY: as in `push`: one thread, and this temporary is the only `SubmissionQueue`.
        unsafe { self.uring().submission_shared() }.len()
    }

    /// Submits what is queued without waiting.
    pub fn submit(&self) -> io::Result<()> {
        match self.sub.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued and waits (one enter) for at least one completion, or until
    /// `timeout` passes. Call [`Ring::reap`] after it.
    ///
    /// Detached sends queued since the last park add to the completions waited for: theirs wake
    /// no task, so returning on one would cost a second enter for the completion that matters.
    pub fn park(&self, timeout: Option<Duration>) -> io::Result<()> {
        let want = 1 + self.detached.replace(0) as usize;
        let r = match timeout {
            None => self.sub.submit_and_wait(want),
            Some(d) => {
                let ts = Timespec::from(d);
                let args = SubmitArgs::new().timespec(&ts);
                self.sub.submit_with_args(want, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes every completion off the queue, hands each to its slot and wakes the waiting
    /// futures; returns how many completions there were.
    pub fn reap(&self) -> usize {
        let mut total = 0;
        loop {
            let mut batch = [Cqe {
                result: 0,
                flags: 0,
            }; BATCH];
            let mut ud = [0u64; BATCH];
            let mut n = 0;
            {
                // SAFETY: as in `push`: one thread, and no other `CompletionQueue` exists (each
                // is a temporary inside this block, released before any slot is touched).
                let cq = unsafe { self.uring().completion_shared() };
                for c in cq.take(BATCH) {
                    batch[n] = Cqe {
                        result: c.result(),
                        flags: c.flags(),
                    };
                    ud[n] = c.user_data();
                    n += 1;
                }
            }
            let mut wake: Vec<Waker> = Vec::new();
            for i in 0..n {
                if let Some(w) = self.complete(ud[i], batch[i]) {
                    wake.push(w);
                }
            }
            wake.into_iter().for_each(Waker::wake);
            total += n;
            if n < BATCH {
                return total;
            }
        }
    }

    /// Hands one completion to its slot; returns the waker to wake.
    fn complete(&self, ud: u64, c: Cqe) -> Option<Waker> {
        if ud == CANCEL_UD {
            return None;
        }
        let i = ud as u32;
        let more = cqueue::more(c.flags);
        let bid = cqueue::buffer_select(c.flags);
        if let (Some(b), Some(bid)) = (self.bufs(), bid) {
            b.taken(bid);
        }
        let mut slab = self.slab.borrow_mut();
        match slab.get_mut(i) {
            Some(Slot::Single {
                waker,
                done,
                orphan,
                ..
            }) => {
                if *orphan {
                    slab.remove(i);
                    return None;
                }
                *done = Some(c);
                waker.take()
            }
            Some(Slot::Multi {
                waker,
                queue,
                ended,
                orphan,
            }) => {
                if *orphan {
                    if let (Some(b), Some(bid)) = (self.bufs(), bid) {
                        b.recycle(bid);
                    }
                    if !more {
                        slab.remove(i);
                    }
                    return None;
                }
                queue.push_back(c);
                *ended |= !more;
                waker.take()
            }
            Some(Slot::Free) | None => {
                // Nobody owns it (cannot happen: slots are freed after their last completion);
                // give a buffer back rather than lose it.
                if let (Some(b), Some(bid)) = (self.bufs(), bid) {
                    b.recycle(bid);
                }
                None
            }
        }
    }

    /// Asks the kernel to cancel the operation of slot `i` (its completion still arrives).
    pub(crate) fn cancel(&self, i: u32) {
        let e = opcode::AsyncCancel::new(u64::from(i))
            .build()
            .user_data(CANCEL_UD);
        // SAFETY: a cancel request carries no pointer.
        let _ = unsafe { self.push(&e) };
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Every future and chunk holds an `Rc<Ring>`, so what is live now is orphaned: cancel it
        // all and wait (bounded) for the kernel to let go of its memory.
        if self.in_flight() > 0 {
            let e = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(CANCEL_UD);
            // SAFETY: a cancel request carries no pointer.
            let _ = unsafe { self.push(&e) };
            let deadline = Instant::now() + DROP_WAIT;
            while self.in_flight() > 0 && Instant::now() < deadline {
                let _ = self.park(Some(Duration::from_millis(10)));
                self.reap();
            }
        }
        let clean = self.in_flight() == 0;
        if let Some(b) = self.bufs() {
            let _ = self.sub.unregister_buf_ring(b.group());
        }
        // SAFETY: `sub` is dropped exactly once, here, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.sub) };
        if clean {
            // SAFETY: dropped exactly once; the kernel finished every operation and the buffer
            // group is unregistered, so nothing writes the buffers any more.
            unsafe { ManuallyDrop::drop(&mut self.bufs) };
            // SAFETY: `uring` came from `Box::leak` in `new`; its only borrower (`sub`) is gone.
            drop(unsafe { Box::from_raw(self.uring.as_ptr()) });
        } else {
            // The kernel may still touch buffers of unfinished operations: leak them, the
            // buffer ring and the ring itself rather than free memory it may write.
            std::mem::forget(std::mem::take(&mut *self.slab.borrow_mut()));
        }
    }
}
