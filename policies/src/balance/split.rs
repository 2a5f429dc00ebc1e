//! Weighted traffic splits (canary, blue/green, A/B): which of several backends a request
//! goes to, decided by a hash so the same user keeps getting the same backend.
//!
//! The split hashes a request key (a user id, a cookie, the client address) into
//! `0..total_weight` and maps that through the cumulative weights. The caller may hash the
//! same key for [`Maglev`](super::Maglev) too: the split first remixes the hash and then
//! reads its *high* bits, while Maglev reads the original hash modulo a prime, so which
//! backend a key gets says nothing about which endpoint it gets inside that backend. An
//! explicit override (a header naming the backend) is the caller's business.

use super::rng::mix64;

/// Decorrelates the split's use of a hash from Maglev's use of the same one.
const SPLIT_SALT: u64 = 0x5851_f42d_4c95_7f2d;

/// A weighted split over backends `0..n`; immutable, so it can be shared or rebuilt freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSplit {
    /// Running sums of the weights: backend `i` owns `cumulative[i-1]..cumulative[i]`.
    cumulative: Box<[u64]>,
}

impl TrafficSplit {
    /// A split in proportion to `weights` (0 = never chosen).
    #[must_use]
    pub fn new(weights: &[u32]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        Self { cumulative }
    }

    /// The number of backends.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// True when there are no backends.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// The backend for a key hash: the same hash always gets the same backend, and over
    /// many keys each backend's share follows its weight. O(log n).
    ///
    /// Returns 0 when the split is empty or every weight is 0 (the caller should not build
    /// such a split).
    #[must_use]
    pub fn pick(&self, hash: u64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        // Multiply-shift maps the remixed hash's high bits onto 0..total; the bias is at
        // most total / 2^64 per backend, nothing next to any real weight.
        let point = ((u128::from(mix64(hash ^ SPLIT_SALT)) * u128::from(total)) >> 64) as u64;
        self.cumulative.partition_point(|&end| end <= point)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::hash_bytes;
    use super::super::Maglev;
    use super::*;

    fn user(i: usize) -> u64 {
        hash_bytes(format!("user-{i}").as_bytes())
    }

    #[test]
    fn ninety_five_five_within_one_percent_and_stable() {
        let split = TrafficSplit::new(&[95, 5]);
        let mut counts = [0usize; 2];
        for i in 0..100_000 {
            let b = split.pick(user(i));
            counts[b] += 1;
            assert_eq!(split.pick(user(i)), b);
        }
        let canary = counts[1] as f64 / 100_000.0;
        assert!((canary - 0.05).abs() < 0.01, "{counts:?}");
        // A rebuilt split with the same weights agrees.
        let again = TrafficSplit::new(&[95, 5]);
        assert!((0..1_000).all(|i| again.pick(user(i)) == split.pick(user(i))));
    }

    #[test]
    fn zero_weights_and_empty() {
        let split = TrafficSplit::new(&[0, 3, 0, 1, 0]);
        let mut counts = [0usize; 5];
        for i in 0..100_000 {
            counts[split.pick(user(i))] += 1;
        }
        assert_eq!((counts[0], counts[2], counts[4]), (0, 0, 0));
        assert!(
            (counts[1] as f64 / 100_000.0 - 0.75).abs() < 0.01,
            "{counts:?}"
        );
        assert_eq!(TrafficSplit::new(&[]).pick(7), 0);
        assert!(TrafficSplit::new(&[]).is_empty());
        assert_eq!(TrafficSplit::new(&[0, 0]).pick(7), 0);
        assert_eq!(split.len(), 5);
    }

    #[test]
    fn independent_of_maglev_on_the_same_hash() {
        let keys: Vec<Vec<u8>> = (0..4)
            .map(|i| format!("10.0.0.{i}:80").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let maglev = Maglev::new(&refs, &[], 65_537);
        let split = TrafficSplit::new(&[50, 50]);
        // Among the keys of each Maglev endpoint, the split is still about even.
        let mut counts = [[0usize; 2]; 4];
        for i in 0..100_000 {
            let h = user(i);
            counts[maglev.lookup(h, |_| true).unwrap()][split.pick(h)] += 1;
        }
        for [a, b] in counts {
            let share = a as f64 / (a + b) as f64;
            assert!((share - 0.5).abs() < 0.02, "{counts:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn picks_a_weighted_backend(
            weights in proptest::collection::vec(0u32..1_000, 1..10),
            hash in proptest::num::u64::ANY,
        ) {
            let split = TrafficSplit::new(&weights);
            let b = split.pick(hash);
            proptest::prop_assert!(b < weights.len());
            if weights.iter().any(|&w| w > 0) {
                proptest::prop_assert!(weights[b] > 0);
            }
        }
    }
}
