//! A circuit breaker per upstream: when too large a share of recent requests fail, stop
//! sending for a while, then let a few probes through to see whether it recovered.
//!
//! Retrying or queueing against an upstream that is failing wholesale only adds load to it
//! and latency for our clients; failing fast (a local 503) is kinder to both. Outlier
//! ejection handles one bad endpoint; the breaker handles the upstream as a whole.
//!
//! States:
//! - **closed**: everything is admitted; results go into a sliding window (a ring of
//!   buckets over [`BreakerConfig::window`]). A failure that brings the window to at least
//!   [`BreakerConfig::min_requests`] requests with a failed share of at least
//!   [`BreakerConfig::error_ratio`] opens the breaker.
//! - **open**: everything is rejected, at the cost of one comparison, for
//!   [`BreakerConfig::open_for`].
//! - **half-open**: up to [`BreakerConfig::half_open_probes`] requests are admitted as
//!   probes, the rest rejected; when all of them succeed the breaker closes with an empty
//!   window, and any failing reopens it.

use std::time::{Duration, Instant};

use super::window::Window;

/// Settings for a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// How much recent history the error ratio is computed over. Default 10 s.
    pub window: Duration,
    /// Requests the window must hold before the breaker may open. Default 20.
    pub min_requests: u32,
    /// Failed share of the window's requests that opens the breaker, `0.0..=1.0` (clamped).
    /// Default 0.5.
    pub error_ratio: f64,
    /// How long the breaker stays open before probing. Default 5 s.
    pub open_for: Duration,
    /// Probes admitted in half-open; all must succeed to close (0 counts as 1). Default 1.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_requests: 20,
            error_ratio: 0.5,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

/// The answer of [`CircuitBreaker::try_acquire`]; give it back to
/// [`CircuitBreaker::record`] with the request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: send the request.
    Allowed,
    /// Half-open: send the request; its outcome decides whether the breaker closes.
    Probe,
    /// Open, or half-open with all probes out: fail the request without sending it.
    Rejected,
}

/// A breaker's state as seen from outside (for metrics and admin pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Admitting everything.
    Closed,
    /// Rejecting everything.
    Open,
    /// Admitting a few probes.
    HalfOpen,
}

/// A circuit breaker for one upstream, on one core.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    /// Counter 0: requests; counter 1: failures. Only fed while closed.
    window: Window,
    state: State,
    opened: u64,
    half_opened: u64,
    closed: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes handed out in this half-open period.
        issued: u32,
        /// Of which succeeded.
        passed: u32,
    },
}

impl CircuitBreaker {
    /// What it was built with.
    #[must_use]
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// A closed breaker with an empty window starting at `now`.
    #[must_use]
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            window: Window::new(config.window, now),
            state: State::Closed,
            opened: 0,
            half_opened: 0,
            closed: 0,
        }
    }

    /// Whether a request may be sent now. O(1); cheapest when rejecting while open.
    pub fn try_acquire(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Allowed,
            State::Open { until } if now < until => Admit::Rejected,
            State::Open { .. } => {
                self.half_opened += 1;
                self.state = State::HalfOpen {
                    issued: 0,
                    passed: 0,
                };
                self.probe()
            }
            State::HalfOpen { .. } => self.probe(),
        }
    }

    /// Hands out a probe if this half-open period has one left.
    fn probe(&mut self) -> Admit {
        let probes = self.config.half_open_probes.max(1);
        match &mut self.state {
            State::HalfOpen { issued, .. } if *issued < probes => {
                *issued += 1;
                Admit::Probe
            }
            _ => Admit::Rejected,
        }
    }

    /// The outcome (`ok`: not a failure, as the caller defines it) of a request admitted as
    /// `admit`, at `now`.
    ///
    /// Results that no longer fit the state are ignored: an `Allowed` request finishing
    /// after the breaker opened, or a probe finishing after its half-open period ended.
    /// (A probe from an earlier half-open period that finishes while a later one has
    /// probes out is counted in the later one; with `open_for` longer than the request
    /// timeout, as it should be, that cannot happen.)
    pub fn record(&mut self, admit: Admit, ok: bool, now: Instant) {
        match (admit, self.state) {
            (Admit::Allowed, State::Closed) => {
                self.window.add(0, now);
                if ok {
                    return;
                }
                self.window.add(1, now);
                let [requests, failures] = self.window.totals(now);
                let ratio = self.config.error_ratio.clamp(0.0, 1.0);
                if requests >= u64::from(self.config.min_requests)
                    && failures as f64 >= ratio * requests as f64
                {
                    self.open(now);
                }
            }
            (Admit::Probe, State::HalfOpen { issued, passed }) if passed < issued => {
                if !ok {
                    self.open(now);
                } else if passed + 1 >= self.config.half_open_probes.max(1) {
                    self.closed += 1;
                    self.window.clear();
                    self.state = State::Closed;
                } else {
                    self.state = State::HalfOpen {
                        issued,
                        passed: passed + 1,
                    };
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.opened += 1;
        self.window.clear();
        self.state = State::Open {
            until: now + self.config.open_for,
        };
    }

    /// The state at `now`: an open breaker whose `open_for` has elapsed reads as half-open
    /// (the transition itself, and its count, happen at the next [`try_acquire`]).
    ///
    /// [`try_acquire`]: Self::try_acquire
    #[must_use]
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times it has (opened, gone half-open, closed) since it was made.
    #[must_use]
    pub fn transitions(&self) -> (u64, u64, u64) {
        (self.opened, self.half_opened, self.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: ms(10_000),
            min_requests: 10,
            error_ratio: 0.5,
            open_for: ms(5_000),
            half_open_probes: 2,
        }
    }

    fn send(b: &mut CircuitBreaker, ok: bool, now: Instant) -> Admit {
        let admit = b.try_acquire(now);
        b.record(admit, ok, now);
        admit
    }

    /// A breaker opened at `t0`.
    fn opened(t0: Instant) -> CircuitBreaker {
        let mut b = CircuitBreaker::new(config(), t0);
        for _ in 0..10 {
            send(&mut b, false, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        b
    }

    #[test]
    fn opens_on_error_ratio_once_min_requests_reached() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(), t0);
        for _ in 0..10 {
            assert_eq!(send(&mut b, true, t0), Admit::Allowed);
        }
        for _ in 0..9 {
            assert_eq!(send(&mut b, false, t0), Admit::Allowed);
        }
        // 9 of 19 failed: below one half.
        assert_eq!(b.state(t0), BreakerState::Closed);
        send(&mut b, false, t0);
        // 10 of 20.
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.transitions(), (1, 0, 0));
    }

    #[test]
    fn stays_closed_below_min_requests() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(), t0);
        for _ in 0..9 {
            send(&mut b, false, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert_eq!(b.try_acquire(t0), Admit::Allowed);
        send(&mut b, false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn open_rejects_until_open_for_then_half_open_limits_probes() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        for t in [0, 1, 4_999] {
            assert_eq!(b.try_acquire(t0 + ms(t)), Admit::Rejected);
        }
        // Late results of requests admitted before it opened change nothing.
        b.record(Admit::Allowed, true, t0 + ms(1));
        b.record(Admit::Probe, true, t0 + ms(1));
        assert_eq!(b.state(t0 + ms(4_999)), BreakerState::Open);
        let t1 = t0 + ms(5_000);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert_eq!(b.transitions(), (1, 0, 0));
        assert_eq!(b.try_acquire(t1), Admit::Probe);
        assert_eq!(b.try_acquire(t1), Admit::Probe);
        assert_eq!(b.try_acquire(t1), Admit::Rejected);
        assert_eq!(b.transitions(), (1, 1, 0));
    }

    #[test]
    fn all_probes_succeeding_closes_with_a_fresh_window() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + ms(5_000);
        let p1 = b.try_acquire(t1);
        let p2 = b.try_acquire(t1);
        b.record(p1, true, t1);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        // One probe done, one still out: nothing more is admitted.
        assert_eq!(b.try_acquire(t1), Admit::Rejected);
        b.record(p2, true, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        assert_eq!(b.transitions(), (1, 1, 1));
        // The failures that opened it are forgotten: 9 new failures do not reopen.
        for _ in 0..9 {
            assert_eq!(send(&mut b, false, t1), Admit::Allowed);
        }
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t1 = t0 + ms(5_000);
        let p1 = b.try_acquire(t1);
        let p2 = b.try_acquire(t1);
        b.record(p1, true, t1);
        b.record(p2, false, t1 + ms(10));
        assert_eq!(b.state(t1 + ms(10)), BreakerState::Open);
        assert_eq!(b.transitions(), (2, 1, 0));
        // Open for the full open_for from the failure.
        assert_eq!(b.try_acquire(t1 + ms(5_009)), Admit::Rejected);
        assert_eq!(b.try_acquire(t1 + ms(5_010)), Admit::Probe);
        assert_eq!(b.transitions(), (2, 2, 0));
    }

    #[test]
    fn window_forgets_old_errors() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config(), t0);
        for _ in 0..9 {
            send(&mut b, false, t0);
        }
        // Within the window the tenth failure opens it...
        let mut same = b.clone();
        send(&mut same, false, t0 + ms(8_000));
        assert_eq!(same.state(t0 + ms(8_000)), BreakerState::Open);
        // ...but after the window has slid past them it does not.
        send(&mut b, false, t0 + ms(10_000));
        assert_eq!(b.state(t0 + ms(10_000)), BreakerState::Closed);
        for _ in 0..8 {
            send(&mut b, false, t0 + ms(10_000));
        }
        assert_eq!(b.state(t0 + ms(10_000)), BreakerState::Closed);
        send(&mut b, false, t0 + ms(10_000));
        assert_eq!(b.state(t0 + ms(10_000)), BreakerState::Open);
    }

    #[test]
    fn zero_ratio_opens_on_any_failure_and_defaults_are_sane() {
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            min_requests: 0,
            error_ratio: 0.0,
            half_open_probes: 0,
            ..config()
        };
        let mut b = CircuitBreaker::new(cfg, t0);
        send(&mut b, true, t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
        send(&mut b, false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        // 0 probes counts as 1.
        let t1 = t0 + ms(5_000);
        assert_eq!(b.try_acquire(t1), Admit::Probe);
        assert_eq!(b.try_acquire(t1), Admit::Rejected);
        b.record(Admit::Probe, true, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        b.record(Admit::Rejected, false, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        let d = BreakerConfig::default();
        assert!(d.min_requests > 0 && d.error_ratio > 0.0 && d.half_open_probes > 0);
    }
}
