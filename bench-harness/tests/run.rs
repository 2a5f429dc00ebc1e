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
    let up = upstream::spawn(UpstreamConfig {
        body_bytes: 200,
        ..Default::default()
    })
    .unwrap();
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
fn large_uploads_are_sent_whole_over_many_loop_turns() {
    // 3 MiB bodies go out in 256 KiB turns from the plan's shared copy: the stub reads exactly
    // content-length bytes per request, so a short or long body would fail or hang the next one.
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let url = format!("http://{}/", up.addr());
    let target = ringbench::run::Target::parse(&url).unwrap();
    let req = ringbench::run::SimpleRequest {
        method: "PUT".into(),
        headers: Vec::new(),
        body_bytes: 3 << 20,
    };
    let plan = ringbench::run::Plan::single(&target, &req).unwrap();
    let mut cfg = ringbench::run::RunConfig::simple(target, plan, 60.0, Duration::from_secs(1));
    cfg.conns = 2;
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.scheduled, 60);
    assert_eq!(r.counts.success, 60, "{:?}", r.counts);
    assert_eq!(up.requests_served(), 60);
}

#[test]
fn latency_is_reported_per_group_of_the_scenario() {
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let url = format!("http://{}/", up.addr());
    let dir = std::env::temp_dir().join(format!("ringbench-run-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "[[requests]]\ngroup = \"api\"\nweight = 3\n[[requests]]\ngroup = \"bulk\"\n\
         method = \"PUT\"\nbody_bytes = 70000\n",
    )
    .unwrap();
    let target = ringbench::run::Target::parse(&url).unwrap();
    let plan = ringbench::run::Plan::from_scenario(&file, &target).unwrap();
    let cfg = ringbench::run::RunConfig::simple(target, plan, 200.0, Duration::from_secs(1));
    let r = accounted(run::run(&cfg).unwrap());
    let names: Vec<&str> = r.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["api", "bulk"]);
    let per_group: u64 = r.groups.iter().map(|g| g.response.count).sum();
    assert_eq!(per_group, r.latency.response.count);
    assert!(
        r.groups.iter().all(|g| g.response.count > 0),
        "{:?}",
        r.groups
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn injected_statuses_and_resets_are_counted_by_kind() {
    let up = upstream::spawn(UpstreamConfig {
        errors: "503=0.2,reset=0.1".parse().unwrap(),
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let cfg = run_config(
        &format!("http://{}/", up.addr()),
        500.0,
        Duration::from_secs(1),
    );
    let r = accounted(run::run(&cfg).unwrap());
    let n503 = *r.counts.statuses.get("503").unwrap();
    assert!((50..=160).contains(&n503), "{n503}");
    assert_eq!(r.counts.success + n503, r.counts.completed);
    let resets = r.counts.errors;
    assert!((20..=90).contains(&resets), "{resets}");
    assert!(r
        .counts
        .error_kinds
        .keys()
        .all(|k| k == "reset" || k == "closed"));
}

#[test]
fn hung_requests_time_out_at_their_time_and_mark_the_target_saturated() {
    let up = upstream::spawn(UpstreamConfig {
        errors: "hang=1".parse().unwrap(),
        ..Default::default()
    })
    .unwrap();
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        100.0,
        Duration::from_secs(1),
    );
    cfg.timeout = Duration::from_millis(300);
    cfg.grace = Duration::from_millis(100);
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert!(
        r.counts.timeouts > 0 && r.counts.censored > 0,
        "{:?}",
        r.counts
    );
    // Timeouts are recorded in the response time, at (at least) the timeout.
    assert!(r.latency.response.count == r.counts.timeouts);
    assert!(r.latency.response.min_ns >= 299_000_000); // HDR keeps 3 digits

    // On a loaded machine the generator may also fall behind, and then its verdict takes the
    // name; the target's saturation must be among the reasons either way.
    assert!(
        matches!(
            r.verdict,
            Verdict::TargetSaturated | Verdict::GeneratorLimited
        ),
        "{:?}",
        r.verdict
    );
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("timed out or never finished")),
        "{:?}",
        r.reasons
    );
    assert_ne!(r.verdict.exit_code(), 0);
}

#[test]
fn a_closed_port_gives_connect_errors_not_silence() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = run_config(
        &format!("http://127.0.0.1:{port}/"),
        100.0,
        Duration::from_millis(500),
    );
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert_eq!(r.counts.errors, r.counts.scheduled);
    assert!(r.counts.error_kinds.contains_key("connect"));
    assert_ne!(r.verdict, run::Verdict::Valid);
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
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        300.0,
        Duration::from_millis(1200),
    );
    cfg.log_interval = Some(Duration::from_millis(250));
    let r = accounted(run::run(&cfg).unwrap());
    assert!(r.intervals.len() >= 4);
    let mut log = Vec::new();
    ringbench::report::hlog::write_to(&mut log, &r, Duration::from_millis(250)).unwrap();
    let text = String::from_utf8(log).unwrap();
    assert!(text.contains("#[StartTime: "));
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
            .count()
            >= 4
    );
    let svg = ringbench::report::plot::spectrum_svg(&[("a".into(), &r), ("b".into(), &r)]);
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2);
}

#[test]
fn hlog_reads_back_with_hdrhistogram_and_sweep_finds_the_slo_rate() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        200.0,
        Duration::from_millis(600),
    );
    cfg.log_interval = Some(Duration::from_millis(200));
    let r = accounted(run::run(&cfg).unwrap());
    let mut log = Vec::new();
    ringbench::report::hlog::write_to(&mut log, &r, Duration::from_millis(200)).unwrap();
    let mut total = 0;
    let mut deser = hdrhistogram::serialization::Deserializer::new();
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(h) = entry.unwrap() {
            let bytes = h.encoded_histogram().as_bytes();
            let decoded = base64_decode(bytes);
            let hist: hdrhistogram::Histogram<u64> = deser.deserialize(&mut &decoded[..]).unwrap();
            total += hist.len();
        }
    }
    assert_eq!(total, r.counts.completed);

    // A sweep with a loose SLO (and a loose self-check: this is about the mechanics, on a
    // machine shared with other jobs).
    cfg.thresholds.max_lag_p99 = Duration::from_secs(1);
    cfg.thresholds.max_send_lag_p99 = Duration::from_secs(1);
    cfg.thresholds.max_queue_wait_p99 = Duration::from_secs(1);
    cfg.thresholds.max_generator_cpu = 1.0;
    cfg.thresholds.max_core_busy = 1.0;
    let slo = ringbench::sweep::Slo {
        p99: Duration::from_secs(1),
        failures: 0.01,
    };
    let s =
        ringbench::sweep::sweep(&cfg, &[100.0, 200.0], Duration::from_millis(500), slo).unwrap();
    assert_eq!(s.points.len(), 2);
    assert!(
        s.points.iter().all(|p| p.failures == 0.0 && p.holds),
        "{:?}",
        s.points
    );
    assert_eq!(s.best_rate, Some(200.0));
    let svg = ringbench::sweep::curve_svg(&s);
    assert!(svg.contains("SLO p99"));
}

fn base64_decode(s: &[u8]) -> Vec<u8> {
    let table = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.iter().copied().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut v = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            v |= (table(*c) as u32) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((v >> (16 - 8 * i)) as u8);
        }
    }
    out
}
