//! Load-balancing algorithms: which endpoint of an upstream gets the next request.
//!
//! Endpoints are indexed `0..n` in the order the caller lists them. Every picker takes an
//! `eligible` filter (health and outlier ejection live elsewhere and are combined by the
//! caller) and returns `None` when no endpoint passes it, so the caller decides what an
//! empty upstream means (503, or a "panic mode" that ignores health).
//!
//! | algorithm | state; cost per pick | weights | hooks; inputs |
//! |---|---|---|---|
//! | [`RoundRobin`] | cursor; O(1) | ignored | -; - |
//! | [`SmoothWeightedRoundRobin`] | credit per endpoint; O(n) | yes, 0 = never | -; - |
//! | [`LeastRequests`] | outstanding counts; O(n) | yes, 0 = never | start, finish; rng |
//! | [`PeakEwma`] | EWMA, outstanding; O(1) | ignored | start, finish, observe; rng, now |
//! | [`Maglev`] | immutable table; O(1) | yes, 0 = never | -; key hash |
//!
//! [`Balancer`] wraps them behind one `pick` so the engine does not match on the algorithm.
//! Out-of-range indices given to `start`/`finish`/`observe` are ignored, never a panic.

use std::time::{Duration, Instant};

use super::rng::{mix64, FastRng};

/// Which algorithm an upstream balances with (config's choice; see [`Balancer::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbKind {
    /// [`RoundRobin`]: each eligible endpoint in turn; weights are ignored.
    #[default]
    RoundRobin,
    /// [`SmoothWeightedRoundRobin`]: turns in proportion to weight, interleaved.
    WeightedRoundRobin,
    /// [`LeastRequests`]: fewest outstanding requests per unit of weight.
    LeastRequests,
    /// [`PeakEwma`]: power of two choices on latency times load; weights are ignored.
    PeakEwma,
    /// [`Maglev`] on the request's key hash: the same key keeps the same endpoint.
    ConsistentHash,
}

/// One upstream's balancer: the algorithm [`LbKind`] names, with its state.
///
/// Protocol: [`pick`](Self::pick) an endpoint; when the request is sent to it call
/// [`start`](Self::start); when it completes (any outcome) call [`finish`](Self::finish), and
/// when a response arrived also [`observe`](Self::observe) its latency. Hooks an algorithm
/// does not need are no-ops, so the engine can always call all of them.
#[derive(Debug, Clone)]
pub enum Balancer {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`SmoothWeightedRoundRobin`].
    WeightedRoundRobin(SmoothWeightedRoundRobin),
    /// See [`LeastRequests`].
    LeastRequests(LeastRequests),
    /// See [`PeakEwma`].
    PeakEwma(PeakEwma),
    /// See [`Maglev`].
    ConsistentHash(Maglev),
}

impl Balancer {
    /// A balancer of `kind` over `keys.len()` endpoints.
    ///
    /// `keys` are the endpoints' stable identities (e.g. `"10.0.0.1:80"`), used by
    /// [`LbKind::ConsistentHash`] so that a key keeps its endpoint when others come and go.
    /// `weights[i]` is endpoint `i`'s weight; a missing weight is 1 (so `&[]` means "all
    /// equal") and extra weights are ignored. Algorithm defaults: [`PeakEwmaConfig::default`]
    /// and a [`Maglev::DEFAULT_TABLE_SIZE`] table.
    #[must_use]
    pub fn new(kind: LbKind, keys: &[&[u8]], weights: &[u32]) -> Self {
        let n = keys.len();
        let weights = weights_for(n, weights);
        match kind {
            LbKind::RoundRobin => Self::RoundRobin(RoundRobin::new(n)),
            LbKind::WeightedRoundRobin => {
                Self::WeightedRoundRobin(SmoothWeightedRoundRobin::new(&weights))
            }
            LbKind::LeastRequests => Self::LeastRequests(LeastRequests::new(&weights)),
            LbKind::PeakEwma => Self::PeakEwma(PeakEwma::new(n, PeakEwmaConfig::default())),
            LbKind::ConsistentHash => {
                Self::ConsistentHash(Maglev::new(keys, &weights, Maglev::DEFAULT_TABLE_SIZE))
            }
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::RoundRobin(b) => b.len(),
            Self::WeightedRoundRobin(b) => b.len(),
            Self::LeastRequests(b) => b.len(),
            Self::PeakEwma(b) => b.len(),
            Self::ConsistentHash(b) => b.len(),
        }
    }

    /// True when there are no endpoints (every pick is `None`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint for the next request, among those `eligible` accepts; `None` if none.
    ///
    /// `key_hash` is only read by [`LbKind::ConsistentHash`]; a request without one gets a
    /// random (weight-proportional) endpoint. `now` is only read by [`LbKind::PeakEwma`].
    pub fn pick(
        &mut self,
        key_hash: Option<u64>,
        now: Instant,
        rng: &mut FastRng,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Self::RoundRobin(b) => b.pick(eligible),
            Self::WeightedRoundRobin(b) => b.pick(eligible),
            Self::LeastRequests(b) => b.pick(rng, eligible),
            Self::PeakEwma(b) => b.pick(now, rng, eligible),
            Self::ConsistentHash(b) => {
                let hash = key_hash.unwrap_or_else(|| rng.next_u64());
                b.lookup(hash, eligible)
            }
        }
    }

    /// A request was sent to endpoint `i`.
    pub fn start(&mut self, i: usize) {
        match self {
            Self::LeastRequests(b) => b.start(i),
            Self::PeakEwma(b) => b.start(i),
            Self::RoundRobin(_) | Self::WeightedRoundRobin(_) | Self::ConsistentHash(_) => {}
        }
    }

    /// A request sent to endpoint `i` completed, whatever the outcome.
    pub fn finish(&mut self, i: usize) {
        match self {
            Self::LeastRequests(b) => b.finish(i),
            Self::PeakEwma(b) => b.finish(i),
            Self::RoundRobin(_) | Self::WeightedRoundRobin(_) | Self::ConsistentHash(_) => {}
        }
    }

    /// Endpoint `i` answered a request after `latency`, at `now`.
    pub fn observe(&mut self, i: usize, latency: Duration, now: Instant) {
        if let Self::PeakEwma(b) = self {
            b.observe(i, latency, now);
        }
    }
}

impl Balancer {
    /// Takes over `old`'s per-endpoint state for the endpoints that stayed: `map[i]` is the
    /// index endpoint `i` had in `old` (`None`: new). Outstanding counts (least requests, peak
    /// EWMA) and latency estimates (peak EWMA) move with their endpoint, so an endpoint list
    /// that changed keeps what was learnt of the endpoints it kept. Turn-taking state (round
    /// robin cursors, weighted credits) starts afresh; a consistent-hash table is rebuilt from
    /// the keys (Maglev moves few keys when few endpoints change).
    pub fn carry_from(&mut self, old: &Balancer, map: &[Option<usize>]) {
        match (self, old) {
            (Self::LeastRequests(new), Self::LeastRequests(old)) => {
                for (i, from) in map.iter().enumerate() {
                    if let (Some(slot), Some(&v)) = (
                        new.outstanding.get_mut(i),
                        from.and_then(|j| old.outstanding.get(j)),
                    ) {
                        *slot = v;
                    }
                }
            }
            (Self::PeakEwma(new), Self::PeakEwma(old)) => {
                for (i, from) in map.iter().enumerate() {
                    if let (Some(slot), Some(&v)) = (
                        new.endpoints.get_mut(i),
                        from.and_then(|j| old.endpoints.get(j)),
                    ) {
                        *slot = v;
                    }
                }
            }
            _ => {}
        }
    }
}

/// `n` weights from `given`: missing ones are 1, extra ones dropped.
fn weights_for(n: usize, given: &[u32]) -> Vec<u32> {
    (0..n).map(|i| given.get(i).copied().unwrap_or(1)).collect()
}

/// Plain round robin: the next eligible endpoint after the last one picked.
///
/// An ineligible endpoint's turn goes to the next eligible one, so while it is out its
/// successor gets a double share; with few endpoints down that is the usual trade for O(1).
#[derive(Debug, Clone)]
pub struct RoundRobin {
    n: usize,
    cursor: usize,
}

impl RoundRobin {
    /// Round robin over `n` endpoints, starting at endpoint 0.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self { n, cursor: 0 }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The next eligible endpoint in turn; `None` if none is eligible. At most `n` probes.
    pub fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        for _ in 0..self.n {
            let i = self.cursor;
            self.cursor = if i + 1 == self.n { 0 } else { i + 1 };
            if eligible(i) {
                return Some(i);
            }
        }
        None
    }
}

/// nginx's smooth weighted round robin: over any `sum(weights)` consecutive picks each
/// endpoint gets exactly its weight, spread out (5,1,1 gives `a a b a c a a`, not
/// `a a a a a b c`).
///
/// Each pick adds every eligible endpoint's weight to its running credit, takes the endpoint
/// with the most credit (the lowest index on a tie) and charges it the eligible total. An
/// ineligible endpoint is skipped entirely: its credit is frozen, and the others keep their
/// smooth order among themselves. Weight 0 is never picked.
#[derive(Debug, Clone)]
pub struct SmoothWeightedRoundRobin {
    weights: Box<[u32]>,
    /// Running credit; bounded by about `n * max_weight` in magnitude.
    credit: Box<[i64]>,
}

impl SmoothWeightedRoundRobin {
    /// Smooth WRR over `weights.len()` endpoints with these weights.
    #[must_use]
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.into(),
            credit: vec![0; weights.len()].into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The next endpoint in the smooth weighted order, among eligible ones with weight > 0.
    pub fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total: i64 = 0;
        // (index, credit) of the leader so far.
        let mut best: Option<(usize, i64)> = None;
        for (i, (&weight, credit)) in self.weights.iter().zip(self.credit.iter_mut()).enumerate() {
            if weight == 0 || !eligible(i) {
                continue;
            }
            let weight = i64::from(weight);
            *credit += weight;
            total += weight;
            if best.is_none_or(|(_, leader)| *credit > leader) {
                best = Some((i, *credit));
            }
        }
        let (best, _) = best?;
        if let Some(credit) = self.credit.get_mut(best) {
            *credit -= total;
        }
        Some(best)
    }
}

/// Least outstanding requests per unit of weight: the endpoint with the smallest
/// `outstanding / weight` among eligible ones (weight 0 is never picked).
///
/// Ties are broken at random in proportion to weight, so under light load (everyone idle)
/// traffic still follows the weights, and under heavy load outstanding requests settle in
/// proportion to them. O(n) per pick: meant for upstreams of up to a few hundred endpoints.
#[derive(Debug, Clone)]
pub struct LeastRequests {
    weights: Box<[u32]>,
    outstanding: Box<[u32]>,
}

impl LeastRequests {
    /// Least requests over `weights.len()` endpoints with these weights, all idle.
    #[must_use]
    pub fn new(weights: &[u32]) -> Self {
        Self {
            weights: weights.into(),
            outstanding: vec![0; weights.len()].into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Requests currently outstanding on endpoint `i` (0 if out of range).
    #[must_use]
    pub fn outstanding(&self, i: usize) -> u32 {
        self.outstanding.get(i).copied().unwrap_or(0)
    }

    /// A request was sent to endpoint `i`.
    pub fn start(&mut self, i: usize) {
        if let Some(o) = self.outstanding.get_mut(i) {
            *o = o.saturating_add(1);
        }
    }

    /// A request to endpoint `i` completed.
    pub fn finish(&mut self, i: usize) {
        if let Some(o) = self.outstanding.get_mut(i) {
            *o = o.saturating_sub(1);
        }
    }

    /// The least loaded eligible endpoint (per unit of weight); `None` if none is eligible.
    pub fn pick(&self, rng: &mut FastRng, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        // Best so far: (index, outstanding, weight); tied weight accumulates for the
        // weighted reservoir draw among ties.
        let mut best: Option<(usize, u64, u64)> = None;
        let mut tied_weight: u64 = 0;
        for (i, (&weight, &out)) in self.weights.iter().zip(self.outstanding.iter()).enumerate() {
            if weight == 0 || !eligible(i) {
                continue;
            }
            let (w, o) = (u64::from(weight), u64::from(out));
            match best {
                // o/w < bo/bw, compared without division.
                Some((_, bo, bw)) if o * bw > bo * w => continue,
                Some((_, bo, bw)) if o * bw == bo * w => {
                    tied_weight += w;
                    if rng.below(tied_weight) < w {
                        best = Some((i, o, w));
                    }
                }
                _ => {
                    best = Some((i, o, w));
                    tied_weight = w;
                }
            }
        }
        best.map(|(i, _, _)| i)
    }
}

/// Settings for [`PeakEwma`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwmaConfig {
    /// The EWMA's time constant: a latency observed this long ago weighs `1/e` of one
    /// observed now, and the cost of an endpoint not heard from for this long reads at
    /// `1/e` of its estimate. Shorter reacts faster and is noisier. Default 10 s.
    pub decay: Duration,
    /// The latency assumed while no endpoint has been observed yet. Default 30 ms.
    pub default_rtt: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

/// Power of two choices on peak-EWMA latency times load (the "P2C + peak EWMA" of Finagle
/// and Linkerd).
///
/// Each endpoint's cost is `ewma_latency * (outstanding + 1)`; a pick draws two distinct
/// eligible endpoints at random and takes the cheaper, so a slow or overloaded endpoint loses
/// most comparisons while no single fast endpoint gets stampeded. The EWMA is "peak": a
/// sample above the estimate replaces it at once, one below blends in with weight
/// `1 - exp(-dt / decay)`, so the balancer flees latency spikes quickly and returns slowly.
///
/// The cost is read optimistically: the estimate fades towards zero with the time since the
/// endpoint's last answer (`exp(-idle / decay)`), so an endpoint that lost traffic for
/// being slow is tried again after a few `decay`s, and among equally fast endpoints the one
/// heard from least recently is slightly preferred. The price: an endpoint idle for many
/// `decay`s wins every comparison it is in until its first answer comes back. An endpoint
/// never observed (new) is costed at the average of the observed ones' estimates
/// ([`PeakEwmaConfig::default_rtt`] if none is), so it gets its share at once.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    /// `decay` in nanoseconds, at least 1.
    tau_ns: f64,
    /// `default_rtt` in nanoseconds.
    default_ns: f64,
    endpoints: Box<[EwmaState]>,
}

#[derive(Debug, Clone, Copy)]
struct EwmaState {
    /// The estimate as of `stamp`, in nanoseconds.
    rtt_ns: f64,
    /// When `rtt_ns` was last updated; `None` until the first observation.
    stamp: Option<Instant>,
    outstanding: u32,
}

/// Random draws for an eligible endpoint before [`PeakEwma`] falls back to a scan.
const P2C_DRAWS: usize = 8;

impl PeakEwma {
    /// P2C peak EWMA over `n` endpoints, none observed yet.
    #[must_use]
    pub fn new(n: usize, config: PeakEwmaConfig) -> Self {
        Self {
            tau_ns: (config.decay.as_nanos() as f64).max(1.0),
            default_ns: config.default_rtt.as_nanos() as f64,
            endpoints: vec![
                EwmaState {
                    rtt_ns: 0.0,
                    stamp: None,
                    outstanding: 0,
                };
                n
            ]
            .into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// A request was sent to endpoint `i`.
    pub fn start(&mut self, i: usize) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding = e.outstanding.saturating_add(1);
        }
    }

    /// A request to endpoint `i` completed.
    pub fn finish(&mut self, i: usize) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.outstanding = e.outstanding.saturating_sub(1);
        }
    }

    /// Endpoint `i` answered after `latency`; `now` is when the answer arrived.
    pub fn observe(&mut self, i: usize, latency: Duration, now: Instant) {
        let tau = self.tau_ns;
        let Some(e) = self.endpoints.get_mut(i) else {
            return;
        };
        let sample = latency.as_nanos() as f64;
        e.rtt_ns = match e.stamp {
            None => sample,
            Some(_) if sample >= e.rtt_ns => sample,
            Some(stamp) => {
                let kept = decay_weight(now.saturating_duration_since(stamp), tau);
                e.rtt_ns * kept + sample * (1.0 - kept)
            }
        };
        // A late, out-of-order observation must not move the stamp backwards.
        e.stamp = Some(e.stamp.map_or(now, |s| s.max(now)));
    }

    /// Endpoint `i`'s latency estimate at `now` (for a never-observed endpoint, the one it
    /// is costed at: the observed endpoints' average).
    #[must_use]
    pub fn latency_estimate(&self, i: usize, now: Instant) -> Duration {
        let ns = match self.endpoints.get(i) {
            None => 0.0,
            Some(e) => self
                .rtt_at(e, now)
                .unwrap_or_else(|| self.unobserved_rtt(now)),
        };
        Duration::from_nanos(ns as u64)
    }

    /// The estimate as of `now`, decayed since its stamp; `None` if never observed.
    fn rtt_at(&self, e: &EwmaState, now: Instant) -> Option<f64> {
        let stamp = e.stamp?;
        Some(e.rtt_ns * decay_weight(now.saturating_duration_since(stamp), self.tau_ns))
    }

    /// What a never-observed endpoint is costed at: the mean observed estimate. O(n), but
    /// only needed while some endpoint has not answered yet.
    fn unobserved_rtt(&self, now: Instant) -> f64 {
        let (sum, count) = self
            .endpoints
            .iter()
            .filter_map(|e| self.rtt_at(e, now))
            .fold((0.0, 0u32), |(sum, count), rtt| (sum + rtt, count + 1));
        if count == 0 {
            self.default_ns
        } else {
            sum / f64::from(count)
        }
    }

    fn cost(&self, i: usize, now: Instant) -> f64 {
        self.endpoints.get(i).map_or(f64::INFINITY, |e| {
            let rtt = self
                .rtt_at(e, now)
                .unwrap_or_else(|| self.unobserved_rtt(now));
            rtt * (f64::from(e.outstanding) + 1.0)
        })
    }

    /// The cheaper of two distinct random eligible endpoints (the only one if just one is
    /// eligible); `None` if none is.
    ///
    /// O(1) while most endpoints are eligible: it draws at random a few times and only
    /// scans (from a random start) when the draws keep hitting ineligible endpoints.
    pub fn pick(
        &self,
        now: Instant,
        rng: &mut FastRng,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.endpoints.len();
        let first = draw_eligible(n, None, rng, &eligible)?;
        let Some(second) = draw_eligible(n, Some(first), rng, &eligible) else {
            return Some(first);
        };
        // On a tie keep `first`: it is itself a uniform random choice.
        if self.cost(second, now) < self.cost(first, now) {
            Some(second)
        } else {
            Some(first)
        }
    }
}

/// The weight an estimate `elapsed` old keeps against a new one: `exp(-elapsed / tau)`.
fn decay_weight(elapsed: Duration, tau_ns: f64) -> f64 {
    (-(elapsed.as_nanos() as f64) / tau_ns).exp()
}

/// A random eligible endpoint of `0..n` other than `except`: a few uniform draws, then a scan
/// from a random start.
fn draw_eligible(
    n: usize,
    except: Option<usize>,
    rng: &mut FastRng,
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let candidates = n - usize::from(except.is_some());
    if candidates == 0 {
        return None;
    }
    // Draw from the candidates, skipping over `except` so the draw stays uniform.
    let nth = |k: usize| match except {
        Some(e) if k >= e => k + 1,
        _ => k,
    };
    for _ in 0..P2C_DRAWS {
        let i = nth(rng.index(candidates));
        if eligible(i) {
            return Some(i);
        }
    }
    let start = rng.index(candidates);
    (0..candidates)
        .map(|k| nth((start + k) % candidates))
        .find(|&i| eligible(i))
}

/// Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of a prime size
/// `M` in which each endpoint owns slots in proportion to its weight; a key hash picks a
/// slot.
///
/// Each endpoint walks its own permutation of the slots (offset and step from the hash of its
/// key), and the endpoints take turns claiming their next free slot, so every endpoint's
/// share is within a slot or so of its weighted ideal and, when an endpoint joins or
/// leaves, only about its share of the keys move.
///
/// When the slot's endpoint is ineligible the lookup re-hashes the key and tries other
/// slots a few times, then scans the endpoints in order after it; all deterministic, so a
/// key's fallback endpoint is stable and a down endpoint only moves its own keys. The
/// table is immutable after `new` (`lookup` takes `&self`), 4 bytes per slot.
#[derive(Debug, Clone)]
pub struct Maglev {
    /// Slot -> endpoint; empty when no endpoint has weight.
    table: Box<[u32]>,
    weights: Box<[u32]>,
}

/// Re-hashed slot probes before the fallback scan.
const MAGLEV_PROBES: u64 = 8;
/// Separates the probe hashes from the key hash (the 64-bit golden ratio).
const PROBE_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

impl Maglev {
    /// The table size [`Balancer::new`] uses: prime, and large enough that each of up to a
    /// few hundred endpoints' share is within a fraction of a percent of its ideal.
    pub const DEFAULT_TABLE_SIZE: usize = 65_537;

    /// The largest table [`Maglev::new`] builds (a larger size is clamped to this, then
    /// rounded up to a prime): 16 Mi slots, 64 MiB.
    pub const MAX_TABLE_SIZE: usize = 1 << 24;

    /// A table over `keys.len()` endpoints; `weights[i]` as for [`Balancer::new`] (missing
    /// = 1, 0 = never picked).
    ///
    /// `table_size` is clamped to `2..=`[`MAX_TABLE_SIZE`](Self::MAX_TABLE_SIZE), then
    /// rounded up to a prime (the permutations need one).
    /// Building costs O(table_size * log n) for equal weights, up to O(table_size * n) for
    /// very uneven ones: done at config time, not per request.
    #[must_use]
    pub fn new(keys: &[&[u8]], weights: &[u32], table_size: usize) -> Self {
        let weights = weights_for(keys.len(), weights);
        let m = next_prime(table_size.clamp(2, Self::MAX_TABLE_SIZE));
        let table = build_table(keys, &weights, m);
        Self {
            table,
            weights: weights.into_boxed_slice(),
        }
    }

    /// The number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The table size in slots (0 when no endpoint has weight).
    #[must_use]
    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// The endpoint for a key hash, among eligible endpoints with weight; `None` if none.
    pub fn lookup(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let m = self.table.len() as u64;
        if m == 0 {
            return None;
        }
        let slot_owner = |h: u64| self.table.get((h % m) as usize).map(|&e| e as usize);
        let home = slot_owner(hash)?;
        if eligible(home) {
            return Some(home);
        }
        for k in 1..=MAGLEV_PROBES {
            let owner = slot_owner(mix64(hash.wrapping_add(k.wrapping_mul(PROBE_STEP))))?;
            if eligible(owner) {
                return Some(owner);
            }
        }
        let n = self.weights.len();
        (1..n)
            .map(|k| (home + k) % n)
            .find(|&i| self.weights.get(i).is_some_and(|&w| w > 0) && eligible(i))
    }
}

/// Fills a table of `m` slots (prime) with endpoint indices, weights taking turns.
fn build_table(keys: &[&[u8]], weights: &[u32], m: usize) -> Box<[u32]> {
    let max_weight = weights.iter().copied().max().unwrap_or(0);
    if max_weight == 0 || m == 0 {
        return Box::new([]);
    }
    let m64 = m as u64;
    // Per endpoint: the permutation's offset and step, how far along it is, and its credit.
    struct Walk {
        endpoint: u32,
        weight: u64,
        offset: u64,
        step: u64,
        next: u64,
        credit: u64,
    }
    let mut walks: Vec<Walk> = keys
        .iter()
        .zip(weights)
        .enumerate()
        .filter(|&(i, (_, &w))| w > 0 && u32::try_from(i).is_ok())
        .map(|(i, (key, &w))| {
            let h = super::rng::hash_bytes(key);
            Walk {
                endpoint: i as u32,
                weight: u64::from(w),
                offset: h % m64,
                step: mix64(h ^ PROBE_STEP) % (m64 - 1) + 1,
                next: 0,
                credit: 0,
            }
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; m];
    let mut filled = 0usize;
    let max_weight = u64::from(max_weight);
    while filled < m {
        for walk in &mut walks {
            // The heaviest endpoint claims a slot every round, the others in proportion.
            walk.credit += walk.weight;
            if walk.credit < max_weight {
                continue;
            }
            walk.credit -= max_weight;
            // Its next slot in its permutation that is still free (m is prime and
            // 0 < step < m, so the walk visits every slot; the table is not full).
            loop {
                let slot = ((walk.offset + walk.next * walk.step) % m64) as usize;
                walk.next += 1;
                if let Some(entry) = table.get_mut(slot) {
                    if *entry == EMPTY {
                        *entry = walk.endpoint;
                        filled += 1;
                        break;
                    }
                }
            }
            if filled == m {
                break;
            }
        }
    }
    table.into_boxed_slice()
}

/// The smallest prime `>= n` (n >= 2).
fn next_prime(n: usize) -> usize {
    (n..).find(|&c| is_prime(c)).unwrap_or(n)
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const PICKS: usize = 100_000;

    #[test]
    fn outstanding_counts_and_estimates_move_with_their_endpoint() {
        let keys: [&[u8]; 2] = [b"a", b"b"];
        let mut old = Balancer::new(LbKind::LeastRequests, &keys, &[]);
        old.start(1);
        old.start(1);
        // `b` stays (now index 0), `a` left, `c` is new.
        let keys3: [&[u8]; 2] = [b"b", b"c"];
        let mut new = Balancer::new(LbKind::LeastRequests, &keys3, &[]);
        new.carry_from(&old, &[Some(1), None]);
        let Balancer::LeastRequests(lr) = &new else {
            panic!("least requests")
        };
        assert_eq!((lr.outstanding(0), lr.outstanding(1)), (2, 0));
        let now = Instant::now();
        let mut old = Balancer::new(LbKind::PeakEwma, &keys, &[]);
        old.observe(0, Duration::from_millis(50), now);
        let mut new = Balancer::new(LbKind::PeakEwma, &keys3, &[]);
        new.carry_from(&old, &[None, Some(0)]);
        let Balancer::PeakEwma(pe) = &new else {
            panic!("peak ewma")
        };
        assert!(pe.latency_estimate(1, now) >= Duration::from_millis(49));
    }

    fn shares(counts: &[usize]) -> Vec<f64> {
        let total: usize = counts.iter().sum();
        counts.iter().map(|&c| c as f64 / total as f64).collect()
    }

    fn assert_shares(counts: &[usize], expected: &[f64], tolerance: f64) {
        let got = shares(counts);
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() < tolerance,
                "shares {got:?}, expected {expected:?}"
            );
        }
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:80", i / 250, i % 250).into_bytes())
            .collect()
    }

    fn key_refs(keys: &[Vec<u8>]) -> Vec<&[u8]> {
        keys.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn round_robin_cycles_and_skips_ineligible() {
        let mut rr = RoundRobin::new(3);
        let seq: Vec<_> = (0..6).map(|_| rr.pick(|_| true).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..PICKS {
            counts[rr.pick(|i| i != 1).unwrap()] += 1;
        }
        assert_eq!(counts, [PICKS / 2, 0, PICKS / 2]);
        assert_eq!(rr.pick(|_| false), None);
        assert_eq!(RoundRobin::new(0).pick(|_| true), None);
    }

    #[test]
    fn smooth_wrr_known_order_for_5_1_1() {
        let mut wrr = SmoothWeightedRoundRobin::new(&[5, 1, 1]);
        let seq: Vec<_> = (0..14).map(|_| wrr.pick(|_| true).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_wrr_distribution_and_zero_weight() {
        let mut wrr = SmoothWeightedRoundRobin::new(&[5, 3, 2, 0]);
        let mut counts = [0; 4];
        for _ in 0..PICKS {
            counts[wrr.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [50_000, 30_000, 20_000, 0]);
    }

    #[test]
    fn smooth_wrr_skips_ineligible_and_stays_smooth_for_the_rest() {
        let mut wrr = SmoothWeightedRoundRobin::new(&[5, 3, 1, 1]);
        for _ in 0..3 {
            wrr.pick(|_| true).unwrap();
        }
        // With endpoint 1 out, the others share in 5:1:1 (to within one pick: endpoint 1's
        // frozen credit offsets the others' cycle).
        let seq: Vec<_> = (0..700).map(|_| wrr.pick(|i| i != 1).unwrap()).collect();
        assert!(!seq.contains(&1));
        let mut counts = [0usize; 4];
        for &i in &seq {
            counts[i] += 1;
        }
        for (got, want) in counts.iter().zip([500usize, 0, 100, 100]) {
            assert!(got.abs_diff(want) <= 1, "{counts:?}");
        }
        // Smooth: endpoint 0 never runs more than 3 in a row at 5:1:1.
        let longest = seq
            .chunk_by(|a, b| a == b)
            .filter(|run| run[0] == 0)
            .map(<[usize]>::len)
            .max()
            .unwrap();
        assert!(longest <= 3, "{seq:?}");
        assert_eq!(wrr.pick(|_| false), None);
        assert_eq!(SmoothWeightedRoundRobin::new(&[0, 0]).pick(|_| true), None);
    }

    #[test]
    fn least_requests_follows_weights_when_idle() {
        let mut lr = LeastRequests::new(&[5, 3, 2]);
        let mut rng = FastRng::new(11);
        let mut counts = [0; 3];
        for _ in 0..PICKS {
            let i = lr.pick(&mut rng, |_| true).unwrap();
            lr.start(i);
            counts[i] += 1;
            lr.finish(i);
        }
        assert_shares(&counts, &[0.5, 0.3, 0.2], 0.01);
    }

    #[test]
    fn least_requests_prefers_the_idle_endpoint() {
        let mut lr = LeastRequests::new(&[1, 1, 1]);
        let mut rng = FastRng::new(12);
        lr.start(0);
        lr.start(1);
        lr.start(1);
        for _ in 0..1_000 {
            assert_eq!(lr.pick(&mut rng, |_| true), Some(2));
        }
        // Endpoint 2 ineligible: 0 has fewer outstanding than 1.
        assert_eq!(lr.pick(&mut rng, |i| i != 2), Some(0));
        assert_eq!(lr.pick(&mut rng, |_| false), None);
    }

    #[test]
    fn least_requests_load_settles_in_weight_proportion() {
        let mut lr = LeastRequests::new(&[5, 3, 2, 0]);
        let mut rng = FastRng::new(13);
        for _ in 0..1_000 {
            let i = lr.pick(&mut rng, |_| true).unwrap();
            lr.start(i);
        }
        let out: Vec<u32> = (0..4).map(|i| lr.outstanding(i)).collect();
        assert!(out[0].abs_diff(500) <= 5, "{out:?}");
        assert!(out[1].abs_diff(300) <= 3, "{out:?}");
        assert!(out[2].abs_diff(200) <= 2, "{out:?}");
        assert_eq!(out[3], 0);
        // finish never underflows, out of range is ignored.
        lr.finish(3);
        lr.finish(99);
        lr.start(99);
        assert_eq!(lr.outstanding(3), 0);
    }

    #[test]
    fn peak_ewma_even_when_all_equal() {
        let t0 = Instant::now();
        let mut p = PeakEwma::new(3, PeakEwmaConfig::default());
        let mut rng = FastRng::new(21);
        let mut counts = [0; 3];
        for k in 0..PICKS {
            let now = t0 + Duration::from_micros(k as u64 * 100);
            let i = p.pick(now, &mut rng, |_| true).unwrap();
            p.start(i);
            counts[i] += 1;
            p.finish(i);
            p.observe(i, Duration::from_millis(5), now);
        }
        assert_shares(&counts, &[1.0 / 3.0; 3], 0.01);
    }

    /// A request stream at one per millisecond against endpoints with fixed latencies.
    fn simulate_p2c(latencies_ms: &[u64], requests: u64, seed: u64) -> Vec<usize> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let t0 = Instant::now();
        let mut p = PeakEwma::new(latencies_ms.len(), PeakEwmaConfig::default());
        let mut rng = FastRng::new(seed);
        let mut pending = BinaryHeap::new();
        let mut counts = vec![0; latencies_ms.len()];
        for k in 0..requests {
            let now = t0 + Duration::from_millis(k);
            while let Some(&Reverse((done, i, sent))) = pending.peek() {
                if done > now {
                    break;
                }
                pending.pop();
                p.finish(i);
                p.observe(i, done - sent, done);
            }
            let i = p.pick(now, &mut rng, |_| true).unwrap();
            p.start(i);
            counts[i] += 1;
            let latency = Duration::from_millis(latencies_ms[i]);
            pending.push(Reverse((now + latency, i, now)));
        }
        counts
    }

    #[test]
    fn p2c_moves_traffic_away_from_a_slow_endpoint() {
        let counts = simulate_p2c(&[5, 5, 5, 100], 20_000, 22);
        let got = shares(&counts);
        assert!(got[3] < 0.08, "slow endpoint kept {got:?}");
        for share in &got[..3] {
            assert!(*share > 0.28, "{got:?}");
        }
    }

    #[test]
    fn peak_ewma_jumps_up_on_a_peak_and_forgets_when_idle() {
        let t0 = Instant::now();
        let cfg = PeakEwmaConfig::default();
        let mut p = PeakEwma::new(2, cfg);
        // Nothing observed anywhere: the default.
        assert_eq!(p.latency_estimate(1, t0), cfg.default_rtt);
        p.observe(0, Duration::from_millis(10), t0);
        p.observe(0, Duration::from_millis(500), t0 + Duration::from_millis(1));
        let est = p.latency_estimate(0, t0 + Duration::from_millis(1));
        assert_eq!(est, Duration::from_millis(500));
        // A fast sample right after barely moves it (peak sensitivity, slow recovery).
        p.observe(0, Duration::from_millis(10), t0 + Duration::from_millis(2));
        assert!(p.latency_estimate(0, t0 + Duration::from_millis(2)) > Duration::from_millis(490));
        // One time constant later it has lost about 1/e; many later it is near zero.
        let later = p.latency_estimate(0, t0 + Duration::from_millis(2) + cfg.decay);
        assert!(
            later.abs_diff(Duration::from_millis(184)) < Duration::from_millis(2),
            "{later:?}"
        );
        let much_later = p.latency_estimate(0, t0 + Duration::from_secs(200));
        assert!(much_later < Duration::from_micros(1), "{much_later:?}");
        // Endpoint 1, never observed, now reads as the average of the observed ones.
        let now = t0 + Duration::from_millis(2);
        assert_eq!(p.latency_estimate(1, now), p.latency_estimate(0, now));
    }

    #[test]
    fn p2c_gives_a_new_endpoint_traffic_and_handles_eligibility() {
        let t0 = Instant::now();
        let mut p = PeakEwma::new(3, PeakEwmaConfig::default());
        let mut rng = FastRng::new(23);
        // Far below the 30 ms default: a new endpoint costed at the default would starve.
        p.observe(0, Duration::from_millis(2), t0);
        p.observe(1, Duration::from_millis(2), t0);
        // Endpoint 2 is new and costs the average: it gets its third of the picks.
        let mut new_picks = 0;
        for _ in 0..3_000 {
            let i = p.pick(t0, &mut rng, |_| true).unwrap();
            new_picks += usize::from(i == 2);
        }
        assert!((850..1_150).contains(&new_picks), "{new_picks}");
        for _ in 0..1_000 {
            assert_eq!(p.pick(t0, &mut rng, |i| i == 1), Some(1));
            assert_ne!(p.pick(t0, &mut rng, |i| i != 2), Some(2));
        }
        assert_eq!(p.pick(t0, &mut rng, |_| false), None);
        assert_eq!(
            PeakEwma::new(0, PeakEwmaConfig::default()).pick(t0, &mut rng, |_| true),
            None
        );
    }

    #[test]
    fn maglev_balanced_across_ten() {
        let keys = keys(10);
        let m = Maglev::new(&key_refs(&keys), &[], Maglev::DEFAULT_TABLE_SIZE);
        assert_eq!(m.table_size(), 65_537);
        let mut slots = [0usize; 10];
        for &e in m.table.iter() {
            slots[e as usize] += 1;
        }
        for s in slots {
            assert!(s.abs_diff(6_554) <= 2, "{slots:?}");
        }
        let mut rng = FastRng::new(31);
        let mut counts = [0usize; 10];
        for _ in 0..PICKS {
            counts[m.lookup(rng.next_u64(), |_| true).unwrap()] += 1;
        }
        for c in counts {
            // 3% of the ideal 10,000.
            assert!(c.abs_diff(10_000) < 300, "{counts:?}");
        }
    }

    #[test]
    fn maglev_weighted() {
        let keys = keys(3);
        let m = Maglev::new(&key_refs(&keys), &[5, 3, 2], Maglev::DEFAULT_TABLE_SIZE);
        let mut rng = FastRng::new(32);
        let mut counts = [0; 3];
        for _ in 0..PICKS {
            counts[m.lookup(rng.next_u64(), |_| true).unwrap()] += 1;
        }
        assert_shares(&counts, &[0.5, 0.3, 0.2], 0.01);
    }

    /// Which key (by identity) each of `hashes` lands on.
    fn owners<'k>(m: &Maglev, keys: &[&'k [u8]], hashes: &[u64]) -> Vec<&'k [u8]> {
        hashes
            .iter()
            .map(|&h| keys[m.lookup(h, |_| true).unwrap()])
            .collect()
    }

    fn moved(a: &[&[u8]], b: &[&[u8]]) -> f64 {
        a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
    }

    #[test]
    fn maglev_minimal_remapping_when_one_leaves_or_joins() {
        let all = keys(11);
        let all = key_refs(&all);
        let ten = &all[..10];
        let mut rng = FastRng::new(33);
        let hashes: Vec<u64> = (0..PICKS).map(|_| rng.next_u64()).collect();
        let before = owners(&Maglev::new(ten, &[], 65_537), ten, &hashes);

        // Endpoint 3 leaves.
        let nine: Vec<&[u8]> = ten.iter().copied().filter(|&k| k != ten[3]).collect();
        let after = owners(&Maglev::new(&nine, &[], 65_537), &nine, &hashes);
        let frac = moved(&before, &after);
        assert!(frac < 0.15, "moved {frac}");
        assert!(frac >= 0.09, "the leaver's keys must move: {frac}");
        let (stay_before, stay_after): (Vec<&[u8]>, Vec<&[u8]>) = before
            .iter()
            .zip(&after)
            .filter(|(b, _)| **b != ten[3])
            .map(|(b, a)| (*b, *a))
            .unzip();
        let others_moved = moved(&stay_before, &stay_after);
        assert!(others_moved < 0.05, "others moved {others_moved}");

        // An eleventh joins.
        let after = owners(&Maglev::new(&all, &[], 65_537), &all, &hashes);
        let frac = moved(&before, &after);
        assert!(frac < 0.15, "moved {frac}");
        let to_new = after.iter().filter(|&&k| k == all[10]).count() as f64 / PICKS as f64;
        assert!((to_new - 1.0 / 11.0).abs() < 0.01, "{to_new}");
    }

    #[test]
    fn maglev_ineligible_endpoint_moves_only_its_own_keys() {
        let keys = keys(10);
        let m = Maglev::new(&key_refs(&keys), &[], 65_537);
        let mut rng = FastRng::new(34);
        let mut spread = [0usize; 10];
        for _ in 0..PICKS {
            let h = rng.next_u64();
            let home = m.lookup(h, |_| true).unwrap();
            let now = m.lookup(h, |i| i != 4).unwrap();
            assert_ne!(now, 4);
            if home == 4 {
                // Deterministic fallback.
                assert_eq!(m.lookup(h, |i| i != 4), Some(now));
                spread[now] += 1;
            } else {
                assert_eq!(now, home);
            }
        }
        // The down endpoint's keys spread over the others, not onto one neighbour.
        let moved: usize = spread.iter().sum();
        for (i, &s) in spread.iter().enumerate() {
            if i != 4 {
                assert!(s > moved / 20, "{spread:?}");
            }
        }
        assert_eq!(m.lookup(1, |_| false), None);
        assert_eq!(m.lookup(1, |i| i == 7), Some(7));
    }

    #[test]
    fn maglev_edge_cases() {
        assert_eq!(Maglev::new(&[], &[], 7).lookup(5, |_| true), None);
        let k = keys(3);
        let k = key_refs(&k);
        let zero = Maglev::new(&k, &[0, 0, 0], 7);
        assert_eq!(zero.table_size(), 0);
        assert_eq!(zero.lookup(5, |_| true), None);
        // Non-prime size rounds up; a weight-0 endpoint is never returned, even as fallback.
        let m = Maglev::new(&k, &[1, 0, 1], 100);
        assert_eq!(m.table_size(), 101);
        for h in 0..1_000 {
            assert_ne!(m.lookup(h, |_| true), Some(1));
            assert_eq!(m.lookup(h, |i| i != 0), Some(2));
        }
        assert_eq!(m.lookup(3, |i| i == 1), None);
        assert_eq!(next_prime(2), 2);
        assert_eq!(next_prime(65_536), 65_537);
        assert!(!is_prime(65_535) && is_prime(65_537) && !is_prime(1) && !is_prime(9));
    }

    #[test]
    fn balancer_dispatches_and_hooks_are_safe() {
        let t0 = Instant::now();
        let k = keys(3);
        let k = key_refs(&k);
        let mut rng = FastRng::new(41);
        for kind in [
            LbKind::RoundRobin,
            LbKind::WeightedRoundRobin,
            LbKind::LeastRequests,
            LbKind::PeakEwma,
            LbKind::ConsistentHash,
        ] {
            let mut b = Balancer::new(kind, &k, &[2, 1]);
            assert_eq!(b.len(), 3);
            assert!(!b.is_empty());
            for _ in 0..100 {
                let i = b
                    .pick(Some(rng.next_u64()), t0, &mut rng, |i| i != 1)
                    .unwrap();
                assert_ne!(i, 1, "{kind:?}");
                b.start(i);
                b.observe(i, Duration::from_millis(1), t0);
                b.finish(i);
            }
            assert_eq!(b.pick(None, t0, &mut rng, |_| false), None, "{kind:?}");
            b.start(99);
            b.finish(99);
            b.observe(99, Duration::ZERO, t0);
            assert!(Balancer::new(kind, &[], &[]).is_empty());
        }
        // Consistent hash: the same key, the same endpoint; no key, still a pick.
        let mut b = Balancer::new(LbKind::ConsistentHash, &k, &[]);
        let first = b.pick(Some(42), t0, &mut rng, |_| true);
        for _ in 0..10 {
            assert_eq!(b.pick(Some(42), t0, &mut rng, |_| true), first);
        }
        assert!(b.pick(None, t0, &mut rng, |_| true).is_some());
    }

    proptest::proptest! {
        #[test]
        fn smooth_wrr_gives_exact_weights_every_cycle(
            weights in proptest::collection::vec(0u32..8, 1..8),
        ) {
            let total: u32 = weights.iter().sum();
            let mut wrr = SmoothWeightedRoundRobin::new(&weights);
            for _ in 0..3 {
                let mut counts = vec![0u32; weights.len()];
                for _ in 0..total {
                    counts[wrr.pick(|_| true).unwrap()] += 1;
                }
                proptest::prop_assert_eq!(&counts, &weights);
            }
        }

        #[test]
        fn maglev_only_returns_eligible_weighted_endpoints(
            weights in proptest::collection::vec(0u32..4, 1..12),
            mask in proptest::num::u16::ANY,
            hashes in proptest::collection::vec(proptest::num::u64::ANY, 1..50),
        ) {
            let k = keys(weights.len());
            let m = Maglev::new(&key_refs(&k), &weights, 211);
            let eligible = |i: usize| mask & (1 << i) != 0;
            let any = (0..weights.len()).any(|i| weights[i] > 0 && eligible(i));
            for h in hashes {
                match m.lookup(h, eligible) {
                    Some(i) => proptest::prop_assert!(eligible(i) && weights[i] > 0),
                    None => proptest::prop_assert!(!any),
                }
            }
        }
    }
}
