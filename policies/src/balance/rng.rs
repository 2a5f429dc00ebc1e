//! The small, seedable randomness and the stable hash the balancing code runs on.
//!
//! Why not `rand`: a picker needs a few random bits per request on one core, with no
//! thread-local lookups, no reseeding and, above all, a seed the tests can fix so every
//! distribution test replays the same picks. [`FastRng`] is wyrand (one add, one 64x64->128
//! multiply): statistically fine for load balancing and jitter, not for anything secret.
//!
//! Why not std's `DefaultHasher`: its output is not promised to stay the same across Rust
//! releases, and consistent hashing needs a hash that does (a key must keep its endpoint
//! across a rolling upgrade of the gateway). [`hash_bytes`] is FNV-1a, whose weak mixing is
//! repaired by a SplitMix64 finaliser so every input bit reaches every output bit.

/// Added to the state on every step (wyrand's increment, odd).
const WY_INCREMENT: u64 = 0xa076_1d64_78bd_642f;
/// XORed into the second multiplicand (wyrand's mixing constant).
const WY_MIX: u64 = 0xe703_7ed1_a0b4_28db;

/// A fast, seedable, per-core pseudo-random generator (wyrand). Not cryptographic.
///
/// Every seed, including 0, gives a full-period sequence.
#[derive(Debug, Clone)]
pub struct FastRng {
    state: u64,
}

impl FastRng {
    /// A generator whose sequence is fixed by `seed` (give each core a different one).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(WY_INCREMENT);
        let product = u128::from(self.state) * u128::from(self.state ^ WY_MIX);
        ((product >> 64) as u64) ^ (product as u64)
    }

    /// A uniform integer in `0..n`; 0 when `n` is 0.
    ///
    /// Lemire's multiply-shift with its rejection step, so it is exactly unbiased and almost
    /// always costs one multiply (the rejection loop runs with probability `n / 2^64`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut product = u128::from(self.next_u64()) * u128::from(n);
        if (product as u64) < n {
            // 2^64 mod n: the low words below it are the over-represented ones.
            let threshold = n.wrapping_neg() % n;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (product >> 64) as u64
    }

    /// A uniform index in `0..n`; 0 when `n` is 0.
    #[inline]
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A fast 64-bit hash of `bytes` that is stable forever (same input, same output, on every
/// platform and release), with good avalanche; for consistent hashing and traffic splits.
///
/// Not keyed: do not use it for a map whose keys an attacker chooses.
#[must_use]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    mix64(hash)
}

/// The SplitMix64 finaliser: a bijection on `u64` in which every input bit flips each output
/// bit with probability close to 1/2. Also used to derive independent hashes from one.
#[inline]
#[must_use]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_seeds_differ() {
        let mut a = FastRng::new(7);
        let mut b = FastRng::new(7);
        let mut c = FastRng::new(8);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = FastRng::new(1);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[rng.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn unit_f64_is_in_range_with_mean_one_half() {
        let mut rng = FastRng::new(2);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let x = rng.unit_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        let mean = sum / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn hash_is_stable_and_avalanches() {
        // Pinned: consistent hashing breaks across releases if this ever changes.
        assert_eq!(hash_bytes(b"10.0.0.1:80"), 0xdbbc_907f_2153_1a73);
        assert_eq!(hash_bytes(b""), mix64(FNV_OFFSET));
        assert_ne!(hash_bytes(b"10.0.0.1:80"), hash_bytes(b"10.0.0.1:81"));
        // Flipping one input bit flips about half the output bits, on average.
        let base = b"user-12345".to_vec();
        let h0 = hash_bytes(&base);
        let mut total = 0;
        let mut flips = 0;
        for byte in 0..base.len() {
            for bit in 0..8 {
                let mut v = base.clone();
                v[byte] ^= 1 << bit;
                total += (hash_bytes(&v) ^ h0).count_ones();
                flips += 1;
            }
        }
        let mean = f64::from(total) / f64::from(flips);
        assert!((28.0..36.0).contains(&mean), "{mean}");
    }

    proptest::proptest! {
        #[test]
        fn below_stays_below(seed in proptest::num::u64::ANY, n in 1u64..u64::MAX) {
            let mut rng = FastRng::new(seed);
            for _ in 0..8 {
                proptest::prop_assert!(rng.below(n) < n);
            }
        }
    }
}
