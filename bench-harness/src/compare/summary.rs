//! The comparison summary: per rate and target, the median of each figure over the
//! repetitions, its spread (min..max), how many runs were valid, and ratios against the first
//! target. Medians are taken over valid runs when there are any; a row with no valid run is
//! marked INVALID rather than dropped.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::{RunReport, Verdict};
use crate::units::fmt_nanos;

/// Median and spread of one figure.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of a non-empty list (zeros when empty).
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// One (rate, target) cell.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Offered rate.
    pub rate: f64,
    /// Target name.
    pub target: String,
    /// Runs.
    pub runs: usize,
    /// Valid runs.
    pub valid: usize,
    /// Verdicts of every run, in order.
    pub verdicts: Vec<String>,
    /// Achieved rate.
    pub achieved: Spread,
    /// Response-time percentiles (ns).
    pub p50: Spread,
    /// 90th.
    pub p90: Spread,
    /// 99th.
    pub p99: Spread,
    /// 99.9th.
    pub p999: Spread,
    /// Max.
    pub max: Spread,
    /// Target CPU us per successful request (for `direct`: the upstream).
    pub cpu_us: Spread,
    /// Upstream CPU us per successful request behind a proxy.
    pub upstream_us: Spread,
    /// Errors + timeouts + censored over all runs.
    pub failed: u64,
    /// Why runs were not valid (distinct reasons).
    pub reasons: Vec<String>,
}

fn pick<'a>(runs: &[&'a RunReport]) -> Vec<&'a RunReport> {
    let valid: Vec<&RunReport> = runs
        .iter()
        .copied()
        .filter(|r| r.verdict == Verdict::Valid)
        .collect();
    if valid.is_empty() {
        runs.to_vec()
    } else {
        valid
    }
}

/// Summarises the runs of one (rate, target) cell.
pub fn row(rate: f64, target: &str, runs: &[&RunReport]) -> Row {
    let used = pick(runs);
    let sp = |f: &dyn Fn(&RunReport) -> f64| Spread::of(used.iter().map(|r| f(r)).collect());
    let account = |r: &RunReport, name: &str| {
        r.cpu_accounts
            .iter()
            .find(|a| a.name == name)
            .map_or(0.0, |a| a.us_per_success)
    };
    Row {
        rate,
        target: target.to_string(),
        runs: runs.len(),
        valid: runs.iter().filter(|r| r.verdict == Verdict::Valid).count(),
        verdicts: runs.iter().map(|r| r.verdict.name().to_string()).collect(),
        achieved: sp(&|r| r.rates.achieved),
        p50: sp(&|r| r.latency.response.p50_ns as f64),
        p90: sp(&|r| r.latency.response.p90_ns as f64),
        p99: sp(&|r| r.latency.response.p99_ns as f64),
        p999: sp(&|r| r.latency.response.p999_ns as f64),
        max: sp(&|r| r.latency.response.max_ns as f64),
        cpu_us: sp(&|r| account(r, "target")),
        upstream_us: sp(&|r| account(r, "upstream")),
        failed: runs
            .iter()
            .map(|r| r.counts.errors + r.counts.timeouts + r.counts.censored)
            .sum(),
        reasons: {
            let mut v: Vec<String> = runs
                .iter()
                .flat_map(|r| r.reasons.iter().cloned())
                .collect();
            v.dedup();
            v
        },
    }
}

fn lat(s: &Spread) -> String {
    format!(
        "{} ({}..{})",
        fmt_nanos(s.median),
        fmt_nanos(s.min),
        fmt_nanos(s.max)
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// The Markdown summary table (one section per rate).
pub fn markdown(rows: &[Row], rates: &[f64]) -> String {
    let mut o = String::new();
    for rate in rates {
        let cells: Vec<&Row> = rows.iter().filter(|r| r.rate == *rate).collect();
        let Some(first) = cells.first() else { continue };
        let _ = writeln!(o, "\n### {rate:.0} req/s offered\n");
        let _ = writeln!(
            o,
            "| target | valid | achieved/s | p50 | p99 | p99.9 | max | CPU us/req | upstream us/req | p50 vs {f} | p99 vs {f} | CPU vs {f} |",
            f = first.target
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &cells {
            let mark = if r.valid == 0 { " INVALID" } else { "" };
            let _ = writeln!(
                o,
                "| {}{mark} | {}/{} | {:.0} | {} | {} | {} | {} | {:.1} ({:.1}..{:.1}) | {} | {} | {} | {} |",
                r.target,
                r.valid,
                r.runs,
                r.achieved.median,
                lat(&r.p50),
                lat(&r.p99),
                fmt_nanos(r.p999.median),
                fmt_nanos(r.max.median),
                r.cpu_us.median,
                r.cpu_us.min,
                r.cpu_us.max,
                if r.upstream_us.median > 0.0 { format!("{:.1}", r.upstream_us.median) } else { "-".into() },
                ratio(r.p50.median, first.p50.median),
                ratio(r.p99.median, first.p99.median),
                ratio(r.cpu_us.median, first.cpu_us.median),
            );
        }
        for r in cells.iter().filter(|r| r.valid < r.runs) {
            let _ = writeln!(
                o,
                "\n{} at {rate:.0}/s: {} of {} runs not valid ({}): {}",
                r.target,
                r.runs - r.valid,
                r.runs,
                r.verdicts.join(", "),
                r.reasons.join("; ")
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_gives_median_and_range() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![1.0, 2.0, 3.0, 4.0]).median, 2.5);
        assert_eq!(Spread::of(vec![]).median, 0.0);
    }
}
