//! When requests are due: the open model's arrival process. A schedule is a list of phases
//! (constant rate, or a linear ramp between two rates); arrivals are evenly spaced (`fixed`) or
//! Poisson, and each generator thread takes an equal share with its own phase offset or random
//! stream. Times are seconds from the run's start, computed ahead of time and never adjusted to
//! what the target does: that is what keeps the model open.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rng::Rng;
use crate::units::serde_duration;

/// A schedule that cannot be used.
#[derive(Debug, Error)]
pub enum ScheduleError {
    /// Unreadable file.
    #[error("schedule {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML for a schedule.
    #[error("schedule {path}: {source}")]
    Toml {
        /// File.
        path: String,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// Empty, zero-length, or a negative rate.
    #[error("schedule: {0}")]
    Invalid(String),
}

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Evenly spaced at the current rate.
    Fixed,
    /// Exponential gaps (a Poisson process) at the current rate.
    Poisson,
}

/// One stretch of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum Phase {
    /// A linear ramp from `from` to `to` requests per second.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
        /// Length.
        #[serde(with = "serde_duration")]
        duration: Duration,
    },
    /// A constant rate (a step when phases follow each other).
    Constant {
        /// Requests per second.
        rate: f64,
        /// Length.
        #[serde(with = "serde_duration")]
        duration: Duration,
    },
}

impl Phase {
    fn duration(&self) -> Duration {
        match self {
            Phase::Ramp { duration, .. } | Phase::Constant { duration, .. } => *duration,
        }
    }

    fn rate_at(&self, t: f64) -> f64 {
        match self {
            Phase::Constant { rate, .. } => *rate,
            Phase::Ramp { from, to, duration } => {
                let len = duration.as_secs_f64();
                from + (to - from) * (t / len).clamp(0.0, 1.0)
            }
        }
    }
}

/// The whole schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Phases in order.
    pub phases: Vec<Phase>,
}

impl Schedule {
    /// One constant-rate phase.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Self {
            phases: vec![Phase::Constant { rate, duration }],
        }
    }

    /// Reads a TOML schedule file: `[[phases]]` tables with `rate` + `duration`, or `from`,
    /// `to` + `duration` for a ramp.
    pub fn from_file(path: &Path) -> Result<Self, ScheduleError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Io {
            path: p.clone(),
            source,
        })?;
        let s: Schedule = toml::from_str(&text).map_err(|e| ScheduleError::Toml {
            path: p,
            source: Box::new(e),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Checks that the schedule has a length and no negative rate.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.total().is_zero() {
            return Err(ScheduleError::Invalid("total duration is zero".into()));
        }
        for (i, p) in self.phases.iter().enumerate() {
            let bad = match p {
                Phase::Constant { rate, .. } => !(rate.is_finite() && *rate >= 0.0),
                Phase::Ramp { from, to, .. } => {
                    !(from.is_finite() && to.is_finite() && *from >= 0.0 && *to >= 0.0)
                }
            };
            if bad {
                return Err(ScheduleError::Invalid(format!(
                    "phases[{i}]: rates must be finite and non-negative"
                )));
            }
        }
        Ok(())
    }

    /// Total length.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(Phase::duration).sum()
    }

    /// The rate at `t` seconds, and when the current phase ends.
    pub fn rate_at(&self, t: f64) -> (f64, f64) {
        let mut start = 0.0;
        for p in &self.phases {
            let end = start + p.duration().as_secs_f64();
            if t < end {
                return (p.rate_at(t - start), end);
            }
            start = end;
        }
        (0.0, f64::INFINITY)
    }

    /// Expected number of arrivals in `[from, to)` seconds (the integral of the rate).
    pub fn expected(&self, from: f64, to: f64) -> f64 {
        let steps = 10_000;
        let dt = (to - from) / steps as f64;
        (0..steps)
            .map(|i| self.rate_at(from + (i as f64 + 0.5) * dt).0 * dt)
            .sum()
    }

    /// The mean rate over the schedule.
    pub fn mean_rate(&self) -> f64 {
        let total = self.total().as_secs_f64();
        self.expected(0.0, total) / total
    }
}

/// One thread's stream of arrival times.
#[derive(Debug)]
pub struct Arrivals {
    schedule: Schedule,
    process: ArrivalProcess,
    share: f64,
    rng: Rng,
    /// The next arrival (seconds from start).
    next: f64,
    end: f64,
}

impl Arrivals {
    /// Thread `index` of `threads`, each taking `1/threads` of the rate.
    pub fn new(
        schedule: Schedule,
        process: ArrivalProcess,
        index: usize,
        threads: usize,
        seed: u64,
    ) -> Self {
        let share = 1.0 / threads.max(1) as f64;
        let end = schedule.total().as_secs_f64();
        let mut a = Self {
            schedule,
            process,
            share,
            rng: Rng::derive(seed, 0xA221_7A15, index as u64),
            next: 0.0,
            end,
        };
        // Offset each thread's first arrival so threads interleave instead of firing together.
        let frac = match process {
            ArrivalProcess::Fixed => index as f64 / threads.max(1) as f64,
            ArrivalProcess::Poisson => a.rng.next_exp(),
        };
        a.next = a.advance(0.0, frac);
        a
    }

    /// Moves `gaps` mean gaps forward from `t` under the time-varying rate (skipping idle phases).
    fn advance(&self, mut t: f64, gaps: f64) -> f64 {
        loop {
            let (rate, phase_end) = self.schedule.rate_at(t);
            let r = rate * self.share;
            if r > 0.0 {
                return t + gaps / r;
            }
            if phase_end.is_infinite() {
                return f64::INFINITY;
            }
            t = phase_end;
        }
    }

    /// The next due time (seconds from start), or `None` when the schedule is over.
    pub fn peek(&self) -> Option<f64> {
        // A nanosecond of slack absorbs the rounding of summed gaps (1000 x 1ms must not
        // become 1001 arrivals).
        (self.next < self.end - 1e-9).then_some(self.next)
    }

    /// Consumes the current arrival and computes the one after it.
    pub fn pop(&mut self) -> Option<f64> {
        let t = self.peek()?;
        let gaps = match self.process {
            ArrivalProcess::Fixed => 1.0,
            ArrivalProcess::Poisson => self.rng.next_exp(),
        };
        self.next = self.advance(t, gaps);
        Some(t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count(s: &Schedule, p: ArrivalProcess, threads: usize) -> usize {
        (0..threads)
            .map(|i| {
                let mut a = Arrivals::new(s.clone(), p, i, threads, 7);
                std::iter::from_fn(|| a.pop()).count()
            })
            .sum()
    }

    #[test]
    fn fixed_rate_gives_exactly_rate_times_duration() {
        let s = Schedule::constant(1000.0, Duration::from_secs(2));
        assert_eq!(count(&s, ArrivalProcess::Fixed, 1), 2000);
        assert_eq!(count(&s, ArrivalProcess::Fixed, 3), 2000);
    }

    #[test]
    fn fixed_arrivals_are_evenly_spaced_and_threads_interleave() {
        let s = Schedule::constant(100.0, Duration::from_secs(1));
        let mut a = Arrivals::new(s.clone(), ArrivalProcess::Fixed, 0, 2, 1);
        let mut b = Arrivals::new(s, ArrivalProcess::Fixed, 1, 2, 1);
        assert_eq!(a.pop(), Some(0.0));
        assert!((b.pop().unwrap() - 0.01).abs() < 1e-12);
        assert!((a.pop().unwrap() - 0.02).abs() < 1e-12);
    }

    #[test]
    fn poisson_count_is_close_to_the_mean() {
        let s = Schedule::constant(5000.0, Duration::from_secs(4));
        let n = count(&s, ArrivalProcess::Poisson, 2) as f64;
        assert!((n - 20_000.0).abs() < 600.0, "{n}");
    }

    #[test]
    fn steps_and_ramps_follow_the_file() {
        let text = r#"
            [[phases]]
            rate = 100
            duration = "1s"
            [[phases]]
            from = 100
            to = 300
            duration = "2s"
            [[phases]]
            rate = 0
            duration = "1s"
            [[phases]]
            rate = 50
            duration = "1s"
        "#;
        let s: Schedule = toml::from_str(text).unwrap();
        s.validate().unwrap();
        assert_eq!(s.total(), Duration::from_secs(5));
        assert_eq!(s.rate_at(2.0).0, 200.0);
        let n = count(&s, ArrivalProcess::Fixed, 1) as f64;
        assert!((n - (100.0 + 400.0 + 50.0)).abs() <= 2.0, "{n}");
    }
}
