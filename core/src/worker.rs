//! Spawning the workers: one thread per core, pinned, each running its own monoio runtime.
//!
//! The CPU plan is made once, from the affinity mask the process started with (core_affinity's
//! `get_core_ids()` returns the *calling thread's* mask, so it must be read before anything is
//! pinned). Each worker builds its runtime on its own thread and reports back which driver it got,
//! so the start line can say what really runs; a worker that cannot build a runtime fails the start.

use crate::driver::{build_runtime, DriverKind};
use crate::error::CoreError;
use crate::profile::PerfProfile;
use crate::shutdown::{Shutdown, WorkerGauges};
use std::future::Future;
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// What a worker is given.
pub struct WorkerContext {
    /// 0-based worker index.
    pub index: usize,
    /// The CPU it is pinned to, if pinned.
    pub cpu: Option<usize>,
    /// The driver it runs.
    pub driver: DriverKind,
    /// Its own listeners, each with its position among the configured listeners (std sockets;
    /// convert with `monoio::net::TcpListener::from_std` inside the runtime).
    pub listeners: Vec<(usize, TcpListener)>,
    /// Its gauges (it is their only writer).
    pub gauges: Arc<WorkerGauges>,
    /// The stop signal.
    pub shutdown: Arc<Shutdown>,
}

/// What the start line reports of one worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// 0-based worker index.
    pub index: usize,
    /// Its CPU if pinned.
    pub cpu: Option<usize>,
    /// Its driver.
    pub driver: DriverKind,
    /// Why it is not on io_uring, when it fell back.
    pub fallback_reason: Option<String>,
}

/// The running workers.
pub struct Workers {
    /// One entry per worker, in index order.
    pub info: Vec<WorkerInfo>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Waits for every worker thread to end.
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }

    /// The driver the workers run (they all build the same way, so the first one speaks for all).
    pub fn driver(&self) -> Option<DriverKind> {
        self.info.first().map(|w| w.driver)
    }
}

/// The CPUs for the workers (`None` entries when pinning is off): one entry per worker.
pub fn plan_cpus(profile: &PerfProfile) -> Result<Vec<Option<usize>>, CoreError> {
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let parallelism = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let w = &profile.workers;
    let cpus: Vec<usize> = if !w.cpus.is_empty() {
        for c in &w.cpus {
            if !allowed.is_empty() && !allowed.contains(c) {
                return Err(CoreError::CpuUnavailable(*c, allowed));
            }
        }
        w.cpus.clone()
    } else {
        let n = if w.count == 0 {
            parallelism.min(allowed.len().max(1))
        } else {
            w.count
        };
        if allowed.is_empty() {
            (0..n).collect()
        } else {
            (0..n).map(|i| allowed[i % allowed.len()]).collect()
        }
    };
    Ok(cpus
        .into_iter()
        .map(|c| if w.pin { Some(c) } else { None })
        .collect())
}

/// What `serve` would run a profile with on this host, found without starting anything.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The CPU plan ([`plan_cpus`]).
    pub cpus: Vec<Option<usize>>,
    /// The driver a worker would get.
    pub driver: DriverKind,
    /// Why that driver is epoll under `auto`, when it is.
    pub fallback_reason: Option<String>,
}

/// Runs every check a start makes of the profile against this host, so `ringgate check` refuses
/// what `serve` would: the CPU plan (CPUs outside the process's affinity mask), then one runtime
/// built as a worker would build it (an `io_uring` driver the kernel refuses, a ring size or
/// SQPOLL it does not allow), dropped at once.
pub fn preflight(profile: &PerfProfile) -> Result<Preflight, CoreError> {
    profile.validate()?;
    let cpus = plan_cpus(profile)?;
    let built =
        build_runtime(&profile.io).map_err(|source| CoreError::Spawn { index: 0, source })?;
    Ok(Preflight {
        cpus,
        driver: built.kind,
        fallback_reason: built.fallback_reason,
    })
}

/// Starts one worker per planned CPU. `listeners[i]` are worker i's sockets, each with its
/// listener position; `body` runs as the
/// worker's root future on its runtime.
pub fn spawn<F, Fut>(
    profile: &PerfProfile,
    cpus: &[Option<usize>],
    listeners: Vec<Vec<(usize, TcpListener)>>,
    shutdown: Arc<Shutdown>,
    body: F,
) -> Result<Workers, CoreError>
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let body = Arc::new(body);
    let (tx, rx) = mpsc::channel::<Result<WorkerInfo, (usize, std::io::Error)>>();
    let mut handles = Vec::with_capacity(cpus.len());
    for (index, (cpu, socks)) in cpus.iter().copied().zip(listeners).enumerate() {
        for s in &socks {
            if let Ok(dup) = s.1.try_clone() {
                shutdown.register_listener(dup);
            }
        }
        let gauges = Arc::new(WorkerGauges::default());
        shutdown.register_gauges(gauges.clone());
        let io = profile.io.clone();
        let body = body.clone();
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        let h = std::thread::Builder::new()
            .name(format!("ringgate-w{index}"))
            .spawn(move || {
                if let Some(c) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                let mut built = match build_runtime(&io) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err((index, e)));
                        return;
                    }
                };
                let ctx = WorkerContext {
                    index,
                    cpu,
                    driver: built.kind,
                    listeners: socks,
                    gauges,
                    shutdown,
                };
                let _ = tx.send(Ok(WorkerInfo {
                    index,
                    cpu,
                    driver: built.kind,
                    fallback_reason: built.fallback_reason.take(),
                }));
                drop(tx);
                built.runtime.block_on(move || body(ctx));
            })
            .map_err(|source| CoreError::Spawn { index, source })?;
        handles.push(h);
    }
    drop(tx);
    let mut info = Vec::with_capacity(handles.len());
    for _ in 0..handles.len() {
        match rx.recv() {
            Ok(Ok(i)) => info.push(i),
            Ok(Err((index, source))) => return Err(CoreError::Spawn { index, source }),
            Err(_) => {
                return Err(CoreError::Spawn {
                    index: info.len(),
                    source: std::io::Error::other("worker thread ended before reporting"),
                })
            }
        }
    }
    info.sort_by_key(|i| i.index);
    Ok(Workers { info, handles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::{bind_group, ListenOptions};

    #[test]
    fn workers_accept_on_their_own_listeners_and_stop_on_shutdown() {
        let mut profile = PerfProfile::default();
        profile.workers.count = 2;
        let cpus = plan_cpus(&profile).expect("plan");
        assert_eq!(cpus.len(), 2);
        let group = bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            2,
            ListenOptions { backlog: 64 },
        )
        .expect("bind");
        let addr = group[0].local_addr().expect("addr");
        let per_worker: Vec<Vec<(usize, TcpListener)>> =
            group.into_iter().map(|l| vec![(0, l)]).collect();
        let shutdown = Shutdown::new();
        let workers = spawn(
            &profile,
            &cpus,
            per_worker,
            shutdown.clone(),
            |ctx| async move {
                let l = monoio::net::TcpListener::from_std(
                    ctx.listeners.into_iter().next().expect("one listener").1,
                )
                .expect("from_std");
                while let Ok((s, _)) = l.accept().await {
                    ctx.gauges.requests.add(1);
                    drop(s);
                }
            },
        )
        .expect("spawn");
        assert_eq!(workers.info.len(), 2);
        for _ in 0..20 {
            let _ = std::net::TcpStream::connect(addr).expect("connect");
        }
        let t0 = std::time::Instant::now();
        while shutdown_total(&shutdown) < 20 && t0.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        shutdown.begin();
        workers.join();
    }

    fn shutdown_total(s: &Shutdown) -> u64 {
        s.gauges
            .lock()
            .expect("gauges")
            .iter()
            .map(|g| g.requests.get())
            .sum()
    }
}
