//! Starting and stopping a gateway: listeners, pinned workers, the snapshot slot, the drain.
//!
//! This is the one function every entry point shares (`serve`, `demo`, `proxy`, and the
//! integration tests): bind each listener once per worker with SO_REUSEPORT, spawn the pinned
//! workers running the engine, and report in one start line which driver runs, how many workers on
//! which CPUs, the listen addresses and the config version.

use crate::config::ConfigError;
use crate::ratelimit::service::LimitService;
use crate::snapshot::Snapshot;
use ringgate_core::listener::{bind_group, ListenOptions};
use ringgate_core::profile::PerfProfile;
use ringgate_core::shutdown::{DrainOutcome, Shutdown};
use ringgate_core::snapshot::SnapshotSlot;
use ringgate_core::worker::{self, Workers};
use ringgate_core::CoreError;
use ringgate_http::accesslog::{AccessLog, LogDest};
use ringgate_http::engine::{run_worker, EngineServices, EngineSettings};
use ringgate_http::metrics::MetricsHub;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Listening sockets inherited from a previous process (binary upgrade), per listen address.
pub type Inherited = Vec<(SocketAddr, Vec<TcpListener>)>;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Runtime layer (profile, listeners, workers).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A demo upstream could not start.
    #[error("cannot start a demo upstream: {0}")]
    DemoUpstream(std::io::Error),
    /// The access log could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Inherited listeners do not match the config.
    #[error("inherited listeners do not match the config: {0}")]
    Inherited(String),
}

/// A running gateway.
pub struct RunningGateway {
    /// The bound listen addresses (port 0 resolved), in config order.
    pub addrs: Vec<SocketAddr>,
    /// The snapshot slot: publish a new [`Snapshot`] here to change routing.
    pub slot: Arc<SnapshotSlot<Snapshot>>,
    /// The stop signal.
    pub shutdown: Arc<Shutdown>,
    /// The one-line summary of what runs.
    pub start_line: String,
    /// Where workers publish metrics.
    pub hub: Arc<MetricsHub>,
    /// The access log, when configured.
    pub access_log: Option<Arc<AccessLog>>,
    /// Duplicates of every listening socket, per listen address (for a handoff).
    pub listener_dups: Vec<(SocketAddr, Vec<TcpListener>)>,
    /// The rate-limit reconciler.
    pub limiter: Arc<LimitService>,
    drain_deadline: Duration,
    workers: Workers,
}

/// Starts a gateway serving `snapshot` as `profile` says.
pub fn start(snapshot: Snapshot, profile: &PerfProfile) -> Result<RunningGateway, ServeError> {
    start_with(snapshot, profile, None)
}

/// Starts a gateway, on `inherited` listening sockets when given (a binary upgrade) instead of
/// binding its own. Inherited sockets are spread over the workers round-robin; a worker with
/// none of them for an address binds one more socket into the same reuseport group.
pub fn start_with(
    snapshot: Snapshot,
    profile: &PerfProfile,
    inherited: Option<Inherited>,
) -> Result<RunningGateway, ServeError> {
    let cpus = worker::plan_cpus(profile)?;
    let n = cpus.len();
    let mut per_worker: Vec<Vec<(usize, TcpListener)>> = (0..n).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    let mut listener_dups = Vec::new();
    let opts = ListenOptions {
        backlog: profile.limits.listen_backlog,
    };
    let mut inherited = inherited;
    for (ordinal, addr) in snapshot.listeners.iter().enumerate() {
        let group = match inherited.as_mut() {
            Some(list) => {
                let pos = list
                    .iter()
                    .position(|(a, _)| a == addr || (addr.port() == 0 && a.ip() == addr.ip()))
                    .ok_or_else(|| {
                        ServeError::Inherited(format!("no inherited socket for {addr}"))
                    })?;
                let (actual, socks) = list.swap_remove(pos);
                let mut socks = socks;
                while socks.len() < n {
                    // More workers than before: join the same group (adding a socket is safe;
                    // only closing one would drop its queue).
                    socks.extend(bind_more(actual, opts)?);
                }
                socks
            }
            None => bind_group(*addr, n, opts)?,
        };
        let first_addr = match group.first() {
            Some(first) => first.local_addr().map_err(|source| CoreError::Bind {
                addr: *addr,
                source,
            })?,
            None => continue,
        };
        addrs.push(first_addr);
        let dups: Vec<TcpListener> = group.iter().filter_map(|l| l.try_clone().ok()).collect();
        listener_dups.push((first_addr, dups));
        for (i, l) in group.into_iter().enumerate() {
            per_worker[i % n].push((ordinal, l));
        }
    }
    let version = snapshot.version.clone();
    let access_log = match &snapshot.process.access_log {
        Some(cfg) => {
            let dest = if cfg.path == "stdout" {
                LogDest::Stdout
            } else {
                LogDest::File(cfg.path.clone().into())
            };
            let log = AccessLog::start(dest, cfg.queue_batches, 64).map_err(|source| {
                ServeError::AccessLog {
                    path: cfg.path.clone(),
                    source,
                }
            })?;
            Some(Arc::new(log))
        }
        None => None,
    };
    let hub = MetricsHub::new(n);
    let mut settings = EngineSettings::from_profile(profile);
    settings.metrics = snapshot.process.observability.metrics;
    settings.trace = snapshot.process.observability.request_ids;
    settings.workers = n;
    let services = EngineServices {
        hub: hub.clone(),
        access_log: access_log.clone(),
    };
    let limiter = LimitService::new(snapshot.process.rate_limit.clone(), n);
    let mut snapshot = snapshot;
    snapshot.limiter = Some(limiter.clone());
    let slot = SnapshotSlot::new(Arc::new(snapshot));
    let shutdown = Shutdown::new();
    let worker_slot = slot.clone();
    let workers = worker::spawn(profile, &cpus, per_worker, shutdown.clone(), move |ctx| {
        run_worker(ctx, worker_slot.clone(), settings.clone(), services.clone())
    })?;
    let driver = workers.driver().map_or("none", |d| d.as_str());
    let cpu_list: Vec<String> = workers
        .info
        .iter()
        .map(|w| w.cpu.map_or_else(|| "*".to_string(), |c| c.to_string()))
        .collect();
    let mut start_line = format!(
        "ringgate: driver={driver} workers={} cpus=[{}] listen=[{}] config={version}",
        workers.info.len(),
        cpu_list.join(","),
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Some(why) = workers
        .info
        .iter()
        .find_map(|w| w.fallback_reason.as_deref())
    {
        start_line.push_str(&format!(" (epoll fallback: {why})"));
    }
    Ok(RunningGateway {
        addrs,
        slot,
        shutdown,
        start_line,
        hub,
        access_log,
        listener_dups,
        limiter,
        drain_deadline: profile.timeouts.drain,
        workers,
    })
}

/// One more reuseport socket on `addr`, joining an existing group (no probe: the group is ours).
fn bind_more(addr: SocketAddr, opts: ListenOptions) -> Result<Vec<TcpListener>, ServeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| ServeError::Core(CoreError::Bind { addr, source });
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    s.set_tcp_nodelay(true).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    s.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))
        .map_err(err)?;
    Ok(vec![s.into()])
}

impl RunningGateway {
    /// Publishes a new snapshot; workers use it from their next request on.
    pub fn publish(&self, next: Snapshot) -> u64 {
        let mut next = next;
        next.limiter = Some(self.limiter.clone());
        self.slot.publish(Arc::new(next))
    }

    /// Stops accepting, waits for in-flight requests (up to the profile's drain deadline), then
    /// waits for the workers to end.
    pub fn stop(self) -> DrainOutcome {
        let out = self.shutdown.drain(self.drain_deadline);
        self.finish(out, true)
    }

    /// Stops after handing the listening sockets to another process: accepting ends without
    /// touching the sockets, then in-flight requests finish as in [`RunningGateway::stop`].
    pub fn stop_after_handoff(self) -> DrainOutcome {
        let clean = self
            .shutdown
            .begin_handoff(&self.addrs, Duration::from_secs(5));
        if !clean {
            eprintln!("ringgate: some accept loops did not stop after the handoff; exiting after the drain without waiting for them");
        }
        let out = self.shutdown.wait_idle(self.drain_deadline);
        // A worker still waiting in accept cannot be joined.
        self.finish(out, clean)
    }

    fn finish(self, out: DrainOutcome, joinable: bool) -> DrainOutcome {
        if joinable && out.aborted == 0 {
            // Idle connections close on the drain signal and a stopping worker's wait is
            // bounded by the drain deadline, so the join is bounded too.
            self.workers.join();
        }
        // After the workers: their last reports are billed by the reconciler's last tick.
        self.limiter.stop();
        if let Some(log) = self.access_log {
            if let Err(e) = log.stop() {
                eprintln!("ringgate: access log: {e}");
            }
        }
        out
    }
}
