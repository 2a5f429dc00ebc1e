//! Starting and stopping a gateway: listeners, pinned workers, the snapshot slot, the drain.
//!
//! This is the one function every entry point shares (`serve`, `demo`, `proxy`, and the
//! integration tests): bind each listener once per worker with SO_REUSEPORT, spawn the pinned
//! workers running the engine, and report in one start line which driver runs, how many workers on
//! which CPUs, the listen addresses and the config version.

use crate::config::ConfigError;
use crate::snapshot::Snapshot;
use ringgate_core::listener::{bind_group, ListenOptions};
use ringgate_core::profile::PerfProfile;
use ringgate_core::shutdown::{DrainOutcome, Shutdown};
use ringgate_core::snapshot::SnapshotSlot;
use ringgate_core::worker::{self, Workers};
use ringgate_core::CoreError;
use ringgate_http::engine::{run_worker, EngineSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    drain_deadline: Duration,
    workers: Workers,
}

/// Starts a gateway serving `snapshot` as `profile` says.
pub fn start(snapshot: Snapshot, profile: &PerfProfile) -> Result<RunningGateway, ServeError> {
    let cpus = worker::plan_cpus(profile)?;
    let n = cpus.len();
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    let opts = ListenOptions {
        backlog: profile.limits.listen_backlog,
    };
    for addr in &snapshot.listeners {
        let group = bind_group(*addr, n, opts)?;
        if let Some(first) = group.first() {
            addrs.push(first.local_addr().map_err(|source| CoreError::Bind {
                addr: *addr,
                source,
            })?);
        }
        for (i, l) in group.into_iter().enumerate() {
            per_worker[i].push(l);
        }
    }
    let version = snapshot.version.clone();
    let slot = SnapshotSlot::new(Arc::new(snapshot));
    let shutdown = Shutdown::new();
    let settings = EngineSettings::from_profile(profile);
    let worker_slot = slot.clone();
    let workers = worker::spawn(profile, &cpus, per_worker, shutdown.clone(), move |ctx| {
        run_worker(ctx, worker_slot.clone(), settings.clone())
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
        drain_deadline: profile.timeouts.drain,
        workers,
    })
}

impl RunningGateway {
    /// Publishes a new snapshot; workers use it from their next request on.
    pub fn publish(&self, next: Snapshot) -> u64 {
        self.slot.publish(Arc::new(next))
    }

    /// Stops accepting, waits for in-flight requests (up to the profile's drain deadline), then
    /// waits for the workers to end.
    pub fn stop(self) -> DrainOutcome {
        let out = self.shutdown.drain(self.drain_deadline);
        if out.aborted == 0 {
            self.workers.join();
        }
        out
    }
}
