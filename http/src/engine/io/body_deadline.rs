//! The request body's deadline: a total, and a minimum average rate after a grace.
//!
//! `body_io` bounds each read, so on its own it lets a client that sends a byte just before
//! every read would time out keep an upstream connection for as long as it likes. The clock
//! here bounds the body as a whole: it must arrive within `total` of its head, and, once `grace`
//! has passed, at least `min_rate` bytes per second on average. Both are turned into one
//! instant by which the next byte must come, so each read simply waits for the nearest of that
//! instant and its own no-progress timeout.

use std::time::{Duration, Instant};

/// The body deadline settings (the profile's, or a route's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The whole body within this of its head (zero: no total).
    pub total: Duration,
    /// Bytes per second on average after `grace` (zero: no minimum).
    pub min_rate: u64,
    /// Time before `min_rate` applies.
    pub grace: Duration,
}

impl BodyLimits {
    /// These limits with what `route` sets of its own.
    pub(crate) fn with_route(mut self, route: &crate::gateway::RouteSettings) -> Self {
        if let Some(t) = route.body_timeout {
            self.total = t;
        }
        if let Some(r) = route.min_body_rate {
            self.min_rate = r;
        }
        self
    }
}

/// One request body's clock.
#[derive(Debug, Clone)]
pub(crate) struct BodyClock {
    start: Instant,
    limits: BodyLimits,
    /// Body bytes received so far.
    got: u64,
}

/// How long a read may wait, and what a timeout of it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Up to this long; a timeout is the read's own no-progress timeout.
    Io(Duration),
    /// Up to this long; a timeout means the body missed its deadline.
    Deadline(Duration),
}

impl BodyClock {
    /// A clock for a body whose head was read at `start`, with `got` body bytes already in.
    pub(crate) fn new(start: Instant, limits: BodyLimits, got: u64) -> Self {
        Self { start, limits, got }
    }

    /// Counts `n` more body bytes received.
    pub(crate) fn got(&mut self, n: usize) {
        self.got += n as u64;
    }

    /// The instant by which the next body byte must come (`None`: no deadline).
    fn deadline(&self) -> Option<Instant> {
        let l = &self.limits;
        let total = (!l.total.is_zero()).then(|| self.start + l.total);
        let rate = (l.min_rate > 0).then(|| {
            let earned = Duration::from_secs_f64(self.got as f64 / l.min_rate as f64);
            self.start + l.grace + earned.min(FAR)
        });
        match (total, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long the next read may wait at `now`, given its own no-progress timeout `io`.
    pub(crate) fn wait(&self, io: Duration, now: Instant) -> Wait {
        match self.deadline() {
            Some(d) if d.saturating_duration_since(now) < io => {
                Wait::Deadline(d.saturating_duration_since(now))
            }
            _ => Wait::Io(io),
        }
    }
}

/// A bound on how far ahead a rate deadline is put (keeps `Instant` arithmetic in range).
const FAR: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(total: u64, rate: u64, grace: u64) -> BodyLimits {
        BodyLimits {
            total: S * total as u32,
            min_rate: rate,
            grace: S * grace as u32,
        }
    }

    #[test]
    fn no_limits_leave_the_io_timeout() {
        let t0 = Instant::now();
        let c = BodyClock::new(t0, limits(0, 0, 0), 0);
        assert_eq!(c.wait(S * 30, t0 + S * 1000), Wait::Io(S * 30));
    }

    #[test]
    fn the_total_bounds_the_last_read() {
        let t0 = Instant::now();
        let c = BodyClock::new(t0, limits(60, 0, 0), 0);
        assert_eq!(c.wait(S * 30, t0), Wait::Io(S * 30));
        assert_eq!(c.wait(S * 30, t0 + S * 50), Wait::Deadline(S * 10));
        assert_eq!(c.wait(S * 30, t0 + S * 70), Wait::Deadline(Duration::ZERO));
    }

    #[test]
    fn a_trickle_below_the_rate_runs_out_after_the_grace() {
        let t0 = Instant::now();
        let mut c = BodyClock::new(t0, limits(0, 100, 10), 0);
        // Nothing yet: the first byte must come by the end of the grace.
        assert_eq!(c.wait(S * 30, t0), Wait::Deadline(S * 10));
        // 500 bytes buy 5 s beyond the grace.
        c.got(500);
        assert_eq!(c.wait(S * 30, t0 + S * 12), Wait::Deadline(S * 3));
        // A fast body stays on its io timeout.
        c.got(1_000_000);
        assert_eq!(c.wait(S * 30, t0 + S * 20), Wait::Io(S * 30));
    }
}
