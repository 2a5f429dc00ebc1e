//! Acceptance: with a known injected latency, ringbench measures fixed 2 ms and a lognormal
//! distribution within 5% at p50 and p99, plus the loopback floor measured in the same process
//! just before at the same rate. The floor run injects a token 100 us (subtracted again) so it
//! includes what any delayed response costs the stub: one more timer wake-up. The allowed range
//! is [0.95 x injected, 1.05 x injected + floor]: noise on a busy 2-core machine only adds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{accounted, run_config};
use ringbench::run::{self, RunReport};
use ringbench::upstream::{self, LatencyDist, UpstreamConfig};

fn measure(latency: LatencyDist, rate: f64, secs: u64) -> RunReport {
    let up = upstream::spawn(UpstreamConfig {
        latency,
        seed: 11,
        ..Default::default()
    })
    .unwrap();
    let mut cfg = run_config(&format!("http://{}/", up.addr()), rate, Duration::from_secs(secs));
    cfg.warmup = Duration::from_millis(300);
    cfg.schedule = run::Schedule::constant(rate, Duration::from_millis(secs * 1000 + 300));
    cfg.conns = 32;
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, r.counts.scheduled);
    r
}

fn check(name: &str, want: Duration, got_ns: u64, floor_ns: u64) {
    let want = want.as_nanos() as f64;
    let got = got_ns as f64;
    let low = want * 0.95;
    let high = want * 1.05 + floor_ns as f64;
    println!("{name}: injected {want:.0}ns measured {got:.0}ns (allowed {low:.0}..{high:.0}, floor {floor_ns}ns)");
    assert!(got >= low && got <= high, "{name}: {got} not in {low}..{high}");
}

/// The loopback floor at `rate`: p50 and p99 of a run whose only injected delay is 100 us.
fn floor(rate: f64) -> (u64, u64) {
    let token = 100_000;
    let r = measure("fixed:100us".parse().unwrap(), rate, 3);
    let l = &r.latency.response;
    (l.p50_ns.saturating_sub(token), l.p99_ns.saturating_sub(token))
}

#[test]
fn fixed_and_lognormal_latencies_are_measured_within_five_percent() {
    let (f50, f99) = floor(1000.0);
    let fixed: LatencyDist = "fixed:2ms".parse().unwrap();
    let r = measure(fixed.clone(), 1000.0, 4);
    check("fixed p50", fixed.quantile(0.5), r.latency.response.p50_ns, f50);
    check("fixed p99", fixed.quantile(0.99), r.latency.response.p99_ns, f99);
    let (f50, f99) = floor(2000.0);
    let logn: LatencyDist = "lognormal:2ms,p99=4ms".parse().unwrap();
    let r = measure(logn.clone(), 2000.0, 6);
    check("lognormal p50", logn.quantile(0.5), r.latency.response.p50_ns, f50);
    check("lognormal p99", logn.quantile(0.99), r.latency.response.p99_ns, f99);
}
