//! The etcd discovery source: an upstream's endpoints are the values of the keys under its
//! `etcd_prefix`, watched.
//!
//! Per watched prefix, one thread: read every key under the prefix (a range), report the set
//! with the revision read, then watch from the next revision and report the whole set again
//! after each change. A value is `ip:port` or `{"address": "ip:port", "weight": N}`; a value
//! that is neither is left out and reported once (through [`Sink::failed`]) until the keys
//! change again. An empty prefix is a failure, never an empty set (the hub keeps the last good
//! one). When the watch breaks (etcd down, the member gone), the failure is reported, the last
//! set stays, and the thread tries again with a bounded backoff, other members first, resuming
//! from the next revision (etcd replays what was missed); when that revision was compacted away
//! meanwhile, the keys are listed again. Every wait is cut into slices so the thread ends within about 200 ms of `stop`.

use super::{EndpointSet, Found, Sink, Watch};
use crate::config::discovery::{DiscoveryConfig, DiscoveryKind, EtcdSettings};
use crate::etcd::{Client, EtcdError, WatchEvent, WatchMsg};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The first wait after a failure; doubled after each one up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A watch silent this long is opened again from where it was (a member that vanished without
/// closing the connection leaves a silent stream behind).
const WATCH_IDLE: Duration = Duration::from_secs(30);

/// Starts the source: one thread per watch, under a parent thread that ends when they all have
/// (after `stop`).
pub fn spawn(
    settings: &EtcdSettings,
    watches: Vec<Watch>,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let mut threads = Vec::new();
    for w in watches {
        let Some(prefix) = w.targets.first().cloned() else {
            continue;
        };
        let settings = settings.clone();
        let sink = sink.clone();
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("ringgate-etcd-{}", w.upstream))
                .spawn(move || {
                    PrefixWatch::new(w.upstream, prefix, sink, stop).run(&settings);
                })?,
        );
    }
    std::thread::Builder::new()
        .name("ringgate-etcd".into())
        .spawn(move || {
            for t in threads {
                let _ = t.join();
            }
        })
}

/// [`spawn`] as the hub starts sources: the cluster is `[discovery.etcd]`.
pub fn spawn_source(
    config: &DiscoveryConfig,
    watches: Vec<Watch>,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let settings = config.etcd.as_ref().ok_or_else(|| {
        std::io::Error::other("etcd upstreams need [discovery.etcd] (the cluster to read)")
    })?;
    spawn(settings, watches, sink, stop)
}

/// The state of one watched prefix.
struct PrefixWatch {
    upstream: String,
    prefix: String,
    sink: Arc<dyn Sink>,
    stop: Arc<AtomicBool>,
    /// The keys under the prefix and their raw values, as of `revision`.
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    revision: i64,
    /// The problems last reported for these keys (reported again only when they change).
    reported: Option<String>,
    backoff: Duration,
}

impl PrefixWatch {
    fn new(upstream: String, prefix: String, sink: Arc<dyn Sink>, stop: Arc<AtomicBool>) -> Self {
        Self {
            upstream,
            prefix,
            sink,
            stop,
            keys: BTreeMap::new(),
            revision: 0,
            reported: None,
            backoff: BACKOFF_MIN,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn fail(&mut self, why: String) {
        self.sink.failed(&self.upstream, DiscoveryKind::Etcd, why);
    }

    /// Sleeps the current backoff in slices (returning early on stop), then doubles it.
    fn wait_backoff(&mut self) {
        let until = Instant::now() + self.backoff;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn run(mut self, settings: &EtcdSettings) {
        let mut client = match Client::new(settings) {
            Ok(c) => c,
            Err(e) => {
                self.fail(e.to_string());
                return;
            }
        };
        let mut list = true;
        while !self.stopped() {
            // List at start and when the history the watch needs is gone (compacted); after a
            // break the watch resumes from the next revision and etcd replays what was missed.
            if list {
                match client.range_prefix(self.prefix.as_bytes()) {
                    Ok(r) => {
                        self.keys = r.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                        self.revision = r.revision;
                        self.report();
                        list = false;
                    }
                    Err(e) => {
                        self.fail(format!("reading {}: {e}", self.prefix));
                        self.wait_backoff();
                        continue;
                    }
                }
            }
            match self.follow(&mut client) {
                Ok(relist) => list = relist,
                Err(e) if !self.stopped() => {
                    client.note(&e);
                    self.fail(format!("watching {}: {e}", self.prefix));
                    self.wait_backoff();
                }
                Err(_) => {}
            }
        }
    }

    /// Watches from the revision after the last one seen until the watch must be set up again:
    /// `Ok(true)` to list the keys again first (compacted away, or a cluster whose history is
    /// behind ours), `Ok(false)` when stopped, `Err` when etcd failed.
    fn follow(&mut self, client: &mut Client) -> Result<bool, EtcdError> {
        loop {
            let mut stream = client.watch(self.prefix.as_bytes(), true, self.revision + 1)?;
            loop {
                let msg = match stream.next(&self.stop, WATCH_IDLE)? {
                    Some(m) => m,
                    None if self.stopped() => return Ok(false),
                    // Silent too long: open it again from where it was.
                    None => break,
                };
                match msg {
                    WatchMsg::Created { revision } => {
                        self.backoff = BACKOFF_MIN;
                        if revision < self.revision {
                            // A cluster restored from older data: our revision would never come.
                            return Ok(true);
                        }
                    }
                    WatchMsg::Events { revision, events } => {
                        if events.is_empty() {
                            continue;
                        }
                        for e in events {
                            match e {
                                WatchEvent::Put(kv) => {
                                    self.keys.insert(kv.key, kv.value);
                                }
                                WatchEvent::Delete(kv) => {
                                    self.keys.remove(&kv.key);
                                }
                            }
                        }
                        self.revision = revision;
                        self.report();
                    }
                    WatchMsg::Compacted { compact_revision } => {
                        eprintln!(
                            "ringgate: etcd: watch of {} fell behind a compaction (revision {compact_revision}): reading the keys again",
                            self.prefix
                        );
                        return Ok(true);
                    }
                    WatchMsg::Canceled { reason } => {
                        return Err(EtcdError::Protocol(format!("watch cancelled: {reason}")));
                    }
                }
            }
        }
    }

    /// Reports the current keys: the set, or why there is none; bad values once per change.
    fn report(&mut self) {
        let (found, bad) = parse_values(&self.keys);
        let problems = (!bad.is_empty()).then(|| {
            format!(
                "{} ignored under {} (not ip:port nor {{\"address\",\"weight\"}}): {}",
                bad.len(),
                self.prefix,
                bad.join(", ")
            )
        });
        if problems != self.reported {
            if let Some(p) = &problems {
                self.fail(p.clone());
            }
            self.reported = problems;
        }
        if found.is_empty() {
            self.fail(format!(
                "no endpoints under {} at revision {}",
                self.prefix, self.revision
            ));
            return;
        }
        self.sink.update(
            &self.upstream,
            EndpointSet {
                endpoints: found,
                source: DiscoveryKind::Etcd,
                revision: Some(self.revision),
                at: SystemTime::now(),
            },
        );
    }
}

/// The endpoints the values name, and the keys whose value names none.
fn parse_values(keys: &BTreeMap<Vec<u8>, Vec<u8>>) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    for (k, v) in keys {
        match parse_value(v) {
            Some(f) => found.push(f),
            None => bad.push(String::from_utf8_lossy(k).into_owned()),
        }
    }
    (found, bad)
}

/// `ip:port`, or `{"address": "ip:port", "weight": N}` (weight 1 when absent, at least 1).
pub fn parse_value(v: &[u8]) -> Option<Found> {
    let text = std::str::from_utf8(v).ok()?.trim();
    if text.starts_with('{') {
        let j: serde_json::Value = serde_json::from_str(text).ok()?;
        let addr: SocketAddr = j["address"].as_str()?.parse().ok()?;
        let weight = match &j["weight"] {
            serde_json::Value::Null => 1,
            w => u32::try_from(w.as_u64()?).ok()?.max(1),
        };
        return Some(Found { addr, weight });
    }
    Some(Found {
        addr: text.parse().ok()?,
        weight: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_addresses_or_address_and_weight() {
        let a: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(
            parse_value(b"10.0.0.1:80"),
            Some(Found { addr: a, weight: 1 })
        );
        assert_eq!(
            parse_value(br#"{"address":"10.0.0.1:80","weight":7}"#),
            Some(Found { addr: a, weight: 7 })
        );
        assert_eq!(
            parse_value(br#"{"address":"10.0.0.1:80"}"#),
            Some(Found { addr: a, weight: 1 })
        );
        for bad in [
            &b"api.internal:80"[..],
            b"10.0.0.1",
            br#"{"address":"x"}"#,
            br#"{"weight":2}"#,
            b"\xff",
        ] {
            assert_eq!(parse_value(bad), None, "{bad:?}");
        }
    }
}
