//! An upstream's resilience settings: active health checks, passive outlier ejection and the
//! circuit breaker, each with its defaults and its own checks.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[upstreams.health_check]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path probed with GET (a 2xx or 3xx answer is healthy); over HTTP/2 for
    /// `protocol = "h2"` upstreams. Unused with `grpc`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Probe with the gRPC health protocol (`grpc.health.v1.Health/Check`; healthy when the
    /// answer is `SERVING`) instead of a GET. Only for `protocol = "h2"` upstreams.
    #[serde(default)]
    pub grpc: bool,
    /// The service name asked about with `grpc` (default `""`: the server as a whole).
    #[serde(default)]
    pub grpc_service: String,
    /// Time between probes of an endpoint.
    #[serde(
        default = "default_health_interval",
        with = "ringgate_core::duration::serde_text"
    )]
    pub interval: Duration,
    /// A probe not answered within this fails.
    #[serde(
        default = "default_health_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy endpoint healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The Host header of probes (default: the endpoint).
    #[serde(default)]
    pub host: Option<String>,
}

/// `[upstreams.outlier]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierSettings {
    /// Consecutive 5xx or failed exchanges seen by one core that eject an endpoint on that core
    /// (0: off; `consecutive_5xx_per_core`, the old name `consecutive_5xx` is accepted).
    #[serde(
        default = "default_outlier_consecutive_5xx",
        rename = "consecutive_5xx_per_core",
        alias = "consecutive_5xx"
    )]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures seen by one core that eject an endpoint on that core (0: off;
    /// `consecutive_connect_failures_per_core`, `consecutive_connect_failures` is accepted).
    #[serde(
        default = "default_outlier_consecutive_connect_failures",
        rename = "consecutive_connect_failures_per_core",
        alias = "consecutive_connect_failures"
    )]
    pub consecutive_connect_failures: u32,
    /// First ejection time (grows with each ejection).
    #[serde(
        default = "default_outlier_base_ejection",
        with = "ringgate_core::duration::serde_text"
    )]
    pub base_ejection: Duration,
    /// Longest ejection.
    #[serde(
        default = "default_outlier_max_ejection",
        with = "ringgate_core::duration::serde_text"
    )]
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent.
    #[serde(default = "default_outlier_max_ejected_percent")]
    pub max_ejected_percent: u8,
}

/// `[upstreams.circuit_breaker]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Error ratio (0..1) over the window that opens the breaker.
    #[serde(default = "default_breaker_error_ratio")]
    pub error_ratio: f64,
    /// Fewest requests one core sees in the window before its ratio counts
    /// (`min_requests_per_core`; the old name `min_requests` is accepted).
    #[serde(
        default = "default_breaker_min_requests",
        rename = "min_requests_per_core",
        alias = "min_requests"
    )]
    pub min_requests: u32,
    /// The sliding window.
    #[serde(
        default = "default_breaker_window",
        with = "ringgate_core::duration::serde_text"
    )]
    pub window: Duration,
    /// How long it stays open before probing.
    #[serde(
        default = "default_breaker_open_for",
        with = "ringgate_core::duration::serde_text"
    )]
    pub open_for: Duration,
    /// Probes let through at once while half-open.
    #[serde(default = "default_breaker_half_open_probes")]
    pub half_open_probes: u32,
}

/// Probes GET the root unless told otherwise.
fn default_health_path() -> String {
    "/".to_string()
}
/// Time between probes of one endpoint.
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
/// A probe not answered within this fails.
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
/// Successes in a row before an unhealthy endpoint takes traffic again.
fn default_healthy_threshold() -> u32 {
    2
}
/// Failures in a row before a healthy endpoint is taken out.
fn default_unhealthy_threshold() -> u32 {
    3
}
/// 5xx answers in a row (seen by one core) that eject an endpoint on that core.
fn default_outlier_consecutive_5xx() -> u32 {
    5
}
/// Connect failures in a row (seen by one core) that eject an endpoint on that core.
fn default_outlier_consecutive_connect_failures() -> u32 {
    3
}
/// The first ejection's length; each further one is longer.
fn default_outlier_base_ejection() -> Duration {
    Duration::from_secs(30)
}
/// The longest an ejection lasts.
fn default_outlier_max_ejection() -> Duration {
    Duration::from_secs(300)
}
/// At most half the endpoints are ejected at once, so an upstream keeps serving.
fn default_outlier_max_ejected_percent() -> u8 {
    50
}
/// The breaker opens when half the requests in the window fail.
fn default_breaker_error_ratio() -> f64 {
    0.5
}
/// Requests one core must see in the window before its error ratio counts.
fn default_breaker_min_requests() -> u32 {
    20
}
/// The breaker's sliding window.
fn default_breaker_window() -> Duration {
    Duration::from_secs(10)
}
/// How long an open breaker refuses before it lets probes through.
fn default_breaker_open_for() -> Duration {
    Duration::from_secs(5)
}
/// Probes let through at once while half-open.
fn default_breaker_half_open_probes() -> u32 {
    1
}

impl HealthCheckConfig {
    /// The health check's own checks; `h2` says the upstream speaks HTTP/2. `at` is its path
    /// (`upstreams[0].health_check`).
    pub fn validate(&self, at: &str, h2: bool, p: &mut Problems) {
        if !self.path.starts_with('/') {
            p.at(format_args!("{at}.path"), "must start with /");
        }
        if self.interval < Duration::from_millis(10)
            || self.timeout.is_zero()
            || self.timeout > self.interval.max(Duration::from_secs(60))
        {
            p.at(at, "interval at least 10ms, timeout above 0");
        }
        if self.healthy_threshold == 0 || self.unhealthy_threshold == 0 {
            p.at(at, "thresholds must be at least 1");
        }
        if self.grpc && !h2 {
            p.at(
                format_args!("{at}.grpc"),
                "gRPC health checks need protocol = \"h2\"",
            );
        }
        if self.grpc_service.len() > 200 {
            p.at(format_args!("{at}.grpc_service"), "at most 200 bytes");
        }
    }
}

impl OutlierSettings {
    /// Outlier ejection's own checks; `at` is its path (`upstreams[0].outlier`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.max_ejected_percent > 100
            || self.base_ejection.is_zero()
            || self.max_ejection < self.base_ejection
        {
            p.at(
                at,
                "max_ejected_percent <= 100, 0 < base_ejection <= max_ejection",
            );
        }
    }
}

impl BreakerSettings {
    /// The circuit breaker's own checks; `at` is its path (`upstreams[0].circuit_breaker`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if !(self.error_ratio > 0.0 && self.error_ratio <= 1.0)
            || self.window.is_zero()
            || self.open_for.is_zero()
            || self.half_open_probes == 0
        {
            p.at(
                at,
                "0 < error_ratio <= 1, window and open_for above 0, half_open_probes >= 1",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults<T: serde::de::DeserializeOwned>() -> T {
        toml::from_str("").expect("every field has a default")
    }

    #[test]
    fn the_defaults_pass_their_own_checks() {
        let mut p = Problems::default();
        defaults::<HealthCheckConfig>().validate("h", true, &mut p);
        defaults::<OutlierSettings>().validate("o", &mut p);
        defaults::<BreakerSettings>().validate("b", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let b: BreakerSettings = defaults();
        assert_eq!((b.error_ratio, b.min_requests), (0.5, 20));
        assert_eq!(defaults::<OutlierSettings>().max_ejected_percent, 50);
    }

    #[test]
    fn each_setting_names_its_path() {
        let mut p = Problems::default();
        HealthCheckConfig {
            path: "health".into(),
            grpc: true,
            interval: Duration::from_millis(1),
            healthy_threshold: 0,
            ..defaults()
        }
        .validate("upstreams[1].health_check", false, &mut p);
        OutlierSettings {
            max_ejected_percent: 101,
            ..defaults()
        }
        .validate("upstreams[1].outlier", &mut p);
        BreakerSettings {
            error_ratio: 1.5,
            ..defaults()
        }
        .validate("upstreams[1].circuit_breaker", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "upstreams[1].health_check.path: must start with /",
            "upstreams[1].health_check: interval at least 10ms",
            "upstreams[1].health_check: thresholds must be at least 1",
            "upstreams[1].health_check.grpc: gRPC health checks need protocol",
            "upstreams[1].outlier: max_ejected_percent <= 100",
            "upstreams[1].circuit_breaker: 0 < error_ratio <= 1",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
