//! Single-writer counters: written by one worker, read by any thread, with no lock and no RMW.
//!
//! A worker bumps its own counters on the request path. An atomic read-modify-write there would
//! cost a locked instruction per request; since only the owning worker ever writes, a relaxed load
//! followed by a relaxed store is exact and compiles to plain moves. Readers (the drain, metrics)
//! see a recent value, which is all they need.

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter that exactly one thread writes. Each sits on its own cache line so that workers'
/// counters never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SingleWriterCounter(AtomicU64);

impl SingleWriterCounter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds `n`. Call only from the owning thread.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts `n`. Call only from the owning thread.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writer_counts_are_seen_by_readers() {
        let c = std::sync::Arc::new(SingleWriterCounter::new());
        let w = c.clone();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                w.add(2);
            }
            w.sub(1);
        })
        .join()
        .expect("writer thread panicked");
        assert_eq!(c.get(), 1999);
    }
}
