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
//! **Introspection.** A call runs on a short-lived thread (at most [`MAX_INFLIGHT`] at once per
//! endpoint; beyond that the request is answered 503 at once), bounded by the endpoint's timeout,
//! and its result goes back to the asking core over that core's channel. The core caches active
//! tokens for the configured TTL.

use crate::httpc::{call, Target};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ringgate_policies::auth::{
    introspection_request_body, parse_introspection, AuthFailure, ClaimNames, Identity, Jwks,
    TokenDigest,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Introspection calls in flight per endpoint before requests are refused with 503.
pub const MAX_INFLIGHT: usize = 64;

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

/// An introspection endpoint.
pub struct Introspector {
    url: Target,
    authorization: Option<String>,
    timeout: Duration,
    claims: ClaimNames,
    inflight: AtomicUsize,
    calls: AtomicU64,
}

/// The answer to one introspection: the token's digest and the identity, or why not.
pub type IntrospectionResult = (TokenDigest, Result<Identity, AuthFailure>);

impl Introspector {
    /// An endpoint at `url` (an https one verified against the PEM bundle `ca`, or the host's
    /// roots), with optional client credentials (HTTP Basic), bounded by `timeout`.
    pub fn new(
        url: &str,
        ca: Option<&str>,
        client: Option<(&str, &str)>,
        timeout: Duration,
        claims: ClaimNames,
    ) -> Result<Self, String> {
        Ok(Self {
            url: Target::new(url, ca)?,
            authorization: client.map(|(id, secret)| basic_auth(id, secret)),
            timeout,
            claims,
            inflight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
        })
    }

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Starts a call for `token`; its result is sent on `reply`. Returns false (and sends
    /// nothing) when too many calls are in flight.
    pub fn start(
        self: &Arc<Self>,
        token: Vec<u8>,
        reply: crossbeam_channel::Sender<IntrospectionResult>,
    ) -> bool {
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ringgate-introspect".into())
            .spawn(move || {
                let digest = TokenDigest::of(&token);
                let r = me.introspect(&token);
                me.inflight.fetch_sub(1, Ordering::AcqRel);
                let _ = reply.send((digest, r));
            });
        if spawned.is_err() {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn introspect(&self, token: &[u8]) -> Result<Identity, AuthFailure> {
        let body = introspection_request_body(token);
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        if let Some(a) = &self.authorization {
            headers.push(("authorization", a.as_str()));
        }
        let (status, resp) = call(&self.url, "POST", &headers, &body, self.timeout)
            .map_err(|_| AuthFailure::IntrospectionUnavailable)?;
        if status != 200 {
            return Err(AuthFailure::IntrospectionUnavailable);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        parse_introspection(&resp, &self.claims, now)
    }
}

/// The `Authorization` value for HTTP Basic credentials.
fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(
            super::basic_auth("client", "secret"),
            "Basic Y2xpZW50OnNlY3JldA=="
        );
        assert_eq!(super::basic_auth("a", ""), "Basic YTo=");
    }
}
