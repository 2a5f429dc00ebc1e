//! The stop signal and the drain it starts.
//!
//! A signal arrives on a control thread, never on a worker. It flips one flag that workers read
//! between requests (a relaxed load), and shuts the listening sockets for reading, which makes
//! every pending `accept` return at once on io_uring and epoll alike (no cancelled accepts, see
//! [`crate::listener::stop_accepting`]). Then the control thread waits, up to the drain deadline,
//! for the workers' in-flight request counts to reach zero.

use crate::counter::SingleWriterCounter;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per-worker gauges the control thread reads (written only by their worker).
#[derive(Debug, Default)]
pub struct WorkerGauges {
    /// Client connections open now.
    pub connections: SingleWriterCounter,
    /// Requests between their head being read and their response being finished.
    pub inflight: SingleWriterCounter,
    /// Requests answered since start.
    pub requests: SingleWriterCounter,
    /// Accept loops still running.
    pub accepting: SingleWriterCounter,
}

/// The process-wide stop signal.
#[derive(Default)]
pub struct Shutdown {
    stopping: AtomicBool,
    listeners: Mutex<Vec<TcpListener>>,
    pub(crate) gauges: Mutex<Vec<Arc<WorkerGauges>>>,
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// In-flight requests when the drain began.
    pub inflight_at_start: u64,
    /// Requests still in flight when it ended (0 = all finished).
    pub aborted: u64,
}

impl Shutdown {
    /// A fresh signal.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Remembers a listener (a duplicate of a worker's socket) to shut when stopping.
    pub fn register_listener(&self, dup: TcpListener) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dup);
    }

    /// Remembers a worker's gauges for the drain.
    pub fn register_gauges(&self, g: Arc<WorkerGauges>) {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(g);
    }

    /// True once stopping began. Workers read it between requests.
    #[inline]
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Stops accepting everywhere and marks the process as stopping.
    pub fn begin(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for l in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            crate::listener::stop_accepting(l);
        }
    }

    /// Requests in flight across all workers.
    pub fn inflight(&self) -> u64 {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|g| g.inflight.get())
            .sum()
    }

    /// Accept loops still running across all workers.
    pub fn accepting(&self) -> u64 {
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|g| g.accepting.get())
            .sum()
    }

    /// Stops accepting without touching the listening sockets, which another process now shares
    /// (a binary upgrade): shutting them would reset their accept queues under the new process.
    /// Pending accepts are completed instead by connecting to `addrs` until every accept loop has
    /// returned (each such connection is served like any other: it sends nothing and closes; the
    /// new process may take some of them, equally harmlessly). Gives up after `limit`.
    pub fn begin_handoff(&self, addrs: &[std::net::SocketAddr], limit: Duration) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        let start = Instant::now();
        while self.accepting() > 0 {
            if start.elapsed() >= limit {
                return false;
            }
            for a in addrs {
                let mut to = *a;
                if to.ip().is_unspecified() {
                    to.set_ip(match to {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // The listeners are the new process's now: forget our duplicates without shutting them.
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        true
    }

    /// Waits, after a stop began, until no request is in flight or `deadline` passes.
    pub fn wait_idle(&self, deadline: Duration) -> DrainOutcome {
        let start = Instant::now();
        let inflight_at_start = self.inflight();
        loop {
            let now = self.inflight();
            if now == 0 || start.elapsed() >= deadline {
                return DrainOutcome {
                    inflight_at_start,
                    aborted: now,
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Begins stopping and waits until no request is in flight, or the deadline passes.
    pub fn drain(&self, deadline: Duration) -> DrainOutcome {
        self.begin();
        self.wait_idle(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_waits_for_inflight_requests_then_returns() {
        let s = Shutdown::new();
        let g = Arc::new(WorkerGauges::default());
        s.register_gauges(g.clone());
        g.inflight.add(1);
        let worker = g.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            worker.inflight.sub(1);
        });
        let out = s.drain(Duration::from_secs(5));
        t.join().expect("worker");
        assert!(s.is_stopping());
        assert_eq!(
            out,
            DrainOutcome {
                inflight_at_start: 1,
                aborted: 0
            }
        );
    }

    #[test]
    fn drain_gives_up_at_the_deadline() {
        let s = Shutdown::new();
        let g = Arc::new(WorkerGauges::default());
        s.register_gauges(g.clone());
        g.inflight.add(2);
        let out = s.drain(Duration::from_millis(20));
        assert_eq!(out.aborted, 2);
    }
}
