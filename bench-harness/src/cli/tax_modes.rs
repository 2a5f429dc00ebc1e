//! The modes of `ringbench tax` beyond the ladder: `--mode ceiling,profile,soak,rolling` (any
//! subset, run in that order on one stand). The ceiling found (or given with `--ceiling`) sets
//! the profile's rate and the soak's (`--soak-share` of it); the rolling restart runs at
//! `--rate`. Everything is written into the report folder beside a `modes.md` summary.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::tax::bench::Bench;
use crate::tax::ceiling::{self, CeilingConfig};
use crate::tax::{profile, rolling, soak, Rung, TaxConfig};
use crate::units::{parse_duration, parse_rate};

/// Options of the ceiling, soak, profile and rolling-restart modes.
#[derive(Debug, Args)]
pub struct ModeArgs {
    /// What to run: `ladder` (the tax table), or any of `ceiling`, `profile`, `soak`,
    /// `rolling` (comma-separated; run in that order).
    #[arg(long, value_delimiter = ',', default_value = "ladder")]
    pub mode: Vec<String>,
    /// Rung of the ceiling, profile, soak and rolling modes (default: the fullest rung built).
    #[arg(long)]
    pub rung: Option<String>,
    /// Ceiling SLO: added p99 over direct must stay under this (default 1ms for passthrough,
    /// 2ms for fuller rungs); no failures and valid runs are required too.
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Ceiling search: first rate (doubled until a step misses, then bisected).
    #[arg(long, value_parser = parse_rate, default_value = "250")]
    pub start_rate: f64,
    /// Ceiling search: highest rate tried.
    #[arg(long, value_parser = parse_rate, default_value = "64000")]
    pub max_rate: f64,
    /// Ceiling search: bisection steps after the first miss.
    #[arg(long, default_value_t = 4)]
    pub bisect: usize,
    /// A known ceiling (skips the search for `profile` and `soak`).
    #[arg(long, value_parser = parse_rate)]
    pub ceiling: Option<f64>,
    /// Soak rate as a share of the ceiling.
    #[arg(long, default_value_t = 0.8)]
    pub soak_share: f64,
    /// Soak length.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub soak_duration: Duration,
    /// Soak sampling interval.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub sample_every: Duration,
    /// Profile: `perf record --call-graph` mode (fp, dwarf, lbr).
    #[arg(long, default_value = "fp")]
    pub call_graph: String,
    /// Profile: leave inlined functions out of the stacks (`perf script --no-inline`: much
    /// faster on a large `--call-graph dwarf` record, coarser frames).
    #[arg(long)]
    pub no_inline_frames: bool,
    /// Rolling restart: the binary the new processes run (default: --ringgate).
    #[arg(long)]
    pub new_ringgate: Option<PathBuf>,
}

const MODES: [&str; 4] = ["ceiling", "profile", "soak", "rolling"];

/// Whether the ladder (not a mode) was asked for.
pub fn is_ladder(m: &ModeArgs) -> bool {
    m.mode.iter().all(|x| x == "ladder")
}

fn rung_of(m: &ModeArgs) -> Result<Rung, String> {
    let rung = match &m.rung {
        None => Rung::full_chain(),
        Some(r) => Rung::parse(r).ok_or_else(|| format!("unknown rung {r:?}"))?,
    };
    if rung == Rung::Direct {
        return Err("these modes measure a gateway rung, not direct".into());
    }
    Ok(rung)
}

/// Runs the modes; returns the exit code (1 when a rolling restart saw client errors or a
/// mode failed, 4 when no rate held the SLO).
pub fn run(m: &ModeArgs, cfg: &TaxConfig) -> i32 {
    if let Some(bad) = m.mode.iter().find(|x| !MODES.contains(&x.as_str())) {
        eprintln!("ringbench tax: unknown mode {bad:?} (ladder, or any of {MODES:?})");
        return 2;
    }
    let rung = match rung_of(m) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringbench tax: {e}");
            return 2;
        }
    };
    let dir = cfg.out.join(&cfg.name);
    let bench = match Bench::up(cfg, &dir, rung) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringbench tax: {e}");
            return 1;
        }
    };
    let code = run_modes(m, cfg, &bench, rung);
    bench.down();
    println!("written to {}", dir.display());
    code
}

/// Appends a part of `modes.md`, a blank line after it.
fn section(md: &mut String, part: &str) {
    md.push_str(part.trim_end());
    md.push_str("\n\n");
}

fn run_modes(m: &ModeArgs, cfg: &TaxConfig, bench: &Bench, rung: Rung) -> i32 {
    let want = |x: &str| m.mode.iter().any(|y| y == x);
    let cpus = |c: &str| {
        if c.is_empty() {
            "unpinned".to_string()
        } else {
            format!("CPU {c}")
        }
    };
    let mut md = format!(
        "# ringbench tax modes: {}\n\nCommand: `{}`\n\nPlacement: generator {}, ringgate {}, stub upstreams {}; the stall meter and the soak's sampler unpinned. Where the generator shares a core with the stubs, a run it could not keep is marked generator-limited by its verdict.\n\n",
        m.mode.join(", "),
        cfg.command_line,
        cfg.generator_cpus.as_ref().map_or("unpinned".to_string(), |c| {
            let list: Vec<String> = c.iter().map(ToString::to_string).collect();
            cpus(&list.join(","))
        }),
        cpus(&cfg.target_cpus),
        cpus(&cfg.upstream_cpus),
    );
    let mut code = 0;
    let mut ceiling = m.ceiling;
    let needs = want("ceiling") || ((want("profile") || want("soak")) && ceiling.is_none());
    let result = (|| -> Result<(), String> {
        if needs {
            let cc = CeilingConfig {
                rung,
                budget: m.budget.unwrap_or_else(|| ceiling::default_budget(rung)),
                start_rate: m.start_rate,
                max_rate: m.max_rate,
                bisect: m.bisect,
            };
            let r = ceiling::ceiling(cfg, &cc, bench)?;
            section(&mut md, &ceiling::markdown(&r));
            ceiling = r.ceiling;
            if ceiling.is_none() {
                code = 4;
            }
        }
        if ceiling.is_none() && (want("profile") || want("soak")) {
            md.push_str(
                "\nProfile and soak skipped: no rate held the SLO (give --ceiling RATE).\n",
            );
        }
        if let (true, Some(c)) = (want("profile"), ceiling) {
            let p = profile::profile(cfg, bench, rung, c, &m.call_graph, !m.no_inline_frames)?;
            section(&mut md, &profile::markdown(&p));
        }
        if let (true, Some(c)) = (want("soak"), ceiling) {
            let s = soak::soak(
                cfg,
                bench,
                rung,
                c * m.soak_share,
                m.soak_duration,
                m.sample_every,
            )?;
            section(&mut md, &soak::markdown(&s));
        }
        if want("rolling") {
            let r = rolling::rolling(cfg, bench, rung, cfg.rate, m.new_ringgate.as_deref())?;
            section(&mut md, &rolling::markdown(&r));
            if r.client_errors > 0 || r.handoffs.iter().any(|h| !h.completed) {
                code = 1;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("ringbench tax: {e}");
        md.push_str(&format!("\n**Stopped:** {e}\n"));
        code = 1;
    }
    if std::fs::write(bench.dir.join("modes.md"), &md).is_err() {
        code = 2;
    }
    println!("{md}");
    code
}
