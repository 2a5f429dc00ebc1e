//! `ringbench compare`: the same open-model load against a matrix of targets (direct to the
//! upstream, ringgate, nginx, HAProxy), each started by the harness with a generated config and
//! pinned as asked, repetitions interleaved (A B C A B C ...) so slow drifts of the machine hit
//! every target alike. Writes `perf-reports/<name>/`: the command line, the environment, every
//! run's JSON, a summary (medians, spread, ratios against the first target) and plots.

pub mod oha;
pub mod procs;
pub mod summary;
pub mod targets;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::report::plot::spectrum_svg;
use crate::run::{self, Plan, RunConfig, RunReport, Schedule, SimpleRequest, Target};
use procs::{free_port, wait_http_ok, Proc};
use targets::{Kind, Launch, Running};

/// A comparison to run.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// Report name (folder under `out`).
    pub name: String,
    /// Parent folder of reports.
    pub out: PathBuf,
    /// Targets, in table order (ratios are against the first).
    pub targets: Vec<Kind>,
    /// Offered rates.
    pub rates: Vec<f64>,
    /// Repetitions of every (rate, target).
    pub reps: usize,
    /// Measured length of each run.
    pub duration: Duration,
    /// Warmup of each run.
    pub warmup: Duration,
    /// Generator CPUs.
    pub generator_cpus: Option<Vec<usize>>,
    /// CPUs of the proxies (`taskset -c` list).
    pub target_cpus: String,
    /// CPUs of the upstream stub.
    pub upstream_cpus: String,
    /// Upstream response body size.
    pub body_bytes: usize,
    /// Connections the generator opens at start.
    pub conns: usize,
    /// Request path.
    pub path: String,
    /// The ringgate binary.
    pub ringgate: Option<PathBuf>,
    /// Also run oha (`--latency-correction`) against `direct` at each rate.
    pub oha: bool,
    /// The command line, recorded in the report.
    pub command_line: String,
    /// The ringbench binary that serves the upstream (default: this executable).
    pub ringbench: Option<PathBuf>,
    /// Self-check limits of every run.
    pub thresholds: crate::run::Thresholds,
}

fn ensure_dir(p: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)
}

fn start_upstream(
    cfg: &CompareConfig,
    work: &std::path::Path,
) -> std::io::Result<(Proc, std::net::SocketAddr)> {
    let exe = match &cfg.ringbench {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let args = vec![
        "upstream".into(),
        "--listen".into(),
        addr.to_string(),
        "--workers".into(),
        "1".into(),
        "--body-bytes".into(),
        cfg.body_bytes.to_string(),
        "--name".into(),
        "upstream".into(),
    ];
    let p = Proc::start(
        "upstream",
        &cfg.upstream_cpus,
        &exe.display().to_string(),
        &args,
        &work.join("upstream.log"),
    )?;
    if let Err(e) = wait_http_ok(addr, "/healthz", Duration::from_secs(10)) {
        p.stop(Duration::from_secs(2));
        return Err(e);
    }
    Ok((p, addr))
}

fn run_one(
    cfg: &CompareConfig,
    t: &Running,
    upstream_pid: u32,
    rate: f64,
) -> Result<RunReport, String> {
    let url = format!("http://{}{}", t.addr, cfg.path);
    let target = Target::parse(&url).map_err(|e| e.to_string())?;
    let plan = Plan::single(&target, &SimpleRequest::default()).map_err(|e| e.to_string())?;
    let mut rc = RunConfig::simple(target, plan, rate, cfg.warmup + cfg.duration);
    rc.schedule = Schedule::constant(rate, cfg.warmup + cfg.duration);
    rc.warmup = cfg.warmup;
    rc.cpus = cfg.generator_cpus.clone();
    rc.threads = cfg.generator_cpus.as_ref().map_or(1, |c| c.len().max(1));
    rc.conns = cfg.conns;
    rc.thresholds = cfg.thresholds;
    if t.kind == Kind::Direct {
        rc.target_pids = vec![upstream_pid];
    } else {
        rc.target_pids = t.pids();
        rc.other_pids = vec![("upstream".into(), vec![upstream_pid])];
    }
    run::run(&rc).map_err(|e| e.to_string())
}

fn environment(cfg: &CompareConfig, running: &[Running], skipped: &[(Kind, String)]) -> String {
    let mut o = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let _ = writeln!(o, "cpus: {cpus}\nkernel: {}\n{model}", kernel.trim());
    let _ = writeln!(o, "generator cpus: {:?}", cfg.generator_cpus);
    let _ = writeln!(
        o,
        "target cpus: {}\nupstream cpus: {}",
        cfg.target_cpus, cfg.upstream_cpus
    );
    for t in running {
        let _ = writeln!(o, "{}: {}", t.kind.name(), t.info);
    }
    for (k, why) in skipped {
        let _ = writeln!(o, "{}: NOT RUN: {why}", k.name());
    }
    o
}

/// Runs the comparison and writes the report folder; returns the Markdown summary.
pub fn compare(cfg: &CompareConfig) -> Result<String, String> {
    let dir = cfg.out.join(&cfg.name);
    let work = std::env::temp_dir().join(format!("ringbench-compare-{}", std::process::id()));
    for d in [&dir, &dir.join("runs"), &dir.join("plots"), &work] {
        ensure_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(dir.join("command.txt"), format!("{}\n", cfg.command_line))
        .map_err(|e| e.to_string())?;
    let (upstream, up_addr) = start_upstream(cfg, &work).map_err(|e| format!("upstream: {e}"))?;
    let launch = Launch {
        dir: work.clone(),
        cpus: cfg.target_cpus.clone(),
        upstream: up_addr,
        ringgate: cfg.ringgate.clone(),
    };
    let mut running = Vec::new();
    let mut skipped = Vec::new();
    for k in &cfg.targets {
        match targets::start(*k, &launch) {
            Ok(r) => running.push(r),
            Err(e) => {
                eprintln!("ringbench compare: {} not run: {e}", k.name());
                skipped.push((*k, e.to_string()));
            }
        }
    }
    let result = run_matrix(cfg, &dir, &running, upstream.pid());
    let env = environment(cfg, &running, &skipped);
    for r in running {
        r.stop();
    }
    upstream.stop(Duration::from_secs(3));
    let _ = std::fs::remove_dir_all(&work);
    let (reports, oha_lines) = result?;
    write_summary(cfg, &dir, &reports, &skipped, &env, &oha_lines)
}

type Matrix = (Vec<(f64, String, RunReport)>, Vec<String>);

fn run_matrix(
    cfg: &CompareConfig,
    dir: &std::path::Path,
    running: &[Running],
    upstream_pid: u32,
) -> Result<Matrix, String> {
    let mut reports = Vec::new();
    let mut oha_lines = Vec::new();
    for rep in 1..=cfg.reps {
        for rate in &cfg.rates {
            for t in running {
                let r = run_one(cfg, t, upstream_pid, *rate)?;
                println!(
                    "rep {rep} {:>8.0}/s {:<9} {:<17} p50 {:>8} p99 {:>8} cpu {:>6.1} us/req",
                    rate,
                    t.kind.name(),
                    r.verdict.name(),
                    crate::units::fmt_nanos(r.latency.response.p50_ns as f64),
                    crate::units::fmt_nanos(r.latency.response.p99_ns as f64),
                    r.target_cpu.as_ref().map_or(0.0, |c| c.us_per_success)
                );
                let file =
                    dir.join("runs")
                        .join(format!("{}-{:.0}-r{rep}.json", t.kind.name(), rate));
                let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
                std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
                reports.push((*rate, t.kind.name().to_string(), r));
                if cfg.oha && t.kind == Kind::Direct {
                    let line = oha::run_oha(
                        t.addr,
                        &cfg.path,
                        *rate,
                        cfg.duration,
                        cfg.conns,
                        cfg.generator_cpus.as_deref(),
                    );
                    println!("rep {rep} {rate:>8.0}/s oha       {line}");
                    oha_lines.push(format!("rep {rep} {rate:.0}/s: {line}"));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Ok((reports, oha_lines))
}

fn write_summary(
    cfg: &CompareConfig,
    dir: &std::path::Path,
    reports: &[(f64, String, RunReport)],
    skipped: &[(Kind, String)],
    env: &str,
    oha_lines: &[String],
) -> Result<String, String> {
    let mut rows = Vec::new();
    for rate in &cfg.rates {
        let mut plot_runs = Vec::new();
        for k in &cfg.targets {
            let runs: Vec<&RunReport> = reports
                .iter()
                .filter(|(r, t, _)| r == rate && t == k.name())
                .map(|x| &x.2)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let row = summary::row(*rate, k.name(), &runs);
            // Plot the run whose p50 is the row's median (or nearest).
            if let Some(best) = runs
                .iter()
                .min_by_key(|r| (r.latency.response.p50_ns as f64 - row.p50.median).abs() as u64)
            {
                plot_runs.push((k.name().to_string(), *best));
            }
            rows.push(row);
        }
        let svg = spectrum_svg(&plot_runs);
        std::fs::write(
            dir.join("plots").join(format!("spectrum-{rate:.0}.svg")),
            svg,
        )
        .map_err(|e| e.to_string())?;
    }
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", cfg.name);
    let _ = writeln!(md, "Produced by:\n\n```\n{}\n```\n", cfg.command_line);
    let _ = writeln!(
        md,
        "Open-model load (fixed arrivals, latency from intended send), {} s measured after {} s warmup, {} interleaved repetitions. Cells: median (min..max) over valid runs. CPU us/req: utime+stime of the target's processes over the measured window per successful request (for `direct`, the upstream stub itself); upstream us/req: the stub behind the proxy.",
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        cfg.reps
    );
    md.push_str(&summary::markdown(&rows, &cfg.rates));
    if !oha_lines.is_empty() {
        let _ = writeln!(
            md,
            "\n### oha --latency-correction against direct, same rates\n"
        );
        for l in oha_lines {
            let _ = writeln!(md, "- {l}");
        }
    }
    for (k, why) in skipped {
        let _ = writeln!(md, "\n{} was not run: {why}", k.name());
    }
    let _ = writeln!(md, "\n## Environment\n\n```\n{}```", env);
    std::fs::write(dir.join("summary.md"), &md).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("summary.json"), json).map_err(|e| e.to_string())?;
    Ok(md)
}
