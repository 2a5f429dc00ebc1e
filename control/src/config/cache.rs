//! `[[cache_zones]]` and a route's `cache`: where cached responses live and how a route caches.
//!
//! A zone is a byte budget (shared out over the workers: each core keeps its own objects) and the
//! largest object it takes. A route names its zone and adds its rules beside RFC 9111's: TTLs when
//! responses give none, stale serving defaults, what joins the key, whether responses to
//! authenticated requests may be shared, and how clients may bypass it.

use super::Problems;
use ringgate_core::duration::serde_text_opt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[[cache_zones]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheZoneConfig {
    /// Routes name it.
    pub name: String,
    /// Bytes for the whole process (each of N workers keeps at most a Nth).
    pub max_bytes: u64,
    /// Larger responses stream through uncached (default 8 MiB, or `max_bytes` when smaller).
    #[serde(default)]
    pub max_object_bytes: Option<u64>,
}

impl CacheZoneConfig {
    /// The largest object kept.
    pub fn max_object(&self) -> u64 {
        self.max_object_bytes
            .unwrap_or_else(|| self.max_bytes.min(8 << 20))
    }
}

/// A route's `cache = { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// The zone its responses go in.
    pub zone: String,
    /// Freshness for responses that give none (cacheable-by-default statuses only).
    #[serde(default, with = "serde_text_opt")]
    pub default_ttl: Option<Duration>,
    /// Freshness by status when responses give none (`{ 404 = "10s" }`); also makes the status
    /// storable.
    #[serde(default)]
    pub status_ttl: BTreeMap<String, String>,
    /// `"as_sent"` (default), `"sorted"` or `"ignore"`: the query string in the key.
    #[serde(default)]
    pub key_query: Option<String>,
    /// Request header fields whose values join the key.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Cookies whose values join the key.
    #[serde(default)]
    pub key_cookies: Vec<String>,
    /// The authenticated identity (client id, else subject) joins the key.
    #[serde(default)]
    pub key_identity: bool,
    /// Responses to requests with `Authorization` may be shared when the response says
    /// `public`, `s-maxage` or `must-revalidate` (default: never).
    #[serde(default)]
    pub shared_authenticated: bool,
    /// Responses that set cookies may be stored (default: not).
    #[serde(default)]
    pub store_set_cookie: bool,
    /// Serve stale this long while refreshing, when responses do not say.
    #[serde(default, with = "serde_text_opt")]
    pub stale_while_revalidate: Option<Duration>,
    /// Serve stale this long when the upstream fails, when responses do not say.
    #[serde(default, with = "serde_text_opt")]
    pub stale_if_error: Option<Duration>,
    /// The two above win over what responses say.
    #[serde(default)]
    pub stale_override: bool,
    /// `"revalidate"` (default: a client's no-cache makes the gateway validate) or `"ignore"`.
    #[serde(default)]
    pub client_no_cache: Option<String>,
    /// A request with this header field bypasses the cache.
    #[serde(default)]
    pub bypass_header: Option<String>,
    /// How long a request waits for another's fetch of the same key (default 5s).
    #[serde(default, with = "serde_text_opt")]
    pub lock_timeout: Option<Duration>,
    /// The response field with surrogate keys (default `surrogate-key`).
    #[serde(default)]
    pub tags_header: Option<String>,
}

impl CacheZoneConfig {
    /// The zone's own checks.
    pub fn validate(&self, at: &str, p: &mut Problems) {
        if self.name.is_empty() {
            p.at(format_args!("{at}.name"), "must not be empty");
        }
        if self.max_bytes == 0 {
            p.at(format_args!("{at}.max_bytes"), "must be above 0");
        }
        if self.max_object() == 0 || self.max_object() > self.max_bytes {
            p.at(
                format_args!("{at}.max_object_bytes"),
                "must be above 0 and at most max_bytes",
            );
        }
    }
}

impl RouteCacheConfig {
    /// The route's cache settings' own checks (the zone's existence is checked across sections).
    pub fn validate(&self, at: &str, p: &mut Problems) {
        for (status, ttl) in &self.status_ttl {
            if !matches!(status.parse::<u16>(), Ok(200..=599))
                || matches!(status.as_str(), "206" | "304")
            {
                p.at(
                    format_args!("{at}.status_ttl"),
                    format_args!("{status:?} is not a status"),
                );
            }
            if let Err(e) = ringgate_core::duration::parse(ttl) {
                p.at(format_args!("{at}.status_ttl.{status}"), e);
            }
        }
        if let Some(q) = &self.key_query {
            if !matches!(q.as_str(), "as_sent" | "sorted" | "ignore") {
                p.at(
                    format_args!("{at}.key_query"),
                    format_args!("{q:?} is not \"as_sent\", \"sorted\" or \"ignore\""),
                );
            }
        }
        if let Some(v) = &self.client_no_cache {
            if !matches!(v.as_str(), "revalidate" | "ignore") {
                p.at(
                    format_args!("{at}.client_no_cache"),
                    format_args!("{v:?} is not \"revalidate\" or \"ignore\""),
                );
            }
        }
        let names = self
            .key_headers
            .iter()
            .chain(self.bypass_header.iter())
            .chain(self.tags_header.iter());
        for n in names {
            if n.is_empty() || !n.bytes().all(super::is_token_byte) {
                p.at(at, format_args!("{n:?} is not a header name"));
            }
        }
    }

    /// The TTL of each status in `status_ttl` (valid entries only).
    pub fn status_ttls(&self) -> Vec<(u16, Duration)> {
        self.status_ttl
            .iter()
            .filter_map(|(s, t)| Some((s.parse().ok()?, ringgate_core::duration::parse(t).ok()?)))
            .collect()
    }
}
