//! The ceiling of a rung: the highest offered rate at which it holds its SLO. At each step the
//! scenario runs straight to the upstreams and then through the rung at the same rate; the step
//! holds when both runs are valid by ringbench's verdict, the rung has no failures, and its p99
//! exceeds direct's by less than the budget (1 ms for passthrough, 2 ms for anything fuller). The
//! rate doubles until a step misses, then the interval is bisected. A stall meter runs beside it
//! ([`super::stalls`]); a missed step whose window held a host stall at least as long as the
//! budget is marked, since the host alone could then have decided its p99. Latencies are those
//! of the scenario's `api` group (the small requests) when it has one: a 10 MiB transfer's time
//! is bandwidth, not the tax, and would decide the mix's p99 on its own.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench::Bench;
use super::stalls::{StallLog, StallMeter, StallSummary};
use super::{io_err, Rung, TaxConfig};
use crate::compare::procs::Proc;
use crate::run;
use crate::sweep::{self, Point, Slo, SweepReport};
use crate::units::{fmt_duration, fmt_nanos};

/// Stalls shorter than this are not recorded one by one.
const STALL_FLOOR: Duration = Duration::from_micros(200);

/// What to search.
#[derive(Clone, Debug)]
pub struct CeilingConfig {
    /// Rung whose ceiling is sought (not `direct`).
    pub rung: Rung,
    /// Added p99 budget over direct (default: [`default_budget`]).
    pub budget: Duration,
    /// First rate tried.
    pub start_rate: f64,
    /// Highest rate tried.
    pub max_rate: f64,
    /// Bisection steps after the first miss.
    pub bisect: usize,
}

/// The SLO's added-p99 budget of a rung: 1 ms for passthrough, 2 ms for a fuller chain.
pub fn default_budget(rung: Rung) -> Duration {
    if rung == Rung::Passthrough {
        Duration::from_millis(1)
    } else {
        Duration::from_millis(2)
    }
}

/// One step: direct and the rung at one rate.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Offered rate.
    pub rate: f64,
    /// Straight to the upstreams.
    pub direct: Point,
    /// Through the rung.
    pub gateway: Point,
    /// The rung's p99 minus direct's (ns, may be negative).
    pub added_p99_ns: i64,
    /// Whether the step held the SLO.
    pub holds: bool,
    /// Why it missed (empty when it held).
    pub reason: String,
    /// Host stalls during the rung's run.
    pub stalls: StallSummary,
    /// The step missed and the host stalled at least the budget during it.
    pub host_stalled: bool,
}

/// The search's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingReport {
    /// Rung.
    pub rung: Rung,
    /// Added p99 budget (ns).
    pub budget_ns: u64,
    /// Steps in the order run.
    pub steps: Vec<Step>,
    /// Highest rate that held.
    pub ceiling: Option<f64>,
}

fn judge(step: &mut Step, budget: Duration) {
    let mut why = Vec::new();
    if step.direct.verdict != run::Verdict::Valid {
        why.push(format!("direct run {}", step.direct.verdict.name()));
    }
    if step.gateway.verdict != run::Verdict::Valid {
        why.push(format!("{} run", step.gateway.verdict.name()));
    }
    if step.gateway.failures > 0.0 {
        why.push(format!("{:.3}% failures", step.gateway.failures * 100.0));
    }
    if step.added_p99_ns >= budget.as_nanos() as i64 {
        why.push(format!(
            "added p99 {} over {}",
            fmt_nanos(step.added_p99_ns as f64),
            fmt_duration(budget)
        ));
    }
    step.holds = why.is_empty();
    step.reason = why.join("; ");
    step.host_stalled = !step.holds && step.stalls.max_ns >= budget.as_nanos() as u64;
}

/// Runs one step (direct, then the rung on the running `gateway`).
fn step(
    cfg: &TaxConfig,
    bench: &Bench,
    gateway: (&Proc, std::net::SocketAddr),
    rate: f64,
    log: &mut Vec<(Instant, Instant)>,
) -> Result<(Point, Point), String> {
    // Points are judged here only for failures and verdicts; the p99 bound is the budget's.
    let slo = Slo {
        p99: Duration::from_secs(3600),
        failures: 1.0,
    };
    let mut d = bench.run_config(cfg, bench.direct(), rate)?;
    d.target_pids = vec![bench.upstream.pid()];
    let direct = run::run(&d).map_err(io_err)?;
    let mut g = bench.run_config(cfg, gateway.1, rate)?;
    g.target_pids = gateway.0.tree();
    g.other_pids = vec![("upstream".into(), vec![bench.upstream.pid()])];
    let t0 = Instant::now();
    let through = run::run(&g).map_err(io_err)?;
    log.push((t0, Instant::now()));
    Ok((
        api_view(sweep::point(rate, &direct, &slo), &direct),
        api_view(sweep::point(rate, &through, &slo), &through),
    ))
}

/// The latency group the SLO is judged on.
pub const SLO_GROUP: &str = "api";

/// `p` with the latencies of the run's [`SLO_GROUP`] when it has one.
fn api_view(mut p: Point, r: &crate::run::RunReport) -> Point {
    if let Some(g) = r.groups.iter().find(|g| g.name == SLO_GROUP) {
        p.p50_ns = g.response.p50_ns;
        p.p99_ns = g.response.p99_ns;
        p.p999_ns = g.response.p999_ns;
        p.max_ns = g.response.max_ns;
    }
    p
}

/// Searches the ceiling of `cc.rung` on a running stand; `gateway` is ringgate on that rung's
/// config and its listen address.
pub fn search(
    cfg: &TaxConfig,
    cc: &CeilingConfig,
    bench: &Bench,
    gateway: (&Proc, std::net::SocketAddr),
) -> Result<CeilingReport, String> {
    let meter = StallMeter::start(STALL_FLOOR).map_err(io_err)?;
    let mut windows = Vec::new();
    let mut raw = Vec::new();
    let (mut lo, mut hi) = (0.0_f64, None::<f64>);
    let mut rate = cc.start_rate;
    let mut left = cc.bisect;
    loop {
        let (direct, through) = step(cfg, bench, gateway, rate, &mut windows)?;
        let added = through.p99_ns as i64 - direct.p99_ns as i64;
        let mut s = Step {
            rate,
            direct,
            gateway: through,
            added_p99_ns: added,
            holds: false,
            reason: String::new(),
            stalls: StallSummary::default(),
            host_stalled: false,
        };
        judge(&mut s, cc.budget);
        println!(
            "ceiling {:>8.0}/s  direct p99 {:>8}  {} p99 {:>8}  added {:>8}  {}",
            rate,
            fmt_nanos(s.direct.p99_ns as f64),
            cc.rung.name(),
            fmt_nanos(s.gateway.p99_ns as f64),
            signed(added),
            if s.holds { "holds" } else { &s.reason }
        );
        if s.holds {
            lo = lo.max(rate);
        } else {
            hi = Some(hi.map_or(rate, |h: f64| h.min(rate)));
        }
        raw.push(s);
        rate = match hi {
            None if rate * 2.0 <= cc.max_rate => rate * 2.0,
            None => break,
            Some(_) if left == 0 => break,
            Some(h) => {
                left -= 1;
                let mid = ((lo + h) / 2.0).round();
                if mid <= lo || mid >= h {
                    break;
                }
                mid
            }
        };
    }
    let log = meter.finish();
    attach_stalls(&mut raw, &windows, &log, cc.budget);
    let ceiling = raw
        .iter()
        .filter(|s| s.holds)
        .map(|s| s.rate)
        .reduce(f64::max);
    Ok(CeilingReport {
        rung: cc.rung,
        budget_ns: cc.budget.as_nanos() as u64,
        steps: raw,
        ceiling,
    })
}

fn attach_stalls(steps: &mut [Step], windows: &[(Instant, Instant)], log: &StallLog, b: Duration) {
    for (s, (from, to)) in steps.iter_mut().zip(windows) {
        s.stalls = log.window(*from, *to);
        judge(s, b);
    }
}

/// A signed duration in ns, readably.
fn signed(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", fmt_nanos(ns.unsigned_abs() as f64))
    } else {
        fmt_nanos(ns as f64)
    }
}

/// The ceiling as Markdown: the steps, the stalls, the outcome.
pub fn markdown(r: &CeilingReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Ceiling of `{}`\n\nSLO: added p99 over direct under {}, no failures, both runs valid. Latencies: the scenario's `{SLO_GROUP}` group (small requests) when it has one, else the whole mix.\n",
        r.rung.name(),
        fmt_nanos(r.budget_ns as f64)
    );
    let _ = writeln!(
        o,
        "| offered/s | direct p99 | {} p99 | added p99 | host stall max (count >= 200 us) | outcome |\n|---:|---:|---:|---:|---:|---|",
        r.rung.name()
    );
    let mut steps: Vec<&Step> = r.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    for s in &steps {
        let outcome = match (s.holds, s.host_stalled) {
            (true, _) => "holds".to_string(),
            (false, true) => format!(
                "misses: {} (the host stalled {}: the VM, not the gateway, may have decided this p99)",
                s.reason,
                fmt_nanos(s.stalls.max_ns as f64)
            ),
            (false, false) => format!("misses: {}", s.reason),
        };
        let _ = writeln!(
            o,
            "| {:.0} | {} | {} | {} | {} ({}) | {outcome} |",
            s.rate,
            fmt_nanos(s.direct.p99_ns as f64),
            fmt_nanos(s.gateway.p99_ns as f64),
            signed(s.added_p99_ns),
            fmt_nanos(s.stalls.max_ns as f64),
            s.stalls.stalls
        );
    }
    let stalled = steps.iter().filter(|s| s.host_stalled).count();
    let _ = writeln!(
        o,
        "\nCeiling: {}. {}\n\nHost stalls: a ringbench thread sleeps 1 ms in a loop (unpinned) and records how late each wake-up comes; lateness counts VM stalls and CPU contention on this host alike.\n",
        r.ceiling
            .map_or("no rate held the SLO".to_string(), |c| format!("{c:.0}/s")),
        if stalled == 0 {
            "No missed step coincided with a host stall as long as the budget.".to_string()
        } else {
            format!("{stalled} missed step(s) coincided with a host stall at least as long as the budget: there the VM, not the gateway, may have decided the p99.")
        }
    );
    o
}

/// The rung's added latency (p50 and p99 over direct's, floored at 0) against offered rate,
/// drawn by the sweep's plot with the budget as its SLO line.
pub fn curve(r: &CeilingReport) -> String {
    let mut steps: Vec<&Step> = r.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let points = steps
        .iter()
        .map(|s| Point {
            p50_ns: s.gateway.p50_ns.saturating_sub(s.direct.p50_ns),
            p99_ns: s.added_p99_ns.max(0) as u64,
            holds: s.holds,
            ..s.gateway.clone()
        })
        .collect();
    sweep::curve_svg(&SweepReport {
        target: format!("ringgate {} over direct (added)", r.rung.name()),
        slo: Slo {
            p99: Duration::from_nanos(r.budget_ns),
            failures: 0.0,
        },
        points,
        best_rate: r.ceiling,
        stopped: String::new(),
    })
}

/// Runs the search on a fresh stand and writes `ceiling.md`, `ceiling.json` and `ceiling.svg`
/// into the report folder; returns the report.
pub fn ceiling(
    cfg: &TaxConfig,
    cc: &CeilingConfig,
    bench: &Bench,
) -> Result<CeilingReport, String> {
    let gc = bench.gateway_config(cc.rung, &format!("gateway-{}.toml", cc.rung.name()))?;
    let gateway = bench.start_gateway(cfg, &gc)?;
    let r = search(cfg, cc, bench, (&gateway, gc.listen));
    gateway.stop(Duration::from_secs(5));
    let r = r?;
    let dir = &bench.dir;
    std::fs::write(dir.join("ceiling.md"), markdown(&r)).map_err(io_err)?;
    let json = serde_json::to_string_pretty(&r).map_err(io_err)?;
    std::fs::write(dir.join("ceiling.json"), json).map_err(io_err)?;
    std::fs::write(dir.join("ceiling.svg"), curve(&r)).map_err(io_err)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Verdict;

    fn point(verdict: Verdict, p99_ns: u64, failures: f64) -> Point {
        Point {
            rate: 100.0,
            achieved: 100.0,
            verdict,
            p50_ns: p99_ns / 2,
            p99_ns,
            p999_ns: p99_ns,
            max_ns: p99_ns,
            failures,
            cpu_us: None,
            holds: true,
        }
    }

    fn step(direct: Point, gateway: Point, stall_ns: u64) -> Step {
        let mut s = Step {
            rate: 100.0,
            added_p99_ns: gateway.p99_ns as i64 - direct.p99_ns as i64,
            direct,
            gateway,
            holds: false,
            reason: String::new(),
            stalls: StallSummary {
                max_ns: stall_ns,
                ..StallSummary::default()
            },
            host_stalled: false,
        };
        judge(&mut s, Duration::from_millis(1));
        s
    }

    #[test]
    fn a_step_holds_only_valid_without_failures_and_under_the_budget() {
        let ok = step(
            point(Verdict::Valid, 900_000, 0.0),
            point(Verdict::Valid, 1_800_000, 0.0),
            0,
        );
        assert!(ok.holds && ok.reason.is_empty(), "{ok:?}");
        let over = step(
            point(Verdict::Valid, 900_000, 0.0),
            point(Verdict::Valid, 1_900_000, 0.0),
            0,
        );
        assert!(!over.holds && over.reason.contains("added p99"), "{over:?}");
        let failing = step(
            point(Verdict::Valid, 1, 0.0),
            point(Verdict::Valid, 2, 0.001),
            0,
        );
        assert!(!failing.holds && failing.reason.contains("failures"));
        let invalid = step(
            point(Verdict::GeneratorLimited, 1, 0.0),
            point(Verdict::Valid, 2, 0.0),
            0,
        );
        assert!(!invalid.holds && invalid.reason.contains("direct run"));
    }

    #[test]
    fn a_missed_step_is_marked_when_the_host_stalled_as_long_as_the_budget() {
        let calm = step(
            point(Verdict::Valid, 0, 0.0),
            point(Verdict::Valid, 3_000_000, 0.0),
            400_000,
        );
        assert!(!calm.host_stalled);
        let stalled = step(
            point(Verdict::Valid, 0, 0.0),
            point(Verdict::Valid, 3_000_000, 0.0),
            5_000_000,
        );
        assert!(stalled.host_stalled);
        let held = step(
            point(Verdict::Valid, 0, 0.0),
            point(Verdict::Valid, 10, 0.0),
            5_000_000,
        );
        assert!(
            held.holds && !held.host_stalled,
            "a step that held is not blamed on the host"
        );
        assert!(markdown(&CeilingReport {
            rung: Rung::Passthrough,
            budget_ns: 1_000_000,
            steps: vec![stalled],
            ceiling: None,
        })
        .contains("the VM, not the gateway, may have decided this p99"));
    }
}
