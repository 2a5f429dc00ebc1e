//! One stub-upstream worker: a monoio runtime on its own thread (optionally pinned), accepting on
//! its copies of the listening sockets and serving connections as local tasks.
//!
//! Shutdown, given monoio 0.2.4's traps: accepts are never cancelled (a cancelled accept whose
//! completion succeeded leaks the fd), and no task is woken from another thread. Instead the
//! handle sets `stopping` and calls `shutdown(2)` on the listening sockets, which completes every
//! pending accept with an error; each accept loop then sees the flag and returns. The worker
//! shuts down its live connections the same way (their reads complete with EOF), waits briefly
//! for them to finish, and lets the runtime drop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use super::conn;
use super::faults::Fault;
use super::responses::Responses;
use super::UpstreamConfig;
use crate::rng::Rng;
use crate::sys;

/// How long a stopping worker waits for its connections to end before dropping them.
const DRAIN: Duration = Duration::from_secs(1);

/// Per-worker counters on their own cache lines, read by the handle.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Requests answered (or failed on purpose).
    pub served: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
}

/// State shared by all workers of one server and its handle.
#[derive(Debug)]
pub struct Shared {
    /// Set by the handle to stop the workers.
    pub stopping: AtomicBool,
    /// Origin of `stall_until_ns`.
    base: Instant,
    /// Responses are held until `base + stall_until_ns` (0: no stall ever asked).
    stall_until_ns: AtomicU64,
    /// One entry per worker.
    pub counters: Vec<Counters>,
}

impl Shared {
    /// Shared state for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            stopping: AtomicBool::new(false),
            base: Instant::now(),
            stall_until_ns: AtomicU64::new(0),
            counters: (0..workers).map(|_| Counters::default()).collect(),
        }
    }

    /// Holds every response of every worker until `d` from now (extends, never shortens).
    pub fn stall_for(&self, d: Duration) {
        let until = (Instant::now() + d).duration_since(self.base).as_nanos() as u64;
        self.stall_until_ns
            .fetch_max(until.max(1), Ordering::Relaxed);
    }

    /// The end of the current stall, if one is in force.
    #[inline]
    pub fn stall_deadline(&self) -> Option<Instant> {
        let ns = self.stall_until_ns.load(Ordering::Relaxed);
        if ns == 0 {
            return None;
        }
        let until = self.base + Duration::from_nanos(ns);
        if until > Instant::now() {
            Some(until)
        } else {
            // Over: clear it so later requests skip the clock read (a newer stall wins the race).
            let _ =
                self.stall_until_ns
                    .compare_exchange(ns, 0, Ordering::Relaxed, Ordering::Relaxed);
            None
        }
    }
}

/// Everything a worker's tasks share: read-only config and responses, counters, live connections.
pub struct Worker {
    index: usize,
    cfg: Arc<UpstreamConfig>,
    /// Pre-rendered answers.
    pub responses: Responses,
    /// Cross-worker state.
    pub shared: Arc<Shared>,
    latency_zero: bool,
    faults_none: bool,
    /// Live connections' fds, so a stop can shut them down.
    conns: RefCell<HashMap<u64, RawFd>>,
    /// With a concurrency limit: when each of the worker's servers is next free.
    servers: RefCell<Vec<Instant>>,
    next_conn: Cell<u64>,
}

impl Worker {
    /// The worker state for worker `index`.
    pub fn new(index: usize, cfg: Arc<UpstreamConfig>, shared: Arc<Shared>) -> Self {
        let responses = Responses::new(&cfg.name, cfg.body_bytes, &cfg.errors.statuses);
        let concurrency = cfg.concurrency;
        Self {
            index,
            latency_zero: cfg.latency.is_zero(),
            faults_none: cfg.errors.is_none(),
            cfg,
            responses,
            shared,
            conns: RefCell::new(HashMap::new()),
            servers: RefCell::new(vec![Instant::now(); concurrency]),
            next_conn: Cell::new(0),
        }
    }

    /// The server name (the `x-upstream` header).
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Whether connections must note arrival times (a latency is configured).
    pub fn needs_clock(&self) -> bool {
        !self.latency_zero
    }

    /// When a default-endpoint request that arrived at `arrived` and needs `service` is done:
    /// at once plus its service time without a concurrency limit; otherwise it takes the server
    /// that frees first (first come, first served) and starts when that one is free.
    pub fn finish_time(&self, arrived: Instant, service: Duration) -> Instant {
        let mut servers = self.servers.borrow_mut();
        let Some(first) = servers.iter_mut().min() else {
            return arrived + service;
        };
        let done = arrived.max(*first) + service;
        *first = done;
        done
    }

    /// Counts one answered request.
    #[inline]
    pub fn count_request(&self) {
        self.shared.counters[self.index]
            .served
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Draws the fault and the delay for one default-endpoint request (always in this order, so a
    /// seed fixes the sequence).
    #[inline]
    pub fn draw(&self, rng: &mut Rng) -> (Fault, Option<Duration>) {
        let fault = if self.faults_none {
            Fault::None
        } else {
            self.cfg.errors.pick(rng.next_f64())
        };
        let delay = (!self.latency_zero).then(|| self.cfg.latency.sample(rng));
        (fault, delay)
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered {
    worker: Rc<Worker>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.worker.conns.borrow_mut().remove(&self.id);
    }
}

async fn accept_loop(listener: TcpListener, worker: Rc<Worker>) {
    loop {
        let accepted = listener.accept().await;
        if worker.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = worker.next_conn.get() + 1;
        worker.next_conn.set(id);
        worker.shared.counters[worker.index]
            .accepted
            .fetch_add(1, Ordering::Relaxed);
        worker.conns.borrow_mut().insert(id, stream.as_raw_fd());
        let rng = Rng::derive(worker.cfg.seed, worker.index as u64, id);
        let guard = Registered {
            worker: Rc::clone(&worker),
            id,
        };
        monoio::spawn(async move {
            conn::serve(stream, Rc::clone(&guard.worker), rng).await;
            drop(guard);
        });
    }
}

/// The worker's main future: accept on every listener until stopped, then drain.
pub async fn run(listeners: Vec<std::net::TcpListener>, worker: Rc<Worker>) {
    let mut loops = Vec::new();
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => loops.push(monoio::spawn(accept_loop(l, Rc::clone(&worker)))),
            Err(e) => eprintln!("ringbench upstream: worker {}: {e}", worker.index),
        }
    }
    for l in loops {
        l.await;
    }
    let fds: Vec<RawFd> = worker.conns.borrow().values().copied().collect();
    for fd in fds {
        let _ = sys::shutdown_both(fd);
    }
    let t0 = Instant::now();
    while !worker.conns.borrow().is_empty() && t0.elapsed() < DRAIN {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
}
