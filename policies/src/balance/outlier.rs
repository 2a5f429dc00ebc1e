//! Passive outlier ejection: take an endpoint out of rotation for a while after it fails
//! several requests in a row, from what real traffic sees (no extra probes).
//!
//! Active health checks notice an endpoint that is down; they miss one that accepts the
//! check and fails real requests, and they notice late. This detector watches every
//! response on one core for one upstream and ejects an endpoint after
//! [`OutlierConfig::consecutive_5xx`] failures in a row (5xx responses and connect failures
//! both count) or [`OutlierConfig::consecutive_connect_failures`] connect failures in a row
//! (a response, even a 5xx, resets that one). Each ejection of the same endpoint lasts longer
//! (`base_ejection * n`, capped at `max_ejection`); the multiplier `n` comes down by one
//! for every `max_ejection` the endpoint then goes without failing. At most
//! [`OutlierConfig::max_ejected_percent`] of the endpoints are ejected at once, so a
//! problem shared by all of them (or by the gateway) cannot empty the upstream.
//!
//! Per core: each core ejects on what it sees. The caller ANDs [`OutlierDetector::is_ejected`]
//! into the balancer's `eligible` filter.

use std::time::{Duration, Instant};

/// Settings for an [`OutlierDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failures in a row (5xx responses and connect failures alike) that eject; 0 disables.
    /// Default 5.
    pub consecutive_5xx: u32,
    /// Connect failures in a row that eject; 0 disables. Default 3.
    pub consecutive_connect_failures: u32,
    /// The first ejection's length; the `n`th lasts `n` times this. Default 30 s.
    pub base_ejection: Duration,
    /// The longest ejection, and how long an endpoint must go without failing for its
    /// multiplier to come down by one. Default 300 s.
    pub max_ejection: Duration,
    /// The most endpoints ejected at once, in percent of the upstream's endpoints, rounded
    /// down (with 10 %, an upstream of fewer than 10 endpoints never ejects). Values above
    /// 100 mean 100. Default 50.
    pub max_ejected_percent: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_connect_failures: 3,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// What went wrong with a request to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The endpoint answered with a 5xx (the caller decides which statuses count).
    Http5xx,
    /// Connecting failed (refused, reset, timed out) before any response.
    Connect,
}

/// Passive outlier ejection for one upstream's endpoints `0..n`, on one core.
#[derive(Debug, Clone)]
pub struct OutlierDetector {
    config: OutlierConfig,
    endpoints: Box<[Endpoint]>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Endpoint {
    /// Failures of either kind in a row.
    failures: u32,
    /// Connect failures in a row.
    connect_failures: u32,
    /// Ejected until then (if in the future).
    ejected_until: Option<Instant>,
    /// The current ejection multiplier.
    level: u32,
    /// When the multiplier last stood still: the last failure, the end of the last
    /// ejection, or the last time it came down.
    quiet_since: Option<Instant>,
    /// Times ejected, ever.
    ejections_total: u64,
}

impl OutlierDetector {
    /// A detector for `n` endpoints, none ejected.
    #[must_use]
    pub fn new(n: usize, config: OutlierConfig) -> Self {
        Self {
            config,
            endpoints: vec![Endpoint::default(); n].into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Takes over `old`'s state of the endpoints that stayed (`map[i]`: endpoint `i`'s index in
    /// `old`), when both judge by the same config: an ejected endpoint stays ejected, its runs of
    /// failures and its ejection level go on.
    pub fn carry_from(&mut self, old: &OutlierDetector, map: &[Option<usize>]) {
        if old.config != self.config {
            return;
        }
        for (i, from) in map.iter().enumerate() {
            if let (Some(slot), Some(&v)) = (
                self.endpoints.get_mut(i),
                from.and_then(|j| old.endpoints.get(j)),
            ) {
                *slot = v;
            }
        }
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Endpoint `i` served a request well: its runs of failures end.
    pub fn record_success(&mut self, i: usize, _now: Instant) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.failures = 0;
            e.connect_failures = 0;
        }
    }

    /// Endpoint `i` failed a request; returns true when this failure ejected it.
    ///
    /// Failures reported while it is ejected (requests that were in flight) are ignored.
    /// When the threshold is reached but ejecting would exceed `max_ejected_percent`, the
    /// endpoint stays in and is ejected on a later failure if room has been made by then.
    pub fn record_failure(&mut self, i: usize, kind: FailureKind, now: Instant) -> bool {
        let max_ejection = self.config.max_ejection;
        let Some(e) = self.endpoints.get_mut(i) else {
            return false;
        };
        if e.ejected_until.is_some_and(|until| now < until) {
            return false;
        }
        e.settle(now, max_ejection);
        e.quiet_since = Some(now);
        e.failures = e.failures.saturating_add(1);
        match kind {
            FailureKind::Http5xx => e.connect_failures = 0,
            FailureKind::Connect => e.connect_failures = e.connect_failures.saturating_add(1),
        }
        let over = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
        if !over(e.failures, self.config.consecutive_5xx)
            && !over(e.connect_failures, self.config.consecutive_connect_failures)
        {
            return false;
        }
        if !self.room_to_eject(now) {
            return false;
        }
        let config = self.config;
        let Some(e) = self.endpoints.get_mut(i) else {
            return false;
        };
        e.level = e.level.saturating_add(1);
        let until = now
            + config
                .base_ejection
                .saturating_mul(e.level)
                .min(config.max_ejection);
        e.ejected_until = Some(until);
        e.quiet_since = Some(until);
        e.failures = 0;
        e.connect_failures = 0;
        e.ejections_total = e.ejections_total.saturating_add(1);
        true
    }

    /// Whether endpoint `i` is out of rotation at `now` (false if out of range).
    #[must_use]
    pub fn is_ejected(&self, i: usize, now: Instant) -> bool {
        self.endpoints
            .get(i)
            .and_then(|e| e.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// How many endpoints are ejected at `now`. O(n).
    #[must_use]
    pub fn ejected_count(&self, now: Instant) -> usize {
        (0..self.endpoints.len())
            .filter(|&i| self.is_ejected(i, now))
            .count()
    }

    /// How many times endpoint `i` has been ejected since this detector was made.
    #[must_use]
    pub fn ejections_total(&self, i: usize) -> u64 {
        self.endpoints.get(i).map_or(0, |e| e.ejections_total)
    }

    /// Whether one more ejection keeps the ejected share within `max_ejected_percent`.
    fn room_to_eject(&self, now: Instant) -> bool {
        let percent = u64::from(self.config.max_ejected_percent.min(100));
        let n = self.endpoints.len() as u64;
        let after = self.ejected_count(now) as u64 + 1;
        after * 100 <= percent * n
    }
}

impl Endpoint {
    /// Brings the multiplier down by one per whole `max_ejection` spent quiet before `now`.
    fn settle(&mut self, now: Instant, max_ejection: Duration) {
        let Some(since) = self.quiet_since else {
            return;
        };
        if self.level == 0 || now <= since {
            return;
        }
        let quiet = now.duration_since(since);
        let period = max_ejection.as_nanos();
        if period == 0 {
            self.level = 0;
            return;
        }
        let periods = u32::try_from(quiet.as_nanos() / period).unwrap_or(u32::MAX);
        let periods = periods.min(self.level);
        self.level -= periods;
        self.quiet_since = Some(since + max_ejection.saturating_mul(periods));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_connect_failures: 2,
            base_ejection: secs(10),
            max_ejection: secs(35),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn an_ejection_moves_with_its_endpoint_under_the_same_config_only() {
        let now = Instant::now();
        let mut old = OutlierDetector::new(2, config());
        fail_until_ejected(&mut old, 1, now);
        let mut new = OutlierDetector::new(3, config());
        new.carry_from(&old, &[None, Some(1), None]);
        assert!(new.is_ejected(1, now) && !new.is_ejected(0, now) && !new.is_ejected(2, now));
        let other = OutlierConfig {
            consecutive_5xx: 9,
            ..config()
        };
        let mut changed = OutlierDetector::new(3, other);
        changed.carry_from(&old, &[None, Some(1), None]);
        assert!(!changed.is_ejected(1, now));
    }

    /// Fails endpoint `i` until ejected; returns how many failures that took.
    fn fail_until_ejected(d: &mut OutlierDetector, i: usize, now: Instant) -> u32 {
        for k in 1..=100 {
            if d.record_failure(i, FailureKind::Http5xx, now) {
                return k;
            }
        }
        panic!("never ejected");
    }

    /// When the ejection that starts at `now` ends (to the second).
    fn ejection_secs(d: &OutlierDetector, i: usize, now: Instant) -> u64 {
        (1..=1_000)
            .find(|&s| !d.is_ejected(i, now + secs(s)))
            .unwrap()
    }

    #[test]
    fn consecutive_5xx_ejects_and_success_resets() {
        let t0 = Instant::now();
        let mut d = OutlierDetector::new(4, config());
        assert!(!d.record_failure(0, FailureKind::Http5xx, t0));
        assert!(!d.record_failure(0, FailureKind::Http5xx, t0));
        d.record_success(0, t0);
        assert!(!d.record_failure(0, FailureKind::Http5xx, t0));
        assert!(!d.record_failure(0, FailureKind::Http5xx, t0));
        assert!(!d.is_ejected(0, t0));
        assert!(d.record_failure(0, FailureKind::Http5xx, t0));
        assert!(d.is_ejected(0, t0));
        assert!(d.is_ejected(0, t0 + secs(9)));
        assert!(!d.is_ejected(0, t0 + secs(10)));
        assert_eq!(d.ejections_total(0), 1);
        assert_eq!(d.ejected_count(t0), 1);
        // Failures of requests in flight while ejected do not count.
        assert!(!d.record_failure(0, FailureKind::Http5xx, t0 + secs(1)));
        assert!(!d.is_ejected(1, t0) && !d.is_ejected(99, t0));
    }

    #[test]
    fn connect_failures_have_their_own_threshold_and_both_kinds_count_together() {
        let t0 = Instant::now();
        let mut d = OutlierDetector::new(4, config());
        assert!(!d.record_failure(0, FailureKind::Connect, t0));
        assert!(d.record_failure(0, FailureKind::Connect, t0));

        // A 5xx breaks a run of connect failures but counts towards consecutive_5xx.
        assert!(!d.record_failure(1, FailureKind::Connect, t0));
        assert!(!d.record_failure(1, FailureKind::Http5xx, t0));
        assert!(!d.is_ejected(1, t0));
        assert!(d.record_failure(1, FailureKind::Connect, t0));

        // Zero thresholds disable.
        let mut off = OutlierDetector::new(
            2,
            OutlierConfig {
                consecutive_5xx: 0,
                consecutive_connect_failures: 0,
                ..config()
            },
        );
        for _ in 0..50 {
            assert!(!off.record_failure(0, FailureKind::Connect, t0));
        }
    }

    #[test]
    fn ejection_grows_with_each_ejection_and_is_capped() {
        let t0 = Instant::now();
        let mut d = OutlierDetector::new(2, config());
        let mut now = t0;
        let mut lengths = Vec::new();
        for _ in 0..5 {
            assert_eq!(fail_until_ejected(&mut d, 0, now), 3);
            let length = ejection_secs(&d, 0, now);
            lengths.push(length);
            now += secs(length);
        }
        assert_eq!(lengths, [10, 20, 30, 35, 35]);
        assert_eq!(d.ejections_total(0), 5);
    }

    #[test]
    fn multiplier_decays_while_the_endpoint_stays_healthy() {
        let t0 = Instant::now();
        let mut d = OutlierDetector::new(2, config());
        fail_until_ejected(&mut d, 0, t0);
        fail_until_ejected(&mut d, 0, t0 + secs(10));
        fail_until_ejected(&mut d, 0, t0 + secs(30));
        // Third ejection ends at 60 s; level 3. One quiet max_ejection (35 s) -> level 2.
        let now = t0 + secs(60 + 35);
        fail_until_ejected(&mut d, 0, now);
        assert_eq!(ejection_secs(&d, 0, now), 30);
        // Ends at 125 s, level 3 again; two quiet periods -> level 1, next ejection 20 s.
        let now = t0 + secs(125 + 70);
        fail_until_ejected(&mut d, 0, now);
        assert_eq!(ejection_secs(&d, 0, now), 20);
        // A failure (not ejecting) restarts the quiet clock.
        let end = t0 + secs(195 + 20);
        assert!(!d.record_failure(0, FailureKind::Http5xx, end + secs(30)));
        d.record_success(0, end + secs(30));
        let now = end + secs(30 + 34);
        fail_until_ejected(&mut d, 0, now);
        assert_eq!(ejection_secs(&d, 0, now), 30);
        // Long quiet: back to the base.
        let now = now + secs(10_000);
        fail_until_ejected(&mut d, 0, now);
        assert_eq!(ejection_secs(&d, 0, now), 10);
    }

    #[test]
    fn max_ejected_percent_caps_simultaneous_ejections() {
        let t0 = Instant::now();
        let mut d = OutlierDetector::new(
            5,
            OutlierConfig {
                max_ejected_percent: 40,
                ..config()
            },
        );
        assert_eq!(fail_until_ejected(&mut d, 0, t0), 3);
        assert_eq!(fail_until_ejected(&mut d, 1, t0 + secs(5)), 3);
        let t0 = t0 + secs(5);
        // A third would be 60 %.
        for _ in 0..10 {
            assert!(!d.record_failure(2, FailureKind::Http5xx, t0));
        }
        assert_eq!(d.ejected_count(t0), 2);
        // Once endpoint 0 is back, the next failure of 2 ejects it at once.
        let later = t0 + secs(5);
        assert_eq!(d.ejected_count(later), 1);
        assert!(d.record_failure(2, FailureKind::Http5xx, later));
        assert_eq!(d.ejected_count(later), 2);

        // Rounded down: 10 % of 5 endpoints is 0, so nothing is ever ejected.
        let mut small = OutlierDetector::new(
            5,
            OutlierConfig {
                max_ejected_percent: 10,
                ..config()
            },
        );
        for _ in 0..10 {
            assert!(!small.record_failure(0, FailureKind::Connect, t0));
        }
        // 100 % (or more) allows ejecting everything, even a lone endpoint.
        let mut all = OutlierDetector::new(
            1,
            OutlierConfig {
                max_ejected_percent: 200,
                ..config()
            },
        );
        assert_eq!(fail_until_ejected(&mut all, 0, t0), 3);
        assert!(!OutlierDetector::new(0, config()).record_failure(0, FailureKind::Connect, t0));
    }
}
