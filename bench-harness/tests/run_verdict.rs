//! The verdict against reference servers of known service time (the stub upstream in-process on
//! a loopback port): a run whose requests queued for ringbench's own connections is not valid; a
//! target offered 10% over its known capacity is not valid even when its backlog drains in the
//! grace period, and its achieved rate leaves out what the grace period drained; the interval
//! log starts when the run did; the generator's cost per request is measured and reported.
//! No timing figure is asserted: only verdicts, reasons and counts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{accounted, run_config};
use ringbench::run::{self, Verdict};
use ringbench::upstream::{self, UpstreamConfig};

fn reference(latency: &str, concurrency: usize) -> upstream::UpstreamHandle {
    upstream::spawn(UpstreamConfig {
        latency: latency.parse().unwrap(),
        concurrency,
        ..Default::default()
    })
    .unwrap()
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn requests_queued_for_ringbench_connections_make_the_run_invalid() {
    // 4 connections x 20 ms = 200/s at most through ringbench's own pool; 220/s offered. The
    // server itself has no limit: only the generator's pool holds requests back.
    let up = reference("fixed:20ms", 0);
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        220.0,
        Duration::from_millis(1500),
    );
    cfg.warmup = Duration::from_millis(300);
    cfg.conns = 4;
    cfg.max_conns = 4;
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.verdict, Verdict::GeneratorLimited, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains("queue wait")),
        "{:?}",
        r.reasons
    );
    assert_ne!(r.verdict.exit_code(), 0);
    assert_eq!(r.generator.peak_connections, 4);
}

#[test]
fn a_target_over_its_capacity_is_invalid_and_grace_completions_are_not_achieved() {
    // One server of 5 ms: capacity 200/s. Offered 220/s; the backlog (about 20 requests a
    // second) drains well inside the 2 s grace period, so every request completes.
    let up = reference("fixed:5ms", 1);
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        220.0,
        Duration::from_millis(1300),
    );
    cfg.warmup = Duration::from_millis(300);
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, r.counts.scheduled, "{:?}", r.counts);
    assert!(
        matches!(
            r.verdict,
            Verdict::TargetSaturated | Verdict::GeneratorLimited
        ),
        "{:?} {:?}",
        r.verdict,
        r.reasons
    );
    assert!(
        r.reasons.iter().any(|x| x.contains("inside the window")),
        "{:?}",
        r.reasons
    );
    assert_ne!(r.verdict.exit_code(), 0);
    // Achieved counts what completed inside the window: the server can carry 200/s, so at
    // least the last ~20 requests (completed in the grace period) are left out.
    assert!(
        r.counts.in_window + 10 < r.counts.scheduled,
        "{:?}",
        r.counts
    );
    let achieved_by_count = r.counts.in_window as f64 / r.window_s;
    assert!((r.rates.achieved - achieved_by_count).abs() < 1e-6);
    assert!(r.rates.achieved < r.rates.offered * 0.97, "{:?}", r.rates);
}

#[test]
fn the_interval_log_starts_when_the_run_started() {
    let up = reference("0", 0);
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        200.0,
        Duration::from_millis(1200),
    );
    cfg.warmup = Duration::from_millis(200);
    cfg.log_interval = Some(Duration::from_millis(250));
    let before = unix_s(SystemTime::now());
    let r = run::run(&cfg).unwrap();
    let mut log = Vec::new();
    ringbench::report::hlog::write_to(&mut log, &r, Duration::from_millis(250)).unwrap();
    let text = String::from_utf8(log).unwrap();
    let start: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#[StartTime: "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // The window opens after a 200 ms lead-in and the warmup; the log was written at least a
    // second (the measured window) after that.
    assert!(
        start >= before,
        "start {start} before the run began {before}"
    );
    assert!(
        start < before + 0.4 + 0.5,
        "start {start} is not the run's start ({before}): written at the end?"
    );
    assert!(
        (r.started_unix_s - start).abs() < 0.002,
        "{}",
        r.started_unix_s
    );
}

#[test]
fn the_generator_cost_per_request_is_measured_and_reported() {
    let up = reference("0", 0);
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        500.0,
        Duration::from_millis(700),
    );
    cfg.warmup = Duration::from_millis(200);
    let r = accounted(run::run(&cfg).unwrap());
    let g = &r.generator;
    assert!(g.cpu_seconds > 0.0, "{g:?}");
    assert!(g.us_per_request > 0.0, "{g:?}");
    assert!(r.table().contains("us CPU per request"), "{}", r.table());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["generator"]["us_per_request"].as_f64().unwrap() > 0.0);
}
