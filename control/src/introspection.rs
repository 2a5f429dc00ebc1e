//! RFC 7662 introspection calls for opaque tokens: a bounded pool of calls shared by the cores,
//! fair between clients, that never asks the provider twice about the same junk.
//!
//! Exists because introspection is the one authentication step whose cost lands on someone
//! else (the identity provider) and whose latency is theirs: without bounds, a client sending
//! junk tokens fills every call slot and other clients' valid tokens get 503.
//!
//! # Bounds
//!
//! - **Calls in flight**: at most `max_inflight` per endpoint (per process), each bounded by
//!   the endpoint's timeout, each on its own short-lived thread.
//! - **Queue**: beyond that, calls wait in a queue of at most `queue` entries, served round-robin
//!   by client (one call per client in turn, not first come first served), so a client with many
//!   queued calls delays another client by at most one call per turn. A queued call that waited
//!   longer than the timeout is answered "unavailable" without being made. So a request waits at
//!   most twice the timeout ([`Introspector::max_wait`]).
//! - **Per client**: at most `max_inflight_per_client` calls in flight or queued per client
//!   address (IPv4, or IPv6 /64); beyond that the client's request is answered 503 at once.
//! - **Same token**: a token already being asked about is not asked again; every request
//!   waiting for it gets the one answer.
//! - **Negative answers** (`active: false`) are remembered for `negative_ttl` (at most
//!   [`NEGATIVE_CAPACITY`] tokens by SHA-256; the oldest go first, expired or not), so a
//!   repeated junk token reaches the provider once per TTL whichever core it arrives on. The cores
//!   also remember them (`IntrospectionCache`), so a repeat usually never gets here.
//!
//! State is one mutex-guarded table, taken only on a per-core cache miss (a path that already
//! costs a thread and a network call); the request path of cached tokens never touches it.

use crate::httpc::{call, Target};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
pub use ringgate_policies::auth::IntrospectionResult;
use ringgate_policies::auth::{
    client_key, introspection_request_body, parse_introspection, AuthFailure, ClaimNames, Identity,
    IntrospectionPool, IntrospectionReply, TokenDigest,
};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most junk tokens remembered per endpoint.
pub const NEGATIVE_CAPACITY: usize = 65_536;

type Reply = IntrospectionReply;

/// How many calls an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Calls in flight at once.
    pub max_inflight: usize,
    /// Calls in flight or queued per client address.
    pub per_client: usize,
    /// Calls waiting for a slot.
    pub queue: usize,
    /// How long an `active: false` answer is remembered.
    pub negative_ttl: Duration,
}

struct Job {
    token: Vec<u8>,
    digest: TokenDigest,
    client: u128,
    queued_at: Instant,
}

#[derive(Default)]
struct Pool {
    running: usize,
    /// Clients with queued calls, in turn order, each with its calls in arrival order.
    queue: VecDeque<(u128, VecDeque<Job>)>,
    queued: usize,
    /// Calls in flight or queued, per client.
    per_client: HashMap<u128, usize>,
    /// Who waits for each token being asked about.
    waiting: HashMap<[u8; 32], Vec<Reply>>,
    /// Tokens the provider called inactive, until when.
    negative: HashMap<[u8; 32], Instant>,
    /// The same, in the order they were remembered (= the order they expire: one TTL).
    negative_order: VecDeque<([u8; 32], Instant)>,
}

/// An introspection endpoint and its pool of calls.
pub struct Introspector {
    url: Target,
    authorization: Option<String>,
    timeout: Duration,
    claims: ClaimNames,
    limits: PoolLimits,
    pool: Mutex<Pool>,
    calls: AtomicU64,
}

impl Introspector {
    /// An endpoint at `url` (an https one verified against the PEM bundle `ca`, or the host's
    /// roots), with optional client credentials (HTTP Basic), each call bounded by `timeout`.
    pub fn new(
        url: &str,
        ca: Option<&str>,
        client: Option<(&str, &str)>,
        timeout: Duration,
        claims: ClaimNames,
        limits: PoolLimits,
    ) -> Result<Self, String> {
        Ok(Self {
            url: Target::new(url, ca)?,
            authorization: client.map(|(id, secret)| basic_auth(id, secret)),
            timeout,
            claims,
            limits: PoolLimits {
                max_inflight: limits.max_inflight.max(1),
                per_client: limits.per_client.max(1),
                ..limits
            },
            pool: Mutex::new(Pool::default()),
            calls: AtomicU64::new(0),
        })
    }

    /// The longest a request waits for an answer: a turn in the queue and the call, each
    /// bounded by the timeout.
    pub fn max_wait(&self) -> Duration {
        self.timeout * 2
    }

    /// Calls made to the provider so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks about `token` for a request from `peer`; the answer is sent on `reply` (possibly
    /// before this returns). Returns false, sending nothing, when the client already has its
    /// share of calls or the queue is full (answer 503).
    pub fn start(self: &Arc<Self>, token: &[u8], peer: IpAddr, reply: Reply) -> bool {
        let digest = TokenDigest::of(token);
        let now = Instant::now();
        let mut pool = self.lock();
        if let Some(&until) = pool.negative.get(digest.as_bytes()) {
            if now < until {
                drop(pool);
                let _ = reply.send((digest, Err(AuthFailure::Inactive)));
                return true;
            }
            pool.negative.remove(digest.as_bytes());
        }
        if let Some(waiters) = pool.waiting.get_mut(digest.as_bytes()) {
            waiters.push(reply);
            return true;
        }
        let client = client_key(peer);
        let mine = pool.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.limits.per_client {
            return false;
        }
        let job = Job {
            token: token.to_vec(),
            digest,
            client,
            queued_at: now,
        };
        if pool.running < self.limits.max_inflight {
            if !self.spawn(job) {
                return false;
            }
            pool.running += 1;
        } else if pool.queued < self.limits.queue {
            pool.queued += 1;
            match pool.queue.iter_mut().find(|(c, _)| *c == client) {
                Some((_, jobs)) => jobs.push_back(job),
                None => pool.queue.push_back((client, VecDeque::from([job]))),
            }
        } else {
            return false;
        }
        *pool.per_client.entry(client).or_insert(0) += 1;
        pool.waiting.insert(*digest.as_bytes(), vec![reply]);
        true
    }

    /// Runs `job`, then whatever the queue holds, on a new thread; false if no thread could
    /// be started.
    fn spawn(self: &Arc<Self>, job: Job) -> bool {
        let me = self.clone();
        std::thread::Builder::new()
            .name("ringgate-introspect".into())
            .spawn(move || me.work(job))
            .is_ok()
    }

    fn work(&self, mut job: Job) {
        loop {
            let result = if job.queued_at.elapsed() > self.timeout {
                Err(AuthFailure::IntrospectionUnavailable)
            } else {
                self.calls.fetch_add(1, Ordering::Relaxed);
                self.introspect(&job.token)
            };
            let mut pool = self.lock();
            self.finish(&mut pool, &job, &result);
            match next_job(&mut pool) {
                Some(next) => job = next,
                None => {
                    pool.running -= 1;
                    return;
                }
            }
        }
    }

    /// Answers everyone waiting for `job`'s token and updates the books.
    fn finish(&self, pool: &mut Pool, job: &Job, result: &Result<Identity, AuthFailure>) {
        if let Some(n) = pool.per_client.get_mut(&job.client) {
            *n -= 1;
            if *n == 0 {
                pool.per_client.remove(&job.client);
            }
        }
        if matches!(result, Err(AuthFailure::Inactive)) && !self.limits.negative_ttl.is_zero() {
            remember_negative(pool, job.digest, Instant::now() + self.limits.negative_ttl);
        }
        for reply in pool
            .waiting
            .remove(job.digest.as_bytes())
            .unwrap_or_default()
        {
            let _ = reply.send((job.digest, result.clone()));
        }
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

/// The request path's view of the pool (see `ringgate_policies::auth::IntrospectionPool`).
impl IntrospectionPool for Introspector {
    fn max_wait(&self) -> Duration {
        Introspector::max_wait(self)
    }

    fn start(self: &Arc<Self>, token: &[u8], peer: IpAddr, reply: IntrospectionReply) -> bool {
        Introspector::start(self, token, peer, reply)
    }
}

/// The next queued call: the first of the client whose turn it is (that client goes to the back
/// of the line if it has more).
fn next_job(pool: &mut Pool) -> Option<Job> {
    let (client, mut jobs) = pool.queue.pop_front()?;
    let job = jobs.pop_front()?;
    pool.queued -= 1;
    if !jobs.is_empty() {
        pool.queue.push_back((client, jobs));
    }
    Some(job)
}

fn remember_negative(pool: &mut Pool, digest: TokenDigest, until: Instant) {
    let now = Instant::now();
    while let Some(&(d, t)) = pool.negative_order.front() {
        if t > now && pool.negative_order.len() < NEGATIVE_CAPACITY {
            break;
        }
        pool.negative_order.pop_front();
        // Only if the map still holds this very entry (not a later one for the same token).
        if pool.negative.get(&d) == Some(&t) {
            pool.negative.remove(&d);
        }
    }
    pool.negative.insert(*digest.as_bytes(), until);
    pool.negative_order.push_back((*digest.as_bytes(), until));
}

/// The `Authorization` value for HTTP Basic credentials.
fn basic_auth(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(basic_auth("client", "secret"), "Basic Y2xpZW50OnNlY3JldA==");
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
    }

    fn job(client: u128, n: u8) -> Job {
        Job {
            token: vec![n],
            digest: TokenDigest::of(&[n]),
            client,
            queued_at: Instant::now(),
        }
    }

    #[test]
    fn the_queue_takes_clients_in_turn() {
        let mut pool = Pool::default();
        // Client 1 queued four calls before clients 2 and 3 queued one each.
        for (client, n) in [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (3, 6)] {
            pool.queued += 1;
            match pool.queue.iter_mut().find(|(c, _)| *c == client) {
                Some((_, jobs)) => jobs.push_back(job(client, n)),
                None => pool
                    .queue
                    .push_back((client, VecDeque::from([job(client, n)]))),
            }
        }
        let order: Vec<u8> = std::iter::from_fn(|| next_job(&mut pool))
            .map(|j| j.token[0])
            .collect();
        assert_eq!(order, [1, 5, 6, 2, 3, 4]);
        assert_eq!(pool.queued, 0);
    }

    #[test]
    fn negative_answers_are_bounded() {
        let mut pool = Pool::default();
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..(NEGATIVE_CAPACITY as u32 + 10) {
            remember_negative(&mut pool, TokenDigest::of(&i.to_le_bytes()), later);
        }
        assert_eq!(pool.negative.len(), NEGATIVE_CAPACITY);
        assert_eq!(pool.negative_order.len(), NEGATIVE_CAPACITY);
        let first = TokenDigest::of(&0u32.to_le_bytes());
        assert!(
            !pool.negative.contains_key(first.as_bytes()),
            "oldest forgotten"
        );
    }
}
