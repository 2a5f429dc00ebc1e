//! One core's stored responses for one cache zone, under a byte budget.
//!
//! Objects are found by their primary key (method-independent: `GET` and `HEAD` share it; host,
//! normalized path, query and the route's extra key parts, built by the engine), then by their
//! `Vary` values: up to [`MAX_VARIANTS`] responses per key, matched against the request's fields
//! named by `Vary`.
//!
//! Eviction is S3-FIFO (Yang et al., SOSP 2023): a new key enters a small FIFO (a tenth of the
//! budget); a key read again while there moves to the main FIFO when it reaches the small FIFO's
//! head, others leave and are remembered in a ghost FIFO of hashes (a key seen again soon after
//! goes straight to main). Main is a FIFO with second chances (a read sets a small counter, each
//! pass at the head takes one off). One-hit wonders (a scan, a flood of unique keys) leave
//! through the small FIFO without pushing out what is read often. Memory is bounded by the byte
//! budget (objects' key, fields and body plus a fixed overhead each) and the ghost by the number
//! of objects. Purges remove by exact key, by key prefix (a walk over the keys: purges are rare)
//! or by surrogate key (tag, indexed).

use super::freshness::Freshness;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::time::Instant;

/// Responses kept per key for different `Vary` values.
pub const MAX_VARIANTS: usize = 8;

/// Bytes counted for each stored response beside its key, fields and body.
pub const OVERHEAD: usize = 256;

/// A request field named by `Vary` (lowercase) and the value it had (`None`: absent).
pub type VaryField = (Box<str>, Option<Box<[u8]>>);

/// A stored response.
#[derive(Debug)]
pub struct Object {
    /// Its status.
    pub status: u16,
    /// Its end-to-end header lines (`name: value\r\n` each), as they will be sent.
    pub fields: Box<[u8]>,
    /// Its body.
    pub body: Rc<[u8]>,
    /// Its `ETag`, if any.
    pub etag: Option<Box<[u8]>>,
    /// Its `Last-Modified`, if any.
    pub last_modified: Option<Box<[u8]>>,
    /// The request fields its `Vary` names (lowercase) with the values the request that
    /// fetched it had (`None`: absent).
    pub vary: Box<[VaryField]>,
    /// Its surrogate keys.
    pub tags: Box<[Box<str>]>,
    /// Freshness.
    pub fresh: Freshness,
    /// When it arrived (its response time).
    pub stored_at: Instant,
}

impl Object {
    fn size(&self, key: &[u8]) -> usize {
        key.len() + self.fields.len() + self.body.len() + OVERHEAD
    }

    /// Whether a request whose fields `field` gives matches the `Vary` values this response was
    /// stored under (values compared with surrounding whitespace trimmed).
    pub fn matches<'a>(&self, field: impl Fn(&str) -> Option<&'a [u8]>) -> bool {
        self.vary.iter().all(|(name, stored)| {
            let now = field(name).map(<[u8]>::trim_ascii);
            now == stored.as_deref().map(<[u8]>::trim_ascii)
        })
    }

    fn same_names(&self, other: &Object) -> bool {
        self.vary.len() == other.vary.len()
            && self
                .vary
                .iter()
                .all(|(n, _)| other.vary.iter().any(|(m, _)| m == n))
    }

    fn same_variant(&self, other: &Object) -> bool {
        self.vary.len() == other.vary.len()
            && self.matches(|n| {
                other
                    .vary
                    .iter()
                    .find(|(m, _)| &**m == n)
                    .and_then(|(_, v)| v.as_deref())
            })
    }
}

struct Slot {
    key: Box<[u8]>,
    freq: u8,
    main: bool,
    size: usize,
    variants: Vec<Rc<Object>>,
    tags: HashSet<Box<str>>,
}

/// Counts since the store was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys evicted to stay within the budget.
    pub evictions: u64,
    /// Responses removed by purges.
    pub purged: u64,
    /// Responses refused for being larger than the budget allows.
    pub too_large: u64,
}

/// One core's objects of one zone.
pub struct Store {
    budget: usize,
    used: usize,
    small_bytes: usize,
    by_key: HashMap<Box<[u8]>, u64>,
    slots: HashMap<u64, Slot>,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64>,
    tags: HashMap<Box<str>, HashSet<u64>>,
    next_id: u64,
    stats: StoreStats,
}

fn hash_of(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Store {
    /// An empty store of `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Store {
            budget,
            used: 0,
            small_bytes: 0,
            by_key: HashMap::new(),
            slots: HashMap::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            tags: HashMap::new(),
            next_id: 0,
            stats: StoreStats::default(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Stored responses (variants counted each).
    pub fn objects(&self) -> usize {
        self.slots.values().map(|s| s.variants.len()).sum()
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Counts since the store was made.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Changes the budget (a reload that resized the zone), evicting down to it.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.evict();
    }

    /// The response stored under `key` for a request whose fields `field` gives; a read counts
    /// for eviction.
    pub fn get<'a>(
        &mut self,
        key: &[u8],
        field: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Option<Rc<Object>> {
        let id = *self.by_key.get(key)?;
        let slot = self.slots.get_mut(&id)?;
        slot.freq = (slot.freq + 1).min(3);
        // Newest first: a later response of the key is the better answer.
        slot.variants
            .iter()
            .rev()
            .find(|o| o.matches(&field))
            .cloned()
    }

    /// Whether anything is stored under `key` (any variant); does not count as a read.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.by_key.contains_key(key)
    }

    /// Stores `object` under `key`, replacing the variant with the same `Vary` values. Returns
    /// it as stored, or `None` when it is larger than the whole budget (not stored).
    pub fn insert(&mut self, key: &[u8], object: Object) -> Option<Rc<Object>> {
        let size = object.size(key);
        if size > self.budget {
            self.stats.too_large += 1;
            return None;
        }
        let object = Rc::new(object);
        if let Some(&id) = self.by_key.get(key) {
            if let Some(slot) = self.slots.get_mut(&id) {
                // A response that varies on other fields than the stored ones replaces them all
                // (their Vary no longer describes the resource).
                if slot.variants.iter().any(|o| !o.same_names(&object)) {
                    let freed: usize = slot.variants.iter().map(|o| o.size(key)).sum();
                    slot.variants.clear();
                    slot.size -= freed;
                    if !slot.main {
                        self.small_bytes -= freed;
                    }
                    self.used -= freed;
                }
                let replaced = match slot.variants.iter().position(|o| o.same_variant(&object)) {
                    Some(i) => Some(std::mem::replace(&mut slot.variants[i], object.clone())),
                    None if slot.variants.len() >= MAX_VARIANTS => {
                        Some(std::mem::replace(&mut slot.variants[0], object.clone()))
                    }
                    None => {
                        slot.variants.push(object.clone());
                        None
                    }
                };
                let freed = replaced.map_or(0, |o| o.size(key));
                slot.size = slot.size + size - freed;
                if !slot.main {
                    self.small_bytes = self.small_bytes + size - freed;
                }
                self.used = self.used + size - freed;
                // The slot's tags are its variants' tags now (a replaced variant's go).
                let now: HashSet<Box<str>> = slot
                    .variants
                    .iter()
                    .flat_map(|o| o.tags.iter().cloned())
                    .collect();
                for gone in slot.tags.difference(&now) {
                    if let Some(set) = self.tags.get_mut(gone) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.tags.remove(gone);
                        }
                    }
                }
                for t in &now {
                    self.tags.entry(t.clone()).or_default().insert(id);
                }
                slot.tags = now;
                self.evict();
                return Some(object);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let h = hash_of(key);
        let main = self.ghost_set.remove(&h);
        let tags: HashSet<Box<str>> = object.tags.iter().cloned().collect();
        for t in &tags {
            self.tags.entry(t.clone()).or_default().insert(id);
        }
        self.slots.insert(
            id,
            Slot {
                key: key.into(),

                freq: 0,
                main,
                size,
                variants: vec![object.clone()],
                tags,
            },
        );
        self.by_key.insert(key.into(), id);
        if main {
            self.main.push_back(id);
        } else {
            self.small.push_back(id);
            self.small_bytes += size;
        }
        self.used += size;
        self.evict();
        Some(object)
    }

    /// Removes `key` (every variant), and the keys that extend it with more key parts (lines
    /// after a `\n`: the engine appends the route, the scheme and extra key values so); returns
    /// the responses removed.
    pub fn purge_key(&mut self, key: &[u8]) -> usize {
        let ids: Vec<u64> = self
            .by_key
            .iter()
            .filter(|(k, _)| {
                k.starts_with(key) && (k.len() == key.len() || k.get(key.len()) == Some(&b'\n'))
            })
            .map(|(_, id)| *id)
            .collect();
        self.purge_ids(&ids)
    }

    /// Removes every key starting with `prefix`; returns the responses removed.
    pub fn purge_prefix(&mut self, prefix: &[u8]) -> usize {
        let ids: Vec<u64> = self
            .by_key
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, id)| *id)
            .collect();
        self.purge_ids(&ids)
    }

    /// Removes every response tagged `tag`; returns the responses removed.
    pub fn purge_tag(&mut self, tag: &str) -> usize {
        let ids: Vec<u64> = self
            .tags
            .get(tag)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        self.purge_ids(&ids)
    }

    /// Removes everything; returns the responses removed.
    pub fn purge_all(&mut self) -> usize {
        let ids: Vec<u64> = self.slots.keys().copied().collect();
        self.purge_ids(&ids)
    }

    fn purge_ids(&mut self, ids: &[u64]) -> usize {
        let mut n = 0;
        for id in ids {
            if let Some(slot) = self.remove(*id) {
                n += slot.variants.len();
            }
        }
        self.stats.purged += n as u64;
        self.compact();
        n
    }

    /// Drops queue entries of removed slots once they outnumber the live ones (purges leave
    /// them behind; eviction alone would only skip them when it reaches them).
    fn compact(&mut self) {
        if self.small.len() + self.main.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.small.retain(|id| slots.contains_key(id));
            self.main.retain(|id| slots.contains_key(id));
        }
    }

    /// Takes slot `id` out of every index (its queue entry is skipped when reached).
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        self.by_key.remove(&slot.key);
        self.used -= slot.size;
        if !slot.main {
            self.small_bytes -= slot.size;
        }
        for t in &slot.tags {
            if let Some(set) = self.tags.get_mut(t) {
                set.remove(&id);
                if set.is_empty() {
                    self.tags.remove(t);
                }
            }
        }
        Some(slot)
    }

    fn evict(&mut self) {
        while self.used > self.budget {
            let from_small = self.small_bytes > self.budget / 10 || self.main.is_empty();
            let popped = if from_small {
                self.small.pop_front()
            } else {
                self.main.pop_front()
            };
            let Some(id) = popped else {
                // Both queues empty with bytes counted cannot happen (every slot is queued
                // once); stop rather than spin.
                break;
            };
            let Some(slot) = self.slots.get_mut(&id) else {
                continue; // purged earlier
            };
            if from_small {
                if slot.freq > 1 {
                    slot.main = true;
                    slot.freq = 0;
                    self.small_bytes -= slot.size;
                    self.main.push_back(id);
                    continue;
                }
                if let Some(slot) = self.remove(id) {
                    self.remember(hash_of(&slot.key));
                    self.stats.evictions += 1;
                }
            } else if slot.freq > 0 {
                slot.freq -= 1;
                self.main.push_back(id);
            } else if self.remove(id).is_some() {
                self.stats.evictions += 1;
            }
        }
    }

    fn remember(&mut self, h: u64) {
        if self.ghost_set.insert(h) {
            self.ghost.push_back(h);
        }
        let cap = self.slots.len().max(64);
        while self.ghost.len() > cap {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn fresh() -> Freshness {
        Freshness {
            lifetime: Duration::from_secs(60),
            initial_age: Duration::ZERO,
            while_revalidate: Duration::ZERO,
            if_error: Duration::ZERO,
            no_cache: false,
            must_revalidate: false,
            validatable: false,
        }
    }

    fn object(body: usize, vary: &[(&str, Option<&str>)], tags: &[&str]) -> Object {
        Object {
            status: 200,
            fields: b"content-type: text/plain\r\n".to_vec().into_boxed_slice(),
            body: vec![b'x'; body].into(),
            etag: None,
            last_modified: None,
            vary: vary
                .iter()
                .map(|(n, v)| ((*n).into(), v.map(|v| v.as_bytes().into())))
                .collect(),
            tags: tags.iter().map(|t| (*t).into()).collect(),
            fresh: fresh(),
            stored_at: Instant::now(),
        }
    }

    fn none(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn variants_are_matched_by_their_vary_values() {
        let mut s = Store::new(1 << 20);
        s.insert(b"k", object(10, &[("accept-encoding", Some("gzip"))], &[]));
        s.insert(b"k", object(20, &[("accept-encoding", None)], &[]));
        let gz = s.get(b"k", |n| (n == "accept-encoding").then_some(&b" gzip "[..]));
        assert_eq!(gz.map(|o| o.body.len()), Some(10));
        assert_eq!(s.get(b"k", none).map(|o| o.body.len()), Some(20));
        assert!(s.get(b"k", |_| Some(&b"br"[..])).is_none());
        // The same variant again replaces, it does not add.
        s.insert(b"k", object(30, &[("accept-encoding", None)], &[]));
        assert_eq!(s.objects(), 2);
        assert_eq!(s.get(b"k", none).map(|o| o.body.len()), Some(30));
    }

    #[test]
    fn a_new_vary_replaces_the_old_variants_and_tags_follow_the_variants() {
        let mut s = Store::new(1 << 20);
        s.insert(b"k", object(10, &[], &["old-tag"]));
        s.insert(b"k", object(20, &[("accept", Some("a"))], &["new-tag"]));
        assert_eq!(s.objects(), 1, "the variant without Vary went");
        assert_eq!(s.get(b"k", none).map(|o| o.body.len()), None);
        assert_eq!(s.purge_tag("old-tag"), 0, "its tag went with it");
        assert_eq!(s.purge_tag("new-tag"), 1);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn a_key_purge_takes_the_key_with_its_extra_parts_and_nothing_longer() {
        let mut s = Store::new(1 << 20);
        s.insert(b"h/a\n#route=r", object(1, &[], &[]));
        s.insert(b"h/a", object(1, &[], &[]));
        s.insert(b"h/ab\n#route=r", object(1, &[], &[]));
        assert_eq!(s.purge_key(b"h/a"), 2);
        assert!(s.contains(b"h/ab\n#route=r"));
    }

    #[test]
    fn purges_remove_exactly_what_they_name() {
        let mut s = Store::new(1 << 20);
        s.insert(b"h/items/1", object(1, &[], &["item-1", "items"]));
        s.insert(b"h/items/2", object(1, &[], &["item-2", "items"]));
        s.insert(b"h/users/1", object(1, &[], &["user-1"]));
        assert_eq!(s.purge_tag("item-1"), 1);
        assert!(!s.contains(b"h/items/1") && s.contains(b"h/items/2"));
        assert_eq!(s.purge_prefix(b"h/items/"), 1);
        assert_eq!(s.purge_tag("items"), 0);
        assert_eq!(s.purge_key(b"h/users/1"), 1);
        assert_eq!((s.objects(), s.bytes()), (0, 0));
        assert_eq!(s.stats().purged, 3);
    }

    #[test]
    fn a_scan_does_not_push_out_what_is_read_often() {
        let budget = 100 * (1000 + OVERHEAD + 8);
        let mut s = Store::new(budget);
        let hot: Vec<Vec<u8>> = (0..20).map(|i| format!("hot{i}").into_bytes()).collect();
        for k in &hot {
            s.insert(k, object(1000, &[], &[]));
        }
        for _ in 0..3 {
            for k in &hot {
                assert!(s.get(k, none).is_some());
            }
        }
        // A scan of 10,000 keys read once each.
        for i in 0..10_000 {
            s.insert(format!("scan{i}").as_bytes(), object(1000, &[], &[]));
            if i % 50 == 0 {
                for k in &hot {
                    s.get(k, none);
                }
            }
        }
        let kept = hot.iter().filter(|k| s.contains(k)).count();
        assert!(kept >= 18, "hot keys kept: {kept} of 20");
        assert!(s.bytes() <= budget);
    }

    #[test]
    fn an_object_larger_than_the_budget_is_refused() {
        let mut s = Store::new(4096);
        assert!(s.insert(b"big", object(8192, &[], &[])).is_none());
        assert_eq!(s.stats().too_large, 1);
        assert_eq!(s.bytes(), 0);
    }

    proptest! {
        /// Whatever is inserted, read and purged, the store stays within its budget, its byte
        /// count is the sum of what it holds, and the ghost stays bounded.
        #[test]
        fn the_budget_and_the_accounting_hold(ops in proptest::collection::vec((0u8..5, 0u16..300, 0usize..3000), 1..400)) {
            let budget = 20_000;
            let mut s = Store::new(budget);
            for (op, k, n) in ops {
                let key = format!("k{k}");
                match op {
                    0 | 1 => { s.insert(key.as_bytes(), object(n, &[], &[if k % 2 == 0 { "even" } else { "odd" }])); }
                    2 => { s.get(key.as_bytes(), none); }
                    3 => { s.purge_key(key.as_bytes()); }
                    _ => { s.purge_tag("even"); }
                }
                prop_assert!(s.bytes() <= budget);
                let counted: usize = s.slots.values().map(|sl| sl.size).sum();
                prop_assert_eq!(counted, s.bytes());
                prop_assert!(s.ghost.len() <= s.slots.len().max(64));
                prop_assert_eq!(s.by_key.len(), s.slots.len());
            }
        }
    }
}
