//! Per-core upstream connection pools: idle keep-alive connections, reused last-in first-out.
//!
//! Each worker owns its pool (no lock, no sharing). LIFO reuse keeps the hottest connections
//! warm and lets the cold ones age out: a connection idle longer than the idle timeout is closed
//! at checkout instead of reused, since the upstream has likely closed it by then. A connection
//! the upstream closed sooner is caught by the engine: a request on a reused connection that dies
//! before the first response byte is retried once on a fresh connection when it is safe to repeat.
//! The pool counts how many exchanges reused a connection and how many had to connect: the reuse
//! ratio is the known cost of per-core pools, so it is measured from the start.
//!
//! Checkout also peeks at the socket (one non-blocking `recv(MSG_PEEK)`, no data copied): an idle
//! connection must have nothing to read. Bytes there are a late or stray answer from the upstream
//! that would otherwise be served to the *next* client as its response (a response desync), and an
//! EOF is an upstream that closed while idle; both connections are dropped instead. nginx gets
//! the same guarantee from epoll readiness on idle connections; with io_uring nothing watches an
//! idle socket for free, so we pay one cheap syscall per reuse.
//!
//! Connections are pooled under a [`ConnKey`]: the endpoint *and* how the connection was made
//! (cleartext, or TLS under given trust, client certificate, server name and ALPN). Two upstreams
//! reaching one address with different TLS names (virtual hosts behind one balancer), or a reload
//! that changed an upstream's CA, never get each other's connections.

pub use crate::engine::io::peek::is_quiet;
use crate::engine::upstream::stream::UpStream;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A small, fast, non-cryptographic hasher for socket addresses (the keys are ours, not the
/// client's, so hash flooding is not a concern).
#[derive(Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// What a pooled upstream connection can be reused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The endpoint it is connected to.
    pub addr: SocketAddr,
    /// How it was made: 0 for cleartext, else the [`crate::gateway::UpstreamTls::key`] of the
    /// TLS settings of its handshake.
    pub transport: u64,
}

struct Idle {
    stream: UpStream,
    since: Instant,
}

/// Pool counters of one core.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Checkouts served by an idle connection.
    pub reused: u64,
    /// Checkouts that found none (the caller connects).
    pub missed: u64,
    /// Idle connections closed because they were too old or over the cap.
    pub evicted: u64,
}

/// One core's idle upstream connections.
pub struct Pool {
    idle: FxMap<ConnKey, Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    stats: PoolStats,
}

impl Pool {
    /// An empty pool keeping at most `max_idle` connections per endpoint, each for at most
    /// `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: FxMap::default(),
            max_idle,
            idle_timeout,
            stats: PoolStats::default(),
        }
    }

    /// The most recently returned live connection for `key`, if any.
    pub fn checkout(&mut self, key: ConnKey) -> Option<UpStream> {
        if let Some(list) = self.idle.get_mut(&key) {
            let now = Instant::now();
            while let Some(mut c) = list.pop() {
                if now.duration_since(c.since) < self.idle_timeout && c.stream.is_quiet() {
                    self.stats.reused += 1;
                    return Some(c.stream);
                }
                self.stats.evicted += 1;
            }
        }
        self.stats.missed += 1;
        None
    }

    /// Returns a connection that finished an exchange cleanly and may be reused.
    pub fn checkin(&mut self, key: ConnKey, stream: UpStream) {
        if self.max_idle == 0 {
            return;
        }
        let list = self.idle.entry(key).or_default();
        if list.len() >= self.max_idle {
            // The oldest is the least likely to be alive and the last to be reused.
            list.remove(0);
            self.stats.evicted += 1;
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    }

    /// Closes every idle connection older than the idle timeout (run from a periodic tick).
    pub fn sweep(&mut self) {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let mut evicted = 0;
        for list in self.idle.values_mut() {
            let before = list.len();
            list.retain(|c| now.duration_since(c.since) < timeout);
            evicted += (before - list.len()) as u64;
        }
        self.idle.retain(|_, l| !l.is_empty());
        self.stats.evicted += evicted;
    }

    /// Closes the oldest idle connection to any of `eps` made with `transport`; returns whether
    /// there was one.
    pub fn evict_one_of(&mut self, eps: &[SocketAddr], transport: u64) -> bool {
        let oldest = eps
            .iter()
            .map(|&addr| ConnKey { addr, transport })
            .filter_map(|k| {
                self.idle
                    .get(&k)
                    .and_then(|l| l.first())
                    .map(|c| (k, c.since))
            })
            .min_by_key(|(_, since)| *since);
        match oldest.and_then(|(k, _)| self.idle.get_mut(&k)) {
            Some(list) if !list.is_empty() => {
                list.remove(0);
                self.stats.evicted += 1;
                true
            }
            _ => false,
        }
    }

    /// Idle connections held now for `key`.
    pub fn idle_for(&self, key: ConnKey) -> usize {
        self.idle.get(&key).map_or(0, Vec::len)
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }
}
