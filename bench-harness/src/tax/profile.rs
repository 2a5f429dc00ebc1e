//! The profile at the ceiling: `perf record` (software event `cpu-clock`, since this VM has no
//! hardware counters, with call graphs) on the ringgate process while the scenario runs through
//! a rung, then `perf script` folded by [`super::flame`] into `profile.folded`, drawn as
//! `flame.svg`, and summarised in `profile.md`: how busy ringgate's cores were, the kernel and
//! user shares of its samples, the frames with the most self time, and what that says bounds
//! the rate, in words taken from those figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use super::bench::Bench;
use super::flame;
use super::{io_err, Rung, TaxConfig};
use crate::run::{self, RunReport};
use crate::sys;

/// Sampling frequency of `perf record` (Hz).
pub const FREQ: u32 = 999;

/// What the profile found.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    /// Rung.
    pub rung: Rung,
    /// Offered rate.
    pub rate: f64,
    /// `perf record` call-graph mode.
    pub call_graph: String,
    /// Samples in ringgate.
    pub samples: u64,
    /// Samples whose leaf frame is in the kernel.
    pub kernel_samples: u64,
    /// Top frames by self time: (frame, samples).
    pub top: Vec<(String, u64)>,
    /// ringgate's cores busy during the run (CPU seconds per second).
    pub cores_busy: Option<f64>,
    /// CPUs ringgate was allowed (its pinning), when pinned.
    pub cores_allowed: Option<usize>,
    /// The run.
    pub run: RunReport,
    /// What bounds the rate, in words from the figures.
    pub bound: String,
}

/// Whether `perf record` works here; the reason when not.
pub fn perf_usable(scratch: &Path) -> Result<(), String> {
    let out = scratch.join("perf-check.data");
    let st = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-g", "-o"])
        .arg(&out)
        .args(["--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("perf not runnable: {e}"))?;
    let _ = std::fs::remove_file(&out);
    if st.status.success() {
        Ok(())
    } else {
        let paranoid =
            std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").unwrap_or_default();
        Err(format!(
            "perf record failed (kernel.perf_event_paranoid = {}): {}",
            paranoid.trim(),
            String::from_utf8_lossy(&st.stderr).trim()
        ))
    }
}

/// The sentence on what bounds the rate.
pub fn bound_words(p: &ProfileReport) -> String {
    let kshare = p.kernel_samples as f64 / p.samples.max(1) as f64;
    let side = if kshare >= 0.5 {
        format!(
            "the kernel ({:.0}% of its samples: socket and TCP work, syscalls, scheduling)",
            kshare * 100.0
        )
    } else {
        format!(
            "ringgate's own code ({:.0}% of its samples in user space)",
            (1.0 - kshare) * 100.0
        )
    };
    let top = p
        .top
        .first()
        .map(|(f, n)| {
            format!(
                "; the hottest frame is `{f}` ({:.1}%)",
                100.0 * *n as f64 / p.samples.max(1) as f64
            )
        })
        .unwrap_or_default();
    if p.run.verdict == crate::run::Verdict::GeneratorLimited {
        return format!(
            "the load generator, not ringgate, fell behind at this rate ({}), so this run does not bound ringgate; of ringgate's time, most is {side}{top}.",
            p.run.reasons.join("; ")
        );
    }
    match (p.cores_busy, p.cores_allowed) {
        (Some(busy), Some(allowed)) if busy >= 0.85 * allowed as f64 => format!(
            "ringgate's CPU bounds the rate: it kept {busy:.2} of its {allowed} core(s) busy, and most of that time is {side}{top}."
        ),
        (Some(busy), Some(allowed)) => format!(
            "ringgate's CPU is not what bounds the rate: it kept only {busy:.2} of its {allowed} core(s) busy, so the SLO gave way elsewhere (latency tail from sharing the machine with the generator and upstreams, or the host's stalls); of its own time, most is {side}{top}."
        ),
        _ => format!("ringgate was not pinned, so its core budget is unknown; most of its time is {side}{top}."),
    }
}

/// Runs the scenario through `rung` at `rate` with `perf record` on ringgate, writes
/// `perf.data`-derived files into the report folder and returns the report.
pub fn profile(
    cfg: &TaxConfig,
    bench: &Bench,
    rung: Rung,
    rate: f64,
    call_graph: &str,
    inline: bool,
) -> Result<ProfileReport, String> {
    perf_usable(&bench.work)?;
    let gc = bench.gateway_config(rung, &format!("gateway-{}.toml", rung.name()))?;
    let gateway = bench.start_gateway(cfg, &gc)?;
    let data = bench.work.join("perf.data");
    let recorded = record(cfg, bench, &gateway, gc.listen, rate, call_graph, &data);
    gateway.stop(Duration::from_secs(5));
    let run = recorded?;
    // Inlined frames (most of a Rust release build) make `perf script` slow: minutes for a
    // large DWARF record, so they can be left out.
    let script = Command::new("perf")
        .arg("script")
        .arg(if inline { "--inline" } else { "--no-inline" })
        .arg("-i")
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("perf script: {e}"))?;
    let stacks = flame::fold_perf_script(&String::from_utf8_lossy(&script.stdout));
    let (selfs, samples) = flame::self_time(&stacks);
    let allowed = cfg.target_cpus.split(',').filter(|c| !c.is_empty()).count();
    let mut p = ProfileReport {
        rung,
        rate,
        call_graph: call_graph.to_string(),
        samples,
        kernel_samples: flame::kernel_samples(&stacks),
        top: selfs.into_iter().take(25).collect(),
        cores_busy: run.target_cpu.as_ref().map(|t| t.cores),
        cores_allowed: (allowed > 0).then_some(allowed),
        run,
        bound: String::new(),
    };
    p.bound = bound_words(&p);
    let dir = &bench.dir;
    std::fs::write(dir.join("profile.folded"), flame::folded_text(&stacks)).map_err(io_err)?;
    let title = format!(
        "ringgate {} at {rate:.0}/s: cpu-clock, call graph {call_graph}",
        rung.name()
    );
    std::fs::write(dir.join("flame.svg"), flame::svg(&title, &stacks)).map_err(io_err)?;
    let json = serde_json::to_string_pretty(&p).map_err(io_err)?;
    std::fs::write(dir.join("profile.json"), json).map_err(io_err)?;
    std::fs::write(dir.join("profile.md"), markdown(&p)).map_err(io_err)?;
    Ok(p)
}

fn record(
    cfg: &TaxConfig,
    bench: &Bench,
    gateway: &crate::compare::procs::Proc,
    listen: std::net::SocketAddr,
    rate: f64,
    call_graph: &str,
    data: &Path,
) -> Result<RunReport, String> {
    let mut rc = bench.run_config(cfg, listen, rate)?;
    rc.target_pids = gateway.tree();
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", &FREQ.to_string()])
        .args([
            "--call-graph",
            call_graph,
            "-p",
            &gateway.pid().to_string(),
            "-o",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf record: {e}"))?;
    let r = run::run(&rc).map_err(io_err);
    // perf writes its file on SIGINT.
    let _ = sys::signal(perf.id(), libc::SIGINT);
    let _ = perf.wait();
    r
}

/// The profile as Markdown.
pub fn markdown(p: &ProfileReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Profile of `{}` at {:.0}/s\n\n`perf record -e cpu-clock -F {FREQ} --call-graph {}` on the ringgate process for the run ({} samples; run verdict {}). Flame graph: `flame.svg`; folded stacks: `profile.folded`.\n",
        p.rung.name(),
        p.rate,
        p.call_graph,
        p.samples,
        p.run.verdict.name()
    );
    let k = 100.0 * p.kernel_samples as f64 / p.samples.max(1) as f64;
    let _ = writeln!(
        o,
        "Kernel {k:.1}% / user space {:.1}% of ringgate's samples (by leaf frame). Cores busy: {}.\n\n**What bounds it:** {}\n",
        100.0 - k,
        match (p.cores_busy, p.cores_allowed) {
            (Some(b), Some(a)) => format!("{b:.2} of {a}"),
            (Some(b), None) => format!("{b:.2}"),
            _ => "not accounted".into(),
        },
        p.bound
    );
    o.push_str("| frame (self time) | samples | share |\n|---|---:|---:|\n");
    for (f, n) in &p.top {
        let _ = writeln!(
            o,
            "| `{}` | {n} | {:.1}% |",
            f.replace('|', "\\|"),
            100.0 * *n as f64 / p.samples.max(1) as f64
        );
    }
    o
}
