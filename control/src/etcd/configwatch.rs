//! The gateway config in one etcd key: reading it, and following it.
//!
//! A fleet of gateway nodes started with the same key runs one config: each node watches the key
//! and, on every change, reloads through the normal path ([`Control::reload`]), so a config that
//! does not validate (or changes what only a restart can) is refused on every node and the live
//! one stays. `/config` says which revision of the key each node runs. When etcd cannot be
//! reached the live config stays; the watcher tries again with a bounded backoff and, once etcd
//! answers, reads the key again to catch a change made meanwhile.

use super::{Client, EtcdError, WatchEvent, WatchMsg};
use crate::config::discovery::EtcdSettings;
use crate::control::Control;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first wait after a failure; doubled after each one up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A silent watch is opened again after this long (see the discovery source).
const WATCH_IDLE: Duration = Duration::from_secs(30);

/// Reads the config text under `key`, with the revision it was last changed at (errors do not
/// repeat the key: the caller names the source).
pub fn read(settings: &EtcdSettings, key: &str) -> Result<(String, i64), String> {
    let mut c = Client::new(settings).map_err(|e| e.to_string())?;
    let (_, kv) = c.get(key.as_bytes()).map_err(|e| e.to_string())?;
    let kv = kv.ok_or("no such key")?;
    let text = String::from_utf8(kv.value).map_err(|_| "the value is not UTF-8")?;
    Ok((text, kv.mod_revision))
}

/// Follows `key` for `control` until `stop` (or the gateway stops): reloads on each change.
pub fn spawn(
    control: Arc<Control>,
    settings: EtcdSettings,
    key: String,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringgate-etcd-config".into())
        .spawn(move || {
            Follower {
                last_seen: control.state().source_revision.unwrap_or(0),
                control,
                key,
                stop,
                backoff: BACKOFF_MIN,
                down: false,
            }
            .run(&settings);
        })
}

struct Follower {
    control: Arc<Control>,
    key: String,
    stop: Arc<AtomicBool>,
    /// The revision of the key last acted on (reloaded, or refused: reported once).
    last_seen: i64,
    backoff: Duration,
    /// etcd is failing (said once per outage).
    down: bool,
}

impl Follower {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.control.shutdown.is_stopping()
    }

    fn run(mut self, settings: &EtcdSettings) {
        let mut client = match Client::new(settings) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ringgate: etcd config watch not started: {e}");
                return;
            }
        };
        while !self.stopped() {
            let r = self
                .catch_up(&mut client)
                .and_then(|rev| self.follow(&mut client, rev));
            if let Err(e) = r {
                if self.stopped() {
                    break;
                }
                client.note(&e);
                if !self.down {
                    eprintln!(
                        "ringgate: etcd config watch of {}: {e}; the live config stays, retrying",
                        self.key
                    );
                    self.down = true;
                }
                let until = Instant::now() + self.backoff;
                while !self.stopped() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Reads the key; reloads if it changed since last seen. Returns the revision read.
    fn catch_up(&mut self, client: &mut Client) -> Result<i64, EtcdError> {
        let (revision, kv) = client.get(self.key.as_bytes())?;
        if self.down {
            eprintln!(
                "ringgate: etcd config watch of {}: etcd answers again",
                self.key
            );
            self.down = false;
        }
        self.backoff = BACKOFF_MIN;
        match kv {
            Some(kv) => self.changed(kv.mod_revision),
            None => eprintln!(
                "ringgate: etcd config key {} is absent: the live config stays",
                self.key
            ),
        }
        Ok(revision)
    }

    fn changed(&mut self, mod_revision: i64) {
        if mod_revision == self.last_seen {
            return;
        }
        // Remembered even when refused: a bad config is reported once, not at every re-read.
        self.last_seen = mod_revision;
        let _ = self
            .control
            .reload(&format!("etcd revision {mod_revision}"));
    }

    /// Watches the key from after `revision`: `Ok` to read it again (compacted, idle, stop).
    fn follow(&mut self, client: &mut Client, revision: i64) -> Result<(), EtcdError> {
        let mut stream = client.watch(self.key.as_bytes(), false, revision + 1)?;
        loop {
            let Some(msg) = stream.next(&self.stop, WATCH_IDLE)? else {
                return Ok(());
            };
            match msg {
                WatchMsg::Created { .. } => {}
                WatchMsg::Events { events, .. } => {
                    // Only the last change of a batch matters: the reload reads the key anyway.
                    let last = events.iter().rev().find_map(|e| match e {
                        WatchEvent::Put(kv) => Some(kv.mod_revision),
                        WatchEvent::Delete(_) => None,
                    });
                    if let Some(rev) = last {
                        self.changed(rev);
                    } else if !events.is_empty() {
                        eprintln!(
                            "ringgate: etcd config key {} was deleted: the live config stays",
                            self.key
                        );
                    }
                }
                WatchMsg::Compacted { .. } => return Ok(()),
                WatchMsg::Canceled { reason } => {
                    return Err(EtcdError::Protocol(format!("watch cancelled: {reason}")))
                }
            }
        }
    }
}
