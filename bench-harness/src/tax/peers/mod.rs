//! Peers on the tax ladder: nginx and HAProxy configured from the same [`Topology`] and the same
//! rung [`Features`] as ringgate, so the table reads across. [`nginx::conf`] and
//! [`haproxy::conf`] translate the route table (host, path, method and header matches with
//! ringgate's precedence) and each feature the peer has; [`supports`] says which (peer, rung)
//! pairs exist; [`bench`] runs them in the ladder.
//!
//! # Cumulative rungs and missing features
//!
//! Rungs are cumulative: `limit` is auth plus rate limits. A peer gets a row at a rung only when
//! it has every feature up to that rung, so a row always measures the same work as ringgate's
//! on that line. nginx OSS has no JWT validation, so it has rows for `passthrough` only; HAProxy
//! (2.5 and later: `jwt_verify`) has every rung. The report says which pairs were skipped.
//!
//! # What both peers are given (the same as ringgate)
//!
//! HTTP/1.1 keep-alive to the upstreams with connection reuse, round-robin over the replicas,
//! the client's `Host` forwarded, request and response bodies streamed (uploads to the route's
//! limit, 10 MiB in the topology; chunked and SSE responses unbuffered), one worker on the
//! target CPUs. Features:
//! - auth: RS/ES/HS-signed JWTs with a `kid` per signing key (several keys, so a rotation is
//!   only the client switching keys), `exp` checked, `iss` and `aud` when given, listed routes
//!   anonymous;
//! - limit: a per-client-address request rate limit (nginx `limit_req`, HAProxy a stick table),
//!   high enough not to refuse at the ladder's rate: it measures the cost of the check;
//! - resilience: retries on another replica after connect errors, timeouts and 502/503/504
//!   (`proxy_next_upstream`, `retries`/`retry-on`), and passive health (`max_fails`,
//!   `observe layer7`);
//! - observe: an access log line per request to a file (HAProxy: to its stdout, which the
//!   harness writes to a file), and the peer's own counters exposed (nginx `stub_status`,
//!   HAProxy's Prometheus exporter);
//! - tls: a TLS listener on the certificate and key the rung is given.

pub mod bench;
pub mod haproxy;
pub mod nginx;

use std::cmp::Reverse;
use std::path::PathBuf;

use serde::Serialize;

use super::topology::{PathMatch, Route, Topology};
use super::{Features, Rung};

/// Who serves a gateway rung.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// ringgate itself.
    Ringgate,
    /// nginx (open-source build).
    Nginx,
    /// HAProxy (2.5 or later for JWT).
    Haproxy,
}

impl Peer {
    /// Parses a peer name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ringgate" => Some(Peer::Ringgate),
            "nginx" => Some(Peer::Nginx),
            "haproxy" => Some(Peer::Haproxy),
            _ => None,
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Ringgate => "ringgate",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }

    /// The features this peer can be configured with (its open-source build).
    pub fn has(self) -> Features {
        Features {
            auth: self != Peer::Nginx,
            limit: true,
            resilience: true,
            observe: true,
            tls: true,
        }
    }
}

/// True when `peer` has a row at `rung`: a gateway rung whose every feature (its own and the
/// rungs' below it) the peer has. `direct` has no gateway, so no peer row.
pub fn supports(peer: Peer, rung: Rung) -> bool {
    let Some(need) = rung.features() else {
        return false;
    };
    let has = peer.has();
    (!need.auth || has.auth)
        && (!need.limit || has.limit)
        && (!need.resilience || has.resilience)
        && (!need.observe || has.observe)
        && (!need.tls || has.tls)
}

/// One JWT signing key the peer accepts.
#[derive(Clone, Debug)]
pub struct JwtKey {
    /// The `kid` header of tokens signed with it.
    pub kid: String,
    /// Algorithm (`RS256`, `ES256`, `HS256`, ...).
    pub alg: String,
    /// For RS/ES/PS: a PEM file of the public key (HAProxy 2.6 reads a public key, not a
    /// certificate); for HS: the secret.
    pub key: String,
}

/// What the auth rung checks.
#[derive(Clone, Debug, Default)]
pub struct JwtSetup {
    /// Accepted keys, selected by `kid`.
    pub keys: Vec<JwtKey>,
    /// Route ids that take anonymous requests.
    pub anonymous_routes: Vec<String>,
    /// The `iss` a token must carry, when checked.
    pub issuer: Option<String>,
    /// The `aud` a token must carry (a string claim), when checked.
    pub audience: Option<String>,
}

/// Files and values the features need beside the topology.
#[derive(Clone, Debug, Default)]
pub struct PeerSetup {
    /// Folder for the peer's pid, temp and log files.
    pub dir: PathBuf,
    /// JWT keys (auth rung and above).
    pub jwt: JwtSetup,
    /// Requests per second per client address above which the limit refuses (limit rung).
    pub limit_rps: u32,
    /// The access log file (observe rung).
    pub access_log: PathBuf,
    /// Certificate chain PEM (tls rung).
    pub tls_cert: PathBuf,
    /// Private key PEM (tls rung).
    pub tls_key: PathBuf,
}

/// Default per-client rate limit of the limit rung: far above any ladder rate.
pub const DEFAULT_LIMIT_RPS: u32 = 1_000_000;

/// Precedence key of a route, as ringgate's router ranks it (greater wins): priority, host
/// specificity, path specificity, then the earlier declaration.
type Rank = (i32, u16, (u8, usize, Reverse<usize>, bool), Reverse<usize>);

fn rank(r: &Route, order: usize) -> Rank {
    let host = r
        .hosts
        .iter()
        .map(|h| match h.strip_prefix("*.") {
            Some(suffix) => suffix.split('.').count() as u16,
            None => u16::MAX,
        })
        .max()
        .unwrap_or(0);
    let path = match &r.path {
        PathMatch::Prefix(p) => (0, p.len(), Reverse(0), false),
        PathMatch::Template(t) => {
            let segs: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
            let captures = segs.iter().filter(|s| s.starts_with('{')).count();
            let catch_all = segs.last().is_some_and(|s| s.starts_with("{*"));
            (1, segs.len() - captures, Reverse(captures), !catch_all)
        }
        PathMatch::Exact(_) => (2, 0, Reverse(0), false),
    };
    (r.priority, host, path, Reverse(order))
}

/// The routes of `t` in precedence order: the first that matches a request is ringgate's pick.
pub fn ranked(t: &Topology) -> Vec<&Route> {
    let mut rs: Vec<(Rank, &Route)> = t
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (rank(r, i), r))
        .collect();
    rs.sort_by_key(|r| Reverse(r.0));
    rs.into_iter().map(|(_, r)| r).collect()
}

/// `s` with regex metacharacters escaped (PCRE, as nginx and HAProxy use).
pub fn regex_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// An unanchored regex of the paths `m` matches (ringgate's rules: a prefix at a segment
/// boundary, `{name}` one non-empty segment, `{*name}` the non-empty rest).
pub fn path_regex(m: &PathMatch) -> String {
    match m {
        PathMatch::Exact(p) => regex_escape(p),
        PathMatch::Prefix(p) if p.ends_with('/') => format!("{}.*", regex_escape(p)),
        PathMatch::Prefix(p) => format!("{}(/.*)?", regex_escape(p)),
        PathMatch::Template(t) => {
            let mut o = String::new();
            for seg in t.split('/').skip(1) {
                o.push('/');
                if seg.starts_with("{*") {
                    o.push_str(".+");
                } else if seg.starts_with('{') {
                    o.push_str("[^/]+");
                } else {
                    o.push_str(&regex_escape(seg));
                }
            }
            o
        }
    }
}

/// The literal text every path `m` matches starts with.
pub fn literal_head(m: &PathMatch) -> &str {
    match m {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        PathMatch::Template(t) => t.find('{').map_or(t.as_str(), |i| &t[..i]),
    }
}

/// False only when no path can match both `a` and `b` (their literal heads diverge); true is
/// conservative.
pub fn may_overlap(a: &PathMatch, b: &PathMatch) -> bool {
    let (x, y) = (literal_head(a), literal_head(b));
    x.starts_with(y) || y.starts_with(x)
}

/// True when every path `inner` matches is also matched by `outer` (false when unsure).
pub fn contains(outer: &PathMatch, inner: &PathMatch) -> bool {
    if outer == inner {
        return true;
    }
    let PathMatch::Prefix(p) = outer else {
        return false;
    };
    let head = literal_head(inner);
    let at_boundary = |h: &str| {
        h.strip_prefix(p.as_str())
            .is_some_and(|rest| p.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    };
    match inner {
        PathMatch::Exact(e) => at_boundary(e),
        PathMatch::Prefix(q) => at_boundary(q),
        // A template's head ends at a `/` before its first capture, or is the whole template.
        PathMatch::Template(_) => head.strip_prefix(p.as_str()).is_some_and(|rest| {
            p.ends_with('/') || rest.starts_with('/') || (rest.is_empty() && head.ends_with('/'))
        }),
    }
}

/// True when `r` matches every request whose path is in `within`: no host, method or header
/// condition, and a path covering `within`.
pub fn unconditional_within(r: &Route, within: &PathMatch) -> bool {
    r.hosts.is_empty() && r.methods.is_empty() && r.headers.is_empty() && contains(&r.path, within)
}

/// Header names any route matches on, sorted and deduplicated (lowercase).
pub fn matched_headers(t: &Topology) -> Vec<String> {
    let mut names: Vec<String> = t
        .routes
        .iter()
        .flat_map(|r| r.headers.iter().map(|(n, _)| n.to_ascii_lowercase()))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tax::topology;

    #[test]
    fn peers_have_rows_only_where_they_have_every_feature_so_far() {
        for rung in Rung::ALL {
            assert_eq!(supports(Peer::Nginx, rung), rung == Rung::Passthrough);
            assert_eq!(supports(Peer::Haproxy, rung), rung != Rung::Direct);
            assert_eq!(supports(Peer::Ringgate, rung), rung != Rung::Direct);
        }
    }

    #[test]
    fn ranking_follows_ringgates_precedence() {
        let t = topology::generate(topology::DEFAULT_SEED, 2, 1);
        let ids: Vec<&str> = ranked(&t).iter().map(|r| r.id.as_str()).collect();
        // Priority 20 first, then at priority 10 the exact host before any host, templates
        // before prefixes, the longer prefix first; priority 0 last, in declaration order.
        assert_eq!(&ids[..2], ["svc00-tenant", "svc01-tenant"]);
        assert_eq!(&ids[2..4], ["svc00-vhost", "svc01-vhost"]);
        let pos = |id: &str| ids.iter().position(|x| *x == id).unwrap_or(usize::MAX);
        assert!(pos("svc00-item") < pos("svc00-search"));
        assert!(pos("svc00-search") < pos("svc00-rest"));
        assert!(pos("svc00-rest") > pos("svc01-search"));
    }

    #[test]
    fn path_regexes_and_containment_follow_segment_rules() {
        let pre = PathMatch::Prefix("/svc00".into());
        let tpl = PathMatch::Template("/svc00/items/{id}".into());
        assert_eq!(path_regex(&pre), "/svc00(/.*)?");
        assert_eq!(path_regex(&tpl), "/svc00/items/[^/]+");
        assert_eq!(
            path_regex(&PathMatch::Template("/f/{*rest}".into())),
            "/f/.+"
        );
        assert!(contains(&pre, &tpl));
        assert!(contains(&pre, &PathMatch::Prefix("/svc00/search".into())));
        assert!(!contains(&pre, &PathMatch::Prefix("/svc001".into())));
        assert!(!contains(&tpl, &pre));
        assert!(may_overlap(&pre, &tpl));
        assert!(!may_overlap(
            &tpl,
            &PathMatch::Prefix("/svc00/search".into())
        ));
        assert_eq!(regex_escape("a.b-c"), "a\\.b-c");
    }
}
