//! The off-hot-path half of authentication: fetching the JWKS from a URL, and RFC 7662 token
//! introspection calls.
//!
//! **JWKS.** One fetcher thread per key-set URL (per process), kept across reloads while a
//! snapshot uses it. It refreshes on a schedule and on request; requests are single-flight (a
//! bounded channel of one: however many cores and requests miss a `kid` at once, one fetch runs)
//! and rate-limited (`min_interval` between fetches). Each core reads the current set through an
//! epoch (one relaxed load per JWT request) and asks for a refresh only on an unknown `kid`; a
//! request that asked waits for the fetcher's "done" counter to move, then verifies once more
//! and fails cleanly if the `kid` is still unknown. A failed fetch keeps the previous set.
//!
//! **Introspection** calls are made by [`crate::introspection`]'s pool (bounded, fair between
//! clients, junk remembered); their results go back to the asking core over that core's channel.

use crate::httpc::{call, Target};
pub use crate::introspection::{IntrospectionResult, Introspector, PoolLimits};
use ringgate_policies::auth::{Jwks, KeySetSource};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// A key set fetched from a URL and kept fresh.
pub struct JwksSource {
    current: Mutex<Option<Arc<Jwks>>>,
    epoch: AtomicU64,
    done: AtomicU64,
    fetches: AtomicU64,
    tx: crossbeam_channel::Sender<()>,
    url: String,
}

/// How a key set is fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksFetch {
    /// The URL.
    pub url: String,
    /// Scheduled refresh period.
    pub refresh: Duration,
    /// Least time between two fetches asked for by unknown `kid`s.
    pub min_interval: Duration,
    /// Bound on one fetch.
    pub timeout: Duration,
    /// The CA bundle an https URL must chain to (`None`: the host's roots).
    pub ca: Option<String>,
}

type Sources = Mutex<HashMap<JwksFetch, Weak<JwksSource>>>;

fn sources() -> &'static Sources {
    static S: OnceLock<Sources> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

impl JwksSource {
    /// The source for `f` (shared by every snapshot using it; its fetcher started, and a first
    /// fetch attempted, when new).
    pub fn get(f: &JwksFetch) -> Result<Arc<Self>, String> {
        let url = Target::new(&f.url, f.ca.as_deref())?;
        let mut map = sources().lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = map.get(f).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let src = Arc::new(JwksSource {
            current: Mutex::new(None),
            epoch: AtomicU64::new(0),
            done: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            tx,
            url: f.url.clone(),
        });
        src.fetch_now(&url, f.timeout);
        map.insert(f.clone(), Arc::downgrade(&src));
        let weak = Arc::downgrade(&src);
        let f2 = f.clone();
        let _ = std::thread::Builder::new()
            .name("ringgate-jwks".into())
            .spawn(move || fetcher(&weak, &rx, &url, &f2));
        Ok(src)
    }

    fn fetch_now(&self, url: &Target, timeout: Duration) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let got = call(url, "GET", &[("accept", "application/json")], b"", timeout).and_then(
            |(status, body)| {
                if status != 200 {
                    return Err(format!("status {status}"));
                }
                Jwks::parse(&body).map_err(|e| e.to_string())
            },
        );
        match got {
            Ok(j) => {
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(j));
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => eprintln!(
                "ringgate: auth: JWKS fetch from {} failed, keeping the previous keys: {e}",
                self.url
            ),
        }
    }

    /// The current key set's epoch (one load; changes when a fetch brings a new set).
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current key set, if one was ever fetched.
    pub fn load(&self) -> (u64, Option<Arc<Jwks>>) {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (self.epoch.load(Ordering::Acquire), cur.clone())
    }

    /// Asks for a refresh (coalesced with any pending one); returns a ticket for
    /// [`JwksSource::refreshed_since`].
    pub fn request_refresh(&self) -> u64 {
        let ticket = self.done.load(Ordering::Acquire);
        let _ = self.tx.try_send(());
        ticket
    }

    /// Whether a refresh request was handled (fetched or declined) since `ticket`.
    pub fn refreshed_since(&self, ticket: u64) -> bool {
        self.done.load(Ordering::Acquire) > ticket
    }

    /// HTTP fetches made so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

/// The request path's view of the source (see `ringgate_policies::auth::KeySetSource`).
impl KeySetSource for JwksSource {
    fn epoch(&self) -> u64 {
        JwksSource::epoch(self)
    }

    fn load(&self) -> (u64, Option<Arc<Jwks>>) {
        JwksSource::load(self)
    }

    fn request_refresh(&self) -> u64 {
        JwksSource::request_refresh(self)
    }

    fn refreshed_since(&self, ticket: u64) -> bool {
        JwksSource::refreshed_since(self, ticket)
    }
}

fn fetcher(
    src: &Weak<JwksSource>,
    rx: &crossbeam_channel::Receiver<()>,
    url: &Target,
    f: &JwksFetch,
) {
    let mut last = Instant::now();
    loop {
        let asked = match rx.recv_timeout(f.refresh) {
            Ok(()) => true,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let Some(s) = src.upgrade() else { return };
        if !asked || last.elapsed() >= f.min_interval {
            s.fetch_now(url, f.timeout);
            last = Instant::now();
        }
        // Requests that arrived meanwhile are answered by this fetch (single flight).
        while rx.try_recv().is_ok() {}
        s.done.fetch_add(1, Ordering::AcqRel);
    }
}
