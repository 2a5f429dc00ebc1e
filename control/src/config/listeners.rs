//! `[[listeners]]`: where clients connect and how their request heads are normalized.

use super::Problems;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `[[listeners]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// A name for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// `ip:port` to listen on.
    pub address: String,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Merge runs of `/` in request paths before routing and forwarding (default true).
    #[serde(default = "default_merge_slashes")]
    pub merge_slashes: bool,
    /// `%2F`, `%5C`, `%00` and `\` in request paths: `"reject"` (400, the default) or `"keep"`
    /// (kept percent-encoded, never a separator).
    #[serde(default = "default_escaped_separators")]
    pub escaped_separators: String,
    /// Header names with `_`: `"drop"` (the default), `"reject"` (400) or `"allow"`.
    #[serde(default = "default_underscores_in_headers")]
    pub underscores_in_headers: String,
}

/// Runs of `/` are merged unless a listener says otherwise.
fn default_merge_slashes() -> bool {
    true
}

/// Escaped separators in a path are refused (400): they could reach a different file upstream.
fn default_escaped_separators() -> String {
    "reject".into()
}

/// Header names with `_` are dropped: some upstreams read them as `-`.
fn default_underscores_in_headers() -> String {
    "drop".into()
}

impl ListenerConfig {
    /// A cleartext listener on `address` with the default request-head policy.
    pub fn at(address: String) -> Self {
        Self {
            name: None,
            address,
            tls: None,
            merge_slashes: default_merge_slashes(),
            escaped_separators: default_escaped_separators(),
            underscores_in_headers: default_underscores_in_headers(),
        }
    }

    /// The listener's request-head policy (values validated by [`ListenerConfig::validate`]).
    pub fn policy(&self) -> ringgate_http::gateway::ListenerPolicy {
        use ringgate_http::codec::{EscapedSeparators, PathPolicy};
        use ringgate_http::gateway::{ListenerPolicy, UnderscoreHeaders};
        ListenerPolicy {
            path: PathPolicy {
                merge_slashes: self.merge_slashes,
                escaped_separators: if self.escaped_separators == "keep" {
                    EscapedSeparators::Keep
                } else {
                    EscapedSeparators::Reject
                },
            },
            underscores: match self.underscores_in_headers.as_str() {
                "allow" => UnderscoreHeaders::Allow,
                "reject" => UnderscoreHeaders::Reject,
                _ => UnderscoreHeaders::Drop,
            },
        }
    }

    /// This listener's own checks; `at` is its path (`listeners[0]`).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.address.parse::<SocketAddr>().is_err() {
            p.at(
                format_args!("{at}.address"),
                format_args!("{:?} is not ip:port", self.address),
            );
        }
        if !matches!(self.escaped_separators.as_str(), "reject" | "keep") {
            p.at(
                format_args!("{at}.escaped_separators"),
                format_args!(
                    "{:?} is not \"reject\" or \"keep\"",
                    self.escaped_separators
                ),
            );
        }
        if !matches!(
            self.underscores_in_headers.as_str(),
            "drop" | "reject" | "allow"
        ) {
            p.at(
                format_args!("{at}.underscores_in_headers"),
                format_args!(
                    "{:?} is not \"drop\", \"reject\" or \"allow\"",
                    self.underscores_in_headers
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_checked_field_by_field() {
        let mut l = ListenerConfig::at("127.0.0.1:0".into());
        let mut p = Problems::default();
        l.validate("listeners[0]", &mut p);
        assert!(p.is_empty(), "{p:?}");
        l.address = "localhost".into();
        l.escaped_separators = "decode".into();
        l.underscores_in_headers = "keep".into();
        l.validate("listeners[2]", &mut p);
        let all = p.into_vec().join("\n");
        for want in [
            "listeners[2].address: \"localhost\" is not ip:port",
            "listeners[2].escaped_separators: \"decode\"",
            "listeners[2].underscores_in_headers: \"keep\"",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
