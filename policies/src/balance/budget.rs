//! Retry budgets and backoff: retry failed requests, but never so much that retries become
//! the load that keeps an upstream down.
//!
//! A fixed "retry up to 3 times" multiplies the load on an upstream by 4 exactly when it is
//! struggling. A [`RetryBudget`] instead caps retries at a share of recent requests
//! ([`RetryBudget::ratio`]; 0.2 adds at most 20 % load), plus a small floor
//! ([`RetryBudget::min_per_sec`]) so a quiet route can still retry its occasional failure.
//! [`backoff`] spaces the attempts that are allowed with full jitter, so clients that failed
//! together do not retry together.

use std::time::{Duration, Instant};

use super::rng::FastRng;
use super::window::Window;

/// Which [`Window`] counter holds what.
const REQUESTS: usize = 0;
const RETRIES: usize = 1;

/// Settings for a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per original request in the window: 0.2 lets retries add at most
    /// 20 % to the load. Negative or NaN counts as 0. Default 0.2.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic, so a quiet route can retry.
    /// Default 10.
    pub min_per_sec: u32,
    /// The sliding window both are counted over. Default 10 s.
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// A retry budget for one route or upstream, on one core.
///
/// Call [`record_request`](Self::record_request) for every original request (not for
/// retries), and [`try_retry`](Self::try_retry) before each retry; it says whether the
/// retry fits in the budget and, if so, counts it.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    /// `config.ratio`, sanitised.
    ratio: f64,
    /// `min_per_sec` over the whole window.
    floor: f64,
    /// Counter 0: requests; counter 1: retries.
    window: Window,
}

impl RetryBudget {
    /// An empty budget whose window starts at `now`.
    #[must_use]
    pub fn new(config: RetryBudgetConfig, now: Instant) -> Self {
        Self {
            config,
            ratio: if config.ratio > 0.0 {
                config.ratio
            } else {
                0.0
            },
            floor: f64::from(config.min_per_sec) * config.window.as_secs_f64(),
            window: Window::new(config.window, now),
        }
    }

    /// The settings it was made with.
    #[must_use]
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    /// Counts an original request (not a retry) at `now`.
    pub fn record_request(&mut self, now: Instant) {
        self.window.add(REQUESTS, now);
    }

    /// Whether one more retry fits in the budget at `now`; if so it is counted.
    ///
    /// Within the window, retries are allowed while
    /// `retries + 1 <= ratio * requests + min_per_sec * window_seconds`.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let [requests, retries] = self.window.totals(now);
        // The epsilon keeps float rounding (0.29 * 100 = 28.999...) from costing a retry.
        let allowance = self.ratio * requests as f64 + self.floor + 1e-9;
        if retries as f64 + 1.0 > allowance {
            return false;
        }
        self.window.add(RETRIES, now);
        true
    }
}

/// How long to wait before retry number `attempt` (0 for the first retry): uniform in
/// `[0, min(max, base * 2^attempt)]` ("full jitter").
#[must_use]
pub fn backoff(attempt: u32, base: Duration, max: Duration, rng: &mut FastRng) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(31)).min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.below(nanos.saturating_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn budget(ratio: f64, min_per_sec: u32, window_secs: u64, now: Instant) -> RetryBudget {
        let window = secs(window_secs);
        RetryBudget::new(
            RetryBudgetConfig {
                ratio,
                min_per_sec,
                window,
            },
            now,
        )
    }

    fn retries_allowed(b: &mut RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_retry(now) {
            n += 1;
            assert!(n < 1_000_000, "unbounded");
        }
        n
    }

    #[test]
    fn ratio_plus_floor() {
        let t0 = Instant::now();
        let mut b = budget(0.2, 10, 10, t0);
        for _ in 0..1_000 {
            b.record_request(t0);
        }
        // 20 % of 1000, plus 10/s over 10 s.
        assert_eq!(retries_allowed(&mut b, t0), 300);
        // Each new request earns a fifth of a retry.
        for _ in 0..4 {
            b.record_request(t0);
            assert!(!b.try_retry(t0));
        }
        b.record_request(t0);
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0));
        assert_eq!(b.config().min_per_sec, 10);
    }

    #[test]
    fn quiet_route_gets_the_floor_and_no_floor_means_ratio_only() {
        let t0 = Instant::now();
        let mut b = budget(0.2, 1, 10, t0);
        assert_eq!(retries_allowed(&mut b, t0), 10);
        let mut strict = budget(0.2, 0, 10, t0);
        assert!(!strict.try_retry(t0));
        for _ in 0..10 {
            strict.record_request(t0);
        }
        assert_eq!(retries_allowed(&mut strict, t0), 2);
        let mut none = budget(f64::NAN, 0, 10, t0);
        none.record_request(t0);
        assert!(!none.try_retry(t0));
    }

    #[test]
    fn window_slides() {
        let t0 = Instant::now();
        let mut b = budget(0.5, 0, 10, t0);
        for _ in 0..100 {
            b.record_request(t0);
        }
        assert_eq!(retries_allowed(&mut b, t0), 50);
        // Half a window later: new requests, but the old retries still count.
        let t1 = t0 + secs(5);
        for _ in 0..100 {
            b.record_request(t1);
        }
        assert_eq!(retries_allowed(&mut b, t1), 50);
        // Once t0's bucket slides out, its requests and retries are both forgotten.
        let t2 = t0 + secs(10);
        assert_eq!(retries_allowed(&mut b, t2), 0);
        for _ in 0..20 {
            b.record_request(t2);
        }
        assert_eq!(retries_allowed(&mut b, t2), 10);
        // Everything gone after a long pause.
        assert_eq!(retries_allowed(&mut b, t0 + secs(100)), 0);
    }

    #[test]
    fn backoff_full_jitter_bounds() {
        let mut rng = FastRng::new(5);
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(1_000);
        for attempt in 0..40 {
            let ceiling = if attempt < 7 {
                base * (1 << attempt)
            } else {
                max
            };
            let mut top = Duration::ZERO;
            for _ in 0..2_000 {
                let d = backoff(attempt, base, max, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?}");
                top = top.max(d);
            }
            // Uses the whole range, not just the bottom of it.
            assert!(top * 10 >= ceiling * 9, "attempt {attempt}: {top:?}");
        }
        assert_eq!(backoff(3, Duration::ZERO, max, &mut rng), Duration::ZERO);
        assert_eq!(backoff(3, base, Duration::ZERO, &mut rng), Duration::ZERO);
    }

    proptest::proptest! {
        #[test]
        fn backoff_never_exceeds_its_ceiling(
            attempt in 0u32..100,
            base_ms in 0u64..10_000,
            max_ms in 0u64..100_000,
            seed in proptest::num::u64::ANY,
        ) {
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(max_ms));
            let d = backoff(attempt, base, max, &mut FastRng::new(seed));
            let ceiling = base.checked_mul(1u32 << attempt.min(31)).unwrap_or(Duration::MAX);
            proptest::prop_assert!(d <= max && d <= ceiling);
        }
    }
}
