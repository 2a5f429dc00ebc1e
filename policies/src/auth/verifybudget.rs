//! A core's budget of full JWT signature checks per client address: token buckets in a
//! fixed-size table, so that one client cannot buy a core with forged tokens.
//!
//! Exists because a forged token costs the attacker nothing and the gateway a public-key
//! operation: a client whose tokens miss the verified-token cache beyond its budget is refused
//! (401, reason `verification_rate_limited`) without the signature check. Tokens already verified
//! (cache hits) and tokens refused by the cheap checks (shape, algorithm, key, claims) are never
//! charged; only the public-key operation is.
//!
//! # Per process
//!
//! `auth.max_verifications_per_client` and `auth.verification_burst` are per process: each of the
//! `workers` cores gets `rate / workers` and `burst / workers` (at least one). A client spread
//! over several connections is spread over the cores (reuseport), so its total is about the
//! configured rate; a client on a single connection stays on one core and gets that core's share.
//!
//! # Keys and bounds
//!
//! Clients are keyed by IPv4 address, or by IPv6 /64 prefix (one host commonly holds a whole
//! /64, so per-address buckets would be no limit at all). The table is [`SETS`] sets of [`WAYS`]
//! buckets (about 64 KiB per core), allocated once; a flood of source addresses cannot grow it.
//! When a new client maps to a set whose buckets are all in use, the bucket with the most
//! tokens (ties: the least recently used) is given to it: a full bucket holds no debt, so it is
//! forgotten at no cost. Under a flood of more addresses than the table holds, a limited
//! client's bucket may be forgotten and it starts again with a full burst; that attacker could
//! already have spent the burst of each of its addresses, so the bound holds per address.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

/// Sets in the table (a power of two).
pub const SETS: usize = 512;
/// Buckets per set.
pub const WAYS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// The client key; 0 is an unused bucket (no real key is 0: see [`client_key`]).
    key: u128,
    tokens: f64,
    /// Milliseconds since the table's start at the last refill.
    at_ms: u64,
}

/// One core's verification budgets.
pub struct VerifyBudget {
    buckets: Box<[Bucket]>,
    /// Tokens per millisecond.
    rate_ms: f64,
    burst: f64,
    hasher: RandomState,
    start: Instant,
}

impl VerifyBudget {
    /// A core's share of a per-process `rate` (checks per second) and `burst`, among
    /// `workers` cores; `None` when `rate` is 0 (no cap).
    pub fn new(rate: u32, burst: u32, workers: usize) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let workers = workers.max(1) as f64;
        let burst = (f64::from(burst.max(1)) / workers).ceil().max(1.0);
        Some(VerifyBudget {
            buckets: vec![Bucket::default(); SETS * WAYS].into_boxed_slice(),
            rate_ms: f64::from(rate) / workers / 1000.0,
            burst,
            hasher: RandomState::new(),
            start: Instant::now(),
        })
    }

    /// Takes one check from `peer`'s bucket at `now`; false when it is empty.
    pub fn try_take(&mut self, peer: IpAddr, now: Instant) -> bool {
        let key = client_key(peer);
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        let set = (self.hasher.hash_one(key) as usize) & (SETS - 1);
        let (rate_ms, burst) = (self.rate_ms, self.burst);
        let ways = &mut self.buckets[set * WAYS..(set + 1) * WAYS];
        let refill = |b: &mut Bucket| {
            let elapsed = now_ms.saturating_sub(b.at_ms) as f64;
            b.tokens = (b.tokens + elapsed * rate_ms).min(burst);
            b.at_ms = now_ms;
        };
        let index = match ways.iter().position(|b| b.key == key) {
            Some(i) => i,
            None => {
                // A free bucket, else the fullest (then least recently used) one.
                let mut pick = 0;
                let mut best = (f64::MIN, u64::MAX);
                for (i, b) in ways.iter_mut().enumerate() {
                    if b.key == 0 {
                        pick = i;
                        break;
                    }
                    refill(b);
                    let score = (b.tokens, u64::MAX - b.at_ms);
                    if score.0 > best.0 || (score.0 == best.0 && score.1 > best.1) {
                        best = score;
                        pick = i;
                    }
                }
                ways[pick] = Bucket {
                    key,
                    tokens: burst,
                    at_ms: now_ms,
                };
                pick
            }
        };
        let b = &mut ways[index];
        refill(b);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The key a client is budgeted under: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6
/// address's /64 prefix. Never 0 (IPv4 keys carry a tag bit; the IPv6 prefix `::/64` is
/// given the same tag bit, which no IPv4 key and no other prefix has).
pub fn client_key(peer: IpAddr) -> u128 {
    const TAG: u128 = 1;
    match peer.to_canonical() {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 1) | TAG << 64,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            if prefix == 0 {
                TAG << 100
            } else {
                prefix
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn burst_then_rate_per_client() {
        let mut b = VerifyBudget::new(10, 5, 1).unwrap();
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!((0..20).filter(|_| b.try_take(a, t0)).count(), 5);
        assert!(b.try_take(other, t0), "another client has its own bucket");
        // 10/s: one more after 100 ms, none before.
        assert!(!b.try_take(a, t0 + Duration::from_millis(50)));
        assert!(b.try_take(a, t0 + Duration::from_millis(150)));
        assert!(!b.try_take(a, t0 + Duration::from_millis(150)));
        // Idle for long: refilled to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(a, later)).count(), 5);
        assert!(VerifyBudget::new(0, 5, 1).is_none(), "0 disables the cap");
    }

    #[test]
    fn the_process_rate_is_divided_among_workers() {
        let mut b = VerifyBudget::new(20, 40, 4).unwrap();
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!((0..100).filter(|_| b.try_take(a, t0)).count(), 10);
        // 5/s on this core: one per 200 ms.
        assert!(!b.try_take(a, t0 + Duration::from_millis(150)));
        assert!(b.try_take(a, t0 + Duration::from_millis(210)));
    }

    #[test]
    fn a_flood_of_addresses_neither_grows_the_table_nor_frees_a_limited_client() {
        let mut b = VerifyBudget::new(1, 2, 1).unwrap();
        let t0 = Instant::now();
        let victim = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!((0..5).filter(|_| b.try_take(victim, t0)).count(), 2);
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            b.try_take(ip, t0);
        }
        assert_eq!(b.buckets.len(), SETS * WAYS, "the table never grows");
        // The flood's buckets hold a token each, the victim's none: the fuller ones go first.
        assert!(!b.try_take(victim, t0), "still limited after the flood");
        // IPv6 hosts of one /64 share a bucket; mapped IPv4 is the IPv4 address.
        let h1: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let h2: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(client_key(h1), client_key(h2));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(
            client_key(mapped),
            client_key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_ne!(client_key(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 0);
        assert_ne!(client_key(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
        let mut fresh = VerifyBudget::new(1, 2, 1).unwrap();
        assert_eq!((0..5).filter(|_| fresh.try_take(h1, t0)).count(), 2);
        assert!(!fresh.try_take(h2, t0), "same /64, same bucket");
    }
}
