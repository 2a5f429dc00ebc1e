//! A fast, fixed hash for the route table's byte-string maps (hosts, host suffixes, exact
//! paths, path segments).
//!
//! Why not std's `RandomState`: SipHash costs ~15-20 ns on a short key and one lookup may hash
//! half a dozen keys. Its random seed defends against hash flooding, which needs the attacker
//! to choose the *inserted* keys; here every key is inserted from config at build time and
//! requests only look keys up, so a request cannot lengthen a probe sequence. The function is
//! FxHash's multiply-rotate over 8-byte words, with a SplitMix64 finaliser because hashbrown
//! takes its control byte from the top bits and its bucket from the bottom bits.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A `HashMap` keyed from config, looked up per request.
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHash>;

/// Builds [`FastHasher`]s; fixed seed (see the module doc for why that is safe here).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { hash: 0 }
    }
}

/// FxHash word mixing with a SplitMix64 finish.
#[derive(Debug, Clone)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.hash;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_string_keys_round_trip_and_differ_by_tail() {
        let mut map: FastMap<Box<[u8]>, u32> = FastMap::default();
        for (i, key) in ["a", "ab", "abcdefgh", "abcdefghi", "", "abcdefgh\0"]
            .iter()
            .enumerate()
        {
            map.insert(key.as_bytes().into(), i as u32);
        }
        assert_eq!(map.len(), 6);
        assert_eq!(map.get(&b"abcdefghi"[..]), Some(&3));
        assert_eq!(map.get(&b"abcdefgh\0"[..]), Some(&5));
        assert_eq!(map.get(&b"abcdefgj"[..]), None);
    }
}
