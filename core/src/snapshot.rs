//! The config snapshot and its epoch swap.
//!
//! The control thread builds and validates a whole new snapshot off the hot path, then publishes
//! it: it replaces the `Arc` in the slot (under a mutex only writers and epoch-changed readers
//! take) and bumps the epoch. A worker keeps its own copy of the current `Arc`, wrapped in an
//! `Rc`, and per request does one acquire load of the epoch; only when it changed does it take the
//! slot. A request clones the worker's `Rc` (a non-atomic increment; cloning the `Arc` itself
//! would be an atomic on a cache line every core shares) and holds it to the end, so in-flight
//! requests finish on the snapshot they started with.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The shared slot holding the current snapshot.
pub struct SnapshotSlot<T> {
    epoch: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> SnapshotSlot<T> {
    /// A slot holding `first` at epoch 1.
    pub fn new(first: Arc<T>) -> Arc<Self> {
        Arc::new(Self {
            epoch: AtomicU64::new(1),
            current: Mutex::new(first),
        })
    }

    /// Publishes `next`; returns its epoch. Readers pick it up at their next request.
    pub fn publish(&self, next: Arc<T>) -> u64 {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *cur = next;
        // Bumped while holding the lock, so a reader that sees the new epoch finds the new value.
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current snapshot and its epoch (takes the mutex: not for the hot path).
    pub fn load(&self) -> (u64, Arc<T>) {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (self.epoch.load(Ordering::Acquire), cur.clone())
    }

    /// A per-worker view of this slot.
    pub fn view(self: &Arc<Self>) -> SnapshotView<T> {
        let (epoch, arc) = self.load();
        SnapshotView {
            slot: self.clone(),
            epoch,
            cached: Rc::new(arc),
        }
    }
}

/// One worker's copy of the current snapshot.
pub struct SnapshotView<T> {
    slot: Arc<SnapshotSlot<T>>,
    epoch: u64,
    // Deliberately `Rc<Arc<T>>`: a request clones the `Rc` (a plain increment on this core's
    // memory) instead of the `Arc` (an atomic on a cache line all cores share).
    #[allow(clippy::redundant_allocation)]
    cached: Rc<Arc<T>>,
}

impl<T> SnapshotView<T> {
    /// The snapshot a new request should use: the cached one unless the epoch moved.
    #[inline]
    #[allow(clippy::redundant_allocation)]
    pub fn current(&mut self) -> Rc<Arc<T>> {
        if self.slot.epoch() != self.epoch {
            let (epoch, arc) = self.slot.load();
            self.epoch = epoch;
            self.cached = Rc::new(arc);
        }
        self.cached.clone()
    }

    /// The epoch of the cached snapshot.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_snapshot_survives_a_swap_and_new_requests_see_the_new_one() {
        let slot = SnapshotSlot::new(Arc::new(String::from("v1")));
        let mut view = slot.view();
        let in_flight = view.current();
        assert_eq!(slot.publish(Arc::new(String::from("v2"))), 2);
        assert_eq!(
            in_flight.as_str(),
            "v1",
            "in-flight request keeps its snapshot"
        );
        assert_eq!(view.current().as_str(), "v2");
        assert_eq!(view.epoch(), 2);
    }

    #[test]
    fn swaps_from_another_thread_are_seen_in_order() {
        let slot = SnapshotSlot::new(Arc::new(0u64));
        let writer = slot.clone();
        let t = std::thread::spawn(move || {
            for i in 1..=1000u64 {
                writer.publish(Arc::new(i));
            }
        });
        let mut view = slot.view();
        let mut last = 0;
        loop {
            let v = **view.current();
            assert!(v >= last, "snapshots never go backwards");
            last = v;
            if v == 1000 {
                break;
            }
        }
        t.join().expect("writer");
    }
}
