//! The discovery hub: the [`Sink`] every source reports to, and the owner of the sources.
//!
//! It keeps the latest endpoint set of each dynamic upstream (the overlay) and its status
//! (source, last success, errors, revision). A set that differs from the one live is put in the
//! overlay and the control plane rebuilds the snapshot from the live config with it
//! ([`crate::control::Control::rediscover`]); an unchanged answer only refreshes the status, so a
//! TTL expiry that finds the same addresses costs no snapshot. A failure or an empty answer
//! never removes endpoints: the last good set stays, and the failure is counted and logged once
//! per distinct cause.
//!
//! Sources are started per config: [`Hub::configure`] compares what the config asks to watch
//! (and how: servers, cluster) with what runs, and restarts the sources only when that changed.
//! Overlay entries of upstreams no longer watched the same way are dropped with them.

use super::{EndpointSet, Overlay, Sink, Watch};
use crate::config::discovery::{DiscoveryConfig, DiscoveryKind};
use crate::config::RawConfig;
use std::collections::HashMap;
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
    /// The overlay changed for `upstream`: rebuild and publish the snapshot.
    fn republish(&self, upstream: &str);
}

struct Running {
    config: DiscoveryConfig,
    watches: Vec<Watch>,
    stops: Vec<Arc<AtomicBool>>,
}

/// The discovery hub of one process.
pub struct Hub {
    overlay: Mutex<Overlay>,
    status: Mutex<HashMap<String, Status>>,
    answered: Condvar,
    running: Mutex<Option<Running>>,
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

impl Hub {
    /// A hub starting sources with `spawner` (by kind; `None`: no such source in this build).
    pub fn new(spawner: fn(DiscoveryKind) -> Option<Spawner>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            overlay: Mutex::new(Overlay::new()),
            status: Mutex::new(HashMap::new()),
            answered: Condvar::new(),
            running: Mutex::new(None),
            target: OnceLock::new(),
            spawner,
            me: me.clone(),
        })
    }

    /// From now on, changed sets are applied by `target` (before that they only fill the
    /// overlay, which the first snapshot is built with).
    pub fn attach(&self, target: Weak<dyn Republish>) {
        let _ = self.target.set(target);
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
        if let Some(old) = running.take() {
            for s in &old.stops {
                s.store(true, Ordering::Relaxed);
            }
            // Sets found by a watch that stays the same stay; the others go with their watch.
            let kept: Vec<&Watch> = old.watches.iter().filter(|w| watches.contains(w)).collect();
            let same_config = old.config == config;
            lock(&self.overlay)
                .retain(|name, _| same_config && kept.iter().any(|w| &w.upstream == name));
        }
        {
            let mut st = lock(&self.status);
            st.retain(|name, _| watches.iter().any(|w| &w.upstream == name));
            for w in &watches {
                st.entry(w.upstream.clone()).or_default().source = Some(w.kind);
            }
        }
        let stops = self.spawn_all(&config, &watches);
        *running = Some(Running {
            config,
            watches,
            stops,
        });
    }

    fn spawn_all(&self, config: &DiscoveryConfig, watches: &[Watch]) -> Vec<Arc<AtomicBool>> {
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
            let spawned = match (self.spawner)(kind) {
                Some(spawn) => spawn(config, ws.clone(), me.clone(), stop.clone())
                    .map_err(|e| format!("cannot start the {} source: {e}", kind.name())),
                None => Err(format!("no {} source in this build", kind.name())),
            };
            match spawned {
                Ok(_detached) => stops.push(stop),
                Err(why) => {
                    for w in &ws {
                        self.failed(&w.upstream, w.kind, why.clone());
                    }
                }
            }
        }
        stops
    }

    /// Waits until every upstream `raw` wants discovered has had an answer (good or failed), at
    /// most `max`. Returns the upstreams still without endpoints.
    pub fn wait_first_answers(&self, raw: &RawConfig, max: Duration) -> Vec<String> {
        let deadline = Instant::now() + max;
        let names: Vec<String> = watches_of(raw).into_iter().map(|w| w.upstream).collect();
        let mut st = lock(&self.status);
        loop {
            let waiting = names
                .iter()
                .any(|n| st.get(n).is_none_or(|s| s.answers == 0 && s.errors == 0));
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

    /// Stops every source.
    pub fn stop(&self) {
        if let Some(r) = lock(&self.running).take() {
            for s in &r.stops {
                s.store(true, Ordering::Relaxed);
            }
        }
    }

    fn watched(&self, upstream: &str) -> bool {
        lock(&self.running)
            .as_ref()
            .is_some_and(|r| r.watches.iter().any(|w| w.upstream == upstream))
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Sink for Hub {
    fn update(&self, upstream: &str, mut set: EndpointSet) {
        if set.endpoints.is_empty() {
            self.failed(upstream, set.source, "the answer has no endpoints".into());
            return;
        }
        if !self.watched(upstream) {
            return;
        }
        set.endpoints.sort();
        set.endpoints.dedup_by_key(|f| f.addr);
        let changed = {
            let mut overlay = lock(&self.overlay);
            let changed = overlay
                .get(upstream)
                .is_none_or(|old| old.endpoints != set.endpoints);
            let (count, revision) = (set.endpoints.len(), set.revision);
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
            s.endpoints = count;
            s.revision = revision;
            s.last_success = Some(set.at);
            s.last_error = None;
            s.source = Some(set.source);
            overlay.insert(upstream.to_string(), set);
            changed
        };
        self.answered.notify_all();
        if changed {
            if let Some(t) = self.target.get().and_then(Weak::upgrade) {
                t.republish(upstream);
            }
        }
    }

    fn failed(&self, upstream: &str, source: DiscoveryKind, why: String) {
        // (The overlay is locked before the status everywhere.)
        let keeps = lock(&self.overlay).get(upstream).map(|o| o.endpoints.len());
        {
            let mut st = lock(&self.status);
            let s = st.entry(upstream.to_string()).or_default();
            s.errors += 1;
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
