//! Per-core request metrics, merged only when scraped.
//!
//! A worker counts into plain fields it alone owns (no lock, no atomic, no shared cache line):
//! responses per route and per upstream by status class, HDR duration histograms, upstream
//! connections made and reused, gateway-made responses by reason, its event-loop lag. A scrape
//! asks every worker for a copy: the scraper bumps a request epoch, each worker's periodic tick
//! (off the request path) sees it and publishes a clone into its slot, and the scraper merges the
//! copies. Routes and upstreams are counted under stable ids from the [`Registry`], assigned when a
//! snapshot is built and kept across reloads, so a reload neither resets nor mixes up counts.

use crate::pool::PoolStats;
use hdrhistogram::Histogram;
use ringgate_core::shutdown::WorkerGauges;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod prometheus;

pub use prometheus::{render_prometheus, BUCKETS_S};

/// Status classes counted: 1xx, 2xx, 3xx, 4xx, 5xx.
pub const CLASSES: usize = 5;
const CLASS_LABELS: [&str; CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The class index of `status` (anything outside 100..600 counts as 5xx).
#[inline]
pub fn class_of(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The id of requests that matched no route.
pub const NO_ROUTE_ID: u32 = 0;

/// Stable metric ids of route and upstream names, for the life of the process.
///
/// One registry per process ([`Registry::global`]): ids are assigned when a snapshot is built
/// (control thread) and read when scraped, never on the request path.
#[derive(Debug)]
pub struct Registry {
    routes: Vec<Box<str>>,
    upstreams: Vec<Box<str>>,
    route_ids: HashMap<Box<str>, u32>,
    upstream_ids: HashMap<Box<str>, u32>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Self {
            routes: Vec::new(),
            upstreams: Vec::new(),
            route_ids: HashMap::new(),
            upstream_ids: HashMap::new(),
        };
        r.route("-");
        r
    }
}

impl Registry {
    /// The process's registry.
    pub fn global() -> &'static Mutex<Registry> {
        static GLOBAL: std::sync::OnceLock<Mutex<Registry>> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| Mutex::new(Registry::default()))
    }

    /// Runs `f` with the process's registry.
    pub fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut g = Self::global().lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The id of route `name` (assigned on first use).
    pub fn route(&mut self, name: &str) -> u32 {
        intern(&mut self.routes, &mut self.route_ids, name)
    }

    /// The id of upstream `name` (assigned on first use).
    pub fn upstream(&mut self, name: &str) -> u32 {
        intern(&mut self.upstreams, &mut self.upstream_ids, name)
    }

    /// The name of route id `id`.
    pub fn route_name(&self, id: usize) -> &str {
        self.routes.get(id).map_or("?", |s| s)
    }

    /// The name of upstream id `id`.
    pub fn upstream_name(&self, id: usize) -> &str {
        self.upstreams.get(id).map_or("?", |s| s)
    }
}

fn intern(names: &mut Vec<Box<str>>, ids: &mut HashMap<Box<str>, u32>, name: &str) -> u32 {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    let id = names.len() as u32;
    names.push(name.into());
    ids.insert(name.into(), id);
    id
}

/// A duration histogram in microseconds, with the exact sum Prometheus wants.
#[derive(Clone)]
pub struct DurationHist {
    h: Histogram<u64>,
    sum_us: u64,
}

impl std::fmt::Debug for DurationHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurationHist")
            .field("count", &self.h.len())
            .field("sum_us", &self.sum_us)
            .finish()
    }
}

/// Largest duration recorded exactly (longer ones count in the top bucket): 1 hour.
const HIST_MAX_US: u64 = 3_600_000_000;

impl Default for DurationHist {
    fn default() -> Self {
        // 2 significant digits over 1 µs .. 1 h: about 1% error, a few KiB per histogram.
        #[allow(clippy::expect_used)]
        let h = Histogram::new_with_bounds(1, HIST_MAX_US, 2)
            .expect("constant bounds: low 1 >= 1, high 1 h >= 2 x low, 2 significant figures");
        Self { h, sum_us: 0 }
    }
}

impl DurationHist {
    /// Records `d`.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.sum_us = self.sum_us.wrapping_add(us);
        self.h.saturating_record(us.min(HIST_MAX_US));
    }

    /// Adds `other` into this one.
    pub fn merge(&mut self, other: &DurationHist) {
        let _ = self.h.add(&other.h);
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
    }

    /// Recorded values.
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// Sum of recorded values, in µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Values at or below `us`.
    pub fn count_le(&self, us: u64) -> u64 {
        if self.h.is_empty() {
            return 0;
        }
        self.h.count_between(0, us)
    }

    /// The value at quantile `q` (0..1), in µs.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.h.value_at_quantile(q)
    }
}

/// One route's counts on one core.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    /// Responses by status class.
    pub responses: [u64; CLASSES],
    /// Total request durations (head read to last response byte).
    pub duration: DurationHist,
}

/// One upstream's counts on one core.
#[derive(Debug, Clone, Default)]
pub struct UpstreamStats {
    /// Upstream responses by status class.
    pub responses: [u64; CLASSES],
    /// Time from sending the request to the end of the response.
    pub duration: DurationHist,
    /// New connections made.
    pub connects: u64,
    /// Requests sent on a reused pooled connection.
    pub reused: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Exchanges that failed after connecting (reset, timeout, protocol error).
    pub failures: u64,
    /// Failed TLS handshakes, by [`crate::tls::UpstreamTlsFail::ALL`] position (also counted in
    /// `connect_failures`).
    pub tls_failures: [u64; crate::tls::UpstreamTlsFail::ALL.len()],
    /// Retries sent to this upstream.
    pub retries: u64,
    /// Breaker transitions on this core: to open, to half-open, to closed.
    pub breaker_transitions: (u64, u64, u64),
    /// Cores whose breaker is open now (1 or 0 per core; summed when merged).
    pub breaker_open: u64,
    /// Endpoints ejected now (summed over cores).
    pub ejected: u64,
}

/// Everything one worker counted.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    /// Per route id.
    pub routes: Vec<Option<RouteStats>>,
    /// Per upstream id.
    pub upstreams: Vec<Option<UpstreamStats>>,
    /// Gateway-made responses: (reason code, status, count).
    pub gateway: Vec<(&'static str, u16, u64)>,
    /// Event-loop lag at the last tick, µs.
    pub loop_lag_last_us: u64,
    /// Largest event-loop lag since the previous scrape, µs.
    pub loop_lag_max_us: u64,
    /// Pool counters.
    pub pool: PoolStats,
    /// Idle pooled connections now.
    pub pool_idle: u64,
    /// HTTP/2 connections to upstreams open now (their streams multiplexed).
    pub h2_upstream_open: u64,
    /// Client connections accepted.
    pub accepted: u64,
    /// Client connections refused at accept (over the per-core cap).
    pub accept_refused: u64,
    /// TLS handshakes.
    pub tls: TlsStats,
    /// Upgraded (WebSocket) tunnels: (opened, closed).
    pub tunnels: (u64, u64),
    /// HTTP/2 connections established.
    pub h2_connections: u64,
    /// HTTP/2 streams accepted.
    pub h2_streams: u64,
    /// Client connection buffers: held by connections, free in the pools.
    pub conn_buffers: crate::engine::BufStats,
    /// Cache zones on this core.
    pub cache: Vec<CacheZoneStats>,
    /// Background cache refreshes (stale-while-revalidate) run.
    pub cache_refreshes: u64,
}

/// What a cached route's cache did, by outcome, in the order of [`CACHE_OUTCOMES`].
pub const CACHE_OUTCOMES: [&str; 8] = [
    "hit",
    "collapsed",
    "stale",
    "stale_if_error",
    "revalidated",
    "miss",
    "uncacheable",
    "bypass",
];

/// One cache zone on one core.
#[derive(Debug, Clone, Default)]
pub struct CacheZoneStats {
    /// The zone.
    pub zone: Box<str>,
    /// Requests by outcome ([`CACHE_OUTCOMES`] order).
    pub outcomes: [u64; 8],
    /// Bytes stored now.
    pub bytes: u64,
    /// Responses stored now.
    pub objects: u64,
    /// Keys evicted for room.
    pub evictions: u64,
    /// Responses removed by purges.
    pub purged: u64,
    /// Responses not stored for being larger than the core's share of the zone.
    pub too_large: u64,
}

impl WorkerMetrics {
    /// The stats of cache zone `zone` (made on first use).
    pub fn cache_zone(&mut self, zone: &str) -> &mut CacheZoneStats {
        let i = match self.cache.iter().position(|z| &*z.zone == zone) {
            Some(i) => i,
            None => {
                self.cache.push(CacheZoneStats {
                    zone: zone.into(),
                    ..CacheZoneStats::default()
                });
                self.cache.len() - 1
            }
        };
        &mut self.cache[i]
    }
}

/// TLS handshakes on one worker.
#[derive(Debug, Clone, Default)]
pub struct TlsStats {
    /// Completed with TLS 1.2.
    pub tls12: u64,
    /// Completed with TLS 1.3.
    pub tls13: u64,
    /// Completed by resuming a session (a ticket); also counted by version.
    pub resumed: u64,
    /// Failed, by [`crate::tls::stream::FailReason::ALL`] position.
    pub failures: [u64; crate::tls::stream::FailReason::ALL.len()],
}

fn slot<T: Default>(v: &mut Vec<Option<T>>, id: u32) -> &mut T {
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i].get_or_insert_with(T::default)
}

impl WorkerMetrics {
    /// The stats of route `id`.
    #[inline]
    pub fn route(&mut self, id: u32) -> &mut RouteStats {
        slot(&mut self.routes, id)
    }

    /// The stats of upstream `id`.
    #[inline]
    pub fn upstream(&mut self, id: u32) -> &mut UpstreamStats {
        slot(&mut self.upstreams, id)
    }

    /// Counts a gateway-made response.
    pub fn gateway_response(&mut self, reason: &'static str, status: u16) {
        // A handful of distinct reasons: a linear scan over `&'static str` pointers first.
        for e in &mut self.gateway {
            if e.1 == status && (std::ptr::eq(e.0, reason) || e.0 == reason) {
                e.2 += 1;
                return;
            }
        }
        self.gateway.push((reason, status, 1));
    }

    /// Adds `o` into this one.
    pub fn merge(&mut self, o: &WorkerMetrics) {
        for (i, r) in o.routes.iter().enumerate() {
            if let Some(r) = r {
                let m = slot(&mut self.routes, i as u32);
                for c in 0..CLASSES {
                    m.responses[c] += r.responses[c];
                }
                m.duration.merge(&r.duration);
            }
        }
        for (i, u) in o.upstreams.iter().enumerate() {
            if let Some(u) = u {
                let m = slot(&mut self.upstreams, i as u32);
                for c in 0..CLASSES {
                    m.responses[c] += u.responses[c];
                }
                m.duration.merge(&u.duration);
                m.connects += u.connects;
                m.reused += u.reused;
                m.connect_failures += u.connect_failures;
                m.failures += u.failures;
                for (a, b) in m.tls_failures.iter_mut().zip(u.tls_failures) {
                    *a += b;
                }
                m.retries += u.retries;
                m.breaker_transitions.0 += u.breaker_transitions.0;
                m.breaker_transitions.1 += u.breaker_transitions.1;
                m.breaker_transitions.2 += u.breaker_transitions.2;
                m.breaker_open += u.breaker_open;
                m.ejected += u.ejected;
            }
        }
        for &(reason, status, n) in &o.gateway {
            match self
                .gateway
                .iter_mut()
                .find(|e| e.0 == reason && e.1 == status)
            {
                Some(e) => e.2 += n,
                None => self.gateway.push((reason, status, n)),
            }
        }
        self.loop_lag_last_us = self.loop_lag_last_us.max(o.loop_lag_last_us);
        self.loop_lag_max_us = self.loop_lag_max_us.max(o.loop_lag_max_us);
        self.pool.reused += o.pool.reused;
        self.pool.missed += o.pool.missed;
        self.pool.evicted += o.pool.evicted;
        self.pool_idle += o.pool_idle;
        self.h2_upstream_open += o.h2_upstream_open;
        self.accepted += o.accepted;
        self.accept_refused += o.accept_refused;
        self.tls.tls12 += o.tls.tls12;
        self.tls.tls13 += o.tls.tls13;
        self.tls.resumed += o.tls.resumed;
        self.tunnels.0 += o.tunnels.0;
        self.tunnels.1 += o.tunnels.1;
        self.h2_connections += o.h2_connections;
        self.h2_streams += o.h2_streams;
        self.conn_buffers.in_use += o.conn_buffers.in_use;
        self.conn_buffers.free += o.conn_buffers.free;
        for z in &o.cache {
            let m = self.cache_zone(&z.zone);
            for (a, b) in m.outcomes.iter_mut().zip(z.outcomes) {
                *a += b;
            }
            m.bytes += z.bytes;
            m.objects += z.objects;
            m.evictions += z.evictions;
            m.purged += z.purged;
            m.too_large += z.too_large;
        }
        self.cache_refreshes += o.cache_refreshes;
        for (a, b) in self.tls.failures.iter_mut().zip(o.tls.failures) {
            *a += b;
        }
    }
}

struct WorkerSlot {
    have: AtomicU64,
    data: Mutex<Option<WorkerMetrics>>,
    gauges: Mutex<Option<Arc<WorkerGauges>>>,
}

/// Where workers publish their metrics and scrapers collect them.
pub struct MetricsHub {
    want: AtomicU64,
    workers: Vec<WorkerSlot>,
    started: Instant,
}

impl MetricsHub {
    /// A hub for `workers` workers.
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            want: AtomicU64::new(0),
            workers: (0..workers)
                .map(|_| WorkerSlot {
                    have: AtomicU64::new(0),
                    data: Mutex::new(None),
                    gauges: Mutex::new(None),
                })
                .collect(),
            started: Instant::now(),
        })
    }

    /// Number of worker slots.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Time since the hub was made (process uptime, near enough).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Called by worker `index` at start: its gauges, for scrapes.
    pub fn attach(&self, index: usize, gauges: Arc<WorkerGauges>) {
        if let Some(s) = self.workers.get(index) {
            *s.gauges.lock().unwrap_or_else(|p| p.into_inner()) = Some(gauges);
        }
    }

    /// The scrape epoch a worker should have published for (cheap: one relaxed load).
    #[inline]
    pub fn wanted(&self) -> u64 {
        self.want.load(Ordering::Acquire)
    }

    /// Worker `index` publishes `m` for scrape epoch `epoch`.
    pub fn publish(&self, index: usize, epoch: u64, m: WorkerMetrics) {
        if let Some(s) = self.workers.get(index) {
            *s.data.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
            s.have.store(epoch, Ordering::Release);
        }
    }

    /// Asks every worker for fresh metrics and waits up to `wait` for them (a stopped or stuck
    /// worker contributes its last copy). Returns each worker's copy and gauges.
    pub fn collect(
        &self,
        wait: Duration,
    ) -> Vec<(Option<WorkerMetrics>, Option<Arc<WorkerGauges>>)> {
        let epoch = self.want.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline
            && self
                .workers
                .iter()
                .any(|s| s.have.load(Ordering::Acquire) < epoch)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.workers
            .iter()
            .map(|s| {
                (
                    s.data.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    s.gauges.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ids_are_stable() {
        let mut r = Registry::default();
        assert_eq!(r.route("-"), NO_ROUTE_ID);
        let a = r.route("a");
        let b = r.route("b");
        assert_ne!(a, b);
        assert_eq!(r.route("a"), a);
        assert_eq!(r.route_name(b as usize), "b");
        assert_eq!(r.upstream("a"), 0, "upstream ids are a separate space");
    }

    #[test]
    fn merge_sums_counts_and_histograms() {
        let mut w1 = WorkerMetrics::default();
        let mut w2 = WorkerMetrics::default();
        w1.route(3).responses[class_of(200)] += 2;
        w1.route(3).duration.record(Duration::from_micros(150));
        w2.route(3).responses[class_of(503)] += 1;
        w2.route(3).duration.record(Duration::from_millis(20));
        w2.gateway_response("no_route", 404);
        w2.gateway_response("no_route", 404);
        w1.gateway_response("no_route", 404);
        let mut all = WorkerMetrics::default();
        all.merge(&w1);
        all.merge(&w2);
        let r = all.route(3).clone();
        assert_eq!(r.responses, [0, 2, 0, 0, 1]);
        assert_eq!(r.duration.count(), 2);
        assert_eq!(r.duration.count_le(1_000), 1);
        assert_eq!(r.duration.sum_us(), 20_150);
        assert_eq!(all.gateway, vec![("no_route", 404, 3)]);
    }

    #[test]
    fn render_is_cumulative_and_labelled() {
        let mut reg = Registry::default();
        let id = reg.route("users \"v1\"");
        let mut m = WorkerMetrics::default();
        for us in [50, 300, 2_000, 2_000_000] {
            m.route(id).duration.record(Duration::from_micros(us));
            m.route(id).responses[1] += 1;
        }
        let mut out = String::new();
        render_prometheus(&mut out, &reg, &[(Some(m), None)]);
        assert!(
            out.contains("ringgate_requests_total{route=\"users \\\"v1\\\"\",code=\"2xx\"} 4"),
            "{out}"
        );
        assert!(out.contains("le=\"0.0001\"} 1"), "{out}");
        assert!(out.contains("le=\"0.001\"} 2"), "{out}");
        assert!(out.contains("le=\"2.5\"} 4"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 4"), "{out}");
    }

    #[test]
    fn collect_waits_for_workers_to_publish() {
        let hub = MetricsHub::new(1);
        let h2 = hub.clone();
        let t = std::thread::spawn(move || {
            // A worker tick: publish once the scrape asks.
            loop {
                let want = h2.wanted();
                if want > 0 {
                    let m = WorkerMetrics {
                        accepted: 7,
                        ..WorkerMetrics::default()
                    };
                    h2.publish(0, want, m);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let got = hub.collect(Duration::from_secs(10));
        t.join().expect("worker");
        assert_eq!(got[0].0.as_ref().map(|m| m.accepted), Some(7));
    }
}
