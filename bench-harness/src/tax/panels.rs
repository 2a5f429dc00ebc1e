//! Small-multiple time series in one hand-drawn SVG: one panel per series, stacked, each with
//! its own y range, sharing the time axis. The soak report draws with it.

use std::fmt::Write as _;

/// One series: a title, a unit for the axis, and `(t_s, value)` points (NaN values skipped).
pub struct Series {
    /// Panel title.
    pub title: String,
    /// Unit shown beside the values.
    pub unit: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

fn fmt_val(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The panels, `title` on top.
pub fn svg(title: &str, series: &[Series]) -> String {
    let (w, ph, top, l, r) = (760.0, 120.0, 36.0, 90.0, 20.0);
    let h = top + ph * series.len() as f64 + 30.0;
    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let x = |t: f64| l + (w - l - r) * t / t_max;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{l}" y="20" font-size="14">{}</text>"#,
        esc(title)
    );
    for (i, s) in series.iter().enumerate() {
        let y0 = top + ph * i as f64;
        let (pt, pb) = (y0 + 18.0, y0 + ph - 12.0);
        let vals = s.points.iter().map(|p| p.1).filter(|v| v.is_finite());
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            let lo = if lo >= 0.0 { 0.0 } else { lo };
            (lo, if hi > lo { hi * 1.05 } else { lo + 1.0 })
        } else {
            (0.0, 1.0)
        };
        let y = |v: f64| pb - (pb - pt) * (v - lo) / (hi - lo);
        let _ = writeln!(
            o,
            r##"<text x="{l}" y="{:.1}" font-weight="bold">{} ({})</text><rect x="{l}" y="{pt:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#ccc"/>"##,
            y0 + 13.0,
            esc(&s.title),
            esc(&s.unit),
            w - l - r,
            pb - pt
        );
        for v in [lo, hi] {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                l - 6.0,
                y(v) + 4.0,
                fmt_val(v)
            );
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = writeln!(
            o,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            pts.join(" ")
        );
    }
    let base = top + ph * series.len() as f64;
    for i in 0..=5 {
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"#,
            x(t),
            base + 4.0
        );
    }
    o.push_str("</svg>\n");
    o
}

/// XML text escape.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
