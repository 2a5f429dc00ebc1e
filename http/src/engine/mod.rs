//! The proxy engine: one worker's accept loops and its per-connection request loop.
//!
//! A worker owns everything it touches: its listeners, its upstream pool, its round-robin
//! cursors, its view of the config snapshot, its gauges. Connections are monoio tasks on the
//! worker's runtime, sharing that state through an `Rc` (single thread, no locks, no atomics
//! beyond the single-writer gauges). Per request the engine:
//! 1. reads the head into the connection's buffer and parses it in place (no copies);
//! 2. takes the worker's snapshot (one epoch load) and routes;
//! 3. writes the upstream head into a reused buffer and sends it, with the body when the whole
//!    body is already buffered (one write), or streams the body through the same bounded buffer;
//! 4. reads the response head, writes the client head, and streams the response body;
//! 5. returns the upstream connection to the pool when the exchange ended cleanly.
//!
//! Pipelined requests are answered in order simply because a connection serves one request at a
//! time and leaves the bytes of the next one in its buffer.

pub mod body_deadline;
mod buffers;
pub use buffers::BufStats;
mod conn;
mod downstream;
mod drain;
mod exchange;
mod h2conn;
mod h2io;
pub mod h2probe;
mod h2stream;
mod h2up;
pub mod io;
mod observe;
mod slots;
mod tls;
mod tunnel;
pub mod upstream;
mod wsframe;

use crate::accesslog::{AccessLog, AccessLogWriter};
use crate::codec::HeadLimits;
use crate::gateway::Gateway;
use crate::metrics::{MetricsHub, WorkerMetrics};
use crate::pool::Pool;
use crate::trace::IdGen;
use drain::DrainSignal;
use monoio::net::TcpListener;
use ringgate_core::profile::PerfProfile;
use ringgate_core::shutdown::{Shutdown, WorkerGauges};
use ringgate_core::snapshot::{SnapshotSlot, SnapshotView};
use ringgate_core::worker::WorkerContext;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The engine's knobs, taken from the perf profile once at start.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Size of each connection's read buffers.
    pub read_buffer_bytes: usize,
    /// Request head limits (431, 414).
    pub limits: HeadLimits,
    /// Open client connections per worker.
    pub max_connections: usize,
    /// The request head must arrive within this (408).
    pub header_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// Upstream connect timeout (502).
    pub connect_timeout: Duration,
    /// Default upstream response-head timeout (504).
    pub response_timeout: Duration,
    /// A body read or write making no progress this long aborts the exchange.
    pub body_io_timeout: Duration,
    /// The request body's deadlines (see [`body_deadline`]).
    pub body: body_deadline::BodyLimits,
    /// Request bodies of known length up to this size are read whole before connecting.
    pub buffer_body_bytes: usize,
    /// How long a cleartext keep-alive connection keeps its read posted after a response.
    pub hot_read: Duration,
    /// Idle upstream connections per endpoint per worker.
    pub pool_max_idle: usize,
    /// Idle upstream connection lifetime.
    pub pool_idle_timeout: Duration,
    /// PING interval and timeout of HTTP/2 upstream connections (`None`: no pings).
    pub h2_ping: Option<(Duration, Duration)>,
    /// `X-Forwarded-Proto` value of this listener.
    pub proto: &'static str,
    /// Count per-route and per-upstream metrics.
    pub metrics: bool,
    /// Assign request ids and trace context (`X-Request-Id`, `traceparent`).
    pub trace: bool,
    /// How long a stopping worker waits for its connections.
    pub drain_timeout: Duration,
    /// An upgraded tunnel idle in both directions this long is closed.
    pub tunnel_idle: Duration,
    /// Open upgraded tunnels per worker.
    pub max_tunnels: usize,
    /// HTTP/2 settings.
    pub http2: ringgate_core::profile::Http2Profile,
}

impl EngineSettings {
    /// The settings a profile implies.
    pub fn from_profile(p: &PerfProfile) -> Self {
        Self {
            read_buffer_bytes: p.io.read_buffer_bytes,
            limits: HeadLimits {
                max_head_bytes: p.limits.max_request_head_bytes,
                max_uri_bytes: p.limits.max_uri_bytes,
            },
            max_connections: p.limits.max_connections_per_core,
            header_timeout: p.timeouts.header_read,
            idle_timeout: p.timeouts.idle,
            connect_timeout: p.timeouts.connect,
            response_timeout: p.timeouts.response,
            body_io_timeout: p.timeouts.body_io,
            body: body_deadline::BodyLimits {
                total: p.timeouts.body,
                min_rate: p.timeouts.min_body_rate,
                grace: p.timeouts.body_grace,
            },
            buffer_body_bytes: p.io.buffer_body_bytes,
            hot_read: p.io.hot_read,
            pool_max_idle: p.upstream.pool_max_idle_per_endpoint,
            pool_idle_timeout: p.upstream.pool_idle_timeout,
            h2_ping: (!p.upstream.h2_ping_interval.is_zero())
                .then_some((p.upstream.h2_ping_interval, p.upstream.h2_ping_timeout)),
            proto: "http",
            metrics: true,
            trace: true,
            drain_timeout: p.timeouts.drain,
            tunnel_idle: p.timeouts.tunnel_idle,
            max_tunnels: p.limits.max_tunnels_per_core,
            http2: p.http2.clone(),
        }
    }
}

/// What a worker shares with the control side: where it publishes metrics, where it logs.
#[derive(Clone)]
pub struct EngineServices {
    /// Metrics hub (scrapes).
    pub hub: Arc<MetricsHub>,
    /// The access log, when one is configured.
    pub access_log: Option<Arc<AccessLog>>,
}

/// One worker's state, shared by its connection tasks.
pub(crate) struct Worker<G: Gateway> {
    pub(crate) settings: EngineSettings,
    pub(crate) snapshot: RefCell<SnapshotView<G>>,
    pub(crate) pool: RefCell<Pool>,
    pub(crate) upstreams: RefCell<Vec<Option<slots::UpstreamSlot<G::Upstream>>>>,
    pub(crate) routes: RefCell<Vec<Option<slots::RouteSlot<G::Route>>>>,
    pub(crate) auth: RefCell<Option<G::Auth>>,
    pub(crate) limits: RefCell<Option<G::Limits>>,
    pub(crate) gauges: Arc<WorkerGauges>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) index: usize,
    pub(crate) metrics: RefCell<WorkerMetrics>,
    pub(crate) ids: RefCell<IdGen>,
    pub(crate) log: RefCell<Option<AccessLogWriter>>,
    pub(crate) drain: DrainSignal,
    pub(crate) hub: Arc<MetricsHub>,
    /// Upgraded tunnels open now.
    pub(crate) tunnels: std::cell::Cell<usize>,
    /// HTTP/2 connections to upstreams.
    pub(crate) h2up: RefCell<h2up::H2Clients>,
    /// Client connections' buffers.
    pub(crate) bufs: Rc<buffers::BufPool>,
}

/// Runs one worker until the process stops: accept on every listener of `ctx`, serve each
/// connection, then wait for in-flight requests to finish.
pub async fn run_worker<G: Gateway>(
    ctx: WorkerContext,
    slot: Arc<SnapshotSlot<G>>,
    settings: EngineSettings,
    services: EngineServices,
) {
    services.hub.attach(ctx.index, ctx.gauges.clone());
    let buf_bytes = settings
        .read_buffer_bytes
        .max(settings.limits.max_head_bytes);
    let worker = Rc::new(Worker {
        bufs: Rc::new(buffers::BufPool::new(buf_bytes, buffers::DEFAULT_MAX_FREE)),
        pool: RefCell::new(Pool::new(
            settings.pool_max_idle,
            settings.pool_idle_timeout,
        )),
        settings,
        snapshot: RefCell::new(slot.view()),
        upstreams: RefCell::new(Vec::new()),
        routes: RefCell::new(Vec::new()),
        auth: RefCell::new(None),
        limits: RefCell::new(None),
        gauges: ctx.gauges.clone(),
        shutdown: ctx.shutdown.clone(),
        index: ctx.index,
        metrics: RefCell::new(WorkerMetrics::default()),
        ids: RefCell::new(IdGen::from_entropy(ctx.index as u64)),
        log: RefCell::new(services.access_log.as_ref().map(|l| l.writer())),
        drain: DrainSignal::default(),
        hub: services.hub.clone(),
        tunnels: std::cell::Cell::new(0),
        h2up: RefCell::new(h2up::H2Clients::default()),
    });
    let mut accepts = Vec::new();
    for (ordinal, std_listener) in ctx.listeners {
        match TcpListener::from_std(std_listener) {
            Ok(l) => accepts.push(monoio::spawn(accept_loop(l, ordinal, worker.clone()))),
            Err(e) => eprintln!("ringgate: worker {}: cannot use listener: {e}", ctx.index),
        }
    }
    let ticker = monoio::spawn(observe::tick(worker.clone()));
    let limits_ticker = monoio::spawn(observe::limits_tick(worker.clone()));
    for a in accepts {
        a.await;
    }
    // Stopping: no new connections; let requests in flight on this core finish (idle
    // keep-alive connections are woken by the drain signal and close). The control thread
    // bounds the wait with the drain deadline.
    // Bounded: past the drain deadline (plus the idle grace) whatever is left is dropped with
    // the runtime, so a stream that started during the drain cannot keep the process alive.
    let give_up =
        std::time::Instant::now() + worker.settings.drain_timeout + Duration::from_secs(1);
    while (worker.gauges.inflight.get() > 0 || worker.gauges.connections.get() > 0)
        && std::time::Instant::now() < give_up
    {
        monoio::time::sleep(Duration::from_millis(2)).await;
    }
    worker.drain.fire();
    ticker.await;
    limits_ticker.await;
    let mut log = worker.log.borrow_mut();
    if let Some(l) = log.as_mut() {
        l.flush();
    }
}

/// Serves an accepted connection: TLS handshake when the listener has TLS, then HTTP/1.1, or
/// HTTP/2 when ALPN chose `h2` or a cleartext client opened with the HTTP/2 preface. This is
/// the connection's task: its future is what an idle connection costs, so it calls the request
/// loop directly and boxes everything else.
async fn serve_accepted<G: Gateway>(
    stream: monoio::net::TcpStream,
    ordinal: usize,
    peer: std::net::SocketAddr,
    w: Rc<Worker<G>>,
) {
    use monoio::io::IntoPollIo;
    let w = &w;
    // The handshake and HTTP/2 futures are boxed so that an HTTP/1.1 connection's future (alive
    // as long as the connection) is only as large as its own state.
    match Box::pin(tls::handshake(stream, ordinal, w)).await {
        Some(tls::Accepted::Http1(ds)) => {
            if let Some((tcp, prefix)) = conn::serve(ds, peer, ordinal, w).await {
                if let Ok(io) = tcp.into_poll_io() {
                    let io = h2io::H2Io::plain(io, prefix);
                    Box::pin(h2conn::serve(io, peer, w.clone(), "http", None, ordinal)).await;
                }
            }
        }
        Some(tls::Accepted::H2 { io, identity }) => {
            Box::pin(h2conn::serve(
                *io,
                peer,
                w.clone(),
                "https",
                identity,
                ordinal,
            ))
            .await;
        }
        None => {}
    }
    w.gauges.connections.sub(1);
}

/// The size of a client connection's task (its future), whose state while the connection waits
/// is most of what an idle connection costs: for a test that keeps it small (issue 14 item 5).
#[doc(hidden)]
pub fn connection_task_size<G: Gateway>() -> usize {
    fn output_size<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    output_size(serve_accepted::<G>)
}

async fn accept_loop<G: Gateway>(listener: TcpListener, ordinal: usize, w: Rc<Worker<G>>) {
    w.gauges.accepting.add(1);
    accept_until_stopped(listener, ordinal, &w).await;
    w.gauges.accepting.sub(1);
}

async fn accept_until_stopped<G: Gateway>(
    listener: TcpListener,
    ordinal: usize,
    w: &Rc<Worker<G>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let stopping = w.shutdown.is_stopping();
                // While stopping, a connection accepted over the cap is still served (it may be
                // the last this process takes, and nobody else would answer it).
                if !stopping && w.gauges.connections.get() as usize >= w.settings.max_connections {
                    w.metrics.borrow_mut().accept_refused += 1;
                    drop(stream);
                    continue;
                }
                w.metrics.borrow_mut().accepted += 1;
                w.gauges.connections.add(1);
                // Accepted while stopping (a connection that raced the stop, or one taken from
                // a listener handed to a new process): it is still served, once.
                monoio::spawn(serve_accepted(stream, ordinal, peer, w.clone()));
                if stopping {
                    break;
                }
            }
            Err(e) => {
                if w.shutdown.is_stopping() {
                    break;
                }
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning on a full table.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
