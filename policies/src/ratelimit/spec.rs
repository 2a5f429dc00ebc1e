//! What a rate limit is, compiled from the config: its algorithm and tiers, what it keys on,
//! what it does when the shared store is unreachable, and the per-route chains of limits.

use super::clientip::TrustedProxies;
use super::store::Algo;

/// What a limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// One bucket for everything the limit applies to.
    Global,
    /// One bucket per route.
    Route,
    /// The authenticated client (API key's client id, or the token's `client_id`/`azp`).
    ClientId,
    /// The authenticated user (`sub`).
    Subject,
    /// The caller's tenant.
    Tenant,
    /// The client IP (behind trusted proxies, from `X-Forwarded-For`).
    ClientIp,
    /// A request header's value.
    Header(Box<str>),
}

impl KeySource {
    /// Relative cost of finding the key; chains evaluate the cheapest first.
    pub fn cost(&self) -> u8 {
        match self {
            KeySource::Global | KeySource::Route => 0,
            KeySource::ClientId | KeySource::Subject | KeySource::Tenant => 1,
            KeySource::ClientIp => 2,
            KeySource::Header(_) => 3,
        }
    }

    /// Whether finding the key needs the caller's identity (so the limit can only run after
    /// authentication).
    pub fn needs_identity(&self) -> bool {
        matches!(
            self,
            KeySource::ClientId | KeySource::Subject | KeySource::Tenant
        )
    }
}

/// When a limit judges a request: before authentication (so refused authentications count
/// against it, and a flood of forged credentials is cut off before any signature check) or
/// after it (when the key or the tier comes from the caller's identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before authentication: keys that need no identity (global, route, client IP, header).
    BeforeAuth,
    /// After authentication succeeded.
    AfterAuth,
}

impl Stage {
    /// The default for a limit keyed on `key`, with `tiered` saying it has tiers (the tier
    /// comes from the identity): before authentication whenever the key allows it.
    pub fn default_for(key: &KeySource, tiered: bool) -> Stage {
        if key.needs_identity() || tiered {
            Stage::AfterAuth
        } else {
            Stage::BeforeAuth
        }
    }
}

/// What to do with a request whose key is absent (anonymous, header missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missing {
    /// The limit does not apply to it.
    #[default]
    Skip,
    /// All such requests share one bucket.
    Shared,
}

/// What a limit does while the shared store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Keep admitting at this node's last known share of the limit.
    Open,
    /// Refuse every request the limit applies to with `status` (429 or 503).
    Closed {
        /// The status of the refusal.
        status: u16,
    },
}

/// One limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSpec {
    /// A stable id derived from the name (per-core state survives reloads by it).
    pub id: u64,
    /// The configured name (metrics, the store key's hash tag).
    pub name: Box<str>,
    /// What it counts by.
    pub key: KeySource,
    /// The default algorithm.
    pub algo: Algo,
    /// Algorithms by tier (the caller's rate-limit tier picks one; unknown tiers get `algo`).
    pub tiers: Vec<(Box<str>, Algo)>,
    /// Store trouble.
    pub fail: FailMode,
    /// Absent keys.
    pub missing: Missing,
    /// Most keys one core tracks; beyond it new keys are admitted untracked (and counted).
    pub max_keys: usize,
    /// When it judges a request.
    pub stage: Stage,
}

impl LimitSpec {
    /// The algorithm for a caller of `tier` (empty: none), and the tier label used in store keys
    /// (`-` for the default).
    pub fn algo_for(&self, tier: &[u8]) -> (Algo, &str) {
        if !tier.is_empty() {
            if let Some((name, a)) = self.tiers.iter().find(|(n, _)| n.as_bytes() == tier) {
                return (*a, name);
            }
        }
        (self.algo, "-")
    }

    /// A stable id for a limit name (FNV-1a, so every node and every run agrees).
    pub fn id_of(name: &str) -> u64 {
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }
}

/// The limits one route applies, in evaluation order (cheapest key first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    /// Indices into [`LimitSet::limits`].
    pub limits: Vec<usize>,
    /// Add `RateLimit-*` headers to responses that were allowed.
    pub headers: bool,
}

/// The most limits one request can be judged by.
pub const MAX_CHAIN: usize = 8;

/// Every limit of a config version, and the chains routes refer to.
#[derive(Debug, Clone, Default)]
pub struct LimitSet {
    /// The limits.
    pub limits: Vec<LimitSpec>,
    /// Chains, by the index a route's settings hold.
    pub chains: Vec<Chain>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted: TrustedProxies,
}

impl LimitSet {
    /// Adds a chain of the named limits (sorted cheapest first) and returns its index; `None`
    /// names the first unknown limit.
    pub fn add_chain(&mut self, names: &[&str], headers: bool) -> Result<usize, String> {
        let mut limits = Vec::with_capacity(names.len());
        for n in names {
            match self.limits.iter().position(|l| &*l.name == *n) {
                Some(i) if !limits.contains(&i) => limits.push(i),
                Some(_) => {}
                None => return Err((*n).to_owned()),
            }
        }
        limits.sort_by_key(|&i| self.limits[i].key.cost());
        self.chains.push(Chain { limits, headers });
        Ok(self.chains.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, key: KeySource) -> LimitSpec {
        LimitSpec {
            id: LimitSpec::id_of(name),
            name: name.into(),
            key: key.clone(),
            algo: Algo::TokenBucket {
                rate: 10.0,
                burst: 20.0,
            },
            tiers: vec![(
                "gold".into(),
                Algo::TokenBucket {
                    rate: 100.0,
                    burst: 200.0,
                },
            )],
            fail: FailMode::Open,
            missing: Missing::Skip,
            max_keys: 10,
            stage: Stage::default_for(&key, true),
        }
    }

    #[test]
    fn chains_run_cheapest_first_without_duplicates() {
        let mut set = LimitSet::default();
        set.limits
            .push(spec("hdr", KeySource::Header("x-k".into())));
        set.limits.push(spec("ip", KeySource::ClientIp));
        set.limits.push(spec("all", KeySource::Global));
        let c = set.add_chain(&["hdr", "ip", "all", "ip"], true).unwrap();
        assert_eq!(set.chains[c].limits, vec![2, 1, 0]);
        assert_eq!(set.add_chain(&["nope"], false), Err("nope".to_owned()));
    }

    #[test]
    fn tiers_pick_the_algorithm() {
        let s = spec("k", KeySource::ClientId);
        assert_eq!(s.algo_for(b"gold").1, "gold");
        assert_eq!(s.algo_for(b"gold").0.quota(), 200.0);
        assert_eq!(s.algo_for(b"silver").1, "-");
        assert_eq!(s.algo_for(b"").0.quota(), 20.0);
        assert_ne!(LimitSpec::id_of("a"), LimitSpec::id_of("b"));
    }
}
