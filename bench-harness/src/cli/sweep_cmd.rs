//! `ringbench sweep`: the run options plus a list of rates and an SLO; writes the curve.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::run_cmd::RunArgs;
use crate::sweep::{self, Slo};
use crate::units::{parse_duration, parse_rate};

/// Options of `ringbench sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Everything `run` takes (its --rate is ignored; --duration is per step).
    #[command(flatten)]
    pub run: RunArgs,
    /// Rates to try, in order (e.g. 1000,2000,5000,10000).
    #[arg(long, value_delimiter = ',', value_parser = parse_rate, required = true)]
    pub rates: Vec<f64>,
    /// SLO: highest acceptable p99.
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub slo_p99: Duration,
    /// SLO: highest acceptable failure share (errors, timeouts, censored, 5xx), e.g. 0.001.
    #[arg(long, default_value_t = 0.001)]
    pub slo_failures: f64,
    /// Write the curve as SVG.
    #[arg(long)]
    pub curve: Option<PathBuf>,
}

/// Runs the sweep; exit 0 when some rate held the SLO.
pub fn run(mut args: SweepArgs) -> i32 {
    if args.run.rate.is_none() {
        args.run.rate = args.rates.first().copied();
    }
    let cfg = match args.run.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringbench sweep: {e}");
            return 2;
        }
    };
    let slo = Slo {
        p99: args.slo_p99,
        failures: args.slo_failures,
    };
    let report = match sweep::sweep(&cfg, &args.rates, args.run.duration, slo) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringbench sweep: {e}");
            return 2;
        }
    };
    match report.best_rate {
        Some(b) => println!(
            "highest rate holding p99 <= {:?} and failures < {}: {b:.0}/s ({})",
            slo.p99, slo.failures, report.stopped
        ),
        None => println!("no rate held the SLO ({})", report.stopped),
    }
    let mut ok = true;
    if let Some(path) = &args.run.json {
        ok &= serde_json::to_string_pretty(&report)
            .ok()
            .and_then(|t| std::fs::write(path, t).ok())
            .is_some();
    }
    if let Some(path) = &args.curve {
        ok &= std::fs::write(path, sweep::curve_svg(&report)).is_ok();
    }
    if !ok {
        eprintln!("ringbench sweep: could not write an output file");
        return 2;
    }
    if report.best_rate.is_some() {
        0
    } else {
        4
    }
}
