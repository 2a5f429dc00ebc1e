//! Rolling restart: two ringgate processes behind the load, each on its own port with its own
//! handoff socket; the generator spreads its connections over both ([`crate::run::RunConfig`]'s
//! `also_at`). While the scenario runs, each is upgraded in turn with the binary handoff (a new
//! process started with `--handoff SOCK --takeover` takes the listening sockets; the old one
//! drains and exits). The harness counts every client-visible failure (transport errors,
//! timeouts, censored requests, 5xx) and writes `rolling.md` / `rolling.json`: the figure must
//! be zero.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench::{Bench, GatewayConfig};
use super::{io_err, Rung, TaxConfig};
use crate::compare::procs::{wait_http_ok, Proc};
use crate::run::{self, RunReport};

/// One binary handoff.
#[derive(Clone, Debug, Serialize)]
pub struct Handoff {
    /// Which gateway (0 or 1).
    pub gateway: usize,
    /// Its listen address.
    pub listen: SocketAddr,
    /// PID before.
    pub old_pid: u32,
    /// PID after.
    pub new_pid: u32,
    /// Client connections the old process held just before.
    pub clients_before: u64,
    /// Client connections the old process accepted between the start of the load and its
    /// upgrade (its admin `ringgate_connections_accepted_total`, less the count before the load;
    /// `None` when the admin API did not answer): the load reached it.
    pub accepted_before: Option<u64>,
    /// Seconds into the run when the new process was started.
    pub started_s: f64,
    /// Seconds the old process took to exit after the new one started.
    pub old_exited_after_s: f64,
    /// The new process said it took over the sockets, the old one exited and the address
    /// answers (only the new process holds the listener then).
    pub completed: bool,
}

/// The rolling restart's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RollingReport {
    /// Rung.
    pub rung: Rung,
    /// Offered rate.
    pub rate: f64,
    /// Handoffs in order.
    pub handoffs: Vec<Handoff>,
    /// Client-visible failures: errors + timeouts + censored + 5xx.
    pub client_errors: u64,
    /// The run.
    pub run: RunReport,
}

struct Slot {
    /// Connections accepted before the load (the readiness probe's).
    accepted_base: Option<u64>,
    gc: GatewayConfig,
    sock: PathBuf,
    generation: usize,
    proc: Proc,
}

fn start(
    cfg: &TaxConfig,
    binary: &Path,
    bench: &Bench,
    i: usize,
    gc: &GatewayConfig,
    gen: usize,
    sock: &Path,
) -> Result<Proc, String> {
    let mut extra = vec!["--handoff".to_string(), sock.display().to_string()];
    if gen > 0 {
        extra.push("--takeover".into());
    }
    bench.start_ringgate(cfg, binary, gc, &extra, &format!("ringgate-{i}-{gen}.log"))
}

/// Client connections a process accepted so far, from its admin API.
fn accepted(admin: SocketAddr) -> Option<u64> {
    let m = super::sampler::scrape(admin)?;
    Some(super::sampler::metric_sum(&m, "ringgate_connections_accepted_total") as u64)
}

fn wait_for(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Upgrades `slot` in place: a new process takes its sockets, the old one drains and exits.
fn upgrade(
    cfg: &TaxConfig,
    binary: &Path,
    bench: &Bench,
    i: usize,
    slot: &mut Slot,
    t0: Instant,
) -> Result<Handoff, String> {
    let gen = slot.generation + 1;
    let clients_before = super::sampler::client_conns(slot.proc.pid(), slot.gc.listen.port());
    let accepted_before = accepted(slot.gc.admin)
        .zip(slot.accepted_base)
        .map(|(now, base)| now.saturating_sub(base));
    let started = Instant::now();
    let new = start(cfg, binary, bench, i, &slot.gc, gen, &slot.sock)?;
    let mut old = std::mem::replace(&mut slot.proc, new);
    slot.generation = gen;
    let exited = wait_for(cfg.duration + Duration::from_secs(10), || !old.alive());
    let old_exited_after_s = started.elapsed().as_secs_f64();
    let log = bench.work.join(format!("ringgate-{i}-{gen}.log"));
    let said = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("took over");
    // The admin API answers /healthz on every rung (the listener may want TLS or a token).
    let answers = wait_http_ok(slot.gc.admin, "/healthz", Duration::from_secs(5)).is_ok();
    let h = Handoff {
        gateway: i,
        listen: slot.gc.listen,
        old_pid: old.pid(),
        new_pid: slot.proc.pid(),
        clients_before,
        accepted_before,
        started_s: started.duration_since(t0).as_secs_f64(),
        old_exited_after_s,
        completed: exited && said && answers && slot.proc.alive(),
    };
    old.stop(Duration::from_secs(2));
    println!(
        "rolling: gateway {i} pid {} -> {} at {:.1} s ({})",
        h.old_pid,
        h.new_pid,
        h.started_s,
        if h.completed {
            "handed over"
        } else {
            "handoff INCOMPLETE"
        }
    );
    Ok(h)
}

/// The restarts, spaced evenly over the measured window, while `load` runs.
fn roll(
    cfg: &TaxConfig,
    binary: &Path,
    bench: &Bench,
    slots: &mut [Slot],
    t0: Instant,
) -> Result<Vec<Handoff>, String> {
    let mut out = Vec::new();
    let n = slots.len() as u32;
    for (i, slot) in slots.iter_mut().enumerate() {
        let at = cfg.warmup + cfg.duration * (i as u32 + 1) / (n + 1);
        let now = t0.elapsed();
        if at > now {
            std::thread::sleep(at - now);
        }
        out.push(upgrade(cfg, binary, bench, i, slot, t0)?);
    }
    Ok(out)
}

/// Runs the rolling restart of two gateways on `rung` at `rate` (the new processes run
/// `new_binary`, default the same binary) and writes the report files.
pub fn rolling(
    cfg: &TaxConfig,
    bench: &Bench,
    rung: Rung,
    rate: f64,
    new_binary: Option<&Path>,
) -> Result<RollingReport, String> {
    let mut slots = Vec::new();
    for i in 0..2 {
        let gc = bench.gateway_config(rung, &format!("gateway-{}-{i}.toml", rung.name()))?;
        let sock = bench.work.join(format!("handoff-{i}.sock"));
        let proc = start(cfg, &cfg.ringgate, bench, i, &gc, 0, &sock)?;
        let mut slot = Slot {
            accepted_base: None,
            gc,
            sock,
            generation: 0,
            proc,
        };
        let up = wait_http_ok(slot.gc.admin, "/healthz", Duration::from_secs(15)).is_ok()
            && wait_for(Duration::from_secs(5), || slot.sock.exists());
        slot.accepted_base = accepted(slot.gc.admin);
        slots.push(slot);
        if !up {
            stop_all(slots);
            return Err(format!(
                "ringgate {i} did not come up with its handoff socket"
            ));
        }
    }
    let result = with_load(
        cfg,
        bench,
        rate,
        new_binary.unwrap_or(&cfg.ringgate),
        &mut slots,
    );
    stop_all(slots);
    let (run, handoffs) = result?;
    let r = RollingReport {
        rung,
        rate,
        handoffs,
        client_errors: run.counts.client_failures(),
        run,
    };
    std::fs::write(bench.dir.join("rolling.md"), markdown(&r)).map_err(io_err)?;
    let json = serde_json::to_string_pretty(&r).map_err(io_err)?;
    std::fs::write(bench.dir.join("rolling.json"), json).map_err(io_err)?;
    Ok(r)
}

fn with_load(
    cfg: &TaxConfig,
    bench: &Bench,
    rate: f64,
    binary: &Path,
    slots: &mut [Slot],
) -> Result<(RunReport, Vec<Handoff>), String> {
    let mut rc = bench.run_config(cfg, slots[0].gc.listen, rate)?;
    rc.also_at = slots[1..].iter().map(|s| s.gc.listen).collect();
    rc.conns = rc.conns.max(2 * slots.len());
    let t0 = Instant::now();
    let load = std::thread::spawn(move || run::run(&rc));
    let handoffs = roll(cfg, binary, bench, slots, t0);
    let run = load
        .join()
        .map_err(|_| "the load thread panicked".to_string())?
        .map_err(io_err)?;
    Ok((run, handoffs?))
}

fn stop_all(slots: Vec<Slot>) {
    for s in slots {
        s.proc.stop(Duration::from_secs(5));
    }
}

/// The rolling restart as Markdown.
pub fn markdown(r: &RollingReport) -> String {
    let mut o = String::new();
    let c = &r.run.counts;
    let _ = writeln!(
        o,
        "## Rolling restart of `{}` at {:.0}/s\n\nTwo ringgate processes, connections spread over both; each upgraded in turn with the binary handoff while the scenario ran.\n",
        r.rung.name(),
        r.rate
    );
    o.push_str("| gateway | listen | old pid | connections it accepted / held | new pid | started at | old exited after | handed over |\n|---:|---|---:|---:|---:|---:|---:|---|\n");
    for h in &r.handoffs {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} / {} | {} | {:.1} s | {:.1} s | {} |",
            h.gateway,
            h.listen,
            h.old_pid,
            h.accepted_before.map_or("?".into(), |n| n.to_string()),
            h.clients_before,
            h.new_pid,
            h.started_s,
            h.old_exited_after_s,
            if h.completed { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(
        o,
        "\n**Client-visible errors: {}** (transport errors {}, timeouts {}, censored {}, 5xx {}) of {} requests scheduled; run verdict {}.\n",
        r.client_errors,
        c.errors,
        c.timeouts,
        c.censored,
        r.client_errors - c.errors - c.timeouts - c.censored,
        c.scheduled,
        r.run.verdict.name()
    );
    o
}
