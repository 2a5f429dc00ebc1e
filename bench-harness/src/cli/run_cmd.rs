//! `ringbench run`: options to a [`RunConfig`], the run, then the table, the JSON, the interval
//! log and the plot. The exit code is the verdict's: 0 valid, 3 generator-limited (schedule lag,
//! queue wait or send lag p99 over its limit, or a generator core saturated), 4 target-saturated
//! (too few completions inside the window, or too many timeouts, unfinished requests or
//! transport errors), 2 for a run that could not start or write its outputs.
//!
//! # HTTPS
//! An `https://` URL makes every connection speak TLS (rustls on the ring provider, one client
//! configuration per run shared by all threads). The TLS options:
//! - `--ca FILE`: PEM CA bundle the server's certificate must chain to, or `--insecure` to skip
//!   certificate checks (benchmarks only; handshake signatures are still verified). One of the
//!   two is required for https.
//! - `--sni NAME`: server name to send and verify (default: the URL host; an IP address is
//!   verified as an IP and sends no SNI).
//! - `--tls-resume on|off` (default on): off disables session resumption, so every new
//!   connection is a full handshake.
//! - `--tls-version 1.2|1.3|any` (default any).
//!
//! `--requests-per-conn N` (default 0: keep-alive for the whole run) closes a connection after N
//! responses; later requests open new ones, so with N = 1 every request pays a TCP connect and,
//! over https, a handshake. The report counts connections opened, TLS handshakes and how many of
//! them resumed a session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::run::{
    self, ArrivalProcess, Plan, RunConfig, RunError, RunReport, Schedule, SimpleRequest, Target,
    Thresholds, TlsOptions, TlsVersion, Verify,
};
use crate::units::{parse_duration, parse_rate};

/// Options of `ringbench run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Target, e.g. http://127.0.0.1:8080/ or https://127.0.0.1:8443/ (with --scenario: host
    /// and default path).
    #[arg(long)]
    pub url: String,
    /// Requests per second (all threads), e.g. 5000 or 20k (or give --schedule).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Measured length (the warmup comes on top).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured lead-in before the measured window.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Arrival spacing.
    #[arg(long, value_enum, default_value_t = ArrivalProcess::Fixed)]
    pub arrival: ArrivalProcess,
    /// Step / ramp schedule file (TOML `[[phases]]`), instead of --rate and --duration; the
    /// warmup is its first part.
    #[arg(long, conflicts_with = "rate")]
    pub schedule: Option<PathBuf>,
    /// Scenario file: weighted request kinds and credential pools.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Method for the --url request.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Extra header for the --url request, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Body size for the --url request.
    #[arg(long, default_value_t = 0)]
    pub body_bytes: usize,
    /// Generator CPUs, one pinned thread each, e.g. `0`.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Generator threads (default: one per --cpus entry, else 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Connections opened before the start.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Connection cap; past it, requests queue (and the wait counts in their latency).
    #[arg(long, default_value_t = 1024)]
    pub max_conns: usize,
    /// Request timeout from intended send time.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Time allowed after the schedule for in-flight requests; the rest is censored.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub grace: Duration,
    /// Seed for arrivals, kinds and pool draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Close each connection after N responses and open new ones for later requests (0: keep
    /// alive); with 1 every request pays a connect, and over https a handshake.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub requests_per_conn: u64,
    /// Further addresses serving the same URL (e.g. a second gateway process, ADDR,ADDR):
    /// connections are spread over the URL's address and these, in turn.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub also_at: Vec<std::net::SocketAddr>,
    /// https: PEM CA bundle that verifies the server's certificate (or give --insecure).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// https: accept any server certificate (benchmarks only; handshake signatures are still
    /// verified, so the client's work matches a verifying client's).
    #[arg(long)]
    pub insecure: bool,
    /// https: server name to send and verify (default: the URL host; an IP address is verified
    /// as an IP and sends no SNI).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// https: resume sessions on new connections; off makes every handshake a full one.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub tls_resume: OnOff,
    /// https: protocol versions to offer.
    #[arg(long, value_enum, default_value_t = TlsVersion::Any)]
    pub tls_version: TlsVersion,
    /// Processes whose CPU time (all threads) is accounted per successful request.
    #[arg(long = "target-pid", num_args = 1.., value_delimiter = ',')]
    pub target_pids: Vec<u32>,
    /// Write the full report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HdrHistogram interval log of response times.
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Interval of the --hlog log.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hlog_interval: Duration,
    /// Write an SVG percentile-spectrum plot.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Self-check limits.
    #[command(flatten)]
    pub self_check: super::selfcheck::SelfCheckArgs,
    /// Self-check: completions inside the window below this share of those scheduled mark the
    /// target saturated (grace-period completions do not count).
    #[arg(long, default_value_t = 0.995)]
    pub min_in_window: f64,
    /// Self-check: timeouts + censored above this share mark the target saturated.
    #[arg(long, default_value_t = 0.001)]
    pub max_unfinished: f64,
    /// Self-check: transport errors above this share mark the target saturated.
    #[arg(long, default_value_t = 0.001)]
    pub max_errors: f64,
    /// Do not print the table.
    #[arg(long)]
    pub quiet: bool,
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

fn header(h: &str) -> Result<(String, String), RunError> {
    let (n, v) = h
        .split_once(':')
        .ok_or_else(|| RunError::Invalid(format!("header {h:?} is not `name: value`")))?;
    Ok((n.trim().to_string(), v.trim().to_string()))
}

impl RunArgs {
    /// The run configuration these options describe.
    pub fn config(&self) -> Result<RunConfig, RunError> {
        let target = Target::parse(&self.url)?;
        let tls = self.tls_options(&target)?;
        let plan = match &self.scenario {
            Some(path) => Plan::from_scenario(path, &target)?,
            None => {
                let req = SimpleRequest {
                    method: self.method.clone(),
                    headers: self
                        .headers
                        .iter()
                        .map(|h| header(h))
                        .collect::<Result<_, _>>()?,
                    body_bytes: self.body_bytes,
                };
                Plan::single(&target, &req)?
            }
        };
        let schedule = match (&self.schedule, self.rate) {
            (Some(path), _) => Schedule::from_file(path)?,
            (None, Some(rate)) => Schedule::constant(rate, self.warmup + self.duration),
            (None, None) => return Err(RunError::Invalid("give --rate or --schedule".into())),
        };
        let threads = self
            .threads
            .unwrap_or_else(|| self.cpus.as_ref().map_or(1, |c| c.len().max(1)));
        Ok(RunConfig {
            target,
            also_at: self.also_at.clone(),
            plan: Arc::new(plan),
            schedule,
            process: self.arrival,
            warmup: self.warmup,
            threads,
            cpus: self.cpus.clone(),
            conns: self.conns,
            max_conns: self.max_conns,
            timeout: self.timeout,
            grace: self.grace,
            seed: self.seed,
            target_pids: self.target_pids.clone(),
            other_pids: Vec::new(),
            log_interval: self.hlog.as_ref().map(|_| self.hlog_interval),
            thresholds: Thresholds {
                min_in_window: self.min_in_window,
                max_unfinished: self.max_unfinished,
                max_errors: self.max_errors,
                ..self.self_check.thresholds()
            },
            tls,
            requests_per_conn: self.requests_per_conn,
        })
    }

    fn tls_options(&self, target: &Target) -> Result<Option<TlsOptions>, RunError> {
        if !target.tls {
            if self.ca.is_some() || self.insecure || self.sni.is_some() {
                return Err(RunError::Invalid(format!(
                    "--ca, --insecure and --sni apply to https:// URLs, not {}",
                    self.url
                )));
            }
            return Ok(None);
        }
        let verify = match (&self.ca, self.insecure) {
            (Some(ca), _) => Verify::Ca(ca.clone()),
            (None, true) => Verify::Insecure,
            (None, false) => {
                return Err(RunError::Invalid(format!(
                    "{} is https: give --ca FILE (a PEM CA bundle that signed the server's \
                     certificate) or --insecure (no verification, benchmarks only)",
                    self.url
                )))
            }
        };
        Ok(Some(TlsOptions {
            verify,
            sni: self.sni.clone(),
            resume: self.tls_resume == OnOff::On,
            version: self.tls_version,
        }))
    }
}

/// Writes the outputs a run asked for.
pub fn write_outputs(args: &RunArgs, report: &RunReport) -> Result<(), String> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.hlog {
        crate::report::hlog::write(path, report, args.hlog_interval)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let svg = crate::report::plot::spectrum_svg(&[(report.target.clone(), report)]);
        std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Runs the load; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringbench run: {e}");
            return 2;
        }
    };
    let report = match run::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringbench run: {e}");
            return 2;
        }
    };
    if !args.quiet {
        print!("{}", report.table());
    }
    if let Err(e) = write_outputs(&args, &report) {
        eprintln!("ringbench run: {e}");
        return 2;
    }
    report.verdict.exit_code()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(args: &[&str]) -> Result<RunConfig, RunError> {
        let mut argv = vec!["ringbench", "--rate", "100"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().run.config()
    }

    #[test]
    fn https_needs_ca_or_insecure_and_tls_options_need_https() {
        let err = config(&["--url", "https://127.0.0.1:8443/"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--ca FILE") && err.contains("--insecure"),
            "{err}"
        );
        let err = config(&["--url", "http://127.0.0.1:8080/", "--insecure"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://"), "{err}");
        assert!(Cli::try_parse_from([
            "ringbench",
            "--url",
            "https://127.0.0.1/",
            "--ca",
            "ca.pem",
            "--insecure"
        ])
        .is_err());
    }

    #[test]
    fn tls_options_reach_the_run_config() {
        let c = config(&[
            "--url",
            "https://127.0.0.1:8443/",
            "--ca",
            "ca.pem",
            "--sni",
            "example.test",
            "--tls-resume",
            "off",
            "--tls-version",
            "1.2",
            "--requests-per-conn",
            "1",
        ])
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsOptions {
                verify: Verify::Ca("ca.pem".into()),
                sni: Some("example.test".into()),
                resume: false,
                version: TlsVersion::Tls12,
            })
        );
        assert_eq!(c.requests_per_conn, 1);
        let c = config(&["--url", "https://127.0.0.1:8443/", "--insecure"]).unwrap();
        assert_eq!(c.tls, Some(TlsOptions::insecure()));
        let c = config(&["--url", "http://127.0.0.1:8080/"]).unwrap();
        assert_eq!((c.tls, c.requests_per_conn), (None, 0));
    }
}
