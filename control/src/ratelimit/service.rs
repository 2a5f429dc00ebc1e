//! The reconciler thread of one gateway process, and the per-core limiters it feeds.
//!
//! Started with the gateway (its thread only once a core first judges a request), it ticks at
//! the configured interval: it drains the cores' reports, syncs the active keys with the store in
//! one batch, and sends each core its grants. Store trouble is logged once when it starts and
//! once when it ends, and counted for `/metrics`. The store is Redis (single server or cluster)
//! when configured, otherwise an in-process [`LocalStore`] that reconciles this node's cores.

use super::config::Backend;
use crate::rlstore::{Clock, RedisOptions, RedisStore, RedisTarget};
use crossbeam_channel::{Receiver, Sender};
use ringgate_policies::ratelimit::local::CoreLimiter;
use ringgate_policies::ratelimit::reconcile::{
    CoreReport, Grants, LimitCounters, ReconcileSettings, Reconciler,
};
use ringgate_policies::ratelimit::store::{LocalStore, Store};
use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `/metrics` shows of rate limiting.
#[derive(Debug, Clone, Default)]
pub struct LimitStats {
    /// Whether the last sync reached the store.
    pub store_up: bool,
    /// Ticks whose sync failed.
    pub store_errors: u64,
    /// Ticks that synced something.
    pub syncs: u64,
    /// Keys synced, summed over ticks.
    pub synced_keys: u64,
    /// Commands sent to Redis (0 in-process).
    pub store_commands: u64,
    /// Keys the reconciler tracks.
    pub node_keys: usize,
    /// Keys the cores track, summed.
    pub core_keys: usize,
    /// Keys forgotten after idling.
    pub expired: u64,
    /// Decisions per limit id.
    pub counters: HashMap<u64, LimitCounters>,
    /// `redis`, `redis-cluster` or `local`.
    pub store: &'static str,
}

/// A store the reconciler thread owns.
enum AnyStore {
    Local(LocalStore),
    Redis(Box<RedisStore>),
}

impl AnyStore {
    fn as_store(&mut self) -> &mut dyn Store {
        match self {
            AnyStore::Local(s) => s,
            AnyStore::Redis(s) => s.as_mut(),
        }
    }
    fn commands(&self) -> u64 {
        match self {
            AnyStore::Local(_) => 0,
            AnyStore::Redis(s) => s.commands_sent(),
        }
    }
}

/// One process's rate-limit reconciler.
pub struct LimitService {
    backend: Backend,
    workers: usize,
    hasher: RandomState,
    report_tx: Sender<CoreReport>,
    report_rx: Receiver<CoreReport>,
    grant_tx: Vec<Sender<Grants>>,
    grant_rx: Vec<Receiver<Grants>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LimitStats>>,
    /// Reconciler ticks whose grants were sent (requests waiting for a fail-closed limit's
    /// store watch it).
    progress: Arc<AtomicU64>,
}

impl std::fmt::Debug for LimitService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitService")
            .field("backend", &self.backend)
            .field("workers", &self.workers)
            .finish()
    }
}

impl LimitService {
    /// A reconciler for `workers` cores on `backend` (its thread starts on first use).
    pub fn new(backend: Backend, workers: usize) -> Arc<Self> {
        let (report_tx, report_rx) = crossbeam_channel::unbounded();
        let (grant_tx, grant_rx): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| crossbeam_channel::unbounded())
            .unzip();
        let store = store_kind(&backend);
        Arc::new(Self {
            backend,
            workers: workers.max(1),
            hasher: RandomState::new(),
            report_tx,
            report_rx,
            grant_tx,
            grant_rx,
            thread: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(Mutex::new(LimitStats {
                store_up: true,
                store,
                ..LimitStats::default()
            })),
        })
    }

    /// The reconcile tick.
    pub fn tick(&self) -> Duration {
        self.backend.tick
    }

    /// How many cores (workers) the process runs.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Core `worker`'s limiter (starts the reconciler thread if it is not running).
    pub fn core(self: &Arc<Self>, worker: usize) -> CoreLimiter {
        self.ensure_started();
        let i = worker.min(self.workers - 1);
        CoreLimiter::new(
            i,
            self.workers,
            self.hasher.clone(),
            self.report_tx.clone(),
            self.grant_rx[i].clone(),
        )
        .watching(self.progress.clone())
    }

    /// Whether the reconciler's published ticks reached `ticket` (see
    /// [`ringgate_policies::ratelimit::local::Decision::Wait`]).
    pub fn reached(&self, ticket: u64) -> bool {
        self.progress.load(Ordering::Acquire) >= ticket
    }

    /// The longest a request waits for a fail-closed limit's store: the two ticks a key's
    /// first sync may take, each of which may wait for Redis for `redis_timeout`, and one more
    /// tick for the core's timer.
    pub fn longest_wait(&self) -> Duration {
        3 * self.backend.tick + 2 * self.backend.redis_timeout
    }

    /// A copy of the figures for `/metrics`.
    pub fn stats(&self) -> LimitStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the thread after a last sync of what the cores reported.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn ensure_started(&self) {
        let mut slot = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() || self.stop.load(Ordering::Relaxed) {
            return;
        }
        let backend = self.backend.clone();
        let rx = self.report_rx.clone();
        let txs = self.grant_tx.clone();
        let stop = self.stop.clone();
        let stats = self.stats.clone();
        let progress = self.progress.clone();
        let workers = self.workers;
        match std::thread::Builder::new()
            .name("ringgate-ratelimit".into())
            .spawn(move || run(backend, workers, rx, txs, stop, stats, progress))
        {
            Ok(h) => *slot = Some(h),
            Err(e) => eprintln!("ringgate: rate limit: cannot start the reconciler thread: {e}"),
        }
    }
}

fn store_kind(b: &Backend) -> &'static str {
    if b.redis.is_some() {
        "redis"
    } else if !b.cluster.is_empty() {
        "redis-cluster"
    } else {
        "local"
    }
}

fn open_store(b: &Backend) -> AnyStore {
    let opts = RedisOptions {
        connect_timeout: b.connect_timeout,
        io_timeout: b.redis_timeout,
        lease_ttl_ms: b.lease_ttl.as_millis() as u64,
        clock: Clock::Server,
    };
    if let Some(url) = &b.redis {
        AnyStore::Redis(Box::new(RedisStore::new(
            RedisTarget::Single(url.clone()),
            opts,
        )))
    } else if !b.cluster.is_empty() {
        AnyStore::Redis(Box::new(RedisStore::new(
            RedisTarget::Cluster(b.cluster.clone()),
            opts,
        )))
    } else {
        AnyStore::Local(LocalStore::new(b.lease_ttl.as_millis() as u64))
    }
}

fn run(
    backend: Backend,
    workers: usize,
    rx: Receiver<CoreReport>,
    txs: Vec<Sender<Grants>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LimitStats>>,
    progress: Arc<AtomicU64>,
) {
    let mut store = open_store(&backend);
    let mut rec = Reconciler::new(ReconcileSettings {
        workers,
        tick_ms: backend.tick.as_millis().max(1) as u64,
        horizon_ticks: 2.0,
        lease_ttl_ms: backend.lease_ttl.as_millis() as u64,
    });
    // A monotonic clock for the reconciler and the in-process store: a wall-clock step must not
    // freeze refills, reset windows or expire every key at once (Redis uses its own clock).
    let epoch = Instant::now();
    let mut next = Instant::now() + backend.tick;
    let mut down_since: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // A slow store delays the next tick rather than stacking ticks up.
            next = (next + backend.tick).max(Instant::now());
        }
        let now_ms = epoch.elapsed().as_millis() as u64 + 1;
        while let Ok(r) = rx.try_recv() {
            rec.ingest(r, now_ms);
        }
        let (grants, st) = rec.tick(store.as_store(), &backend.node_id, now_ms);
        for (i, g) in grants.into_iter().enumerate() {
            if let (Some(g), Some(tx)) = (g, txs.get(i)) {
                let _ = tx.send(g);
            }
        }
        progress.fetch_add(1, Ordering::Release);
        match (st.store_ok, down_since) {
            (false, None) => {
                down_since = Some(Instant::now());
                eprintln!(
                    "ringgate: rate limit store ({}) unavailable: fail-open limits admit at this node's last known share, fail-closed limits refuse",
                    store_kind(&backend)
                );
            }
            (true, Some(since)) if st.synced > 0 => {
                eprintln!(
                    "ringgate: rate limit store ({}) is back after {:.1}s; reconciliation resumed",
                    store_kind(&backend),
                    since.elapsed().as_secs_f64()
                );
                down_since = None;
            }
            _ => {}
        }
        {
            let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
            s.store_up = down_since.is_none();
            if !st.store_ok {
                s.store_errors += 1;
            }
            if st.synced > 0 {
                s.syncs += 1;
                s.synced_keys += st.synced as u64;
            }
            s.expired += st.expired as u64;
            s.store_commands = store.commands();
            s.node_keys = rec.keys();
            s.core_keys = rec.core_keys().iter().sum();
            s.counters.clone_from(rec.counters());
        }
        if stopping {
            return;
        }
    }
}
