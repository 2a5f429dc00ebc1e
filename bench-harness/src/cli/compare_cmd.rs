//! `ringbench compare`: options to a [`CompareConfig`]; prints and writes the summary.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::compare::{self, targets::Kind, CompareConfig};
use crate::units::{parse_duration, parse_rate};

/// Options of `ringbench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Report name: the folder under --out (e.g. 0001-passthrough).
    #[arg(long)]
    pub name: String,
    /// Targets in table order (ratios are against the first): direct, ringgate, nginx, haproxy.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,ringgate,nginx,haproxy"
    )]
    pub targets: Vec<String>,
    /// Offered rates, e.g. 5000,20000.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate, default_value = "5000,20000")]
    pub rates: Vec<f64>,
    /// Repetitions of every (rate, target), interleaved.
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
    /// CPUs of the proxies (taskset -c list).
    #[arg(long, default_value = "1")]
    pub target_cpus: String,
    /// CPUs of the upstream stub (taskset -c list).
    #[arg(long, default_value = "1")]
    pub upstream_cpus: String,
    /// Upstream response body size.
    #[arg(long, default_value_t = 64)]
    pub body_bytes: usize,
    /// Connections the generator opens at start.
    #[arg(long, default_value_t = 16)]
    pub conns: usize,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The ringgate binary (default: `ringgate` beside this binary, else on PATH).
    #[arg(long)]
    pub ringgate: Option<PathBuf>,
    /// Also run `oha --latency-correction` against direct at each rate.
    #[arg(long)]
    pub oha: bool,
    /// Self-check limits.
    #[command(flatten)]
    pub self_check: super::selfcheck::SelfCheckArgs,
    /// Parent folder of reports.
    #[arg(long, default_value = "perf-reports")]
    pub out: PathBuf,
}

/// `ringgate` beside this binary, else on PATH.
pub fn default_ringgate() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.with_file_name("ringgate");
    if beside.is_file() {
        return Some(beside);
    }
    compare::procs::which("ringgate")
}

/// Runs the comparison; returns the exit code.
pub fn run(args: CompareArgs) -> i32 {
    let mut targets = Vec::new();
    for t in &args.targets {
        match Kind::parse(t) {
            Some(k) => targets.push(k),
            None => {
                eprintln!(
                    "ringbench compare: unknown target {t:?} (direct, ringgate, nginx, haproxy)"
                );
                return 2;
            }
        }
    }
    let cfg = CompareConfig {
        name: args.name.clone(),
        out: args.out.clone(),
        targets,
        rates: args.rates.clone(),
        reps: args.reps.max(1),
        duration: args.duration,
        warmup: args.warmup,
        generator_cpus: Some(args.generator_cpus.clone()).filter(|c| !c.is_empty()),
        target_cpus: args.target_cpus.clone(),
        upstream_cpus: args.upstream_cpus.clone(),
        body_bytes: args.body_bytes,
        conns: args.conns,
        path: args.path.clone(),
        ringgate: args.ringgate.clone().or_else(default_ringgate),
        oha: args.oha,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        ringbench: None,
        thresholds: args.self_check.thresholds(),
    };
    match compare::compare(&cfg) {
        Ok(md) => {
            println!("{md}");
            println!("written to {}", args.out.join(&args.name).display());
            0
        }
        Err(e) => {
            eprintln!("ringbench compare: {e}");
            1
        }
    }
}
