//! Purges, from the admin API to every core.
//!
//! Each zone name has one [`PurgeLog`] for the life of the process (a reload that keeps the zone
//! keeps its log). The control side appends a purge and bumps the log's generation; a worker
//! compares the generation with the one it applied (one relaxed load, only on cached routes) and,
//! when it moved, takes the lock once to read the purges it has not applied yet. A purge is thus
//! applied on every core before that core's next cache lookup in the zone. The log keeps the
//! last [`KEPT`] purges; a core that fell further behind (idle for that many purges) empties its
//! zone instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Purges a log keeps for cores that have not applied them yet.
pub const KEPT: usize = 4096;

/// What to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// The object of this exact key (every variant).
    Key(Box<[u8]>),
    /// Every object whose key starts with this.
    Prefix(Box<[u8]>),
    /// Every object tagged with this surrogate key.
    Tag(Box<str>),
    /// Everything in the zone.
    All,
}

/// One zone's purges.
#[derive(Debug, Default)]
pub struct PurgeLog {
    generation: AtomicU64,
    entries: Mutex<Vec<(u64, Purge)>>,
}

impl PurgeLog {
    /// Appends `p`; returns its generation.
    pub fn push(&self, p: Purge) -> u64 {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let g = self.generation.load(Ordering::Relaxed) + 1;
        e.push((g, p));
        if e.len() > KEPT {
            let extra = e.len() - KEPT;
            e.drain(..extra);
        }
        self.generation.store(g, Ordering::Release);
        g
    }

    /// The generation of the last purge (0: none yet).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The purges after generation `applied`, or `None` when some of them are no longer kept
    /// (the caller then purges everything).
    pub fn since(&self, applied: u64) -> Option<Vec<Purge>> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = e.first().map_or(u64::MAX, |(g, _)| *g);
        if applied + 1 < first && self.generation() > applied {
            return None;
        }
        Some(
            e.iter()
                .filter(|(g, _)| *g > applied)
                .map(|(_, p)| p.clone())
                .collect(),
        )
    }
}

type Logs = Mutex<HashMap<Box<str>, Arc<PurgeLog>>>;

fn logs() -> &'static Logs {
    static L: OnceLock<Logs> = OnceLock::new();
    L.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The purge log of zone `name` (made on first use, kept for the process's life).
pub fn log_for(name: &str) -> Arc<PurgeLog> {
    let mut l = logs().lock().unwrap_or_else(|p| p.into_inner());
    l.entry(name.into()).or_default().clone()
}

/// The zone names that have a log (every zone a config has defined).
pub fn zones() -> Vec<Box<str>> {
    let l = logs().lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<Box<str>> = l.keys().cloned().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_reads_what_it_has_not_applied_and_knows_when_it_fell_behind() {
        let log = PurgeLog::default();
        assert_eq!(log.since(0), Some(vec![]));
        log.push(Purge::Tag("a".into()));
        let g = log.push(Purge::All);
        assert_eq!(log.generation(), g);
        assert_eq!(log.since(1), Some(vec![Purge::All]));
        for i in 0..KEPT + 10 {
            log.push(Purge::Key(format!("k{i}").into_bytes().into()));
        }
        assert_eq!(log.since(1), None, "purges were dropped: purge everything");
        let now = log.generation();
        assert_eq!(log.since(now), Some(vec![]));
    }
}
