//! What the engine asks of an upstream's and a route's per-core resilience state.
//!
//! Balancing, outlier ejection, circuit breaking and retry budgets are decisions, written in
//! `ringgate-policies`; the engine only drives them at the right moments of an exchange. These
//! traits are that contract. A compiled snapshot says which implementation to use (the
//! associated types of the engine's `Gateway` trait, `ringgate_http::gateway`), so calls are
//! static, and each worker keeps one value per upstream and per route, owned by its core:
//! `&mut self`, no locks. The settings a route carries (retries, splits, fallback) and the request
//! keys balancing hashes on are here too, because both sides read them.

use crate::refusal::Refusal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Active health results of an upstream's endpoints, written by the health checker (one per
/// process) and read by every core when picking. Written only on transitions, so the cache line
/// stays shared and a read is a plain load.
#[derive(Debug)]
pub struct HealthBoard {
    healthy: Vec<AtomicBool>,
}

impl HealthBoard {
    /// A board for `n` endpoints, all healthy.
    pub fn new(n: usize) -> Self {
        Self {
            healthy: (0..n).map(|_| AtomicBool::new(true)).collect(),
        }
    }

    /// Whether endpoint `i` passes its checks (out of range: yes).
    #[inline]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.healthy
            .get(i)
            .is_none_or(|h| h.load(Ordering::Relaxed))
    }

    /// Sets endpoint `i`'s state.
    pub fn set(&self, i: usize, healthy: bool) {
        if let Some(h) = self.healthy.get(i) {
            h.store(healthy, Ordering::Relaxed);
        }
    }

    /// Endpoints.
    pub fn len(&self) -> usize {
        self.healthy.len()
    }

    /// No endpoints.
    pub fn is_empty(&self) -> bool {
        self.healthy.is_empty()
    }
}

/// How one attempt at an upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response head arrived with this status.
    Response(u16),
    /// The connection could not be made.
    ConnectFailed,
    /// The connection failed after it was made (reset, timeout, bad response).
    Failed,
}

impl AttemptOutcome {
    /// Whether this counts as an upstream error (breaker, outlier ejection): no response, or 5xx.
    pub fn is_error(self) -> bool {
        match self {
            AttemptOutcome::Response(s) => s >= 500,
            _ => true,
        }
    }
}

/// A request's admission by an upstream (what the breaker needs back at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The request is a half-open probe.
    pub probe: bool,
}

/// One upstream's state on one core.
pub trait UpstreamRuntime: 'static {
    /// Whether a request may go to the upstream now (circuit breaker); a refusal is answered
    /// at once, without a connect attempt.
    fn admit(&mut self, now: Instant) -> Result<Admission, Refusal>;

    /// Picks an endpoint (index into the upstream's endpoints) not in `tried` (a bit set of the
    /// first 64 indices), skipping unhealthy and ejected ones; `key` is the request's hash for
    /// consistent hashing. `None`: no usable endpoint.
    fn pick(&mut self, key: Option<u64>, tried: u64, now: Instant) -> Option<usize>;

    /// An attempt at `endpoint` starts.
    fn started(&mut self, endpoint: usize);

    /// An attempt at `endpoint` was given up before anything was sent (undoes `started`).
    fn abandoned(&mut self, endpoint: usize);

    /// An attempt at `endpoint` ended (`latency`: from sending to the response head, or to the
    /// failure).
    fn finished(
        &mut self,
        endpoint: usize,
        outcome: AttemptOutcome,
        latency: Duration,
        now: Instant,
    );

    /// The request admitted with `a` ended; `ok` says whether its final result was a success.
    fn release(&mut self, a: Admission, ok: bool, now: Instant);

    /// Takes over `old`'s state when this one replaces it because the upstream changed (its
    /// endpoints, weights or policies): `map[i]` is the index endpoint `i` had in `old`, or
    /// `None` for a new endpoint. What depends on settings that changed is not carried.
    fn carry_from(&mut self, old: Self, map: &[Option<usize>])
    where
        Self: Sized,
    {
        let _ = (old, map);
    }

    /// Breaker state name (`closed`, `open`, `half_open`) for the admin API.
    fn breaker_state(&self, now: Instant) -> &'static str;

    /// Breaker transitions so far: (opened, half-opened, closed).
    fn breaker_transitions(&self) -> (u64, u64, u64);

    /// Endpoints ejected now.
    fn ejected(&self, now: Instant) -> usize;
}

/// One route's state on one core.
pub trait RouteRuntime: 'static {
    /// A request (not a retry) arrived on the route.
    fn record_request(&mut self, now: Instant);

    /// Whether one more retry fits the route's retry budget (counts it when it does).
    fn try_retry(&mut self, now: Instant) -> bool;

    /// How long to wait before retry number `attempt` (1-based), jittered.
    fn backoff(&mut self, attempt: u32) -> Duration;

    /// Which of the route's split backends a request with hash `key` goes to.
    fn split(&self, key: u64) -> usize;
}

/// Which failures a route retries, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Further attempts after the first (0 = no retries).
    pub attempts: u32,
    /// Retry when the connection could not be made.
    pub on_connect_failure: bool,
    /// Retry when the connection failed before a response head (reset, closed).
    pub on_reset: bool,
    /// Retry when no response head came within the first-byte timeout.
    pub on_timeout: bool,
    /// Retry on these response statuses (typically 502, 503, 504).
    pub on_status: Vec<u16>,
    /// Non-idempotent requests are retried when they carry this header (an idempotency key).
    pub idempotency_header: Option<Box<str>>,
}

/// What a request is hashed on, for consistent hashing and traffic splits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashOn {
    /// Nothing: no key (balancers pick without one; splits use the client IP).
    #[default]
    None,
    /// The client's IP address.
    ClientIp,
    /// A request header's value.
    Header(Box<str>),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The authenticated identity (client id, else subject); anonymous requests have no key
    /// (splits then use the client IP).
    Identity,
}

/// A weighted split of a route between upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSplit {
    /// The upstreams (snapshot indices), in split order.
    pub upstreams: Vec<usize>,
    /// What the split hashes (the client IP when [`HashOn::None`]).
    pub on: HashOn,
    /// A request header naming the upstream to use (for testing a canary).
    pub override_header: Option<Box<str>>,
}

/// A response a route gives instead of 503 while its upstream's breaker is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Its status.
    pub status: u16,
    /// Its `content-type`.
    pub content_type: Box<str>,
    /// Its body.
    pub body: Box<[u8]>,
}

/// A stable 64-bit hash of `bytes` (FNV-1a with a final mix), for request keys.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    for h in headers {
        if !h.name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        for pair in h.value.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                if &pair[..eq] == name.as_bytes() {
                    return Some(&pair[eq + 1..]);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let hs = [
            httparse::Header {
                name: "Cookie",
                value: b"a=1; sid=xyz; sidx=2",
            },
            httparse::Header {
                name: "Other",
                value: b"sid=no",
            },
        ];
        assert_eq!(cookie_value(&hs, "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(&hs, "sidx"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&hs, "missing"), None);
    }

    #[test]
    fn key_hash_spreads_and_is_stable() {
        assert_eq!(key_hash(b"abc"), key_hash(b"abc"));
        assert_ne!(key_hash(b"abc"), key_hash(b"abd"));
        assert!(AttemptOutcome::Response(503).is_error());
        assert!(!AttemptOutcome::Response(404).is_error());
        assert!(AttemptOutcome::ConnectFailed.is_error());
    }
}
