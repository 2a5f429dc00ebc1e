//! `ringbench sweep`: latency against offered load. Runs the same scenario at increasing rates,
//! judges each step against an SLO (p99 at most X and failures below Y, on a valid run), and
//! reports the highest rate that held it, with a curve of p50 / p99 against offered rate.
//! Stops early once two steps in a row miss the SLO, or when the generator itself falls behind
//! (its figures would no longer describe the target).

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::run::{self, RunConfig, RunError, Schedule, Verdict};
use crate::units::{fmt_duration, fmt_nanos};

/// The service level a step must hold.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Slo {
    /// Highest acceptable p99 response time.
    #[serde(with = "crate::units::serde_duration")]
    pub p99: Duration,
    /// Highest acceptable share of failures (transport errors, timeouts, censored, 5xx).
    pub failures: f64,
}

/// One step of the sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// Offered rate.
    pub rate: f64,
    /// Achieved rate.
    pub achieved: f64,
    /// The run's verdict.
    pub verdict: Verdict,
    /// p50 (ns).
    pub p50_ns: u64,
    /// p99 (ns).
    pub p99_ns: u64,
    /// p99.9 (ns).
    pub p999_ns: u64,
    /// Max (ns).
    pub max_ns: u64,
    /// Failure share.
    pub failures: f64,
    /// Target CPU us per successful request, when accounted.
    pub cpu_us: Option<f64>,
    /// Whether the step held the SLO.
    pub holds: bool,
}

/// The whole sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepReport {
    /// Target.
    pub target: String,
    /// SLO.
    pub slo: Slo,
    /// Steps run, in order.
    pub points: Vec<Point>,
    /// Highest offered rate that held the SLO.
    pub best_rate: Option<f64>,
    /// Why the sweep stopped.
    pub stopped: String,
}

pub(crate) fn point(rate: f64, r: &run::RunReport, slo: &Slo) -> Point {
    let c = &r.counts;
    let failed = c.client_failures();
    let failures = if c.scheduled > 0 {
        failed as f64 / c.scheduled as f64
    } else {
        1.0
    };
    let p99 = r.latency.response.p99_ns;
    Point {
        rate,
        achieved: r.rates.achieved,
        verdict: r.verdict,
        p50_ns: r.latency.response.p50_ns,
        p99_ns: p99,
        p999_ns: r.latency.response.p999_ns,
        max_ns: r.latency.response.max_ns,
        failures,
        cpu_us: r.target_cpu.as_ref().map(|t| t.us_per_success),
        holds: r.verdict == Verdict::Valid
            && p99 <= slo.p99.as_nanos() as u64
            && failures < slo.failures,
    }
}

/// Runs `base` at each rate in turn (its schedule is replaced by a constant rate of
/// `warmup + duration`).
pub fn sweep(
    base: &RunConfig,
    rates: &[f64],
    duration: Duration,
    slo: Slo,
) -> Result<SweepReport, RunError> {
    let mut points = Vec::new();
    let mut misses = 0;
    let mut stopped = "all steps run".to_string();
    for &rate in rates {
        let mut cfg = base.clone();
        cfg.schedule = Schedule::constant(rate, base.warmup + duration);
        let r = run::run(&cfg)?;
        let p = point(rate, &r, &slo);
        println!(
            "sweep {rate:>9.0}/s  achieved {:>9.0}/s  p50 {:>8}  p99 {:>8}  failures {:.3}%  {}  {}",
            p.achieved,
            fmt_nanos(p.p50_ns as f64),
            fmt_nanos(p.p99_ns as f64),
            p.failures * 100.0,
            p.verdict.name(),
            if p.holds { "holds" } else { "misses" }
        );
        let limited = p.verdict == Verdict::GeneratorLimited;
        misses = if p.holds { 0 } else { misses + 1 };
        points.push(p);
        if limited {
            stopped = format!("generator limited at {rate:.0}/s: {}", r.reasons.join("; "));
            break;
        }
        if misses >= 2 {
            stopped = format!("two steps in a row missed the SLO (last {rate:.0}/s)");
            break;
        }
    }
    let best_rate = points.iter().take_while(|p| p.holds).last().map(|p| p.rate);
    Ok(SweepReport {
        target: base.target.url.clone(),
        slo,
        points,
        best_rate,
        stopped,
    })
}

/// The curve: p50 and p99 against offered rate, the SLO as a line, the best rate marked.
pub fn curve_svg(r: &SweepReport) -> String {
    let (w, h, l, b, t, rgt) = (800.0, 480.0, 80.0, 60.0, 40.0, 40.0);
    let max_rate = r.points.iter().map(|p| p.rate).fold(1.0, f64::max);
    let slo_ns = r.slo.p99.as_nanos() as f64;
    let max_ns = r
        .points
        .iter()
        .map(|p| p.p99_ns as f64)
        .fold(slo_ns, f64::max)
        .min(slo_ns * 10.0)
        * 1.1;
    let x = |rate: f64| l + (w - l - rgt) * rate / max_rate;
    let y = |ns: f64| h - b - (h - t - b) * (ns.min(max_ns) / max_ns);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="24" font-size="15">Latency against offered load: {}</text>"#,
        r.target
    );
    for i in 0..=5 {
        let ns = max_ns * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eee"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            y(ns),
            w - rgt,
            l - 6.0,
            y(ns) + 4.0,
            fmt_nanos(ns)
        );
        let rate = max_rate * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{rate:.0}/s</text>"#,
            x(rate),
            h - b + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{l}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#999" stroke-dasharray="6 4"/><text x="{1:.1}" y="{2:.1}" text-anchor="end">SLO p99 {3}</text>"##,
        y(slo_ns),
        w - rgt,
        y(slo_ns) - 4.0,
        fmt_duration(r.slo.p99)
    );
    for (name, color, get) in [
        (
            "p50",
            "#1f77b4",
            (|p: &Point| p.p50_ns) as fn(&Point) -> u64,
        ),
        ("p99", "#d62728", |p: &Point| p.p99_ns),
    ] {
        let pts: Vec<String> = r
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.rate), y(get(p) as f64)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        if let Some(last) = r.points.last() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{color}">{name}</text>"#,
                x(last.rate) + 4.0,
                y(get(last) as f64)
            );
        }
    }
    if let Some(best) = r.best_rate {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{t}" x2="{0:.1}" y2="{1:.1}" stroke="#2ca02c"/><text x="{2:.1}" y="{3:.1}" fill="#2ca02c">best {best:.0}/s</text>"##,
            x(best),
            h - b,
            x(best) + 4.0,
            t + 14.0
        );
    }
    s.push_str("</svg>\n");
    s
}
