//! `ringbench tax`: options to a [`TaxConfig`]; runs the ladder, or with `--emit` only writes
//! the generated gateway config and scenario.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::tax::{self, topology, Rung, TaxConfig};
use crate::units::{parse_duration, parse_rate};

/// Options of `ringbench tax`.
#[derive(Debug, Args)]
pub struct TaxArgs {
    /// Report name: the folder under --out.
    #[arg(long, default_value = "tax")]
    pub name: String,
    /// The ceiling, profile, soak and rolling-restart modes.
    #[command(flatten)]
    pub modes: super::tax_modes::ModeArgs,
    /// Topology seed (same seed, same config and scenario, byte for byte).
    #[arg(long, default_value_t = topology::DEFAULT_SEED)]
    pub seed: u64,
    /// Upstreams of the topology.
    #[arg(long, default_value_t = topology::DEFAULT_UPSTREAMS)]
    pub upstreams: usize,
    /// Replicas per upstream (each a port of the one stub process).
    #[arg(long, default_value_t = topology::DEFAULT_REPLICAS)]
    pub replicas: usize,
    /// Rungs in ladder order (direct is required): direct, passthrough, auth, limit,
    /// resilience, observe, tls (each gateway rung adds its feature to the one before).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,passthrough,auth,limit,resilience,observe,tls"
    )]
    pub rungs: Vec<String>,
    /// Offered rate.
    #[arg(long, value_parser = parse_rate, default_value = "500")]
    pub rate: f64,
    /// Repetitions of the ladder, interleaved.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Measured length of each run.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Warmup of each run.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// Generator CPUs.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub generator_cpus: Vec<usize>,
    /// CPUs of ringgate (taskset -c list).
    #[arg(long, default_value = "1")]
    pub target_cpus: String,
    /// CPUs of the stub upstreams (taskset -c list).
    #[arg(long, default_value = "0")]
    pub upstream_cpus: String,
    /// Connections the generator opens at start.
    #[arg(long, default_value_t = 16)]
    pub conns: usize,
    /// The ringgate binary (default: `ringgate` beside this binary, else on PATH).
    #[arg(long)]
    pub ringgate: Option<PathBuf>,
    /// Self-check limits.
    #[command(flatten)]
    pub self_check: super::selfcheck::SelfCheckArgs,
    /// Parent folder of reports.
    #[arg(long, default_value = "perf-reports")]
    pub out: PathBuf,
    /// Only write the generated configs and scenario into DIR and exit: `gateway.toml`
    /// (passthrough), `gateway-RUNG.toml` for each feature rung, `scenario.toml`, and fresh
    /// `jwks.json`, `tokens/` (valid for a day) and `tls/` (gateway on 127.0.0.1:8080, admin on
    /// :9901, Redis on :6379, replicas on 127.0.0.1:BASE_PORT and up; file paths relative to DIR,
    /// so run ringgate from there).
    #[arg(long, value_name = "DIR")]
    pub emit: Option<PathBuf>,
    /// First replica port of `--emit`.
    #[arg(long, default_value_t = 19000)]
    pub base_port: u16,
    /// Peers to run on every rung they have all the features of, interleaved with ringgate's
    /// runs: nginx, haproxy.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// A ringgate built with `--features count-alloc`: adds a short pass per gateway rung that
    /// counts heap allocations per request (the allocs/req column).
    #[arg(long, value_name = "PATH")]
    pub alloc_ringgate: Option<PathBuf>,
}

fn emit(args: &TaxArgs, dir: &std::path::Path) -> i32 {
    let t = topology::generate(args.seed, args.upstreams, args.replicas);
    let endpoints = topology::fixed_endpoints(&t, args.base_port);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 8080));
    match tax::stand::emit(&t, dir, listen, &endpoints) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            0
        }
        Err(e) => {
            eprintln!("ringbench tax: {e}");
            2
        }
    }
}

/// Runs the ladder; returns the exit code.
pub fn run(args: TaxArgs) -> i32 {
    if let Some(dir) = &args.emit {
        return emit(&args, dir);
    }
    let mut rungs = Vec::new();
    for r in &args.rungs {
        match Rung::parse(r) {
            Some(x) => rungs.push(x),
            None => {
                eprintln!(
                    "ringbench tax: unknown rung {r:?} (direct, passthrough, auth, limit, \
                     resilience, observe, tls)"
                );
                return 2;
            }
        }
    }
    let mut peers = Vec::new();
    for p in &args.peers {
        match tax::peers::Peer::parse(p) {
            Some(tax::peers::Peer::Ringgate) => {}
            Some(x) => peers.push(x),
            None => {
                eprintln!("ringbench tax: unknown peer {p:?} (nginx, haproxy)");
                return 2;
            }
        }
    }
    let Some(ringgate) = args
        .ringgate
        .clone()
        .or_else(super::compare_cmd::default_ringgate)
    else {
        eprintln!("ringbench tax: ringgate binary not found (build it or pass --ringgate)");
        return 2;
    };
    let cfg = TaxConfig {
        name: args.name.clone(),
        out: args.out.clone(),
        seed: args.seed,
        upstreams: args.upstreams,
        replicas: args.replicas,
        rungs,
        rate: args.rate,
        reps: args.reps.max(1),
        duration: args.duration,
        warmup: args.warmup,
        generator_cpus: Some(args.generator_cpus.clone()).filter(|c| !c.is_empty()),
        target_cpus: args.target_cpus.clone(),
        upstream_cpus: args.upstream_cpus.clone(),
        conns: args.conns,
        ringgate,
        ringbench: None,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        thresholds: args.self_check.thresholds(),
        peers,
        alloc_ringgate: args.alloc_ringgate.clone(),
    };
    if !super::tax_modes::is_ladder(&args.modes) {
        return super::tax_modes::run(&args.modes, &cfg);
    }
    match tax::tax(&cfg) {
        Ok(md) => {
            println!("{md}");
            println!("written to {}", args.out.join(&args.name).display());
            0
        }
        Err(e) => {
            eprintln!("ringbench tax: {e}");
            1
        }
    }
}
