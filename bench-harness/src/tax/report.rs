//! The tax table: per rung and gateway (ringgate, then each peer that has the rung's features,
//! see [`super::peers::supports`]), the median over repetitions of p50/p99/p99.9 response time, the
//! latency added over `direct` at each percentile, and CPU per request of the gateway and of the
//! upstreams, with how many runs were valid. Written as `summary.md` and `summary.json` beside
//! the generated config, scenario and every run's JSON, with `plots/spectrum.svg` overlaying
//! each rung's median run. With a counting build (`--alloc-ringgate`), ringgate's rows also give
//! heap allocations per request.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::accounting::{account, Accounting};
use super::features::Expect;
use super::peers::{supports, Peer};
use super::topology::Topology;
use super::{Rung, RungRun, TaxConfig};
use crate::compare::summary::Spread;
use crate::run::Verdict;
use crate::units::fmt_nanos;

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct TaxRow {
    /// Rung.
    pub rung: Rung,
    /// The gateway serving it (`None` for `direct`).
    pub peer: Option<Peer>,
    /// Runs, and how many were valid.
    pub runs: usize,
    /// Valid runs (figures are medians over these when there are any, else over all).
    pub valid: usize,
    /// Response time percentiles (ns).
    pub p50_ns: Spread,
    /// 99th.
    pub p99_ns: Spread,
    /// 99.9th.
    pub p999_ns: Spread,
    /// Median minus direct's median at p50 (ns; 0 for direct).
    pub added_p50_ns: f64,
    /// At p99.
    pub added_p99_ns: f64,
    /// At p99.9.
    pub added_p999_ns: f64,
    /// CPU us per successful request of the rung's target: the gateway, or for `direct` the
    /// upstream stubs.
    pub target_cpu_us: Spread,
    /// CPU us per successful request of the upstream stubs behind the gateway (0 for direct).
    pub upstream_cpu_us: Spread,
    /// Achieved rate (completions inside the window per second).
    pub achieved: Spread,
    /// Answers the request kind did not expect (see [`super::accounting`]), transport errors
    /// and timeouts, summed over runs. A 401 to a bad token or a 429 to the noisy consumer is
    /// expected on the rungs with auth or limits and is not a failure.
    pub failures: u64,
    /// Heap allocations per request (median over the counting passes; ringgate only).
    pub allocs_per_req: Option<f64>,
    /// Share of responses that were 401 (over all runs).
    pub share_401: f64,
    /// Share of responses that were 429.
    pub share_429: f64,
    /// Expected and unexpected answers, summed over runs, with the key rotation's evidence.
    pub accounting: Accounting,
    /// Runs in which the key rotation happened (auth rungs: every run).
    pub rotations: usize,
    /// Response time per request group of the scenario (api, bulk, stream), with what the rung
    /// adds over direct's same group.
    pub groups: Vec<GroupCell>,
}

/// One request group's latency on one row.
#[derive(Clone, Debug, Serialize)]
pub struct GroupCell {
    /// Group name.
    pub name: String,
    /// p50 (ns).
    pub p50_ns: Spread,
    /// p99 (ns).
    pub p99_ns: Spread,
    /// Median minus direct's median at p50 (ns).
    pub added_p50_ns: f64,
    /// At p99.
    pub added_p99_ns: f64,
}

/// The groups of `used` runs, in the order the first run names them.
fn group_cells(used: &[&&RungRun]) -> Vec<GroupCell> {
    let Some(first) = used.first() else {
        return Vec::new();
    };
    first
        .report
        .groups
        .iter()
        .map(|g| {
            let of = |f: &dyn Fn(&crate::run::report::Summary) -> f64| {
                Spread::of(
                    used.iter()
                        .filter_map(|r| r.report.groups.iter().find(|x| x.name == g.name))
                        .map(|x| f(&x.response))
                        .collect(),
                )
            };
            GroupCell {
                name: g.name.clone(),
                p50_ns: of(&|s| s.p50_ns as f64),
                p99_ns: of(&|s| s.p99_ns as f64),
                added_p50_ns: 0.0,
                added_p99_ns: 0.0,
            }
        })
        .collect()
}

/// The whole summary.
#[derive(Clone, Debug, Serialize)]
pub struct TaxSummary {
    /// Report name.
    pub name: String,
    /// The command line.
    pub command_line: String,
    /// Topology seed.
    pub seed: u64,
    /// Routes, upstreams, replicas, request kinds.
    pub routes: usize,
    /// Upstreams.
    pub upstreams: usize,
    /// Replicas per upstream.
    pub replicas: usize,
    /// Request kinds of the scenario.
    pub request_kinds: usize,
    /// Offered rate.
    pub rate: f64,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Repetitions.
    pub reps: usize,
    /// Where each part ran (`taskset -c` lists; empty: unpinned).
    pub placement: String,
    /// Peers asked for (besides ringgate).
    pub peers: Vec<Peer>,
    /// One row per rung and gateway, ladder order, ringgate first within a rung.
    pub rows: Vec<TaxRow>,
}

fn account_us(r: &crate::run::RunReport, name: &str) -> f64 {
    r.cpu_accounts
        .iter()
        .find(|a| a.name == name)
        .map_or(0.0, |a| a.us_per_success)
}

fn row(rung: Rung, peer: Peer, runs: &[&RungRun], expects: &[Expect]) -> TaxRow {
    let mut acc = Accounting::default();
    for r in runs {
        acc.add(&account(expects, rung.features(), &r.report));
    }
    let valid: Vec<&&RungRun> = runs
        .iter()
        .filter(|r| r.report.verdict == Verdict::Valid)
        .collect();
    let used: Vec<&&RungRun> = if valid.is_empty() {
        runs.iter().collect()
    } else {
        valid.clone()
    };
    let fig = |f: &dyn Fn(&crate::run::RunReport) -> f64| {
        Spread::of(used.iter().map(|r| f(&r.report)).collect())
    };
    let allocs: Vec<f64> = runs.iter().filter_map(|r| r.allocs_per_req).collect();
    TaxRow {
        rung,
        peer: rung.features().map(|_| peer),
        runs: runs.len(),
        valid: valid.len(),
        p50_ns: fig(&|r| r.latency.response.p50_ns as f64),
        p99_ns: fig(&|r| r.latency.response.p99_ns as f64),
        p999_ns: fig(&|r| r.latency.response.p999_ns as f64),
        added_p50_ns: 0.0,
        added_p99_ns: 0.0,
        added_p999_ns: 0.0,
        target_cpu_us: fig(&|r| account_us(r, "target")),
        upstream_cpu_us: fig(&|r| account_us(r, "upstream")),
        achieved: fig(&|r| r.rates.achieved),
        failures: acc.unexpected,
        allocs_per_req: (!allocs.is_empty()).then(|| Spread::of(allocs).median),
        share_401: acc.share(acc.status_401),
        share_429: acc.share(acc.status_429),
        accounting: acc,
        rotations: runs.iter().filter(|r| r.rotation.is_some()).count(),
        groups: group_cells(&used),
    }
}

/// The rows of `runs`, in the order of `rungs` (within a rung: ringgate, then the peers in the
/// order they ran), with added latency against `direct`; the scenario's kinds expect `expects`
/// (in scenario order).
pub fn rows(rungs: &[Rung], runs: &[RungRun], expects: &[Expect]) -> Vec<TaxRow> {
    let mut rows = Vec::new();
    for rung in rungs {
        let mut peers: Vec<Peer> = vec![Peer::Ringgate];
        for r in runs.iter().filter(|r| r.rung == *rung) {
            if !peers.contains(&r.peer) {
                peers.push(r.peer);
            }
        }
        for peer in peers {
            let mine: Vec<&RungRun> = runs
                .iter()
                .filter(|r| r.rung == *rung && r.peer == peer)
                .collect();
            if !mine.is_empty() {
                rows.push(row(*rung, peer, &mine, expects));
            }
        }
    }
    if let Some(d) = rows.iter().find(|r| r.rung == Rung::Direct).cloned() {
        for r in &mut rows {
            r.added_p50_ns = r.p50_ns.median - d.p50_ns.median;
            r.added_p99_ns = r.p99_ns.median - d.p99_ns.median;
            r.added_p999_ns = r.p999_ns.median - d.p999_ns.median;
            for g in &mut r.groups {
                if let Some(dg) = d.groups.iter().find(|x| x.name == g.name) {
                    g.added_p50_ns = g.p50_ns.median - dg.p50_ns.median;
                    g.added_p99_ns = g.p99_ns.median - dg.p99_ns.median;
                }
            }
        }
    }
    rows
}

fn added(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", fmt_nanos(-ns))
    } else {
        format!("+{}", fmt_nanos(ns))
    }
}

/// The Markdown table of `s`.
pub fn markdown(s: &TaxSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", s.name);
    let _ = writeln!(md, "Produced by:\n\n```\n{}\n```\n", s.command_line);
    let _ = writeln!(
        md,
        "Topology: seed {}, {} routes to {} upstreams of {} replicas, {} request kinds \
         (`gateway.toml`, `scenario.toml` in this folder). Open-model load at {} req/s, {} s \
         measured per run, {} repetition(s) of the ladder, interleaved. Cells: median over valid \
         runs (over all runs when none was valid). Added: the rung's median minus direct's, per \
         percentile. CPU us/req: utime+stime over the measured window per successful request, of \
         the rung's target (ringgate; for `direct`, the stub upstreams) and of the stubs behind \
         it. `direct` sends to the first replica's port (every replica is a port of the same stub \
         process, so it answers alike); through ringgate the load spreads over all of them.\n",
        s.seed, s.routes, s.upstreams, s.replicas, s.request_kinds, s.rate, s.duration_s, s.reps
    );
    let _ = writeln!(md, "Placement: {}.\n", s.placement);
    md.push_str(&peers_note(s));
    let _ = writeln!(
        md,
        "| rung | gateway | valid | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | target CPU us/req | upstream CPU us/req | allocs/req | achieved/s | failures | 401 | 429 |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &s.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {:.0} | {} | {:.1}% | {:.1}% |",
            r.rung.name(),
            r.peer.map_or("-", Peer::name),
            r.valid,
            r.runs,
            fmt_nanos(r.p50_ns.median),
            fmt_nanos(r.p99_ns.median),
            fmt_nanos(r.p999_ns.median),
            added(r.added_p50_ns),
            added(r.added_p99_ns),
            added(r.added_p999_ns),
            r.target_cpu_us.median,
            r.upstream_cpu_us.median,
            r.allocs_per_req.map_or("-".into(), |a| format!("{a:.1}")),
            r.achieved.median,
            r.failures,
            r.share_401 * 100.0,
            r.share_429 * 100.0
        );
    }
    md.push_str(&group_table(s));
    md.push_str(&notes(s));
    md
}

/// Added latency per request group: the small API requests apart from 1-10 MiB transfers and
/// streams, whose time is mostly bandwidth.
fn group_table(s: &TaxSummary) -> String {
    let Some(names) = s
        .rows
        .first()
        .map(|r| r.groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>())
        .filter(|n| !n.is_empty())
    else {
        return String::new();
    };
    let mut md = String::from(
        "\nBy request group (api: small requests; bulk: 1-10 MiB uploads and downloads; stream: \
         chunked and SSE responses): median p50 and p99, and what the rung adds over direct's \
         same group.\n\n| rung | gateway |",
    );
    for n in &names {
        let _ = write!(md, " {n} p50 | {n} p99 | {n} added p50 | {n} added p99 |");
    }
    md.push_str(
        "
|---|---|",
    );
    md.push_str(&"---|---|---|---|".repeat(names.len()));
    md.push('\n');
    for r in &s.rows {
        let _ = write!(
            md,
            "| {} | {} |",
            r.rung.name(),
            r.peer.map_or("-", Peer::name)
        );
        for n in &names {
            match r.groups.iter().find(|g| &g.name == n) {
                Some(g) => {
                    let _ = write!(
                        md,
                        " {} | {} | {} | {} |",
                        fmt_nanos(g.p50_ns.median),
                        fmt_nanos(g.p99_ns.median),
                        added(g.added_p50_ns),
                        added(g.added_p99_ns)
                    );
                }
                None => md.push_str(" - | - | - | - |"),
            }
        }
        md.push('\n');
    }
    md
}

/// What the columns after the latencies count, and the key rotation's evidence per rung.
fn notes(s: &TaxSummary) -> String {
    let mut md = String::from(
        "\nFailures: answers the request kind did not expect, transport errors and timeouts. \
         Where auth is on, expired, forged and missing tokens are meant to get 401; where limits \
         are on, the noisy consumer is meant to get 429 once past its tier's rate: those count \
         in the 401 and 429 columns (share of all responses), not as failures.\n",
    );
    let rotated: Vec<&TaxRow> = s.rows.iter().filter(|r| r.rotations > 0).collect();
    if rotated.is_empty() {
        return md;
    }
    md.push_str(
        "\nKey rotation, halfway through each auth run (a key added, the oldest dropped, then a \
         reload): tokens of the new key refused before it and accepted after, the dropped \
         key's accepted before and refused after.\n\n\
         | rung | rotations | new key 401 | new key 2xx | dropped key 2xx | dropped key 401 |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in rotated {
        let a = &r.accounting;
        let _ = writeln!(
            md,
            "| {} | {}/{} | {} | {} | {} | {} |",
            r.rung.name(),
            r.rotations,
            r.runs,
            a.next_key_401,
            a.next_key_ok,
            a.retiring_ok,
            a.retiring_401
        );
    }
    md
}

/// What the peer rows are and which (peer, rung) pairs have none.
fn peers_note(s: &TaxSummary) -> String {
    let mut o = String::from(
        "Gateway: who served the rung. A peer (nginx, HAProxy) gets a row at a rung only when it \
         has every feature of that rung and of the rungs below it (rungs are cumulative), so each \
         row does the same work as ringgate's on the rung; configs are in `peers/`. allocs/req: \
         heap allocations per request of a ringgate built with `--features count-alloc`, from a \
         separate short pass per rung (`-`: not measured).",
    );
    let mut rungs: Vec<Rung> = s.rows.iter().map(|r| r.rung).collect();
    rungs.dedup();
    for peer in &s.peers {
        let missing: Vec<&str> = rungs
            .iter()
            .filter(|r| r.features().is_some() && !supports(*peer, **r))
            .map(|r| r.name())
            .collect();
        if !missing.is_empty() {
            let _ = write!(o, " No {} rows at: {}.", peer.name(), missing.join(", "));
        }
    }
    o.push_str("\n\n");
    o
}

/// The percentile spectra of each rung's run whose p50 is nearest its row's median.
fn spectrum(rows: &[TaxRow], runs: &[RungRun]) -> String {
    let picked: Vec<(String, &crate::run::RunReport)> = rows
        .iter()
        .filter_map(|row| {
            runs.iter()
                .filter(|r| r.rung == row.rung && row.peer.is_none_or(|p| p == r.peer))
                .min_by_key(|r| {
                    (r.report.latency.response.p50_ns as f64 - row.p50_ns.median).abs() as u64
                })
                .map(|r| (label(row), &r.report))
        })
        .collect();
    crate::report::plot::spectrum_svg(&picked)
}

fn label(row: &TaxRow) -> String {
    match row.peer {
        None | Some(Peer::Ringgate) => row.rung.name().to_string(),
        Some(p) => format!("{} {}", p.name(), row.rung.name()),
    }
}

/// Builds the summary of `runs` and writes `summary.md` and `summary.json` into `dir`.
pub fn write(
    cfg: &TaxConfig,
    t: &Topology,
    dir: &Path,
    runs: &[RungRun],
) -> Result<String, String> {
    let s = TaxSummary {
        name: cfg.name.clone(),
        command_line: cfg.command_line.clone(),
        seed: t.seed,
        routes: t.routes.len(),
        upstreams: t.upstreams.len(),
        replicas: t.replicas,
        request_kinds: t.requests.len(),
        rate: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        reps: cfg.reps.max(1),
        placement: format!(
            "generator cpus {:?}, ringgate cpus [{}], stub upstream cpus [{}]; {} cores online",
            cfg.generator_cpus,
            cfg.target_cpus,
            cfg.upstream_cpus,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        peers: cfg.peers.clone(),
        rows: rows(
            &cfg.rungs,
            runs,
            &t.requests.iter().map(|k| k.expect).collect::<Vec<_>>(),
        ),
    };
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| e.to_string())?;
    std::fs::write(plots.join("spectrum.svg"), spectrum(&s.rows, runs))
        .map_err(|e| e.to_string())?;
    let md = markdown(&s);
    std::fs::write(dir.join("summary.md"), &md).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("summary.json"), json).map_err(|e| e.to_string())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::report::{Counts, GeneratorReport, Latencies, Rates, TargetCpuReport};
    use crate::run::RunReport;

    fn run(rung: Rung, verdict: Verdict, p50: u64, p99: u64, cpu: f64) -> RungRun {
        let mut latency = Latencies::default();
        latency.response.p50_ns = p50;
        latency.response.p99_ns = p99;
        latency.response.p999_ns = p99 * 2;
        let counts = Counts {
            completed: 10,
            success: 8,
            errors: 1,
            ..Counts::default()
        };
        RungRun {
            rung,
            peer: Peer::Ringgate,
            allocs_per_req: None,
            rep: 1,
            report: RunReport {
                tool: "ringbench".into(),
                version: String::new(),
                verdict,
                reasons: Vec::new(),
                target: String::new(),
                started_unix_s: 0.0,
                tls: None,
                window_s: 1.0,
                load: String::new(),
                counts,
                rates: Rates::default(),
                latency,
                spectrum: Vec::new(),
                kinds: Vec::new(),
                groups: Vec::new(),
                generator: GeneratorReport::default(),
                target_cpu: None,
                cpu_accounts: vec![TargetCpuReport {
                    name: "target".into(),
                    us_per_success: cpu,
                    ..TargetCpuReport::default()
                }],
                response_hist: None,
                intervals: Vec::new(),
            },
            rotation: None,
        }
    }

    #[test]
    fn added_latency_is_median_over_valid_runs_minus_directs() {
        let runs = vec![
            run(Rung::Direct, Verdict::Valid, 100, 1_000, 5.0),
            run(Rung::Direct, Verdict::Valid, 300, 3_000, 7.0),
            run(Rung::Direct, Verdict::Valid, 200, 2_000, 6.0),
            run(Rung::Passthrough, Verdict::Valid, 500, 4_000, 20.0),
            run(
                Rung::Passthrough,
                Verdict::TargetSaturated,
                90_000,
                900_000,
                99.0,
            ),
            run(Rung::Passthrough, Verdict::Valid, 700, 6_000, 30.0),
        ];
        let rows = rows(&[Rung::Direct, Rung::Passthrough], &runs, &[]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].added_p50_ns, rows[0].added_p99_ns), (0.0, 0.0));
        let p = &rows[1];
        assert_eq!((p.runs, p.valid), (3, 2));
        assert_eq!(p.added_p50_ns, 400.0);
        assert_eq!(p.added_p99_ns, 3_000.0);
        assert_eq!(p.added_p999_ns, 6_000.0);
        assert_eq!(p.target_cpu_us.median, 25.0);
        // 2 non-2xx responses and 1 transport error in each of the three runs.
        assert_eq!(p.failures, 9);
        let md = markdown(&TaxSummary {
            name: "t".into(),
            command_line: "ringbench tax".into(),
            seed: 1,
            routes: 1,
            upstreams: 1,
            replicas: 1,
            request_kinds: 1,
            rate: 1.0,
            duration_s: 1.0,
            reps: 3,
            placement: "unpinned".into(),
            peers: vec![Peer::Nginx],
            rows,
        });
        assert!(md.contains("| passthrough | ringgate | 2/3 |"), "{md}");
        assert!(md.contains("| direct | - | 3/3 |"), "{md}");
    }
}
