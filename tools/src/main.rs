//! The `ringgate` binary: parse the command line, load config and profile, start, wait, drain.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use ringgate::config::{ListenerConfig, PathConfig, RawConfig, RouteConfig, UpstreamConfig};
use ringgate::server::{start, RunningGateway};
use ringgate::snapshot::{text_hash, Snapshot};
use ringgate_core::profile::PerfProfile;
use std::net::SocketAddr;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "An io_uring, thread-per-core API gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a config file.
    Serve {
        /// The config file (TOML).
        #[arg(long)]
        config: String,
        /// A perf profile file, or a preset name (`default`, `low-latency`).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Validate a config (and profile), print a summary, exit non-zero listing every error.
    Check {
        /// The config file (TOML).
        #[arg(long)]
        config: String,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Run the bundled example config against two built-in demo upstreams.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// A whole reverse proxy from one line: every request on LISTEN goes to the --to endpoints.
    Proxy {
        /// Where to listen (ip:port).
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream endpoints, comma-separated host:port list (round-robin).
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_profile(arg: Option<&str>) -> Result<PerfProfile, Box<dyn std::error::Error>> {
    Ok(match arg {
        Some(p) => PerfProfile::load(p)?,
        None => PerfProfile::default(),
    })
}

fn run(cmd: Cmd) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cmd {
        Cmd::Serve { config, profile } => {
            let profile = load_profile(profile.as_deref())?;
            let snapshot = ringgate::load_snapshot(&config)?;
            let gw = start(snapshot, &profile)?;
            println!("{}", gw.start_line);
            wait_and_drain(gw)
        }
        Cmd::Check { config, profile } => check(&config, profile.as_deref()),
        Cmd::Demo { listen, profile } => {
            let profile = load_profile(profile.as_deref())?;
            let demo = ringgate::demo::start_demo(&profile, listen)?;
            println!("{}", demo.gateway.start_line);
            println!(
                "demo upstreams: {}",
                demo.upstreams
                    .iter()
                    .map(|u| u.addrs()[0].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("try:");
            for l in &demo.try_lines {
                println!("  {l}");
            }
            println!("Ctrl-C stops the demo.");
            let upstreams = demo.upstreams;
            let code = wait_and_drain(demo.gateway);
            drop(upstreams);
            code
        }
        Cmd::Proxy {
            listen,
            to,
            profile,
        } => {
            let profile = load_profile(profile.as_deref())?;
            let raw = proxy_config(listen, to);
            let text = toml::to_string(&raw)?;
            let snapshot = Snapshot::build(&raw, text_hash(&text))?;
            let gw = start(snapshot, &profile)?;
            println!("{}", gw.start_line);
            wait_and_drain(gw)
        }
    }
}

/// The config `ringgate proxy` stands for: one listener, one upstream, one catch-all route.
fn proxy_config(listen: SocketAddr, to: Vec<String>) -> RawConfig {
    RawConfig {
        version: Some("proxy".into()),
        listeners: vec![ListenerConfig {
            name: Some("proxy".into()),
            address: listen.to_string(),
        }],
        upstreams: vec![UpstreamConfig {
            name: "to".into(),
            endpoints: to,
            host_header: None,
        }],
        routes: vec![RouteConfig {
            id: "all".into(),
            hosts: Vec::new(),
            path: PathConfig {
                prefix: Some("/".into()),
                ..PathConfig::default()
            },
            methods: Vec::new(),
            headers: Vec::new(),
            priority: 0,
            strip_prefix: false,
            rewrite_prefix: None,
            rewrite: None,
            upstream: "to".into(),
            timeout: None,
            max_body_bytes: None,
        }],
    }
}

fn check(config: &str, profile: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut failed = false;
    match load_profile(profile) {
        Ok(p) => println!(
            "profile ok: driver={:?} workers={} pin={} uring_entries={} sqpoll={}",
            p.io.driver,
            if p.workers.cpus.is_empty() {
                p.workers.count.to_string()
            } else {
                format!("{:?}", p.workers.cpus)
            },
            p.workers.pin,
            p.io.uring_entries,
            p.io.sqpoll
        ),
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    match ringgate::load_snapshot(config) {
        Ok(s) => {
            let endpoints: usize = s.upstreams.iter().map(|u| u.endpoints.len()).sum();
            println!(
                "config ok: version={} listeners={} upstreams={} endpoints={} routes={}",
                s.version,
                s.listeners.len(),
                s.upstreams.len(),
                endpoints,
                s.table.len()
            );
        }
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits for SIGINT or SIGTERM, then drains and reports.
fn wait_and_drain(gw: RunningGateway) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let sig = signals
        .forever()
        .next()
        .unwrap_or(signal_hook::consts::SIGTERM);
    eprintln!("ringgate: signal {sig}: draining");
    let out = gw.stop();
    eprintln!(
        "ringgate: stopped: {} in flight at signal, {} drained, {} aborted",
        out.inflight_at_start,
        out.inflight_at_start.saturating_sub(out.aborted),
        out.aborted
    );
    Ok(ExitCode::SUCCESS)
}
