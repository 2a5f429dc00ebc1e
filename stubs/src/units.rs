//! Parsing and printing of the units people type on a command line or in a scenario file:
//! durations (`2ms`, `1.5s`, `250us`) and rates (`5000`, `20k`). One place, so every flag and
//! every TOML field accepts the same spellings.

use std::time::Duration;

use thiserror::Error;

/// A value that could not be read as a duration or a rate.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UnitError {
    /// Not a number followed by a known unit.
    #[error("invalid duration {0:?}: expected a number and a unit (ns, us, ms, s, m), e.g. 2ms")]
    Duration(String),
    /// Not a positive number (with an optional k/M suffix).
    #[error(
        "invalid rate {0:?}: expected a positive number of requests per second, e.g. 5000 or 20k"
    )]
    Rate(String),
}

/// Parses `2ms`, `250us`, `1.5s`, `100ns`, `2m`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| UnitError::Duration(s.to_string()))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| UnitError::Duration(s.to_string()))?;
    let nanos_per = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        _ => return Err(UnitError::Duration(s.to_string())),
    };
    let nanos = value * nanos_per;
    if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
        return Err(UnitError::Duration(s.to_string()));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Parses a rate in requests per second: `5000`, `20k`, `1.5k`, `1M`.
pub fn parse_rate(s: &str) -> Result<f64, UnitError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k') | Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| UnitError::Rate(s.to_string()))?;
    let v = v * mult;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(UnitError::Rate(s.to_string()))
    }
}

/// Formats a duration compactly with three significant figures: `812ns`, `41.2us`, `2.05ms`, `1.20s`.
pub fn fmt_duration(d: Duration) -> String {
    fmt_nanos(d.as_nanos() as f64)
}

/// Formats a number of nanoseconds like [`fmt_duration`].
pub fn fmt_nanos(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "us")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if unit == "ns" || v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// Serde helper: a `Duration` written as a string with a unit (`"2ms"`).
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `fmt_duration` text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::fmt_duration(*d))
    }

    /// Deserializes from a string with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_every_unit() {
        assert_eq!(parse_duration("2ms").unwrap(), Duration::from_millis(2));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("100ns").unwrap(), Duration::from_nanos(100));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("2 parsecs").is_err());
    }

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("5000").unwrap(), 5000.0);
        assert_eq!(parse_rate("20k").unwrap(), 20000.0);
        assert_eq!(parse_rate("1.5k").unwrap(), 1500.0);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn durations_format_with_three_figures() {
        assert_eq!(fmt_duration(Duration::from_nanos(812)), "812ns");
        assert_eq!(fmt_duration(Duration::from_nanos(41_234)), "41.2us");
        assert_eq!(fmt_duration(Duration::from_micros(2_050)), "2.05ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_200)), "1.20s");
    }
}
