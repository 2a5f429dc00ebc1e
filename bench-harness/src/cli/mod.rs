//! The `ringbench` command line: one clap subcommand per job, each in its own module that turns
//! options into a library call and a process exit code.

pub mod compare_cmd;
pub mod plot_cmd;
pub mod run_cmd;
pub mod selfcheck;
pub mod sweep_cmd;
pub mod tax_cmd;
pub mod tax_modes;
pub mod upstream_cmd;

use clap::{Parser, Subcommand};

/// ringbench: ringgate's open-model load harness and stub upstreams.
#[derive(Debug, Parser)]
#[command(name = "ringbench", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run stub HTTP/1.1 upstream servers (latency, errors, streaming, stalls).
    Upstream(Box<upstream_cmd::UpstreamArgs>),
    /// Run an open-model load test against one target.
    ///
    /// Exit code: 0 valid; 3 generator-limited (schedule lag, send lag or queue wait p99 over
    /// its limit, or a generator core saturated); 4 target-saturated (completions inside the
    /// window under --min-in-window of those scheduled, or too many timeouts, unfinished
    /// requests or transport errors); 2 the run could not start or write its outputs.
    Run(Box<run_cmd::RunArgs>),
    /// Run the same load against direct / ringgate / nginx / HAProxy and write a perf report.
    Compare(Box<compare_cmd::CompareArgs>),
    /// Latency against offered load in steps; find the highest rate that holds an SLO.
    Sweep(Box<sweep_cmd::SweepArgs>),
    /// The gateway tax table: a realistic topology direct vs through ringgate, rung by rung.
    Tax(Box<tax_cmd::TaxArgs>),
    /// Overlay the percentile spectra of saved runs in one SVG.
    Plot(plot_cmd::PlotArgs),
}

/// Parses the process arguments and runs the chosen subcommand; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Upstream(args) => upstream_cmd::run(*args),
        Command::Run(args) => run_cmd::run(*args),
        Command::Compare(args) => compare_cmd::run(*args),
        Command::Sweep(args) => sweep_cmd::run(*args),
        Command::Tax(args) => tax_cmd::run(*args),
        Command::Plot(args) => plot_cmd::run(args),
    }
}
