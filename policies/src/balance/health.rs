//! Active health state: turns a stream of health-check results into healthy/unhealthy with
//! hysteresis, so one lost check does not pull an endpoint and one lucky check does not
//! put a broken one back.
//!
//! The checks themselves (connect, `GET /healthz`, ...) run elsewhere; this only counts
//! their results. An endpoint flips to unhealthy after
//! [`HealthConfig::unhealthy_threshold`] failed checks in a row and back after
//! [`HealthConfig::healthy_threshold`] passed ones in a row. The caller ANDs
//! [`HealthTracker::is_healthy`] into the balancer's `eligible` filter.

/// Settings for a [`HealthTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Passed checks in a row that make an unhealthy endpoint healthy (0 counts as 1).
    /// Default 2.
    pub healthy_threshold: u32,
    /// Failed checks in a row that make a healthy endpoint unhealthy (0 counts as 1).
    /// Default 3.
    pub unhealthy_threshold: u32,
    /// Whether endpoints start healthy (serve traffic before their first check passes).
    /// Default true.
    pub start_healthy: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            start_healthy: true,
        }
    }
}

/// A change of an endpoint's health, returned by [`HealthTracker::record`] (for logs and
/// metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It was unhealthy and is now healthy.
    BecameHealthy,
    /// It was healthy and is now unhealthy.
    BecameUnhealthy,
}

/// The active-check health of one upstream's endpoints `0..n`.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    config: HealthConfig,
    endpoints: Box<[Endpoint]>,
}

#[derive(Debug, Clone, Copy)]
struct Endpoint {
    healthy: bool,
    /// Checks in a row that disagreed with `healthy` (reset by one that agrees).
    streak: u32,
}

impl HealthTracker {
    /// `n` endpoints, healthy or not per [`HealthConfig::start_healthy`].
    #[must_use]
    pub fn new(n: usize, config: HealthConfig) -> Self {
        let start = Endpoint {
            healthy: config.start_healthy,
            streak: 0,
        };
        Self {
            config,
            endpoints: vec![start; n].into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Starts endpoint `i` as `healthy` (what checks of a previous endpoint list found for it).
    pub fn start_as(&mut self, i: usize, healthy: bool) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.healthy = healthy;
            e.streak = 0;
        }
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Counts one check of endpoint `i` (`ok`: it passed); returns the transition it caused,
    /// if any (`None` also for an out-of-range `i`).
    pub fn record(&mut self, i: usize, ok: bool) -> Option<Transition> {
        let e = self.endpoints.get_mut(i)?;
        if ok == e.healthy {
            e.streak = 0;
            return None;
        }
        e.streak = e.streak.saturating_add(1);
        let threshold = if ok {
            self.config.healthy_threshold
        } else {
            self.config.unhealthy_threshold
        };
        if e.streak < threshold.max(1) {
            return None;
        }
        e.healthy = ok;
        e.streak = 0;
        Some(if ok {
            Transition::BecameHealthy
        } else {
            Transition::BecameUnhealthy
        })
    }

    /// Whether endpoint `i` is healthy (false if out of range).
    #[must_use]
    pub fn is_healthy(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| e.healthy)
    }

    /// How many endpoints are healthy. O(n).
    #[must_use]
    pub fn healthy_count(&self) -> usize {
        self.endpoints.iter().filter(|e| e.healthy).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_with_hysteresis() {
        let mut h = HealthTracker::new(2, HealthConfig::default());
        assert!(h.is_healthy(0) && h.is_healthy(1));
        assert_eq!(h.record(0, false), None);
        assert_eq!(h.record(0, false), None);
        // A pass breaks the run.
        assert_eq!(h.record(0, true), None);
        assert_eq!(h.record(0, false), None);
        assert_eq!(h.record(0, false), None);
        assert!(h.is_healthy(0));
        assert_eq!(h.record(0, false), Some(Transition::BecameUnhealthy));
        assert!(!h.is_healthy(0));
        assert_eq!(h.healthy_count(), 1);
        // Further failures change nothing.
        assert_eq!(h.record(0, false), None);
        assert_eq!(h.record(0, true), None);
        assert_eq!(h.record(0, false), None);
        assert_eq!(h.record(0, true), None);
        assert_eq!(h.record(0, true), Some(Transition::BecameHealthy));
        assert!(h.is_healthy(0));
        assert!(h.is_healthy(1));
    }

    #[test]
    fn start_unhealthy_and_zero_thresholds() {
        let mut h = HealthTracker::new(
            1,
            HealthConfig {
                healthy_threshold: 0,
                unhealthy_threshold: 0,
                start_healthy: false,
            },
        );
        assert!(!h.is_healthy(0));
        assert_eq!(h.healthy_count(), 0);
        assert_eq!(h.record(0, true), Some(Transition::BecameHealthy));
        assert_eq!(h.record(0, false), Some(Transition::BecameUnhealthy));
        assert_eq!(h.record(5, true), None);
        assert!(!h.is_healthy(5));
    }
}
