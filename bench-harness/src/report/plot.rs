//! SVG percentile-spectrum plots: latency against percentile on the usual log scale of
//! 1/(1-p) (50%, 90%, 99%, 99.9% ... equally spaced), with latency on a log axis too (a 50 us
//! median and a 50 ms tail are both readable), one line per run, so several runs (targets,
//! rates) overlay on one chart. Plain SVG text, no dependency.

use std::fmt::Write as _;

use crate::run::RunReport;
use crate::units::fmt_nanos;

const W: f64 = 1000.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 290.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn x_of(percentile: f64, max_x: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(1e-7);
    let v = (1.0 / tail).log10();
    LEFT + (W - LEFT - RIGHT) * (v / max_x)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pct_label(i: i32) -> String {
    match i {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(i.max(3) as usize - 2)),
    }
}

/// The chart's scales: percentiles on x up to `1 - 10^-max_x`, decades `d0..d1` of time on y
/// (log scales both).
struct Scale {
    max_x: f64,
    d0: f64,
    d1: f64,
}

impl Scale {
    /// Scales that cover every point of every run's spectrum.
    fn of(runs: &[(String, &RunReport)]) -> Self {
        let values = || {
            runs.iter()
                .flat_map(|(_, r)| r.spectrum.iter().map(|p| p.value_ns.max(1)))
        };
        let hi = values().max().unwrap_or(1_000) as f64;
        let lo = values().min().unwrap_or(1) as f64;
        // Decades that cover every value.
        let (d0, d1) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let max_x = runs
            .iter()
            .flat_map(|(_, r)| r.spectrum.iter())
            .filter(|p| p.percentile < 100.0)
            .map(|p| (1.0 / (1.0 - p.percentile / 100.0).max(1e-7)).log10())
            .fold(2.0f64, f64::max)
            .ceil();
        Self { max_x, d0, d1 }
    }

    /// The y of a time of `ns` nanoseconds.
    fn y_of(&self, ns: f64) -> f64 {
        H - BOTTOM - (H - TOP - BOTTOM) * ((ns.max(1.0).log10() - self.d0) / (self.d1 - self.d0))
    }
}

/// Plots the response-time spectra of `runs` (label, report) on one chart.
pub fn spectrum_svg(runs: &[(String, &RunReport)]) -> String {
    let sc = Scale::of(runs);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15">Response time by percentile (from intended send; log scales)</text>"#
    );
    grid(&mut s, &sc);
    for (i, (label, r)) in runs.iter().enumerate() {
        series(&mut s, &sc, i, label, r);
    }
    s.push_str("</svg>\n");
    s
}

/// The grid: a line and label per percentile decade (x) and per time decade (y), and the
/// x axis title.
fn grid(s: &mut String, sc: &Scale) {
    for i in 0..=(sc.max_x as i32) {
        let pct = 100.0 * (1.0 - 10f64.powi(-i));
        let x = x_of(pct, sc.max_x);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM + 18.0,
            pct_label(i)
        );
    }
    let mut d = sc.d0;
    while d <= sc.d1 + 1e-9 {
        let ns = 10f64.powf(d);
        let y = sc.y_of(ns);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##,
            W - RIGHT
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_nanos(ns)
        );
        d += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0
    );
}

/// Run number `i`'s curve (`label`, report `r`), and its legend entry: colour, label, p50, p99,
/// max, verdict and offered rate.
fn series(s: &mut String, sc: &Scale, i: usize, label: &str, r: &RunReport) {
    let color = COLORS[i % COLORS.len()];
    let pts: Vec<String> = r
        .spectrum
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                x_of(p.percentile, sc.max_x),
                sc.y_of(p.value_ns as f64)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        pts.join(" ")
    );
    let ly = TOP + 20.0 + 50.0 * i as f64;
    let lx = W - RIGHT + 14.0;
    let _ = writeln!(
        s,
        r#"<rect x="{lx}" y="{:.1}" width="14" height="4" fill="{color}"/>"#,
        ly - 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#,
        lx + 20.0,
        escape(label)
    );
    let l = &r.latency.response;
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="10">p50 {} p99 {} max {}</text>"#,
        lx + 20.0,
        ly + 14.0,
        fmt_nanos(l.p50_ns as f64),
        fmt_nanos(l.p99_ns as f64),
        fmt_nanos(l.max_ns as f64)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="10">{} at {:.0}/s</text>"#,
        lx + 20.0,
        ly + 27.0,
        r.verdict.name(),
        r.rates.offered
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_are_exact() {
        assert_eq!(pct_label(0), "0%");
        assert_eq!(pct_label(1), "90%");
        assert_eq!(pct_label(2), "99%");
        assert_eq!(pct_label(5), "99.999%");
    }
}
