//! The stub upstream's service-time distributions: how long a response is held back after its
//! request arrived. Parsed from one compact string (`fixed:2ms`, `lognormal:2ms,p99=10ms`, ...)
//! so the command line, scenario files and tests say the same thing, and able to report its own
//! quantiles so a test can compare what the generator measured with what was injected.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rng::{normal_quantile, Rng};
use crate::units::{fmt_duration, parse_duration, UnitError};

/// A latency distribution. Draws are clamped at zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LatencyDist {
    /// Always the same delay (`fixed:2ms`, or just `2ms`; `0` means no delay).
    Fixed(Duration),
    /// Uniform between two bounds (`uniform:1ms..3ms`).
    Uniform {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// Normal, truncated at zero (`normal:2ms,500us` = mean, standard deviation).
    Normal {
        /// Mean.
        mean: Duration,
        /// Standard deviation.
        stddev: Duration,
    },
    /// Log-normal (`lognormal:2ms,p99=10ms` = median and 99th percentile, or
    /// `lognormal:2ms,sigma=0.5`): the long right tail real services have.
    LogNormal {
        /// The median (e^mu).
        median: Duration,
        /// The standard deviation of the underlying normal.
        sigma: f64,
    },
    /// A percentile table, linearly interpolated (`table:50=1ms,90=3ms,99=10ms,100=20ms`);
    /// percentile 0 is taken as zero delay unless given.
    Table(Vec<(f64, Duration)>),
}

impl Default for LatencyDist {
    fn default() -> Self {
        LatencyDist::Fixed(Duration::ZERO)
    }
}

/// A latency distribution string that does not parse.
#[derive(Debug, Error, PartialEq)]
pub enum LatencyError {
    /// Unknown distribution name.
    #[error("unknown latency distribution {0:?}: use fixed, uniform, normal, lognormal or table")]
    Kind(String),
    /// Wrong parameters for the named distribution.
    #[error("latency {kind}: {msg} (example: {example})")]
    Params {
        /// Distribution name.
        kind: &'static str,
        /// What is wrong.
        msg: String,
        /// A valid example.
        example: &'static str,
    },
    /// A duration inside the string.
    #[error(transparent)]
    Unit(#[from] UnitError),
}

impl LatencyDist {
    /// True when every draw is zero (the fast path: no timer at all).
    pub fn is_zero(&self) -> bool {
        matches!(self, LatencyDist::Fixed(d) if d.is_zero())
    }

    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match self {
            LatencyDist::Fixed(d) => *d,
            LatencyDist::Uniform { min, max } => {
                let span = max.saturating_sub(*min).as_nanos() as f64;
                *min + Duration::from_nanos((span * rng.next_f64()) as u64)
            }
            LatencyDist::Normal { mean, stddev } => {
                let ns = mean.as_nanos() as f64 + stddev.as_nanos() as f64 * rng.next_normal();
                Duration::from_nanos(ns.max(0.0) as u64)
            }
            LatencyDist::LogNormal { median, sigma } => {
                let ns = median.as_nanos() as f64 * (sigma * rng.next_normal()).exp();
                Duration::from_nanos(ns.min(1e15) as u64)
            }
            LatencyDist::Table(points) => table_quantile(points, rng.next_f64() * 100.0),
        }
    }

    /// The distribution's `q`-quantile (`q` in 0..1): what an exact measurement should report.
    pub fn quantile(&self, q: f64) -> Duration {
        let q = q.clamp(0.0, 1.0);
        match self {
            LatencyDist::Fixed(d) => *d,
            LatencyDist::Uniform { min, max } => {
                let span = max.saturating_sub(*min).as_nanos() as f64;
                *min + Duration::from_nanos((span * q) as u64)
            }
            LatencyDist::Normal { mean, stddev } => {
                let ns = mean.as_nanos() as f64 + stddev.as_nanos() as f64 * normal_quantile(q);
                Duration::from_nanos(ns.max(0.0) as u64)
            }
            LatencyDist::LogNormal { median, sigma } => {
                let ns = median.as_nanos() as f64 * (sigma * normal_quantile(q)).exp();
                Duration::from_nanos(ns as u64)
            }
            LatencyDist::Table(points) => table_quantile(points, q * 100.0),
        }
    }
}

fn table_quantile(points: &[(f64, Duration)], pct: f64) -> Duration {
    let mut prev = (0.0, Duration::ZERO);
    for &(p, d) in points {
        if pct <= p {
            let span = p - prev.0;
            if span <= 0.0 {
                return d;
            }
            let frac = (pct - prev.0) / span;
            let lo = prev.1.as_nanos() as f64;
            let hi = d.as_nanos() as f64;
            return Duration::from_nanos((lo + (hi - lo) * frac) as u64);
        }
        prev = (p, d);
    }
    prev.1
}

fn params(kind: &'static str, example: &'static str, msg: impl Into<String>) -> LatencyError {
    LatencyError::Params {
        kind,
        msg: msg.into(),
        example,
    }
}

fn parse_lognormal(args: &str) -> Result<LatencyDist, LatencyError> {
    const EX: &str = "lognormal:2ms,p99=10ms";
    let (median, rest) = args
        .split_once(',')
        .ok_or_else(|| params("lognormal", EX, "needs a median and p99= or sigma="))?;
    let median = parse_duration(median)?;
    let sigma = if let Some(p99) = rest.trim().strip_prefix("p99=") {
        let p99 = parse_duration(p99)?;
        if p99 <= median || median.is_zero() {
            return Err(params("lognormal", EX, "p99 must exceed a non-zero median"));
        }
        (p99.as_nanos() as f64 / median.as_nanos() as f64).ln() / normal_quantile(0.99)
    } else if let Some(s) = rest.trim().strip_prefix("sigma=") {
        s.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| params("lognormal", EX, "sigma must be a non-negative number"))?
    } else {
        return Err(params(
            "lognormal",
            EX,
            "second parameter must be p99= or sigma=",
        ));
    };
    Ok(LatencyDist::LogNormal { median, sigma })
}

fn parse_table(args: &str) -> Result<LatencyDist, LatencyError> {
    const EX: &str = "table:50=1ms,99=5ms,100=20ms";
    let mut points = Vec::new();
    for item in args.split(',') {
        let (p, d) = item
            .split_once('=')
            .ok_or_else(|| params("table", EX, format!("{item:?} is not PERCENTILE=DURATION")))?;
        let p: f64 = p
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=100.0).contains(p))
            .ok_or_else(|| params("table", EX, format!("percentile {p:?} not in 0..=100")))?;
        points.push((p, parse_duration(d)?));
    }
    let sorted = points
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
    if points.is_empty() || !sorted {
        return Err(params(
            "table",
            EX,
            "percentiles and durations must both increase",
        ));
    }
    Ok(LatencyDist::Table(points))
}

impl FromStr for LatencyDist {
    type Err = LatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((kind, args)) = s.split_once(':') else {
            return Ok(LatencyDist::Fixed(parse_duration(s)?));
        };
        match kind {
            "fixed" => Ok(LatencyDist::Fixed(parse_duration(args)?)),
            "uniform" => {
                let (a, b) = args
                    .split_once("..")
                    .ok_or_else(|| params("uniform", "uniform:1ms..3ms", "needs MIN..MAX"))?;
                let (min, max) = (parse_duration(a)?, parse_duration(b)?);
                if max < min {
                    return Err(params("uniform", "uniform:1ms..3ms", "MAX below MIN"));
                }
                Ok(LatencyDist::Uniform { min, max })
            }
            "normal" => {
                let (a, b) = args
                    .split_once(',')
                    .ok_or_else(|| params("normal", "normal:2ms,500us", "needs MEAN,STDDEV"))?;
                Ok(LatencyDist::Normal {
                    mean: parse_duration(a)?,
                    stddev: parse_duration(b)?,
                })
            }
            "lognormal" => parse_lognormal(args),
            "table" => parse_table(args),
            other => Err(LatencyError::Kind(other.to_string())),
        }
    }
}

impl TryFrom<String> for LatencyDist {
    type Error = LatencyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LatencyDist> for String {
    fn from(d: LatencyDist) -> String {
        d.to_string()
    }
}

impl fmt::Display for LatencyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyDist::Fixed(d) if d.is_zero() => write!(f, "0"),
            LatencyDist::Fixed(d) => write!(f, "fixed:{}ns", d.as_nanos()),
            LatencyDist::Uniform { min, max } => {
                write!(f, "uniform:{}ns..{}ns", min.as_nanos(), max.as_nanos())
            }
            LatencyDist::Normal { mean, stddev } => {
                write!(f, "normal:{}ns,{}ns", mean.as_nanos(), stddev.as_nanos())
            }
            LatencyDist::LogNormal { median, sigma } => {
                write!(f, "lognormal:{}ns,sigma={sigma}", median.as_nanos())
            }
            LatencyDist::Table(points) => {
                write!(f, "table:")?;
                for (i, (p, d)) in points.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{p}={}ns", d.as_nanos())?;
                }
                Ok(())
            }
        }
    }
}

impl LatencyDist {
    /// A short human description (`lognormal median 2.00ms sigma 0.69`).
    pub fn describe(&self) -> String {
        match self {
            LatencyDist::Fixed(d) => format!("fixed {}", fmt_duration(*d)),
            LatencyDist::Uniform { min, max } => {
                format!("uniform {}..{}", fmt_duration(*min), fmt_duration(*max))
            }
            LatencyDist::Normal { mean, stddev } => {
                format!(
                    "normal mean {} sd {}",
                    fmt_duration(*mean),
                    fmt_duration(*stddev)
                )
            }
            LatencyDist::LogNormal { median, sigma } => {
                format!(
                    "lognormal median {} sigma {sigma:.2}",
                    fmt_duration(*median)
                )
            }
            LatencyDist::Table(p) => format!("table of {} percentiles", p.len()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_nanos((v * 1e6) as u64)
    }

    #[test]
    fn every_spelling_parses_and_round_trips() {
        for s in [
            "0",
            "2ms",
            "fixed:2ms",
            "uniform:1ms..3ms",
            "normal:2ms,500us",
            "lognormal:2ms,p99=10ms",
            "lognormal:2ms,sigma=0.5",
            "table:50=1ms,99=5ms,100=20ms",
        ] {
            let d: LatencyDist = s.parse().unwrap();
            let again: LatencyDist = d.to_string().parse().unwrap();
            assert_eq!(d, again, "{s}");
        }
    }

    #[test]
    fn bad_spellings_say_what_is_wrong() {
        assert!(matches!(
            "gamma:1ms".parse::<LatencyDist>(),
            Err(LatencyError::Kind(_))
        ));
        assert!("uniform:3ms..1ms".parse::<LatencyDist>().is_err());
        assert!("lognormal:2ms,p99=1ms".parse::<LatencyDist>().is_err());
        assert!("table:99=1ms,50=2ms".parse::<LatencyDist>().is_err());
        assert!("fixed:2".parse::<LatencyDist>().is_err());
    }

    #[test]
    fn lognormal_given_by_p99_reports_that_p99() {
        let d: LatencyDist = "lognormal:2ms,p99=10ms".parse().unwrap();
        let p99 = d.quantile(0.99).as_nanos() as f64;
        assert!((p99 - 10e6).abs() < 1e3, "{p99}");
        assert_eq!(d.quantile(0.5), ms(2.0));
    }

    fn empirical(d: &LatencyDist, q: f64) -> f64 {
        let mut rng = Rng::new(42);
        let mut xs: Vec<u64> = (0..200_000)
            .map(|_| d.sample(&mut rng).as_nanos() as u64)
            .collect();
        xs.sort_unstable();
        xs[((xs.len() as f64 - 1.0) * q) as usize] as f64
    }

    #[test]
    fn draws_follow_the_stated_quantiles() {
        for s in [
            "uniform:1ms..3ms",
            "normal:5ms,1ms",
            "lognormal:2ms,p99=10ms",
            "table:50=1ms,90=3ms,100=4ms",
        ] {
            let d: LatencyDist = s.parse().unwrap();
            for q in [0.5, 0.9, 0.99] {
                let want = d.quantile(q).as_nanos() as f64;
                let got = empirical(&d, q);
                assert!(
                    (got - want).abs() / want < 0.03,
                    "{s} q{q}: {got} vs {want}"
                );
            }
        }
    }
}
