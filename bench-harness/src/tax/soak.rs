//! The soak: the scenario through a rung at a fixed share of its ceiling for a long time, with
//! the gateway sampled every second ([`super::sampler`]). The series go to `soak.csv` and
//! `soak.json`, one panel each in `soak.svg`, and a flatness verdict into `soak.md`: the
//! least-squares slope of RSS, open fds and upstream connections over the last 80% of the run
//! (the first 20% is warm-up: pools fill, allocator arenas grow), extrapolated to ten minutes,
//! against a stated threshold.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::bench::Bench;
use super::panels::{self, Series};
use super::sampler::{Sample, Sampler, Watch};
use super::{io_err, Rung, TaxConfig};
use crate::run::{self, RunReport};
use crate::units::fmt_nanos;

/// Growth over ten minutes a flat series may show: this share of its mean...
pub const FLAT_SHARE: f64 = 0.05;
/// ...or this many units, whichever is larger (fds and connections are small integers).
pub const FLAT_UNITS: f64 = 4.0;

/// One series' trend.
#[derive(Clone, Debug, Serialize)]
pub struct Trend {
    /// Series name.
    pub series: String,
    /// Mean over the fitted part.
    pub mean: f64,
    /// Slope extrapolated to ten minutes (units per 10 min).
    pub per_10min: f64,
    /// The largest flat growth per 10 min.
    pub limit: f64,
    /// Whether the series is flat.
    pub flat: bool,
}

/// The soak's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    /// Rung.
    pub rung: Rung,
    /// Offered rate.
    pub rate: f64,
    /// Samples.
    pub samples: Vec<Sample>,
    /// Trends of RSS, fds and upstream connections.
    pub trends: Vec<Trend>,
    /// All trends flat.
    pub flat: bool,
    /// The run.
    pub run: RunReport,
}

/// Least-squares slope of `(x, y)` (per unit of x); 0 with fewer than two points.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// The trend of one series over the last 80% of the samples.
pub fn trend(name: &str, samples: &[Sample], get: fn(&Sample) -> f64) -> Trend {
    let skip = samples.len() / 5;
    let pts: Vec<(f64, f64)> = samples[skip..].iter().map(|s| (s.t_s, get(s))).collect();
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len().max(1) as f64;
    let per_10min = slope(&pts) * 600.0;
    let limit = (mean * FLAT_SHARE).max(FLAT_UNITS);
    Trend {
        series: name.to_string(),
        mean,
        per_10min,
        limit,
        flat: per_10min <= limit,
    }
}

fn series(samples: &[Sample]) -> Vec<Series> {
    type Get = fn(&Sample) -> f64;
    let table: [(&str, &str, Get); 7] = [
        ("RSS", "MiB", |s| s.rss_kib as f64 / 1024.0),
        ("open fds", "count", |s| s.fds as f64),
        ("upstream connections", "established", |s| {
            s.upstream_conns as f64
        }),
        ("idle pooled connections", "count", |s| s.pool_idle),
        ("upstream reuse ratio", "share of requests", |s| {
            s.reuse_ratio
        }),
        ("event-loop lag (max over workers)", "ms", |s| s.loop_lag_ms),
        ("event-loop lag peak", "ms", |s| s.loop_lag_max_ms),
    ];
    table
        .iter()
        .map(|(t, u, get)| Series {
            title: (*t).to_string(),
            unit: (*u).to_string(),
            points: samples.iter().map(|s| (s.t_s, get(s))).collect(),
        })
        .collect()
}

/// The samples as CSV.
pub fn csv(samples: &[Sample]) -> String {
    let mut o = String::from(
        "t_s,rss_kib,fds,upstream_conns,client_conns,pool_idle,conns_new_total,conns_reused_total,reuse_ratio,loop_lag_ms,loop_lag_max_ms,metrics_ok\n",
    );
    for s in samples {
        let _ = writeln!(
            o,
            "{:.3},{},{},{},{},{},{},{},{:.4},{:.3},{:.3},{}",
            s.t_s,
            s.rss_kib,
            s.fds,
            s.upstream_conns,
            s.client_conns,
            s.pool_idle,
            s.conns_new_total,
            s.conns_reused_total,
            s.reuse_ratio,
            s.loop_lag_ms,
            s.loop_lag_max_ms,
            s.metrics_ok
        );
    }
    o
}

/// The soak as Markdown.
pub fn markdown(r: &SoakReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Soak of `{}` at {:.0}/s\n\n{} samples over {:.0} s; run verdict {}, p99 {}, {} errors, {} timeouts.\n",
        r.rung.name(),
        r.rate,
        r.samples.len(),
        r.samples.last().map_or(0.0, |s| s.t_s),
        r.run.verdict.name(),
        fmt_nanos(r.run.latency.response.p99_ns as f64),
        r.run.counts.errors,
        r.run.counts.timeouts
    );
    let _ = writeln!(
        o,
        "Flat means the least-squares slope over the last 80% of the samples, extrapolated to 10 minutes, grows by at most {:.0}% of the series' mean or {FLAT_UNITS:.0} units, whichever is larger.\n",
        FLAT_SHARE * 100.0
    );
    o.push_str("| series | mean | slope per 10 min | limit | flat |\n|---|---:|---:|---:|---|\n");
    for t in &r.trends {
        let _ = writeln!(
            o,
            "| {} | {:.1} | {:+.2} | {:.1} | {} |",
            t.series,
            t.mean,
            t.per_10min,
            t.limit,
            if t.flat { "yes" } else { "NO" }
        );
    }
    let _ = writeln!(
        o,
        "\nVerdict: {}. Series every second: `soak.csv`, `soak.json`; plotted in `soak.svg`.\n",
        if r.flat {
            "flat (no leak seen)"
        } else {
            "NOT flat: a series grows"
        }
    );
    o
}

/// Runs the soak of `rung` at `rate` for `duration` (sampling every `every`) on a running stand
/// and writes its files into the report folder.
pub fn soak(
    cfg: &TaxConfig,
    bench: &Bench,
    rung: Rung,
    rate: f64,
    duration: Duration,
    every: Duration,
) -> Result<SoakReport, String> {
    let gc = bench.gateway_config(rung, &format!("gateway-{}.toml", rung.name()))?;
    let gateway = bench.start_gateway(cfg, &gc)?;
    let watch = Watch {
        pid: gateway.pid(),
        listen: gc.listen,
        admin: gc.admin,
        upstream_ports: bench
            .endpoints
            .iter()
            .map(|a| a.port())
            .collect::<HashSet<_>>(),
    };
    let long = TaxConfig {
        duration,
        ..cfg.clone()
    };
    let sampled = bench.run_config(&long, gc.listen, rate).and_then(|mut rc| {
        rc.target_pids = gateway.tree();
        let sampler = Sampler::start(watch, every).map_err(io_err)?;
        let r = run::run(&rc).map_err(io_err);
        let samples = sampler.finish();
        Ok((r?, samples))
    });
    gateway.stop(Duration::from_secs(5));
    let (run, samples) = sampled?;
    let trends = vec![
        trend("RSS (KiB)", &samples, |s| s.rss_kib as f64),
        trend("open fds", &samples, |s| s.fds as f64),
        trend("upstream connections", &samples, |s| {
            s.upstream_conns as f64
        }),
    ];
    let r = SoakReport {
        rung,
        rate,
        flat: trends.iter().all(|t| t.flat),
        trends,
        samples,
        run,
    };
    let dir = &bench.dir;
    std::fs::write(dir.join("soak.csv"), csv(&r.samples)).map_err(io_err)?;
    let json = serde_json::to_string_pretty(&r).map_err(io_err)?;
    std::fs::write(dir.join("soak.json"), json).map_err(io_err)?;
    let title = format!(
        "ringgate {} soak at {:.0}/s, every second",
        rung.name(),
        rate
    );
    std::fs::write(
        dir.join("soak.svg"),
        panels::svg(&title, &series(&r.samples)),
    )
    .map_err(io_err)?;
    std::fs::write(dir.join("soak.md"), markdown(&r)).map_err(io_err)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 1.0))
            .collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 7.0)).collect();
        assert_eq!(slope(&flat), 0.0);
        assert_eq!(slope(&[(1.0, 2.0)]), 0.0);
    }
}
