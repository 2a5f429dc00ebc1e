//! SVG percentile-spectrum plots: latency against percentile on the usual log scale of
//! 1/(1-p) (50%, 90%, 99%, 99.9% ... equally spaced), one line per run, so several runs (targets,
//! rates) overlay on one chart. Plain SVG text, no dependency.

use std::fmt::Write as _;

use crate::run::RunReport;
use crate::units::fmt_nanos;

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn x_of(percentile: f64, max_x: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(1e-7);
    let v = (1.0 / tail).log10();
    LEFT + (W - LEFT - RIGHT) * (v / max_x)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Plots the response-time spectra of `runs` (label, report) on one chart.
pub fn spectrum_svg(runs: &[(String, &RunReport)]) -> String {
    let max_ns = runs
        .iter()
        .flat_map(|(_, r)| r.spectrum.iter().map(|p| p.value_ns))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_x = runs
        .iter()
        .flat_map(|(_, r)| r.spectrum.iter())
        .filter(|p| p.percentile < 100.0)
        .map(|p| (1.0 / (1.0 - p.percentile / 100.0).max(1e-7)).log10())
        .fold(2.0f64, f64::max)
        .ceil();
    let y_of = |ns: f64| H - BOTTOM - (H - TOP - BOTTOM) * (ns / (max_ns * 1.05));
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="24" font-size="15">Response time by percentile (from intended send)</text>"#);
    for i in 0..=(max_x as i32) {
        let pct = 100.0 * (1.0 - 10f64.powi(-i));
        let x = x_of(pct, max_x);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, H - BOTTOM);
        let label = if i == 0 { "0%".to_string() } else { format!("{pct}%") };
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, H - BOTTOM + 18.0);
    }
    for i in 0..=5 {
        let ns = max_ns * 1.05 * i as f64 / 5.0;
        let y = y_of(ns);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##, W - RIGHT);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, fmt_nanos(ns));
    }
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#, (LEFT + W - RIGHT) / 2.0, H - 16.0);
    for (i, (label, r)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = r
            .spectrum
            .iter()
            .filter(|p| p.percentile < 100.0)
            .map(|p| format!("{:.1},{:.1}", x_of(p.percentile, max_x), y_of(p.value_ns as f64)))
            .collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        let ly = TOP + 20.0 + 36.0 * i as f64;
        let lx = W - RIGHT + 14.0;
        let _ = writeln!(s, r#"<rect x="{lx}" y="{:.1}" width="14" height="4" fill="{color}"/>"#, ly - 4.0);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#, lx + 20.0, escape(label));
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{} p50 {} p99 {}</text>"#,
            lx + 20.0,
            ly + 14.0,
            r.verdict.name(),
            fmt_nanos(r.latency.response.p50_ns as f64),
            fmt_nanos(r.latency.response.p99_ns as f64)
        );
    }
    s.push_str("</svg>\n");
    s
}
