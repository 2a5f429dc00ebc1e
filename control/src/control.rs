//! The control plane of a running gateway: reloads and what the admin API reports.
//!
//! Every reload trigger (SIGHUP, the config file changing, `POST /config/reload`, `ringgate
//! reload`) ends in [`Control::reload`]: read the source, parse, validate, compile a whole new
//! snapshot (endpoint names re-resolved here, off the workers), refuse it if it changes what only a
//! restart can change, then publish it with the epoch swap. Workers pick it up at their next
//! request; per-core state keyed by endpoint address or by name (pools, metrics) carries over.
//! Reloads are serialized by one mutex on this control path; the request path never sees it.

use crate::config::{ConfigError, RawConfig};
use crate::contenthash::{config_hash, source_hash};
use crate::discovery::hub::{Hub, Republish};
use crate::snapshot::Snapshot;
use ringgate_core::shutdown::Shutdown;
use ringgate_core::snapshot::SnapshotSlot;
use ringgate_http::accesslog::AccessLog;
use ringgate_http::metrics::MetricsHub;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, re-read at every reload.
    File(PathBuf),
    /// Text given at start (the demo, `ringgate proxy`): reloads rebuild it (re-resolving names).
    Inline {
        /// A label for the admin API.
        label: String,
        /// The config text.
        text: String,
    },
    /// One etcd key, watched (see [`crate::etcd::configwatch`]).
    Etcd {
        /// The cluster.
        settings: crate::config::discovery::EtcdSettings,
        /// The key holding the config text.
        key: String,
    },
}

impl ConfigSource {
    /// How the admin API names it.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Inline { label, .. } => label.clone(),
            ConfigSource::Etcd { settings, key } => {
                format!("etcd {key} at {}", settings.endpoints.join(","))
            }
        }
    }

    /// The config text, and the source's revision of it (etcd's; `None` for the others).
    pub fn read(&self) -> Result<(String, Option<i64>), ConfigError> {
        match self {
            ConfigSource::File(p) => {
                std::fs::read_to_string(p)
                    .map(|t| (t, None))
                    .map_err(|source| ConfigError::Read {
                        path: p.display().to_string(),
                        source,
                    })
            }
            ConfigSource::Inline { text, .. } => Ok((text.clone(), None)),
            ConfigSource::Etcd { settings, key } => crate::etcd::configwatch::read(settings, key)
                .map(|(text, rev)| (text, Some(rev)))
                .map_err(|e| ConfigError::Read {
                    path: self.describe(),
                    source: std::io::Error::other(e),
                }),
        }
    }
}

/// What the admin API shows of the live config.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// Version label of the live config.
    pub version: String,
    /// Hash of its text.
    pub hash: u64,
    /// When it went live (unix seconds).
    pub loaded_at: f64,
    /// The live config itself (for `/routes`).
    pub raw: Arc<RawConfig>,
    /// Successful reloads since start.
    pub reloads_ok: u64,
    /// Refused reloads since start.
    pub reloads_failed: u64,
    /// Why the last refused reload was refused.
    pub last_error: Option<String>,
    /// When a reload was last attempted (unix seconds).
    pub last_attempt: Option<f64>,
    /// The source's revision of the live config (the etcd key's revision; `None` for a file).
    pub source_revision: Option<i64>,
}

/// The result of a successful reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new version.
    pub version: String,
    /// The epoch it was published at.
    pub epoch: u64,
    /// Whether the config changed: its text, or the contents of a file it names (a certificate,
    /// key, CA bundle, API key file or JWKS file).
    pub changed: bool,
}

/// A running gateway's control plane.
pub struct Control {
    source: ConfigSource,
    slot: Arc<SnapshotSlot<Snapshot>>,
    /// Metrics hub of the workers.
    pub hub: Arc<MetricsHub>,
    /// The access log, when configured.
    pub access_log: Option<Arc<AccessLog>>,
    /// The stop signal (readiness).
    pub shutdown: Arc<Shutdown>,
    state: Mutex<ConfigState>,
    /// Serializes reloads (held while building; `state` is taken only to read and to update).
    reload_lock: Mutex<()>,
    /// The one-line summary of what runs.
    pub start_line: String,
    ready: AtomicBool,
    /// Dynamic upstreams' sources and their latest endpoints.
    pub discovery: Arc<Hub>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Control {
    /// The control plane of a gateway started from `source`, whose first config is `raw`.
    pub fn new(
        source: ConfigSource,
        raw: RawConfig,
        gw: &crate::server::RunningGateway,
    ) -> Arc<Self> {
        let hub = Hub::new(crate::discovery::spawner);
        hub.configure(&raw);
        Self::with_discovery(source, raw, gw, hub)
    }

    /// [`Control::new`] for a gateway whose first snapshot was built with `hub`'s endpoints
    /// (see [`first_snapshot`]); from now on the hub's changes are published here.
    pub fn with_discovery(
        source: ConfigSource,
        raw: RawConfig,
        gw: &crate::server::RunningGateway,
        hub: Arc<Hub>,
    ) -> Arc<Self> {
        let (_, snap) = gw.slot.load();
        let c = Arc::new(Self {
            source,
            slot: gw.slot.clone(),
            hub: gw.hub.clone(),
            access_log: gw.access_log.clone(),
            shutdown: gw.shutdown.clone(),
            state: Mutex::new(ConfigState {
                version: snap.version.clone(),
                hash: snap.hash,
                loaded_at: unix_now(),
                raw: Arc::new(raw),
                reloads_ok: 0,
                reloads_failed: 0,
                last_error: None,
                last_attempt: None,
                source_revision: None,
            }),
            start_line: gw.start_line.clone(),
            reload_lock: Mutex::new(()),
            ready: AtomicBool::new(true),
            discovery: hub,
        });
        let weak: std::sync::Weak<dyn Republish> = Arc::downgrade(&c) as _;
        c.discovery.attach(weak);
        // Answers that came while the gateway started are applied now.
        if !c.discovery.status().is_empty() {
            c.rediscover(&["(start)".to_string()]);
        }
        c
    }

    /// The live snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.slot.load().1
    }

    /// Records the source's revision of the config the process started with.
    pub fn set_source_revision(&self, revision: Option<i64>) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .source_revision = revision;
    }

    /// Where the config comes from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// A copy of the live config's state.
    pub fn state(&self) -> ConfigState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Ready to serve: a config is live and the process is not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutdown.is_stopping()
    }

    /// Rebuilds the snapshot from the source and publishes it; on any problem the live config
    /// stays and the error lists every problem. `trigger` names the cause in the log line.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, String> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let res = self.build_next();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_attempt = Some(unix_now());
        match res {
            Ok((raw, snap, revision)) => {
                let changed = snap.hash != st.hash;
                let version = snap.version.clone();
                st.version = version.clone();
                st.hash = snap.hash;
                st.loaded_at = unix_now();
                st.raw = Arc::new(raw);
                st.reloads_ok += 1;
                st.source_revision = revision;
                st.last_error = None;
                let epoch = self.slot.publish(Arc::new(snap));
                eprintln!("ringgate: reload ({trigger}): ok, version={version} epoch={epoch}");
                Ok(Reloaded {
                    version,
                    epoch,
                    changed,
                })
            }
            Err(e) => {
                st.reloads_failed += 1;
                st.last_error = Some(e.clone());
                eprintln!("ringgate: reload ({trigger}): refused, the live config stays: {e}");
                Err(e)
            }
        }
    }

    fn build_next(&self) -> Result<(RawConfig, Snapshot, Option<i64>), String> {
        let (text, revision) = self.source.read().map_err(|e| e.to_string())?;
        let raw = RawConfig::parse(&text).map_err(|e| e.to_string())?;
        // Sources for upstreams the new config discovers start before it is built, so a route
        // moved to one finds its endpoints; if the config is refused they go back to the live one.
        let live_sets = self.discovery.overlay();
        self.discovery.configure(&raw);
        let initial = raw
            .discovery
            .as_ref()
            .map_or(Duration::from_secs(5), |d| d.initial_wait);
        self.discovery.wait_first_answers(&raw, initial);
        let built = self.build_checked(&raw, config_hash(&text, &raw));
        if built.is_err() {
            // Back to the live config's watches, with the sets they had.
            self.discovery.configure(&self.state().raw);
            self.discovery.restore(&live_sets);
        }
        built.map(|snap| (raw, snap, revision))
    }

    /// Builds `raw` with the discovered endpoints and checks it against the live snapshot.
    fn build_checked(&self, raw: &RawConfig, hash: u64) -> Result<Snapshot, String> {
        let overlay = self.discovery.overlay();
        let mut snap = Snapshot::build_with(raw, hash, &overlay).map_err(|e| e.to_string())?;
        let (_, live) = self.slot.load();
        snap.limiter.clone_from(&live.limiter);
        let needs = live.process.restart_needed_for(&snap.process);
        if !needs.is_empty() {
            return Err(format!(
                "a reload cannot change {}: restart (or upgrade) the process for that",
                needs.join(", ")
            ));
        }
        Ok(snap)
    }

    /// Rebuilds the live config with the hub's latest endpoints and publishes it (not a reload:
    /// the config is not read again and the reload counters do not move).
    fn rediscover(&self, upstreams: &[String]) -> bool {
        let upstream = upstreams.join(", ");
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let st = self.state();
        let before = self.snapshot();
        match self.build_checked(&st.raw, st.hash) {
            Ok(snap) => {
                let moved = snap
                    .upstreams
                    .iter()
                    .zip(&before.upstreams)
                    .any(|(a, b)| a.fingerprint != b.fingerprint)
                    || snap.upstreams.len() != before.upstreams.len();
                if moved {
                    let epoch = self.slot.publish(Arc::new(snap));
                    eprintln!("ringgate: endpoints changed ({upstream}): published epoch {epoch}");
                }
                true
            }
            Err(e) => {
                eprintln!(
                    "ringgate: endpoints changed ({upstream}) but the config did not build with them; the live snapshot stays, tried again shortly: {e}"
                );
                false
            }
        }
    }

    /// Watches the config file (when the source is one) and the files it names, and reloads when
    /// any of their contents change. Polls every `every`, off the hot path; returns the watcher's
    /// stop flag.
    pub fn watch(self: &Arc<Self>, every: Duration) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        if let ConfigSource::Etcd { settings, key } = self.source.clone() {
            // etcd says when the key changes: no polling.
            if let Err(e) =
                crate::etcd::configwatch::spawn(self.clone(), settings, key, stop.clone())
            {
                eprintln!("ringgate: cannot start the etcd config watch: {e}");
            }
            return stop;
        }
        let ConfigSource::File(path) = self.source.clone() else {
            return stop;
        };
        let me = self.clone();
        let stop2 = stop.clone();
        // Config, certificate and key files are small: reading and hashing them twice a second
        // costs nothing and, unlike comparing mtimes (coarse on some filesystems), never misses a
        // same-size edit.
        let mut last_seen = self.state().hash;
        let _ = std::thread::Builder::new()
            .name("ringgate-watch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) && !me.shutdown.is_stopping() {
                    std::thread::sleep(every);
                    let Ok(text) = std::fs::read_to_string(&path) else {
                        continue;
                    };
                    // The files the config names count too: a renewed certificate reloads.
                    let h = source_hash(&text);
                    if h == last_seen {
                        continue;
                    }
                    // Remembered even when refused: a bad edit is reported once, not every poll.
                    last_seen = h;
                    if h != me.state().hash {
                        let _ = me.reload("file changed");
                    }
                }
            });
        stop
    }
}

impl Republish for Control {
    fn republish(&self, upstreams: &[String]) -> bool {
        self.rediscover(upstreams)
    }
}

/// Starts the discovery sources `raw` needs, waits for their first answers (at most
/// `[discovery] initial_wait`) and builds the first snapshot with them. Upstreams still without
/// endpoints are named on stderr; they answer 503 until their source answers.
pub fn first_snapshot(raw: &RawConfig, hash: u64) -> Result<(Arc<Hub>, Snapshot), ConfigError> {
    raw.validate()?;
    let hub = Hub::new(crate::discovery::spawner);
    hub.configure(raw);
    let wait = raw
        .discovery
        .as_ref()
        .map_or(Duration::from_secs(5), |d| d.initial_wait);
    for name in hub.wait_first_answers(raw, wait) {
        eprintln!("ringgate: discovery: upstream {name} has no endpoints yet; it answers 503 until its source answers");
    }
    let snap = Snapshot::build_with(raw, hash, &hub.overlay())?;
    Ok((hub, snap))
}
