//! A pass-through hasher for map keys that already are well-mixed hashes (token digests, the
//! rate limiter's keyed key hashes): hashing them again would only cost time.

use std::hash::Hasher;

/// Passes a `u64` key through; bytes (never expected) are folded in.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
