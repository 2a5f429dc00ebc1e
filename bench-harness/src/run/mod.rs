//! `ringbench run`: the open-model load generator.
//!
//! Requests are sent on a schedule fixed in advance (constant or Poisson arrivals at `rate`, or a
//! step / ramp schedule), and each one's latency runs from its *intended* send time, so a stalled
//! server shows up in the percentiles instead of slowing the generator down (no coordinated
//! omission). One generator thread per listed CPU, each pinned, each with its own histograms,
//! merged at the end. The run judges itself: see [`verdict`].
//!
//! `https://` targets are driven over TLS ([`tls`]): one client configuration per run, shared by
//! all threads so sessions resume across them; [`RunConfig::requests_per_conn`] trades keep-alive
//! for new connections (and handshakes), to measure a server's TLS termination cost.

pub mod conn;
pub mod cpu;
pub mod engine;
pub mod pacer;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod tls;
pub mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

pub use plan::{Plan, PlanError, SimpleRequest, Target};
pub use report::RunReport;
pub use schedule::{ArrivalProcess, Schedule, ScheduleError};
pub use tls::{TlsClient, TlsError, TlsOptions, TlsVersion, Verify};
pub use verdict::{Thresholds, Verdict};

use engine::{Engine, EngineConfig};
use stats::ThreadStats;

/// Why a run could not start.
#[derive(Debug, Error)]
pub enum RunError {
    /// Bad target or scenario.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Bad schedule.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Bad option combination.
    #[error("run: {0}")]
    Invalid(String),
    /// The TLS client could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A target process to account for does not exist.
    #[error("target pid {0}: {1}")]
    TargetPid(u32, std::io::Error),
    /// Threads or sockets could not be created.
    #[error("run: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Where to send.
    pub target: Target,
    /// Further addresses serving the same target (e.g. a second gateway process): connections
    /// are spread over the target's address and these in turn, each thread starting at its own.
    pub also_at: Vec<std::net::SocketAddr>,
    /// What to send.
    pub plan: Arc<Plan>,
    /// When to send (the warmup is its first part).
    pub schedule: Schedule,
    /// Fixed or Poisson spacing.
    pub process: ArrivalProcess,
    /// Unmeasured lead-in at the start of the schedule.
    pub warmup: Duration,
    /// Generator threads (at least 1).
    pub threads: usize,
    /// CPUs to pin generator threads to (thread i on `cpus[i % len]`).
    pub cpus: Option<Vec<usize>>,
    /// Connections opened before the start (all threads).
    pub conns: usize,
    /// Connection cap (all threads).
    pub max_conns: usize,
    /// Request timeout, from intended send time.
    pub timeout: Duration,
    /// After the schedule, how long in-flight requests may finish before being censored.
    pub grace: Duration,
    /// Seed for arrivals, kinds and pools.
    pub seed: u64,
    /// Processes whose CPU time is accounted per successful request (the `target` account).
    pub target_pids: Vec<u32>,
    /// Further named accounts (e.g. `upstream` behind a proxy), reported beside the target.
    pub other_pids: Vec<(String, Vec<u32>)>,
    /// Interval of the response-time log (`--hlog`).
    pub log_interval: Option<Duration>,
    /// Self-check limits.
    pub thresholds: Thresholds,
    /// TLS options; required for an `https://` target, refused for `http://`.
    pub tls: Option<TlsOptions>,
    /// Close each connection after this many responses and open a new one for later requests
    /// (0: keep connections alive for the whole run).
    pub requests_per_conn: u64,
}

impl RunConfig {
    /// A config for `url` at a constant `rate` with defaults for everything else.
    pub fn simple(target: Target, plan: Plan, rate: f64, duration: Duration) -> Self {
        Self {
            target,
            also_at: Vec::new(),
            plan: Arc::new(plan),
            schedule: Schedule::constant(rate, duration),
            process: ArrivalProcess::Fixed,
            warmup: Duration::ZERO,
            threads: 1,
            cpus: None,
            conns: 8,
            max_conns: 1024,
            timeout: Duration::from_secs(10),
            grace: Duration::from_secs(2),
            seed: 1,
            target_pids: Vec::new(),
            other_pids: Vec::new(),
            log_interval: None,
            thresholds: Thresholds::default(),
            tls: None,
            requests_per_conn: 0,
        }
    }
}

/// Runs the load and returns the full report (its verdict says whether to trust it).
pub fn run(cfg: &RunConfig) -> Result<RunReport, RunError> {
    cfg.schedule.validate()?;
    if cfg.threads == 0 || cfg.max_conns < cfg.threads {
        return Err(RunError::Invalid(
            "need threads >= 1 and max-conns >= threads".into(),
        ));
    }
    if cfg.warmup >= cfg.schedule.total() {
        return Err(RunError::Invalid(
            "warmup must be shorter than the duration".into(),
        ));
    }
    let tls = match (&cfg.tls, cfg.target.tls) {
        (Some(opts), true) => Some(TlsClient::new(opts, &cfg.target)?),
        (None, false) => None,
        (None, true) => {
            return Err(RunError::Invalid(format!(
                "{} is https: give --ca FILE (PEM CA bundle) or --insecure",
                cfg.target.url
            )))
        }
        (Some(_), false) => {
            return Err(RunError::Invalid(format!(
                "TLS options (--ca, --insecure, --sni) need an https:// URL, not {}",
                cfg.target.url
            )))
        }
    };
    let mut groups = Vec::new();
    if !cfg.target_pids.is_empty() {
        groups.push(("target".to_string(), cfg.target_pids.clone()));
    }
    groups.extend(cfg.other_pids.iter().cloned());
    for pid in groups.iter().flat_map(|g| g.1.iter()) {
        cpu::process_cpu(*pid).map_err(|e| RunError::TargetPid(*pid, e))?;
    }
    // Start far enough ahead for every thread to pin itself and open its connections.
    let lead = Duration::from_millis(200);
    let start = Instant::now() + lead;
    let started = SystemTime::now() + lead + cfg.warmup;
    let mut handles = Vec::new();
    for i in 0..cfg.threads {
        let ecfg = EngineConfig {
            index: i,
            threads: cfg.threads,
            cpu: cfg
                .cpus
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c[i % c.len()]),
            addrs: std::iter::once(cfg.target.addr)
                .chain(cfg.also_at.iter().copied())
                .collect(),
            plan: Arc::clone(&cfg.plan),
            schedule: cfg.schedule.clone(),
            process: cfg.process,
            seed: cfg.seed,
            start,
            warmup: cfg.warmup,
            timeout: cfg.timeout,
            grace: cfg.grace,
            conns: cfg.conns.div_ceil(cfg.threads),
            max_conns: cfg.max_conns / cfg.threads,
            interval: cfg.log_interval,
            tls: tls.clone(),
            requests_per_conn: cfg.requests_per_conn,
        };
        let engine = Engine::new(ecfg)?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("ringbench-gen-{i}"))
                .spawn(move || engine.run())?,
        );
    }
    let window_start = start + cfg.warmup;
    let window_end = start + cfg.schedule.total();
    let target_cpu = cpu::measure_window(&groups, window_start, window_end);
    let mut per_thread: Vec<ThreadStats> = Vec::new();
    for h in handles {
        per_thread.push(
            h.join()
                .map_err(|_| RunError::Invalid("a generator thread panicked".into()))?,
        );
    }
    Ok(report::build(cfg, per_thread, target_cpu, started))
}
