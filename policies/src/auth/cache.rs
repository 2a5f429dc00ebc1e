//! The bounded, expiring, per-core map behind the JWT and introspection caches.
//!
//! Exists because both caches want the same thing: remember a verdict about a token until the
//! token expires, in bounded memory, with no locks (each core owns its own, `&mut self`).
//!
//! # Keys: the full SHA-256 of the token
//!
//! A cache hit hands out an identity without checking the signature again, so two tokens must
//! never share an entry. Keying by a 64-bit hash would need the token stored beside it to rule
//! out collisions (kilobytes per entry); keying by SHA-256 makes a collision a broken hash
//! function, stores 32 bytes, and needs no secret seed. It is cheap enough: with the SHA
//! extensions (present on the CPUs we run on; `sha2` detects them at run time) a typical 300
//! to 1,000-byte token hashes in well under a microsecond, against tens of microseconds for
//! a signature check or a network round trip for introspection.
//!
//! The hash map then takes the digest's first 8 bytes as its hash: they are uniformly
//! distributed, and only tokens that passed verification are ever inserted, so a client
//! cannot flood one bucket (it would have to get the identity provider to sign its tokens).
//!
//! # Eviction: CLOCK
//!
//! Entries live in a slot array of at most `capacity` slots; a hit sets the slot's reference
//! bit. When full, the clock hand sweeps: an expired slot or one whose bit is clear is the
//! victim, a set bit is cleared and passed over. New entries start with the bit clear, so
//! one-off tokens leave before tokens that are used again. Expired entries are not swept
//! eagerly: a lookup treats them as absent and the hand reuses them first.

use crate::idhash::IdHasher;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use sha2::{Digest, Sha256};

/// The SHA-256 of a token: the cache key, and a handy key for in-flight lookups (one
/// introspection call per token at a time) without keeping the token around.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Hashes `token`.
    pub fn of(token: &[u8]) -> Self {
        TokenDigest(Sha256::digest(token).into())
    }

    /// Hashes a context prefix and the token (the JWT cache mixes in the key set generation
    /// and policy id so a verdict never outlives the keys or policy it was reached with).
    pub(crate) fn with_context(context: &[u8], token: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(context);
        h.update(token);
        TokenDigest(h.finalize().into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Enough to correlate in a log, not the whole digest.
        write!(f, "TokenDigest(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// Passes the digest's first word through (see the module doc for why that is safe).
#[derive(Default, Clone, Copy)]
pub(crate) struct DigestHash;

impl BuildHasher for DigestHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher::default()
    }
}

struct Slot<V> {
    key: TokenDigest,
    expires_at: u64,
    referenced: bool,
    value: V,
}

/// A bounded map from token digest to `V`, each entry valid until its `expires_at`.
pub(crate) struct ExpiringCache<V> {
    map: HashMap<TokenDigest, usize, DigestHash>,
    slots: Vec<Slot<V>>,
    hand: usize,
    capacity: usize,
}

impl<V> ExpiringCache<V> {
    /// An empty cache holding at most `capacity` entries (0 disables it).
    pub(crate) fn new(capacity: usize) -> Self {
        ExpiringCache {
            map: HashMap::with_capacity_and_hasher(0, DigestHash),
            slots: Vec::new(),
            hand: 0,
            capacity,
        }
    }

    /// The slot holding a live entry for `key`, marking it recently used.
    pub(crate) fn find(&mut self, key: &TokenDigest, now: u64) -> Option<usize> {
        let &index = self.map.get(key)?;
        let slot = self.slots.get_mut(index)?;
        if slot.expires_at <= now {
            return None;
        }
        slot.referenced = true;
        Some(index)
    }

    /// The value in a slot returned by `find` or `insert`.
    pub(crate) fn value(&self, index: usize) -> Option<&V> {
        self.slots.get(index).map(|s| &s.value)
    }

    /// Stores `value` until `expires_at`, replacing any entry for `key`; evicts one entry
    /// when full. Returns the slot, or `None` when the entry would already be expired or the
    /// cache is disabled (nothing stored).
    pub(crate) fn insert(
        &mut self,
        key: TokenDigest,
        value: V,
        expires_at: u64,
        now: u64,
    ) -> Option<usize> {
        if expires_at <= now || self.capacity == 0 {
            return None;
        }
        let slot = Slot {
            key,
            expires_at,
            referenced: false,
            value,
        };
        if let Some(&index) = self.map.get(&key) {
            if let Some(existing) = self.slots.get_mut(index) {
                *existing = slot;
                return Some(index);
            }
        }
        if self.slots.len() < self.capacity {
            self.slots.push(slot);
            let index = self.slots.len() - 1;
            self.map.insert(key, index);
            return Some(index);
        }
        let victim = self.victim(now);
        let old = std::mem::replace(&mut self.slots[victim], slot);
        // A removed key may since have been inserted again into another slot: only drop the
        // map entry if it still points here.
        if self.map.get(&old.key) == Some(&victim) {
            self.map.remove(&old.key);
        }
        self.map.insert(key, victim);
        Some(victim)
    }

    /// Advances the clock hand to the next evictable slot. The cache is full (`slots` is
    /// non-empty); after one full sweep every bit is clear, so this stops within
    /// `slots.len() + 1` steps.
    fn victim(&mut self, now: u64) -> usize {
        let n = self.slots.len();
        loop {
            let index = self.hand % n;
            self.hand = (index + 1) % n;
            let slot = &mut self.slots[index];
            if slot.expires_at <= now || !slot.referenced {
                return index;
            }
            slot.referenced = false;
        }
    }

    /// Drops the entry for `key`, if any (its slot is reused first).
    pub(crate) fn remove(&mut self, key: &TokenDigest) {
        if let Some(index) = self.map.remove(key) {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.expires_at = 0;
                slot.referenced = false;
            }
        }
    }

    /// Entries stored, live or expired-but-not-yet-reused (always `<= capacity`).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The most entries this cache holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every entry and releases the memory.
    pub(crate) fn clear(&mut self) {
        self.map = HashMap::with_capacity_and_hasher(0, DigestHash);
        self.slots = Vec::new();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> TokenDigest {
        TokenDigest::of(&i.to_le_bytes())
    }

    #[test]
    fn bounded_and_expiring() {
        let mut c = ExpiringCache::new(8);
        for i in 0..80u32 {
            assert!(c.insert(key(i), i, 100, 10).is_some());
            assert!(c.len() <= 8);
            assert!(c.slots.len() <= 8);
        }
        let hits = (0..80u32)
            .filter(|&i| c.find(&key(i), 10).is_some())
            .count();
        assert_eq!(hits, 8);
        // Expired entries are absent.
        let i = c.find(&key(79), 10).unwrap();
        assert_eq!(c.value(i), Some(&79));
        assert!(c.find(&key(79), 100).is_none());
        // Born expired: not stored.
        assert!(c.insert(key(1000), 1, 10, 10).is_none());
        assert!(c.find(&key(1000), 5).is_none());
    }

    #[test]
    fn referenced_entries_survive_a_sweep() {
        let mut c = ExpiringCache::new(4);
        for i in 0..4u32 {
            c.insert(key(i), i, 100, 0);
        }
        c.find(&key(0), 0).unwrap();
        for i in 10..13u32 {
            c.insert(key(i), i, 100, 0);
        }
        assert!(
            c.find(&key(0), 0).is_some(),
            "a hit entry outlives one-off entries"
        );
    }

    #[test]
    fn expired_slots_go_first_and_replace_in_place() {
        let mut c = ExpiringCache::new(3);
        c.insert(key(0), 0, 100, 0);
        c.insert(key(1), 1, 5, 0);
        c.insert(key(2), 2, 100, 0);
        c.find(&key(0), 0);
        c.find(&key(2), 0);
        c.insert(key(3), 3, 100, 10);
        assert!(c.find(&key(0), 10).is_some());
        assert!(c.find(&key(2), 10).is_some());
        assert!(c.find(&key(3), 10).is_some());
        // Same key: replaced, not duplicated.
        c.insert(key(3), 33, 100, 10);
        assert_eq!(c.len(), 3);
        let i = c.find(&key(3), 10).unwrap();
        assert_eq!(c.value(i), Some(&33));
        c.remove(&key(3));
        assert!(c.find(&key(3), 10).is_none());
        // Re-inserted elsewhere after a remove: reusing the stale slot keeps the new entry.
        c.insert(key(3), 34, 100, 10);
        for i in 20..30u32 {
            c.insert(key(i), i, 100, 10);
            if let Some(j) = c.find(&key(3), 10) {
                assert_eq!(c.value(j), Some(&34));
            }
            assert!(c.len() <= 3);
        }
        c.clear();
        assert_eq!(c.len(), 0);
        // Disabled cache.
        let mut off = ExpiringCache::new(0);
        assert!(off.insert(key(1), 1, 100, 0).is_none());
    }
}
