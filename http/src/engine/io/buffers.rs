//! The per-core pool of connection buffers: a connection holds its buffers only while a
//! request is on it.
//!
//! A client connection needs a read buffer for its request, one for the upstream's response and
//! one for the heads it writes, but only between the first byte of a request and the end of its
//! response. Held for the connection's whole life, 10,000 idle keep-alive connections pinned
//! about 480 MB. So a connection takes its buffers here once the client's bytes are readable and
//! gives them back when it goes idle with nothing buffered (a pipelined request keeps them).
//!
//! The pool keeps at most a bounded number of free buffers (the rest go back to the allocator),
//! and counts the buffers lent out: the `ringgate_conn_buffers_in_use` gauge.
//!
//! This is the one place that knows where connection buffers come from: an io_uring provided
//! buffer ring can replace the free list behind [`BufPool::take`] and [`BufPool::give`] without
//! the request loop changing.

use std::cell::{Cell, RefCell};

/// How many free buffers a core keeps for reuse, at most.
pub(crate) const DEFAULT_MAX_FREE: usize = 256;

/// A core's connection buffers.
#[derive(Debug)]
pub(crate) struct BufPool {
    /// Capacity of every buffer handed out.
    size: usize,
    /// Free buffers kept for reuse (each empty, of capacity `size`).
    free: RefCell<Vec<Vec<u8>>>,
    /// At most this many free buffers are kept.
    max_free: usize,
    /// Buffers taken and not given back.
    in_use: Cell<u64>,
}

/// What [`BufPool::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufStats {
    /// Buffers held by connections now.
    pub in_use: u64,
    /// Free buffers kept for reuse.
    pub free: u64,
}

impl BufPool {
    /// A pool of buffers of `size` bytes keeping at most `max_free` free ones.
    pub(crate) fn new(size: usize, max_free: usize) -> Self {
        Self {
            size,
            free: RefCell::new(Vec::new()),
            max_free,
            in_use: Cell::new(0),
        }
    }

    /// An empty buffer of capacity [`BufPool::size`], lent until [`BufPool::give`].
    pub(crate) fn take(&self) -> Vec<u8> {
        self.in_use.set(self.in_use.get() + 1);
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Takes `buf` back. A buffer that grew or shrank, or one over the free bound, is freed.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        self.in_use.set(self.in_use.get().saturating_sub(1));
        let mut free = self.free.borrow_mut();
        if buf.capacity() == self.size && free.len() < self.max_free {
            buf.clear();
            free.push(buf);
        }
    }

    /// A lent buffer left the pool's care for good (handed to a tunnel or to HTTP/2): it is
    /// no longer counted as held.
    pub(crate) fn forget(&self) {
        self.in_use.set(self.in_use.get().saturating_sub(1));
    }

    /// Buffers lent and free now.
    pub(crate) fn stats(&self) -> BufStats {
        BufStats {
            in_use: self.in_use.get(),
            free: self.free.borrow().len() as u64,
        }
    }
}

/// A connection's three buffers (see [`crate::engine::request::state::Conn`]), taken together and given back
/// together.
pub(crate) fn hold(pool: &BufPool, bufs: [&mut Vec<u8>; 3]) {
    for b in bufs {
        if b.capacity() == 0 {
            *b = pool.take();
        }
    }
}

/// Gives back whichever of `bufs` are held (capacity above zero), leaving them empty.
pub(crate) fn release(pool: &BufPool, bufs: [&mut Vec<u8>; 3]) {
    for b in bufs {
        if b.capacity() > 0 {
            pool.give(std::mem::take(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds_free_buffers() {
        let p = BufPool::new(1024, 2);
        let a = p.take();
        let b = p.take();
        let c = p.take();
        assert_eq!(a.capacity(), 1024);
        assert_eq!(p.stats().in_use, 3);
        p.give(a);
        p.give(b);
        p.give(c);
        assert_eq!(p.stats(), BufStats { in_use: 0, free: 2 });
        let d = p.take();
        assert_eq!(p.stats(), BufStats { in_use: 1, free: 1 });
        p.give(d);
    }

    #[test]
    fn a_grown_buffer_is_not_kept() {
        let p = BufPool::new(16, 4);
        let mut a = p.take();
        a.extend_from_slice(&[0; 64]);
        p.give(a);
        assert_eq!(p.stats(), BufStats { in_use: 0, free: 0 });
    }

    #[test]
    fn hold_and_release_count_each_buffer_once() {
        let p = BufPool::new(64, 4);
        let (mut x, mut y, mut z) = (Vec::new(), Vec::new(), Vec::new());
        hold(&p, [&mut x, &mut y, &mut z]);
        hold(&p, [&mut x, &mut y, &mut z]);
        assert_eq!(p.stats().in_use, 3);
        release(&p, [&mut x, &mut y, &mut z]);
        release(&p, [&mut x, &mut y, &mut z]);
        assert_eq!(p.stats(), BufStats { in_use: 0, free: 3 });
        assert_eq!(x.capacity(), 0);
    }
}
