//! `ringbench upstream`: the stub servers as a standalone process (for nginx / HAProxy /
//! ringgate runs started by hand). Runs until `--duration` passes or the process is signalled.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;

use crate::units::parse_duration;
use crate::upstream::{self, ErrorInjection, LatencyDist, UpstreamConfig};

/// Options of `ringbench upstream`.
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Address to listen on; repeat (or separate with commas) for several ports.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8081")]
    pub listen: Vec<SocketAddr>,
    /// Worker threads (one monoio runtime each).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// CPUs to pin workers to, e.g. `1` or `2,3` (worker i on the i-th, cycling).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Response latency: 0, fixed:2ms, uniform:1ms..3ms, normal:2ms,500us,
    /// lognormal:2ms,p99=10ms, table:50=1ms,99=5ms,100=20ms.
    #[arg(long, default_value = "0")]
    pub latency: LatencyDist,
    /// Requests each worker serves at once (0: unlimited); past it they queue, so a worker's
    /// capacity is concurrency / mean latency per second.
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 0)]
    pub body_bytes: usize,
    /// Injected faults: STATUS=SHARE, reset=SHARE, hang=SHARE, comma separated.
    #[arg(long, default_value = "")]
    pub errors: ErrorInjection,
    /// Seed of the latency and fault draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Name sent in the `x-upstream` header.
    #[arg(long, default_value = "ringbench")]
    pub name: String,
    /// Start a stall (all responses held) this long after start...
    #[arg(long, value_parser = parse_duration, requires = "stall_for")]
    pub stall_at: Option<Duration>,
    /// ...lasting this long.
    #[arg(long, value_parser = parse_duration, requires = "stall_at")]
    pub stall_for: Option<Duration>,
    /// Stop after this long (default: run until killed).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

impl UpstreamArgs {
    /// The library configuration these options describe.
    pub fn config(&self) -> UpstreamConfig {
        UpstreamConfig {
            listen: self.listen.clone(),
            workers: self.workers,
            cpus: self.cpus.clone(),
            latency: self.latency.clone(),
            concurrency: self.concurrency,
            body_bytes: self.body_bytes,
            errors: self.errors.clone(),
            seed: self.seed,
            name: self.name.clone(),
        }
    }
}

/// Runs the servers; returns the process exit code.
pub fn run(args: UpstreamArgs) -> i32 {
    let handle = match upstream::spawn(args.config()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ringbench upstream: {e}");
            return 2;
        }
    };
    let addrs: Vec<String> = handle.addrs().iter().map(|a| a.to_string()).collect();
    println!(
        "ringbench upstream: listening on {} ({} workers, {}, latency {}, body {} B)",
        addrs.join(" "),
        args.workers,
        handle
            .drivers()
            .first()
            .map_or("?".to_string(), |d| d.to_string()),
        args.latency.describe(),
        args.body_bytes
    );
    let start = Instant::now();
    let mut stall = args.stall_at.zip(args.stall_for);
    loop {
        if let Some((at, len)) = stall {
            if start.elapsed() >= at {
                println!("ringbench upstream: stalling for {len:?}");
                handle.stall(len);
                stall = None;
            }
        }
        if args.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "ringbench upstream: served {} requests on {} connections",
        handle.requests_served(),
        handle.connections_accepted()
    );
    handle.stop();
    0
}
