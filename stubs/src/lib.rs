//! ringgate-stubs: stub HTTP/1.1 upstream servers with known behaviour, the yardstick behind every
//! ringbench figure, the upstream in ringgate's own tests, and the two upstreams `ringgate demo`
//! starts in-process.
//!
//! It is a crate of its own so that the production binary can start the demo's upstreams without
//! linking the load harness: `ringgate` (tools) and `ringbench` both depend on it, and ringbench
//! re-exports it as `ringbench::upstream` (the `ringbench upstream` command). Besides the server it
//! holds the small pieces both sides share: a seeded generator ([`rng`]), duration units
//! ([`units`]), the runtime builder with its epoll fallback ([`runtime`]), request-body framing
//! ([`body`]) and the few system calls the server makes ([`sys`]).
//!
//! # Architecture
//! One monoio runtime per worker thread (io_uring, or epoll when io_uring is unavailable),
//! optionally pinned to a CPU. All workers accept on duplicates of the same listening sockets
//! (no `SO_REUSEPORT`, so a second server on a taken port fails loudly instead of silently
//! sharing it). Each connection is a local task: keep-alive, pipelining answered in order,
//! request bodies skipped by Content-Length or chunked coding.
//!
//! # Endpoints
//! - any path: `body_bytes` of body after a draw from `latency` (queued behind `concurrency`
//!   busy servers per worker, when set), or an injected fault
//! - `/healthz`: `ok`; `/echo`: the request line and headers as the body (proxy tests read what
//!   arrived); `/status/NNN`: that status
//! - `/chunked?n=&size=&interval_ms=` and `/sse?n=&interval_ms=`: streamed responses
//! - `/__stall?ms=`: hold every response of every worker for that long (also
//!   [`UpstreamHandle::stall`])
//!
//! # Determinism
//! Each connection draws from its own generator seeded by (`seed`, worker, accept ordinal), so a
//! connection's sequence of faults and delays is fixed by the seed whatever else runs.
//!
//! # Cost
//! Answers are pre-rendered per worker and copied into a reused buffer; no allocation, formatting
//! or clock read per request on the default endpoint without latency. This stub is the upstream
//! in the CPU-per-request comparisons, so its own cost is part of every figure.

pub mod body;
mod conn;
pub mod faults;
pub mod latency;
mod request;
mod responses;
pub mod rng;
pub mod runtime;
pub mod sys;
pub mod timer;
pub mod units;
mod worker;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use std::{io, rc::Rc};

pub use faults::{ErrorInjection, Fault, FaultError};
pub use latency::{LatencyDist, LatencyError};

use crate::runtime::Driver;

/// What to run: addresses, workers, and the behaviour of every response.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Addresses to listen on (port 0: any free port; see [`UpstreamHandle::addrs`]).
    pub listen: Vec<SocketAddr>,
    /// Worker threads (each one monoio runtime accepting on every address).
    pub workers: usize,
    /// CPUs to pin workers to (worker i on `cpus[i % len]`); `None`: not pinned.
    pub cpus: Option<Vec<usize>>,
    /// Delay of each default-endpoint response, from when its request was read.
    pub latency: LatencyDist,
    /// Default-endpoint requests each worker serves at once (0: unlimited). With a limit the
    /// worker is a queue with that many servers: a request starts its `latency` when one is
    /// free, so a worker's capacity is `concurrency / mean latency` per second and a load
    /// above it builds a backlog (a reference target of known capacity).
    pub concurrency: usize,
    /// Body size of default-endpoint responses.
    pub body_bytes: usize,
    /// Faults injected on the default endpoint.
    pub errors: ErrorInjection,
    /// Seed for the latency and fault draws.
    pub seed: u64,
    /// Sent as the `x-upstream: <name>` response header.
    pub name: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            workers: 1,
            cpus: None,
            latency: LatencyDist::default(),
            concurrency: 0,
            body_bytes: 0,
            errors: ErrorInjection::default(),
            seed: 1,
            name: "ringbench".to_string(),
        }
    }
}

/// Running stub servers. [`UpstreamHandle::stop`] (or drop) stops the workers and joins them.
#[derive(Debug)]
pub struct UpstreamHandle {
    /// Bound addresses, in `listen` order.
    addrs: Vec<SocketAddr>,
    /// The original listening sockets: kept open so `stop` can shut them down.
    listeners: Vec<TcpListener>,
    shared: Arc<worker::Shared>,
    threads: Vec<JoinHandle<()>>,
    drivers: Vec<Driver>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // SO_REUSEADDR only (not SO_REUSEPORT): restarts work, a second server on the port does not.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn validate(cfg: &UpstreamConfig) -> io::Result<()> {
    if cfg.workers == 0 {
        return Err(invalid("upstream: workers must be at least 1"));
    }
    if cfg.listen.is_empty() {
        return Err(invalid("upstream: at least one listen address is needed"));
    }
    if cfg.cpus.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(invalid("upstream: cpus, when given, must not be empty"));
    }
    if cfg.name.bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid(
            "upstream: name must not contain control characters",
        ));
    }
    cfg.errors
        .validate()
        .map_err(|e| invalid(format!("upstream: {e}")))
}

/// Starts the servers; returns once every worker runs (listening sockets are bound before).
pub fn spawn(cfg: UpstreamConfig) -> io::Result<UpstreamHandle> {
    validate(&cfg)?;
    let listeners = cfg
        .listen
        .iter()
        .map(|a| bind(*a))
        .collect::<io::Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let cfg = Arc::new(cfg);
    let shared = Arc::new(worker::Shared::new(cfg.workers));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handle = UpstreamHandle {
        addrs,
        listeners,
        shared,
        threads: Vec::new(),
        drivers: Vec::new(),
    };
    for index in 0..cfg.workers {
        let dups = handle
            .listeners
            .iter()
            .map(TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        let cpu = cfg.cpus.as_ref().map(|c| c[index % c.len()]);
        let (cfg, shared, tx) = (
            Arc::clone(&cfg),
            Arc::clone(&handle.shared),
            ready_tx.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{index}"))
            .spawn(move || worker_thread(index, cpu, dups, cfg, shared, tx))?;
        handle.threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..cfg.workers {
        match ready_rx.recv() {
            Ok(Ok(driver)) => handle.drivers.push(driver),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("upstream: a worker died while starting")),
        }
    }
    Ok(handle)
}

fn worker_thread(
    index: usize,
    cpu: Option<usize>,
    listeners: Vec<TcpListener>,
    cfg: Arc<UpstreamConfig>,
    shared: Arc<worker::Shared>,
    ready: mpsc::Sender<io::Result<Driver>>,
) {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            let _ = ready.send(Err(io::Error::other(format!(
                "upstream: cannot pin to CPU {id}"
            ))));
            return;
        }
    }
    sys::set_timer_slack(Duration::from_micros(1));
    runtime::block_on(
        |_driver| async move {
            let worker = Rc::new(worker::Worker::new(index, cfg, shared));
            worker::run(listeners, worker).await;
        },
        |res| {
            let _ = ready.send(res);
        },
    );
}

impl UpstreamHandle {
    /// The bound addresses (actual ports), in `listen` order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The first bound address (most tests use one).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The driver each worker runs on.
    pub fn drivers(&self) -> &[Driver] {
        &self.drivers
    }

    /// Requests answered so far (including injected errors, resets and hangs), all workers.
    pub fn requests_served(&self) -> u64 {
        self.shared
            .counters
            .iter()
            .map(|c| c.served.load(Ordering::Relaxed))
            .sum()
    }

    /// Connections accepted so far, all workers.
    pub fn connections_accepted(&self) -> u64 {
        self.shared
            .counters
            .iter()
            .map(|c| c.accepted.load(Ordering::Relaxed))
            .sum()
    }

    /// Holds every response (all workers, all endpoints but `/__stall`) for `d` from now.
    pub fn stall(&self, d: Duration) {
        self.shared.stall_for(d);
    }

    /// Stops the workers, closes every connection and joins the threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stopping.store(true, Ordering::Release);
        for l in &self.listeners {
            let _ = sys::shutdown_both(l.as_raw_fd());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for UpstreamHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
