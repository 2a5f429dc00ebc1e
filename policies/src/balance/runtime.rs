//! The per-core state the engine drives for each upstream and route, built from this module's
//! pieces: it implements the engine's [`UpstreamRuntime`] and [`RouteRuntime`] contracts.
//!
//! An upstream combines its balancer, the active health board (shared, written by the health
//! checker, read here), passive outlier ejection and the circuit breaker. When every endpoint is
//! unhealthy or ejected, ejection is ignored ("panic mode": better a possibly failing endpoint
//! than a certain 503), but active health is not. A route holds its retry budget, its backoff
//! and its traffic split.

use super::{
    backoff, Admit, Balancer, BreakerConfig, BreakerState, CircuitBreaker, FailureKind, FastRng,
    LbKind, OutlierConfig, OutlierDetector, RetryBudget, RetryBudgetConfig, TrafficSplit,
};
use ringgate_model::refusal::Refusal;
use ringgate_model::resilience::{
    Admission, AttemptOutcome, HealthBoard, RouteRuntime, UpstreamRuntime,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an upstream balances and protects itself (compiled from config, shared read-only).
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// The balancing algorithm.
    pub lb: LbKind,
    /// Endpoint identities (stable keys for consistent hashing), in endpoint order.
    pub keys: Vec<String>,
    /// Endpoint weights, in endpoint order.
    pub weights: Vec<u32>,
    /// Passive outlier ejection, if enabled.
    pub outlier: Option<OutlierConfig>,
    /// The circuit breaker, if enabled.
    pub breaker: Option<BreakerConfig>,
    /// Active health results, if checks are configured.
    pub health: Option<Arc<HealthBoard>>,
}

/// One upstream's state on one core.
#[derive(Debug)]
pub struct UpstreamState {
    balancer: Balancer,
    outlier: Option<OutlierDetector>,
    breaker: Option<CircuitBreaker>,
    health: Option<Arc<HealthBoard>>,
    rng: FastRng,
}

impl UpstreamState {
    /// Fresh state for `policy`.
    pub fn new(policy: &UpstreamPolicy, seed: u64, now: Instant) -> Self {
        let keys: Vec<&[u8]> = policy.keys.iter().map(|k| k.as_bytes()).collect();
        let n = keys.len();
        Self {
            balancer: Balancer::new(policy.lb, &keys, &policy.weights),
            outlier: policy.outlier.map(|c| OutlierDetector::new(n, c)),
            breaker: policy.breaker.map(|c| CircuitBreaker::new(c, now)),
            health: policy.health.clone(),
            rng: FastRng::new(seed),
        }
    }
}

fn tried_bit(tried: u64, i: usize) -> bool {
    i < 64 && tried & (1u64 << i) != 0
}

impl UpstreamRuntime for UpstreamState {
    fn admit(&mut self, now: Instant) -> Result<Admission, Refusal> {
        match self.breaker.as_mut().map(|b| b.try_acquire(now)) {
            None | Some(Admit::Allowed) => Ok(Admission { probe: false }),
            Some(Admit::Probe) => Ok(Admission { probe: true }),
            Some(Admit::Rejected) => Err(Refusal::UPSTREAM_UNAVAILABLE),
        }
    }

    fn pick(&mut self, key: Option<u64>, tried: u64, now: Instant) -> Option<usize> {
        let health = self.health.as_deref();
        let healthy = |i: usize| health.is_none_or(|h| h.is_healthy(i));
        let outlier = self.outlier.as_ref();
        let first = self.balancer.pick(key, now, &mut self.rng, |i| {
            !tried_bit(tried, i) && healthy(i) && !outlier.is_some_and(|o| o.is_ejected(i, now))
        });
        if first.is_some() || outlier.is_none() {
            return first;
        }
        // Every healthy endpoint is ejected: ignore ejection rather than fail.
        self.balancer.pick(key, now, &mut self.rng, |i| {
            !tried_bit(tried, i) && healthy(i)
        })
    }

    fn started(&mut self, endpoint: usize) {
        self.balancer.start(endpoint);
    }

    fn abandoned(&mut self, endpoint: usize) {
        self.balancer.finish(endpoint);
    }

    fn finished(
        &mut self,
        endpoint: usize,
        outcome: AttemptOutcome,
        latency: Duration,
        now: Instant,
    ) {
        self.balancer.finish(endpoint);
        if matches!(outcome, AttemptOutcome::Response(_)) {
            self.balancer.observe(endpoint, latency, now);
        }
        if let Some(o) = self.outlier.as_mut() {
            match outcome {
                AttemptOutcome::Response(s) if s < 500 => o.record_success(endpoint, now),
                AttemptOutcome::Response(_) | AttemptOutcome::Failed => {
                    o.record_failure(endpoint, FailureKind::Http5xx, now);
                }
                AttemptOutcome::ConnectFailed => {
                    o.record_failure(endpoint, FailureKind::Connect, now);
                }
            }
        }
    }

    fn release(&mut self, a: Admission, ok: bool, now: Instant) {
        if let Some(b) = self.breaker.as_mut() {
            let admit = if a.probe {
                Admit::Probe
            } else {
                Admit::Allowed
            };
            b.record(admit, ok, now);
        }
    }

    fn carry_from(&mut self, old: Self, map: &[Option<usize>]) {
        self.balancer.carry_from(&old.balancer, map);
        if let (Some(new), Some(old)) = (self.outlier.as_mut(), old.outlier.as_ref()) {
            new.carry_from(old, map);
        }
        // The breaker judges the upstream as a whole: an open breaker stays open when only the
        // endpoints changed (not when its own settings did).
        if let (Some(new), Some(old)) = (self.breaker.as_mut(), old.breaker) {
            if new.config() == old.config() {
                *new = old;
            }
        }
    }

    fn breaker_state(&self, now: Instant) -> &'static str {
        match self.breaker.as_ref().map(|b| b.state(now)) {
            None => "none",
            Some(BreakerState::Closed) => "closed",
            Some(BreakerState::Open) => "open",
            Some(BreakerState::HalfOpen) => "half_open",
        }
    }

    fn breaker_transitions(&self) -> (u64, u64, u64) {
        self.breaker.as_ref().map_or((0, 0, 0), |b| b.transitions())
    }

    fn ejected(&self, now: Instant) -> usize {
        self.outlier.as_ref().map_or(0, |o| o.ejected_count(now))
    }
}

/// How a route retries and splits (compiled from config, shared read-only).
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    /// The retry budget.
    pub budget: RetryBudgetConfig,
    /// First backoff.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// Split weights, in split order (empty: no split).
    pub split_weights: Vec<u32>,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        Self {
            budget: RetryBudgetConfig::default(),
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            split_weights: Vec::new(),
        }
    }
}

/// One route's state on one core.
#[derive(Debug)]
pub struct RouteState {
    budget: RetryBudget,
    split: TrafficSplit,
    base: Duration,
    max: Duration,
    rng: FastRng,
}

impl RouteState {
    /// Fresh state for `policy`.
    pub fn new(policy: &RoutePolicy, seed: u64, now: Instant) -> Self {
        Self {
            budget: RetryBudget::new(policy.budget, now),
            split: TrafficSplit::new(&policy.split_weights),
            base: policy.backoff_base,
            max: policy.backoff_max,
            rng: FastRng::new(seed),
        }
    }
}

impl RouteRuntime for RouteState {
    fn record_request(&mut self, now: Instant) {
        self.budget.record_request(now);
    }

    fn try_retry(&mut self, now: Instant) -> bool {
        self.budget.try_retry(now)
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        backoff(
            attempt.saturating_sub(1),
            self.base,
            self.max,
            &mut self.rng,
        )
    }

    fn split(&self, key: u64) -> usize {
        self.split.pick(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(n: usize) -> UpstreamPolicy {
        UpstreamPolicy {
            lb: LbKind::RoundRobin,
            keys: (0..n).map(|i| format!("10.0.0.{i}:80")).collect(),
            weights: vec![1; n],
            outlier: Some(OutlierConfig {
                consecutive_5xx: 2,
                consecutive_connect_failures: 1,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(60),
                max_ejected_percent: 50,
            }),
            breaker: Some(BreakerConfig {
                window: Duration::from_secs(10),
                min_requests: 4,
                error_ratio: 0.5,
                open_for: Duration::from_secs(1),
                half_open_probes: 1,
            }),
            health: Some(Arc::new(HealthBoard::new(n))),
        }
    }

    #[test]
    fn unhealthy_ejected_and_tried_endpoints_are_skipped() {
        let t0 = Instant::now();
        let p = policy(3);
        let mut s = UpstreamState::new(&p, 1, t0);
        if let Some(h) = &p.health {
            h.set(0, false);
        }
        for _ in 0..10 {
            let i = s.pick(None, 0, t0).expect("pick");
            assert_ne!(i, 0, "unhealthy endpoint picked");
        }
        s.started(1);
        s.finished(1, AttemptOutcome::ConnectFailed, Duration::ZERO, t0);
        for _ in 0..10 {
            assert_eq!(
                s.pick(None, 0, t0),
                Some(2),
                "only 2 is healthy and not ejected"
            );
        }
        // 2 already tried: with 1 ejected, panic mode gives 1 rather than nothing.
        assert_eq!(s.pick(None, 1 << 2, t0), Some(1));
        assert_eq!(s.ejected(t0), 1);
    }

    #[test]
    fn the_breaker_opens_on_errors_and_refuses_fast() {
        let t0 = Instant::now();
        let mut s = UpstreamState::new(&policy(2), 1, t0);
        for _ in 0..4 {
            let a = s.admit(t0).expect("closed");
            s.release(a, false, t0);
        }
        assert_eq!(s.admit(t0), Err(Refusal::UPSTREAM_UNAVAILABLE));
        assert_eq!(s.breaker_state(t0), "open");
        let later = t0 + Duration::from_millis(1100);
        let probe = s.admit(later).expect("half-open probe");
        assert!(probe.probe);
        s.release(probe, true, later);
        assert_eq!(s.breaker_state(later), "closed");
        assert_eq!(s.breaker_transitions().0, 1);
    }

    #[test]
    fn route_budget_and_split() {
        let t0 = Instant::now();
        let p = RoutePolicy {
            budget: RetryBudgetConfig {
                ratio: 0.1,
                min_per_sec: 0,
                window: Duration::from_secs(10),
            },
            split_weights: vec![95, 5],
            ..RoutePolicy::default()
        };
        let mut r = RouteState::new(&p, 3, t0);
        for _ in 0..100 {
            r.record_request(t0);
        }
        let allowed = (0..50).filter(|_| r.try_retry(t0)).count();
        assert_eq!(allowed, 10);
        assert!(r.backoff(1) <= Duration::from_millis(25));
        let canary = (0..10_000u64)
            .filter(|k| r.split(ringgate_model::resilience::key_hash(&k.to_le_bytes())) == 1)
            .count();
        assert!((400..600).contains(&canary), "{canary}");
    }
}
