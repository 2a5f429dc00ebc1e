//! `[discovery]` and an upstream's `discovery`: where endpoints come from when they are not
//! written in the config.
//!
//! An upstream is `static` (the default: `endpoints` are resolved once per snapshot build), `dns`
//! (`endpoints` are `host:port` names re-resolved for A/AAAA records as their TTL says), `dns_srv`
//! (`endpoints` are SRV names such as `_http._tcp.api.internal`; ports and weights from the
//! records) or `etcd` (the keys under `etcd_prefix` hold the endpoints). `[discovery]` says how
//! to reach DNS servers and etcd; the sources run on control threads, never on a worker.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where an upstream's endpoints come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    /// Written in the config, resolved when a snapshot is built.
    #[default]
    Static,
    /// A/AAAA records of `host:port` names, re-resolved by TTL.
    Dns,
    /// SRV records (target, port, weight).
    DnsSrv,
    /// Keys under the upstream's `etcd_prefix`, watched.
    Etcd,
}

impl DiscoveryKind {
    /// The name used in config, metrics and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            DiscoveryKind::Static => "static",
            DiscoveryKind::Dns => "dns",
            DiscoveryKind::DnsSrv => "dns_srv",
            DiscoveryKind::Etcd => "etcd",
        }
    }

    /// Endpoints change while the process runs.
    pub fn is_dynamic(self) -> bool {
        self != DiscoveryKind::Static
    }
}

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `[discovery.dns]`: how names are resolved.
    #[serde(default)]
    pub dns: DnsSettings,
    /// `[discovery.etcd]`: the etcd cluster `etcd` upstreams read.
    #[serde(default)]
    pub etcd: Option<EtcdSettings>,
    /// How long start-up waits for the first answer of every dynamic upstream before it serves
    /// (an upstream still without endpoints answers 503 `no_healthy_upstream` until one comes).
    #[serde(
        default = "default_initial_wait",
        with = "ringgate_core::duration::serde_text"
    )]
    pub initial_wait: Duration,
}

fn default_initial_wait() -> Duration {
    Duration::from_secs(5)
}

/// `[discovery.dns]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Name servers as `ip:port` (UDP, then TCP when truncated); empty: `/etc/resolv.conf`.
    #[serde(default)]
    pub servers: Vec<String>,
    /// A record's TTL is raised to at least this before the name is asked again.
    #[serde(
        default = "default_min_ttl",
        with = "ringgate_core::duration::serde_text"
    )]
    pub min_ttl: Duration,
    /// ... and lowered to at most this.
    #[serde(
        default = "default_max_ttl",
        with = "ringgate_core::duration::serde_text"
    )]
    pub max_ttl: Duration,
    /// One query's timeout.
    #[serde(
        default = "default_dns_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
    pub timeout: Duration,
    /// After a failed or empty answer (the last good endpoints stay), ask again after this.
    #[serde(
        default = "default_retry",
        with = "ringgate_core::duration::serde_text"
    )]
    pub retry: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            min_ttl: default_min_ttl(),
            max_ttl: default_max_ttl(),
            timeout: default_dns_timeout(),
            retry: default_retry(),
        }
    }
}

fn default_min_ttl() -> Duration {
    Duration::from_secs(1)
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_dns_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_retry() -> Duration {
    Duration::from_secs(5)
}

/// `[discovery.etcd]`: an etcd v3 cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSettings {
    /// Cluster members as URLs (`http://10.0.0.5:2379`, `https://...` for TLS); tried in turn.
    pub endpoints: Vec<String>,
    /// User name, when the cluster has authentication on.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (never the password itself in the config).
    #[serde(default)]
    pub password_file: Option<String>,
    /// CA bundle (PEM) trusted for `https` members (default: the system's roots).
    #[serde(default)]
    pub ca: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert: Option<String>,
    /// Its key (PEM).
    #[serde(default)]
    pub key: Option<String>,
    /// One request's timeout (a watch is kept open; this bounds connecting and each answer).
    #[serde(
        default = "default_etcd_timeout",
        with = "ringgate_core::duration::serde_text"
    )]
    pub timeout: Duration,
}

fn default_etcd_timeout() -> Duration {
    Duration::from_secs(3)
}

impl DiscoveryConfig {
    /// The section's own checks.
    pub fn validate(&self, at: &str, p: &mut Problems) {
        let d = &self.dns;
        for (i, s) in d.servers.iter().enumerate() {
            if s.parse::<std::net::SocketAddr>().is_err() {
                p.at(
                    format_args!("{at}.dns.servers[{i}]"),
                    format_args!("{s:?} is not ip:port"),
                );
            }
        }
        if d.min_ttl > d.max_ttl {
            p.at(format_args!("{at}.dns.min_ttl"), "is above max_ttl");
        }
        if d.min_ttl < Duration::from_millis(100) {
            // A server answering TTL 0 would otherwise be asked in a tight loop.
            p.at(format_args!("{at}.dns.min_ttl"), "must be at least 100ms");
        }
        if d.timeout.is_zero() || d.retry.is_zero() {
            p.at(
                format_args!("{at}.dns"),
                "timeout and retry must be above 0",
            );
        }
        if let Some(e) = &self.etcd {
            e.validate(&format!("{at}.etcd"), p);
        }
    }
}

impl EtcdSettings {
    /// The cluster settings' own checks.
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.endpoints.is_empty() {
            p.at(
                format_args!("{at}.endpoints"),
                "at least one member URL is needed",
            );
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                p.at(
                    format_args!("{at}.endpoints[{i}]"),
                    format_args!("{e:?} is not an http:// or https:// URL"),
                );
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            p.at(at, "cert and key go together");
        }
        if self.username.is_some() != self.password_file.is_some() {
            p.at(at, "username and password_file go together");
        }
        if self.timeout.is_zero() {
            p.at(format_args!("{at}.timeout"), "must be above 0");
        }
    }
}
