//! The discovery hub: the [`Sink`] every source reports to, and the owner of the sources.
//!
//! It keeps the latest endpoint set of each dynamic upstream (the overlay) and its status
//! (source, last success, errors, revision). A set that differs from the one live is put in the
//! overlay and the upstream is marked *dirty*; one republisher thread rebuilds the snapshot from
//! the live config with the overlay ([`crate::control::Control::rediscover`]) for every dirty
//! upstream at once, and keeps them dirty (retrying with a pause) while the rebuild fails, so no
//! change is lost and no source thread ever waits for a reload. An unchanged answer only
//! refreshes the status. A failure or an empty answer never removes endpoints: the last good set
//! stays, and the failure is counted and logged once per distinct cause.
//!
//! Sources are started per config: [`Hub::configure`] compares what the config asks to watch
//! (and how: servers, cluster) with what runs, and restarts the sources only when that changed.
//! Each start has its own generation: a source that was stopped can no longer write (its sink
//! refuses the old generation). An upstream keeps its endpoints across a restart unless what it
//! watches (its kind or targets) changed; one whose watch is new waits for its first answer.

use super::{EndpointSet, Overlay, Sink, Watch};
use crate::config::discovery::{DiscoveryConfig, DiscoveryKind};
use crate::config::RawConfig;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What one upstream's discovery looks like now (admin API and metrics).
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The source.
    pub source: Option<DiscoveryKind>,
    /// Endpoints in the live set.
    pub endpoints: usize,
    /// Answers received (changed or not).
    pub answers: u64,
    /// Times the live set changed.
    pub changes: u64,
    /// Failed or empty answers.
    pub errors: u64,
    /// The last failure's cause (cleared by the next good answer).
    pub last_error: Option<String>,
    /// When the last good answer came.
    pub last_success: Option<SystemTime>,
    /// The source's revision of the live set (etcd).
    pub revision: Option<i64>,
    /// Its (re)started watch has not answered yet.
    pub awaiting_first: bool,
}

/// Starts a source's thread for `watches` (all of one kind) under `config`.
pub type Spawner = fn(
    &DiscoveryConfig,
    Vec<Watch>,
    Arc<dyn Sink>,
    Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>>;

/// Something that applies a changed overlay (the control plane).
pub trait Republish: Send + Sync {
    /// The overlay changed for `upstreams`: rebuild and publish the snapshot. `false`: the
    /// rebuild failed (the hub tries again later).
    fn republish(&self, upstreams: &[String]) -> bool;
}

struct Running {
    config: DiscoveryConfig,
    watches: Vec<Watch>,
    stops: Vec<Arc<AtomicBool>>,
    generation: u64,
}

/// The discovery hub of one process.
pub struct Hub {
    overlay: Mutex<Overlay>,
    status: Mutex<HashMap<String, Status>>,
    answered: Condvar,
    running: Mutex<Option<Running>>,
    dirty: Mutex<BTreeSet<String>>,
    dirtied: Condvar,
    stopped: AtomicBool,
    target: OnceLock<Weak<dyn Republish>>,
    spawner: fn(DiscoveryKind) -> Option<Spawner>,
    me: Weak<Hub>,
}

/// The upstreams `raw` wants discovered, one [`Watch`] each, in config order.
pub fn watches_of(raw: &RawConfig) -> Vec<Watch> {
    raw.upstreams
        .iter()
        .filter(|u| u.discovery.is_dynamic())
        .map(|u| Watch {
            upstream: u.name.clone(),
            kind: u.discovery,
            targets: match u.discovery {
                DiscoveryKind::Etcd => u.etcd_prefix.clone().into_iter().collect(),
                _ => u.endpoints.clone(),
            },
        })
        .collect()
}

/// Pause before a failed rebuild is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// A source's view of the hub: its reports count only while its start is the live one.
struct SourceSink {
    hub: Arc<Hub>,
    generation: u64,
}

impl Sink for SourceSink {
    fn update(&self, upstream: &str, set: EndpointSet) {
        self.hub.apply(self.generation, upstream, set);
    }
    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String) {
        self.hub.fail(Some(self.generation), upstream, source, why);
    }
}

impl Hub {
    /// A hub starting sources with `spawner` (by kind; `None`: no such source in this build).
    pub fn new(spawner: fn(DiscoveryKind) -> Option<Spawner>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            overlay: Mutex::new(Overlay::new()),
            status: Mutex::new(HashMap::new()),
            answered: Condvar::new(),
            running: Mutex::new(None),
            dirty: Mutex::new(BTreeSet::new()),
            dirtied: Condvar::new(),
            stopped: AtomicBool::new(false),
            target: OnceLock::new(),
            spawner,
            me: me.clone(),
        })
    }

    /// From now on, changed sets are applied by `target` (before that they only fill the
    /// overlay, which the first snapshot is built with), on a republisher thread of the hub's.
    pub fn attach(&self, target: Weak<dyn Republish>) {
        if self.target.set(target).is_err() {
            return;
        }
        let me = self.me.clone();
        let _ = std::thread::Builder::new()
            .name("ringgate-discovery".into())
            .spawn(move || republisher(&me));
    }

    /// The live overlay.
    pub fn overlay(&self) -> Overlay {
        lock(&self.overlay).clone()
    }

    /// Every watched upstream's status, by name.
    pub fn status(&self) -> HashMap<String, Status> {
        lock(&self.status).clone()
    }

    /// Starts, keeps or restarts the sources for `raw`. Sources start only for kinds this build
    /// has; an upstream whose kind has none is reported failed.
    pub fn configure(&self, raw: &RawConfig) {
        let config = raw.discovery.clone().unwrap_or_default();
        let watches = watches_of(raw);
        let mut running = lock(&self.running);
        if running
            .as_ref()
            .is_some_and(|r| r.config == config && r.watches == watches)
        {
            return;
        }
        let (old_watches, generation) = match running.take() {
            Some(old) => {
                for s in &old.stops {
                    s.store(true, Ordering::Relaxed);
                }
                (old.watches, old.generation + 1)
            }
            None => (Vec::new(), 1),
        };
        // An upstream watching what it watched keeps its set across the restart; one whose
        // watch is new (or changed) forgets it and waits for its first answer.
        let fresh: Vec<&Watch> = watches
            .iter()
            .filter(|w| !old_watches.contains(w))
            .collect();
        lock(&self.overlay).retain(|name, _| {
            watches.iter().any(|w| &w.upstream == name)
                && !fresh.iter().any(|w| &w.upstream == name)
        });
        {
            let mut st = lock(&self.status);
            st.retain(|name, _| watches.iter().any(|w| &w.upstream == name));
            for w in &watches {
                let s = st.entry(w.upstream.clone()).or_default();
                s.source = Some(w.kind);
                if fresh.iter().any(|f| f.upstream == w.upstream) {
                    s.awaiting_first = true;
                    s.endpoints = 0;
                }
            }
        }
        let stops = self.spawn_all(&config, &watches, generation);
        *running = Some(Running {
            config,
            watches,
            stops,
            generation,
        });
    }

    fn spawn_all(
        &self,
        config: &DiscoveryConfig,
        watches: &[Watch],
        generation: u64,
    ) -> Vec<Arc<AtomicBool>> {
        let Some(me) = self.me.upgrade() else {
            return Vec::new();
        };
        let mut by_kind: HashMap<DiscoveryKind, Vec<Watch>> = HashMap::new();
        for w in watches {
            // SRV and A/AAAA names share the resolver thread.
            let kind = match w.kind {
                DiscoveryKind::DnsSrv => DiscoveryKind::Dns,
                k => k,
            };
            by_kind.entry(kind).or_default().push(w.clone());
        }
        let mut stops = Vec::new();
        for (kind, ws) in by_kind {
            let stop = Arc::new(AtomicBool::new(false));
            let sink: Arc<dyn Sink> = Arc::new(SourceSink {
                hub: me.clone(),
                generation,
            });
            let spawned = match (self.spawner)(kind) {
                Some(spawn) => spawn(config, ws.clone(), sink, stop.clone())
                    .map_err(|e| format!("cannot start the {} source: {e}", kind.name())),
                None => Err(format!("no {} source in this build", kind.name())),
            };
            match spawned {
                Ok(_detached) => stops.push(stop),
                Err(why) => {
                    for w in &ws {
                        self.fail(None, &w.upstream, w.kind, why.clone());
                    }
                }
            }
        }
        stops
    }

    /// Puts back the sets of `saved` for upstreams watched now that have none (a refused reload
    /// went back to the live config's watches).
    pub fn restore(&self, saved: &Overlay) {
        let running = lock(&self.running);
        let Some(r) = running.as_ref() else {
            return;
        };
        let mut overlay = lock(&self.overlay);
        let mut st = lock(&self.status);
        for (name, set) in saved {
            if r.watches.iter().any(|w| &w.upstream == name) && !overlay.contains_key(name) {
                overlay.insert(name.clone(), set.clone());
                if let Some(s) = st.get_mut(name) {
                    s.awaiting_first = false;
                    s.endpoints = set.endpoints.len();
                }
            }
        }
    }

    /// Waits until every upstream `raw` wants discovered has had an answer (good or failed)
    /// since its watch started, at most `max`. Returns the upstreams still without endpoints.
    pub fn wait_first_answers(&self, raw: &RawConfig, max: Duration) -> Vec<String> {
        let deadline = Instant::now() + max;
        let names: Vec<String> = watches_of(raw).into_iter().map(|w| w.upstream).collect();
        let mut st = lock(&self.status);
        loop {
            let waiting = names
                .iter()
                .any(|n| st.get(n).is_none_or(|s| s.awaiting_first));
            let now = Instant::now();
            if !waiting || now >= deadline {
                break;
            }
            st = self
                .answered
                .wait_timeout(st, deadline - now)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        drop(st);
        let overlay = lock(&self.overlay);
        names
            .into_iter()
            .filter(|n| !overlay.contains_key(n))
            .collect()
    }

    /// Stops every source and the republisher.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.dirtied.notify_all();
        if let Some(r) = lock(&self.running).take() {
            for s in &r.stops {
                s.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A good answer of the source started as `generation`.
    fn apply(&self, generation: u64, upstream: &str, mut set: EndpointSet) {
        if set.endpoints.is_empty() {
            self.fail(
                Some(generation),
                upstream,
                set.source,
                "the answer has no endpoints".into(),
            );
            return;
        }
        set.endpoints.sort();
        set.endpoints.dedup_by_key(|f| f.addr);
        // Held across the overlay's update: a source stopped meanwhile cannot write after its
        // successor (lock order: running, overlay, status).
        let running = lock(&self.running);
        let live = running.as_ref().is_some_and(|r| {
            r.generation == generation && r.watches.iter().any(|w| w.upstream == upstream)
        });
        if !live {
            return;
        }
        let mut overlay = lock(&self.overlay);
        let changed = overlay
            .get(upstream)
            .is_none_or(|old| old.endpoints != set.endpoints);
        let (count, revision) = (set.endpoints.len(), set.revision);
        {
            let mut st = lock(&self.status);
            let s = st.entry(upstream.to_string()).or_default();
            if changed {
                s.changes += 1;
                eprintln!(
                    "ringgate: discovery ({}): upstream {upstream} now has {count} endpoint(s){}",
                    set.source.name(),
                    revision.map_or(String::new(), |r| format!(" at revision {r}"))
                );
            }
            s.answers += 1;
            s.awaiting_first = false;
            s.endpoints = count;
            s.revision = revision;
            s.last_success = Some(set.at);
            s.last_error = None;
            s.source = Some(set.source);
        }
        overlay.insert(upstream.to_string(), set);
        drop(overlay);
        drop(running);
        self.answered.notify_all();
        if changed {
            lock(&self.dirty).insert(upstream.to_string());
            self.dirtied.notify_all();
        }
    }

    /// A failed answer (`generation`: of that source start; `None`: the hub's own report).
    fn fail(&self, generation: Option<u64>, upstream: &str, source: DiscoveryKind, why: String) {
        if let Some(g) = generation {
            let running = lock(&self.running);
            if running.as_ref().is_none_or(|r| r.generation != g) {
                return;
            }
        }
        // (The overlay is locked before the status everywhere.)
        let keeps = lock(&self.overlay).get(upstream).map(|o| o.endpoints.len());
        {
            let mut st = lock(&self.status);
            let s = st.entry(upstream.to_string()).or_default();
            s.errors += 1;
            s.awaiting_first = false;
            s.source = Some(source);
            if s.last_error.as_deref() != Some(why.as_str()) {
                eprintln!(
                    "ringgate: discovery ({}): upstream {upstream}: {why}; {}",
                    source.name(),
                    match keeps {
                        Some(n) => format!("keeping its last {n} endpoint(s)"),
                        None => "it has no endpoints yet".into(),
                    }
                );
                s.last_error = Some(why);
            }
        }
        self.answered.notify_all();
    }
}

/// The republisher: takes every dirty upstream at once and has the control plane rebuild; keeps
/// them dirty (and pauses) when the rebuild fails. Ends when the hub stops or goes.
fn republisher(hub: &Weak<Hub>) {
    loop {
        let Some(h) = hub.upgrade() else {
            return;
        };
        let batch: Vec<String> = {
            let mut d = lock(&h.dirty);
            while d.is_empty() && !h.stopped.load(Ordering::Relaxed) {
                d = h
                    .dirtied
                    .wait_timeout(d, Duration::from_millis(500))
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                if Weak::strong_count(hub) <= 1 && d.is_empty() {
                    // Only this thread holds the hub: nobody can report any more.
                    return;
                }
            }
            std::mem::take(&mut *d).into_iter().collect()
        };
        if h.stopped.load(Ordering::Relaxed) {
            return;
        }
        let Some(target) = h.target.get().and_then(Weak::upgrade) else {
            return;
        };
        if !target.republish(&batch) {
            lock(&h.dirty).extend(batch);
            drop((h, target));
            std::thread::sleep(RETRY);
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Sink for Hub {
    fn update(&self, upstream: &str, set: EndpointSet) {
        let g = lock(&self.running).as_ref().map_or(0, |r| r.generation);
        self.apply(g, upstream, set);
    }

    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String) {
        self.fail(None, upstream, source, why);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
