//! Heap allocation counting, compiled only with `--features count-alloc`: the global allocator
//! becomes mimalloc behind a counter of allocation calls, and SIGUSR2 prints the total since
//! start (`ringgate: heap allocations N`) to stderr. `ringbench tax --alloc-ringgate` reads it
//! before and after a measured window to give allocations per request.
//!
//! The counter is one process-wide `AtomicU64` incremented with `Relaxed` ordering on every
//! `alloc`, `alloc_zeroed` and `realloc` (frees are not counted). Under load its cache line moves
//! between the cores that allocate, which is why it exists only in this build: the normal build
//! uses plain mimalloc and has no counter at all. The count is exact; the counting build's own
//! latency is not what the tax table reports.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use mimalloc::MiMalloc;

/// mimalloc, counting allocation calls.
pub struct Counting {
    inner: MiMalloc,
    allocations: AtomicU64,
}

impl Counting {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self {
            inner: MiMalloc,
            allocations: AtomicU64::new(0),
        }
    }

    /// Allocation calls so far (`alloc`, `alloc_zeroed`, `realloc`).
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    fn note(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to mimalloc's implementation of the same
// method, so each call meets exactly the contract the caller met; the counter touches no memory
// the allocator hands out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from mimalloc, with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: `ptr` came from mimalloc with `layout`; the caller's contract for `realloc`.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_global_allocator_counts_every_allocation() {
        let before = crate::GLOBAL.allocations();
        let boxes: Vec<Box<u64>> = (0..100u64).map(Box::new).collect();
        let after = crate::GLOBAL.allocations();
        // 100 boxes and the vector (other test threads may add more, never fewer).
        assert!(after - before >= 101, "{before} -> {after}");
        assert_eq!(boxes.len(), 100);
    }
}
