//! `[admin]`, `[access_log]` and `[observability]`: how the gateway is operated and watched.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `[admin]`: the admin API's own listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port`; keep it on loopback unless a token protects it.
    pub address: String,
    /// A bearer token every admin request must carry (`Authorization: Bearer <token>`).
    #[serde(default)]
    pub token: Option<String>,
}

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `"stdout"` or a file path (reopened on SIGUSR1, for rotation).
    pub path: String,
    /// Batches the log thread may have queued before workers drop lines (and count them).
    #[serde(default = "default_log_queue_batches")]
    pub queue_batches: usize,
}

/// About a second of lines at high request rates before the log thread falls behind.
fn default_log_queue_batches() -> usize {
    1024
}

/// `[observability]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Count per-route and per-upstream metrics (served on the admin API's `/metrics`).
    #[serde(default = "default_metrics")]
    pub metrics: bool,
    /// Assign `X-Request-Id` and W3C `traceparent` to every request, and return the request id.
    #[serde(default = "default_request_ids")]
    pub request_ids: bool,
}

impl AdminConfig {
    /// The admin listener's own checks; `at` is its path (`admin`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.address.parse::<SocketAddr>().is_err() {
            p.at(
                format_args!("{at}.address"),
                format_args!("{:?} is not ip:port", self.address),
            );
        }
        if self
            .token
            .as_deref()
            .is_some_and(|t| t.len() < 16 || t.bytes().any(|b| !b.is_ascii_graphic()))
        {
            p.at(
                format_args!("{at}.token"),
                "at least 16 visible ASCII characters",
            );
        }
    }
}

impl AccessLogConfig {
    /// The access log's own checks; `at` is its path (`access_log`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.path.is_empty() {
            p.at(format_args!("{at}.path"), "\"stdout\" or a file path");
        }
        if self.queue_batches == 0 {
            p.at(format_args!("{at}.queue_batches"), "must be at least 1");
        }
    }
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            metrics: default_metrics(),
            request_ids: default_request_ids(),
        }
    }
}

/// Metrics are counted unless turned off.
fn default_metrics() -> bool {
    true
}

/// Request ids and trace context are assigned unless turned off.
fn default_request_ids() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_and_access_log_are_checked() {
        let mut p = Problems::default();
        AdminConfig {
            address: "127.0.0.1:9901".into(),
            token: Some("0123456789abcdef".into()),
        }
        .validate("admin", &mut p);
        assert!(p.is_empty(), "{p:?}");
        AdminConfig {
            address: "9901".into(),
            token: Some("short".into()),
        }
        .validate("admin", &mut p);
        AccessLogConfig {
            path: String::new(),
            queue_batches: 0,
        }
        .validate("access_log", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "admin.address: \"9901\" is not ip:port",
            "admin.token: at least 16",
            "access_log.path:",
            "access_log.queue_batches: must be at least 1",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
