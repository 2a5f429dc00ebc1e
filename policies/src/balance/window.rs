//! A sliding window of two counters, kept as a ring of time buckets; shared by the circuit
//! breaker (requests, failures) and the retry budget (requests, retries).
//!
//! Totals are kept running, so reading them is O(1); moving the window forward clears at
//! most [`BUCKETS`] buckets however long it was idle. The window covers the current bucket
//! and the `BUCKETS - 1` before it, so it spans between `window * (BUCKETS - 1) / BUCKETS`
//! and `window` of history: an old event is forgotten one bucket width at a time.

use std::time::{Duration, Instant};

/// Buckets in the ring.
pub(crate) const BUCKETS: usize = 10;

/// Two event counters over a sliding time window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Bucket 0 starts here.
    origin: Instant,
    /// One bucket's width in nanoseconds, at least 1.
    bucket_ns: u128,
    /// The number (since `origin`) of the newest bucket.
    head: u64,
    buckets: [[u32; 2]; BUCKETS],
    totals: [u64; 2],
}

impl Window {
    /// An empty window of length `window`, its buckets counted from `now`.
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            bucket_ns: (window.as_nanos() / BUCKETS as u128).max(1),
            head: 0,
            buckets: [[0; 2]; BUCKETS],
            totals: [0; 2],
        }
    }

    /// Moves the window to `now`, forgetting buckets that slid out. Time going backwards
    /// is treated as the newest bucket.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos() / self.bucket_ns;
        let index = u64::try_from(elapsed).unwrap_or(u64::MAX);
        if index <= self.head {
            return;
        }
        let steps = (index - self.head).min(BUCKETS as u64);
        for k in 1..=steps {
            let slot = ((self.head + k) % BUCKETS as u64) as usize;
            if let Some(bucket) = self.buckets.get_mut(slot) {
                for (total, count) in self.totals.iter_mut().zip(bucket.iter_mut()) {
                    *total = total.saturating_sub(u64::from(*count));
                    *count = 0;
                }
            }
        }
        self.head = index;
    }

    /// Counts one event of counter `which` (0 or 1) at `now`.
    pub(crate) fn add(&mut self, which: usize, now: Instant) {
        self.advance(now);
        let slot = (self.head % BUCKETS as u64) as usize;
        if let (Some(count), Some(total)) = (
            self.buckets.get_mut(slot).and_then(|b| b.get_mut(which)),
            self.totals.get_mut(which),
        ) {
            *count = count.saturating_add(1);
            *total += 1;
        }
    }

    /// Both counters' totals over the window ending at `now`.
    pub(crate) fn totals(&mut self, now: Instant) -> [u64; 2] {
        self.advance(now);
        self.totals
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.buckets = [[0; 2]; BUCKETS];
        self.totals = [0; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_one_bucket_at_a_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window::new(ms(1_000), t0);
        w.add(0, t0);
        w.add(0, t0 + ms(150));
        w.add(1, t0 + ms(950));
        assert_eq!(w.totals(t0 + ms(999)), [2, 1]);
        // Bucket 0 (0..100 ms) slides out at 1000 ms.
        assert_eq!(w.totals(t0 + ms(1_000)), [1, 1]);
        assert_eq!(w.totals(t0 + ms(1_100)), [0, 1]);
        assert_eq!(w.totals(t0 + ms(1_899)), [0, 1]);
        assert_eq!(w.totals(t0 + ms(1_900)), [0, 0]);
        // Long idle, then time going backwards: harmless.
        w.add(1, t0 + ms(90_000));
        w.add(1, t0 + ms(10));
        assert_eq!(w.totals(t0 + ms(90_000)), [0, 2]);
        w.clear();
        assert_eq!(w.totals(t0 + ms(90_000)), [0, 0]);
        // A zero-length window still works (as one of BUCKETS nanoseconds).
        let mut z = Window::new(Duration::ZERO, t0);
        z.add(0, t0);
        assert_eq!(z.totals(t0 + Duration::from_nanos(9)), [1, 0]);
        assert_eq!(z.totals(t0 + Duration::from_nanos(10)), [0, 0]);
    }
}
