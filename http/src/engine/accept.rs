//! A worker's life: its accept loops, each accepted connection's task (TLS handshake, then
//! HTTP/1.1 or HTTP/2), and the drain when the process stops.

use super::drain::DrainSignal;
use super::h1::serve::serve;
use super::h2::conn as h2conn;
use super::housekeeping;
use super::io::buffers::{self, BufPool};
use super::io::h2io::H2Io;
use super::io::handshake::{self, Accepted};
use super::settings::{EngineServices, EngineSettings};
use super::upstream::h2pool::H2Clients;
use super::upstream::pool::Pool;
use super::worker::Worker;
use crate::gateway::Gateway;
use crate::metrics::WorkerMetrics;
use crate::trace::IdGen;
use monoio::net::TcpListener;
use ringgate_core::snapshot::SnapshotSlot;
use ringgate_core::worker::WorkerContext;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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
    let worker = Rc::new_cyclic(|me| Worker {
        bufs: Rc::new(BufPool::new(buf_bytes, buffers::DEFAULT_MAX_FREE)),
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
        h2up: RefCell::new(H2Clients::default()),
        caches: RefCell::default(),
        me: me.clone(),
    });
    let mut accepts = Vec::new();
    for (ordinal, std_listener) in ctx.listeners {
        match TcpListener::from_std(std_listener) {
            Ok(l) => accepts.push(monoio::spawn(accept_loop(l, ordinal, worker.clone()))),
            Err(e) => eprintln!("ringgate: worker {}: cannot use listener: {e}", ctx.index),
        }
    }
    let ticker = monoio::spawn(housekeeping::tick(worker.clone()));
    let limits_ticker = monoio::spawn(housekeeping::limits_tick(worker.clone()));
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
    match Box::pin(handshake::handshake(stream, ordinal, w)).await {
        Some(Accepted::Http1(ds)) => {
            if let Some((tcp, prefix)) = serve(ds, peer, ordinal, w).await {
                if let Ok(io) = tcp.into_poll_io() {
                    let io = H2Io::plain(io, prefix);
                    Box::pin(h2conn::serve(io, peer, w.clone(), "http", None, ordinal)).await;
                }
            }
        }
        Some(Accepted::H2 { io, identity }) => {
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
