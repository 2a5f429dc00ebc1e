//! The DNS source's rules, apart from the network so they are tested on their own: how a `dns`
//! target is read, which SRV records make endpoints and with what weight, how the TTL is clamped
//! and how endpoints found under several targets are merged.
//!
//! SRV (RFC 2782):
//! - Only the lowest-priority group is used (the numerically smallest priority). Higher
//!   priorities are fallbacks a client turns to when the whole group is unreachable; the
//!   gateway's health checks and outlier detection act on endpoints, not on groups, so a
//!   fallback group would get traffic as soon as it is in the set. It is left out.
//! - Within the group, weights are the records' weights. RFC 2782 gives weight-0 records "a
//!   very small chance" of being picked next to weighted ones; the balancer has no share below 1
//!   (which would be far from small next to weights like 1 to 3), so they are left out when any
//!   record of the group has a weight above 0, and all get weight 1 when every weight is 0.
//! - A record whose target is `.` ("the service is decidedly not available here") makes no
//!   endpoint.
//! - Every address of a target gets the record's weight; two records (or targets) yielding the
//!   same `ip:port` make one endpoint with the sum of their weights.

use super::DnsError;
use crate::discovery::Found;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A `dns` target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP literal: this address, never re-resolved.
    Literal(SocketAddr),
    /// A name to resolve, and the port every address of it gets.
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Target {
    /// Reads `host:port`, `ip:port` or `[ipv6]:port`.
    pub fn parse(text: &str) -> Result<Target, DnsError> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Target::Literal(addr));
        }
        let bad = || DnsError::Target(text.to_string());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host.contains(':') || host.starts_with('[') {
            return Err(bad());
        }
        Ok(Target::Name {
            host: host.to_string(),
            port,
        })
    }
}

/// One SRV record as the source reads it (`T`: the target's name type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord<T> {
    /// Lower is preferred.
    pub priority: u16,
    /// Share within the priority group.
    pub weight: u16,
    /// The endpoint's port.
    pub port: u16,
    /// The host that has the addresses.
    pub target: T,
    /// The record's TTL in seconds.
    pub ttl: u32,
}

/// A target that can say whether it is the root (`.`).
pub trait SrvTarget {
    /// The record says "no service here".
    fn is_root(&self) -> bool;
}

impl SrvTarget for hickory_resolver::Name {
    fn is_root(&self) -> bool {
        hickory_resolver::Name::is_root(self)
    }
}

impl SrvTarget for &str {
    fn is_root(&self) -> bool {
        *self == "."
    }
}

/// A record chosen for endpoints, with the weight its endpoints get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen<T> {
    /// The host that has the addresses.
    pub target: T,
    /// The endpoints' port.
    pub port: u16,
    /// The endpoints' weight (at least 1).
    pub weight: u32,
}

/// The records that make endpoints, by the rules in the module doc.
pub fn srv_group<T: SrvTarget>(records: Vec<SrvRecord<T>>) -> Vec<Chosen<T>> {
    let records: Vec<_> = records
        .into_iter()
        .filter(|r| !r.target.is_root())
        .collect();
    let Some(best) = records.iter().map(|r| r.priority).min() else {
        return Vec::new();
    };
    let group: Vec<_> = records.into_iter().filter(|r| r.priority == best).collect();
    let all_zero = group.iter().all(|r| r.weight == 0);
    group
        .into_iter()
        .filter(|r| all_zero || r.weight > 0)
        .map(|r| Chosen {
            target: r.target,
            port: r.port,
            weight: u32::from(r.weight.max(1)),
        })
        .collect()
}

/// One endpoint per address, sorted by address. With `sum_weights` (SRV) an address found
/// twice gets the sum of its weights; otherwise (A/AAAA) it stays at weight 1.
pub fn merge(found: Vec<Found>, sum_weights: bool) -> Vec<Found> {
    let mut by_addr: BTreeMap<SocketAddr, u32> = BTreeMap::new();
    for f in found {
        by_addr
            .entry(f.addr)
            .and_modify(|w| {
                if sum_weights {
                    *w = w.saturating_add(f.weight);
                }
            })
            .or_insert(f.weight);
    }
    by_addr
        .into_iter()
        .map(|(addr, weight)| Found { addr, weight })
        .collect()
}

/// When to ask again: the answer's TTL raised to `min` and lowered to `max` (`max` wins if the
/// two cross; config validation refuses that).
pub fn clamp(ttl: Duration, min: Duration, max: Duration) -> Duration {
    ttl.max(min).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, port: u16, target: &'static str) -> SrvRecord<&'static str> {
        SrvRecord {
            priority,
            weight,
            port,
            target,
            ttl: 30,
        }
    }

    fn chosen(target: &'static str, port: u16, weight: u32) -> Chosen<&'static str> {
        Chosen {
            target,
            port,
            weight,
        }
    }

    #[test]
    fn targets_are_literals_or_host_port() {
        assert_eq!(
            Target::parse("10.0.0.5:8080").ok(),
            Some(Target::Literal("10.0.0.5:8080".parse().expect("addr")))
        );
        assert_eq!(
            Target::parse("[::1]:80").ok(),
            Some(Target::Literal("[::1]:80".parse().expect("addr")))
        );
        assert_eq!(
            Target::parse("api.internal:9000").ok(),
            Some(Target::Name {
                host: "api.internal".into(),
                port: 9000
            })
        );
        for bad in ["api.internal", "api:http", ":80", "::1:80", "api:70000"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_lowest_priority_group_is_used() {
        let got = srv_group(vec![
            rec(20, 5, 1, "backup"),
            rec(10, 3, 2, "a"),
            rec(10, 1, 3, "b"),
        ]);
        assert_eq!(got, vec![chosen("a", 2, 3), chosen("b", 3, 1)]);
    }

    #[test]
    fn weight_zero_counts_only_when_all_are_zero() {
        let mixed = srv_group(vec![rec(0, 0, 1, "zero"), rec(0, 2, 2, "two")]);
        assert_eq!(mixed, vec![chosen("two", 2, 2)]);
        let zeros = srv_group(vec![rec(0, 0, 1, "a"), rec(0, 0, 2, "b")]);
        assert_eq!(zeros, vec![chosen("a", 1, 1), chosen("b", 2, 1)]);
    }

    #[test]
    fn root_targets_make_no_endpoint_and_do_not_pick_the_group() {
        let got = srv_group(vec![rec(0, 1, 1, "."), rec(5, 1, 2, "real")]);
        assert_eq!(got, vec![chosen("real", 2, 1)]);
        assert!(srv_group(vec![rec(0, 1, 1, ".")]).is_empty());
    }

    #[test]
    fn merge_sorts_and_dedupes() {
        let f = |a: &str, weight| Found {
            addr: a.parse().expect("addr"),
            weight,
        };
        let found = vec![
            f("127.0.0.2:80", 3),
            f("127.0.0.1:80", 1),
            f("127.0.0.2:80", 2),
        ];
        assert_eq!(
            merge(found.clone(), true),
            vec![f("127.0.0.1:80", 1), f("127.0.0.2:80", 5)]
        );
        assert_eq!(
            merge(found, false),
            vec![f("127.0.0.1:80", 1), f("127.0.0.2:80", 3)]
        );
    }

    #[test]
    fn clamp_raises_and_lowers() {
        let s = Duration::from_secs;
        assert_eq!(clamp(s(0), s(1), s(300)), s(1));
        assert_eq!(clamp(s(3600), s(1), s(300)), s(300));
        assert_eq!(clamp(s(30), s(1), s(300)), s(30));
    }
}
