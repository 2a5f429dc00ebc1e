//! `ringbench run` against stub upstreams: accounting, errors, timeouts, censoring, verdicts and
//! outputs. Timing is never asserted here (see run_accuracy.rs and run_stall.rs for the two
//! tolerance checks the acceptance asks for).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{accounted, run_config};
use ringbench::run::{self, Verdict};
use ringbench::upstream::{self, UpstreamConfig};

#[test]
fn every_scheduled_request_is_completed_and_counted() {
    let up = upstream::spawn(UpstreamConfig { body_bytes: 200, ..Default::default() }).unwrap();
    let url = format!("http://{}/", up.addr());
    let mut cfg = run_config(&url, 400.0, Duration::from_millis(1500));
    cfg.warmup = Duration::from_millis(500);
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.scheduled, 400);
    assert_eq!(r.counts.completed, 400);
    assert_eq!(r.counts.success, 400);
    assert_eq!(r.counts.statuses.get("200"), Some(&400));
    // Warmup requests were sent too, but not measured.
    assert_eq!(up.requests_served(), 600);
    assert!(r.table().contains("scheduled 400 = completed 400"));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["verdict"].is_string());
    assert!(json["spectrum"].as_array().unwrap().len() > 5);
}

#[test]
fn injected_statuses_and_resets_are_counted_by_kind() {
    let up = upstream::spawn(UpstreamConfig {
        errors: "503=0.2,reset=0.1".parse().unwrap(),
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let cfg = run_config(&format!("http://{}/", up.addr()), 500.0, Duration::from_secs(1));
    let r = accounted(run::run(&cfg).unwrap());
    let n503 = *r.counts.statuses.get("503").unwrap();
    assert!((50..=160).contains(&n503), "{n503}");
    assert_eq!(r.counts.success + n503, r.counts.completed);
    let resets = r.counts.errors;
    assert!((20..=90).contains(&resets), "{resets}");
    assert!(r.counts.error_kinds.keys().all(|k| k == "reset" || k == "closed"));
}

#[test]
fn hung_requests_time_out_at_their_time_and_mark_the_target_saturated() {
    let up = upstream::spawn(UpstreamConfig {
        errors: "hang=1".parse().unwrap(),
        ..Default::default()
    })
    .unwrap();
    let mut cfg = run_config(&format!("http://{}/", up.addr()), 100.0, Duration::from_secs(1));
    cfg.timeout = Duration::from_millis(300);
    cfg.grace = Duration::from_millis(100);
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert!(r.counts.timeouts > 0 && r.counts.censored > 0, "{:?}", r.counts);
    // Timeouts are recorded in the response time, at (at least) the timeout.
    assert!(r.latency.response.count == r.counts.timeouts);
    assert!(r.latency.response.min_ns >= 299_000_000); // HDR keeps 3 digits
    assert_eq!(r.verdict, Verdict::TargetSaturated);
    assert_ne!(r.verdict.exit_code(), 0);
}

#[test]
fn a_closed_port_gives_connect_errors_not_silence() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = run_config(&format!("http://127.0.0.1:{port}/"), 100.0, Duration::from_millis(500));
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert_eq!(r.counts.errors, r.counts.scheduled);
    assert!(r.counts.error_kinds.contains_key("connect"));
}

#[test]
fn scenario_kinds_and_pools_reach_the_server() {
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("ringbench-run-scn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mix.toml");
    std::fs::write(
        &file,
        r#"
        [[requests]]
        name = "ok"
        weight = 3
        path = "/echo"
        headers = { authorization = "Bearer ${jwt}" }
        [[requests]]
        name = "missing"
        weight = 1
        path = "/status/404"
        [pools]
        jwt = ["valid", "expired", "bad-signature"]
        "#,
    )
    .unwrap();
    let target = run::Target::parse(&format!("http://{}/", up.addr())).unwrap();
    let plan = run::Plan::from_scenario(&file, &target).unwrap();
    let cfg = run::RunConfig::simple(target, plan, 400.0, Duration::from_secs(1));
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.kinds.len(), 2);
    let ok = r.kinds[0].classes.get("2xx").copied().unwrap_or(0);
    let missing = r.kinds[1].classes.get("4xx").copied().unwrap_or(0);
    assert_eq!(ok + missing, 400);
    assert!((220..=380).contains(&ok), "{ok}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hlog_and_plot_outputs_are_written() {
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let mut cfg = run_config(&format!("http://{}/", up.addr()), 300.0, Duration::from_millis(1200));
    cfg.log_interval = Some(Duration::from_millis(250));
    let r = accounted(run::run(&cfg).unwrap());
    assert!(r.intervals.len() >= 4);
    let mut log = Vec::new();
    ringbench::report::hlog::write_to(&mut log, &r, Duration::from_millis(250)).unwrap();
    let text = String::from_utf8(log).unwrap();
    assert!(text.contains("#[StartTime: "));
    assert!(text.lines().filter(|l| !l.starts_with('#') && !l.starts_with('"')).count() >= 4);
    let svg = ringbench::report::plot::spectrum_svg(&[("a".into(), &r), ("b".into(), &r)]);
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2);
}
