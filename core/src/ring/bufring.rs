//! The provided buffer ring of a worker's ring: one block of receive buffers the kernel picks
//! from when a multishot receive has data, so no receive holds a buffer while it waits and an
//! idle connection holds none. A buffer the kernel filled is ours until [`BufRing::recycle`]
//! puts it back at the ring's tail.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring_07::types::BufRingEntry;
use io_uring_07::Submitter;

/// Alignment the kernel asks of a buffer ring's entry array.
const PAGE: usize = 4096;

/// Receive buffers shared with the kernel under one buffer group id.
pub struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    mem: NonNull<u8>,
    mem_layout: Layout,
    count: u16,
    size: u32,
    bgid: u16,
    /// Our tail: entries before it are the kernel's to pick.
    tail: Cell<u16>,
    /// Buffers the kernel has filled and we have not recycled yet.
    out: Cell<u32>,
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes, registers them as group `bgid` and hands them
    /// all to the kernel. `count` must be a power of two up to 32768.
    pub fn new(sub: &Submitter<'_>, bgid: u16, count: u16, size: u32) -> io::Result<Self> {
        if count == 0 || !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer ring: {count} buffers of {size} bytes (count: a power of two up to 32768)"),
            ));
        }
        let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            PAGE,
        )
        .map_err(bad)?;
        let mem_layout =
            Layout::from_size_align(usize::from(count) * size as usize, 64).map_err(bad)?;
        // SAFETY: both layouts have a non-zero size (count and size are non-zero, checked above).
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>());
        // SAFETY: as above. Zeroed, so a buffer is initialized memory before the kernel writes it.
        let mem = NonNull::new(unsafe { alloc_zeroed(mem_layout) });
        let (Some(entries), Some(mem)) = (entries, mem) else {
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let ring = Self {
            entries,
            entries_layout,
            mem,
            mem_layout,
            count,
            size,
            bgid,
            tail: Cell::new(0),
            out: Cell::new(0),
        };
        // SAFETY: the entry array is valid for `count` entries, page aligned, and lives until
        // `Drop`; the owning ring unregisters the group before it drops this value
        // (`Ring::drop`), and if registration fails here the kernel never saw the address.
        unsafe {
            sub.register_buf_ring_with_flags(entries.as_ptr() as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The buffer group id receives name.
    pub fn group(&self) -> u16 {
        self.bgid
    }

    /// Bytes per buffer.
    pub fn buffer_size(&self) -> u32 {
        self.size
    }

    /// Buffers filled by the kernel and not recycled yet.
    pub fn outstanding(&self) -> u32 {
        self.out.get()
    }

    /// Notes that the kernel handed buffer `bid` to a completion.
    pub(crate) fn taken(&self, bid: u16) {
        debug_assert!(bid < self.count);
        self.out.set(self.out.get() + 1);
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed to us.
    pub(crate) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(self.size as usize);
        let bid = bid.min(self.count - 1);
        // SAFETY: `bid < count` and `len <= size`, so the range lies inside `mem`. The kernel
        // wrote this buffer for a completed receive and does not touch it again until
        // `recycle(bid)` puts it back in the ring, which the caller does only after its last use
        // of the slice (a `Chunk` borrows the ring for the slice's life and recycles on drop).
        // The memory was zero-initialized at allocation and lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(
                self.mem.as_ptr().add(usize::from(bid) * self.size as usize),
                len,
            )
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&self, bid: u16) {
        self.out.set(self.out.get().saturating_sub(1));
        self.push(bid);
        self.publish();
    }

    /// Writes the entry for `bid` at our tail (not yet visible to the kernel).
    fn push(&self, bid: u16) {
        let bid = bid.min(self.count - 1);
        let idx = usize::from(self.tail.get() & (self.count - 1));
        let addr = self.mem.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // SAFETY: `idx < count`, inside the entry array. The kernel reads entries only between
        // its head and the published tail; this one is at our unpublished tail, and at most
        // `count` buffers exist, so it is never one the kernel may still read.
        let entry = unsafe { &mut *self.entries.as_ptr().add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail.set(self.tail.get().wrapping_add(1));
    }

    /// Publishes our tail to the kernel (after the entries it covers are written).
    fn publish(&self) {
        // SAFETY: the shared tail is the `resv` field of entry 0, inside the entry array, u16
        // aligned; the kernel reads it concurrently, so it is written as an atomic with Release
        // ordering (entry writes before it become visible first).
        let tail = unsafe { &*BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail.get(), Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both blocks came from `alloc_zeroed` with these layouts. The owning ring has
        // unregistered the group and ended every receive that could write a buffer before it
        // drops this value (see `Ring::drop`; if it could not, it leaks the ring instead).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.mem.as_ptr(), self.mem_layout);
        }
    }
}
