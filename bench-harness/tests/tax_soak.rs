//! `ringbench tax` modes beyond the ladder, in short versions (seconds): the ceiling search with
//! its stall meter, the soak's per-second samples and files, the flame graph (folding and drawing
//! a fixed `perf script` text), the profile when perf works here, and the rolling restart of two
//! gateways under load with zero client-visible errors. No timing figure is asserted.
//!
//! The ringgate binary is found as in `tests/tax.rs` (`RINGGATE_BIN`, else beside the test's
//! target directory); a missing binary fails the tests that need it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ringbench::tax::bench::Bench;
use ringbench::tax::ceiling::{self, CeilingConfig};
use ringbench::tax::topology::{DEFAULT_REPLICAS, DEFAULT_SEED, DEFAULT_UPSTREAMS};
use ringbench::tax::{flame, profile, rolling, soak, Rung, TaxConfig};

/// One stand at a time: they share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn ringgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGGATE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ringgate"))
        .unwrap();
    assert!(
        beside.is_file(),
        "no ringgate binary at {} (build it: cargo build -p ringgate-tools, or set RINGGATE_BIN)",
        beside.display()
    );
    beside
}

fn config(name: &str, rate: f64, duration: Duration) -> TaxConfig {
    let out = std::env::temp_dir().join(format!("ringbench-tax-soak-{}", std::process::id()));
    // Fields not named here (and any added later) take their defaults.
    TaxConfig {
        name: name.into(),
        out,
        seed: DEFAULT_SEED,
        upstreams: DEFAULT_UPSTREAMS,
        replicas: DEFAULT_REPLICAS,
        rungs: vec![Rung::Direct, Rung::Passthrough],
        rate,
        reps: 1,
        duration,
        warmup: Duration::from_millis(500),
        conns: 4,
        ringgate: ringgate_bin(),
        ringbench: Some(PathBuf::from(env!("CARGO_BIN_EXE_ringbench"))),
        command_line: format!("ringbench tax --name {name}"),
        ..TaxConfig::default()
    }
}

fn stand(cfg: &TaxConfig, rung: Rung) -> Bench {
    Bench::up(cfg, &cfg.out.join(&cfg.name), rung).unwrap()
}

/// Removes a passed test's report folder (a failed one keeps it for a look).
fn clean(cfg: &TaxConfig) {
    let _ = std::fs::remove_dir_all(cfg.out.join(&cfg.name));
    let _ = std::fs::remove_dir(&cfg.out);
}

fn well_formed_svg(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.starts_with("<svg ") && s.trim_end().ends_with("</svg>"),
        "{}",
        path.display()
    );
    assert_eq!(s.matches("<g>").count(), s.matches("</g>").count());
    s
}

#[test]
fn ceiling_search_runs_direct_and_the_rung_per_step_with_the_stall_meter() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Limits loose enough for a debug build on a shared host, so both steps hold and the
    // search doubles once and stops at --max-rate.
    let mut cfg = config("ceiling", 40.0, Duration::from_millis(1500));
    cfg.thresholds.max_lag_p99 = Duration::from_secs(1);
    cfg.thresholds.max_queue_wait_p99 = Duration::from_secs(1);
    cfg.thresholds.max_send_lag_p99 = Duration::from_secs(1);
    cfg.thresholds.max_generator_cpu = 1.1;
    cfg.thresholds.max_core_busy = 1.1;
    cfg.thresholds.min_in_window = 0.5;
    let bench = stand(&cfg, Rung::Passthrough);
    let cc = CeilingConfig {
        rung: Rung::Passthrough,
        budget: Duration::from_secs(1),
        start_rate: 20.0,
        max_rate: 40.0,
        bisect: 0,
    };
    let r = ceiling::ceiling(&cfg, &cc, &bench);
    bench.down();
    let r = r.unwrap();
    assert_eq!(r.budget_ns, 1_000_000_000);
    let rates: Vec<f64> = r.steps.iter().map(|s| s.rate).collect();
    assert_eq!(
        rates,
        [20.0, 40.0],
        "20/s held, doubled to 40/s, stopped at the max: {r:?}"
    );
    for s in &r.steps {
        assert!(s.direct.achieved > 0.0 && s.gateway.achieved > 0.0, "{s:?}");
        assert!(s.stalls.wakes > 0, "the stall meter ran during the step");
        assert_eq!(s.holds, s.reason.is_empty());
    }
    assert_eq!(
        r.ceiling,
        r.steps
            .iter()
            .filter(|s| s.holds)
            .map(|s| s.rate)
            .reduce(f64::max)
    );
    let dir = cfg.out.join("ceiling");
    let md = std::fs::read_to_string(dir.join("ceiling.md")).unwrap();
    assert!(md.contains("| 20 |") && md.contains("| 40 |"), "{md}");
    assert!(dir.join("ceiling.json").is_file());
    well_formed_svg(&dir.join("ceiling.svg"));
    clean(&cfg);
}

#[test]
fn soak_samples_every_second_and_writes_csv_json_svg_and_a_verdict() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = config("soak", 40.0, Duration::from_secs(1));
    // The full chain: the stand brings its tokens, Redis and certificate, the load goes over TLS.
    let bench = stand(&cfg, Rung::full_chain());
    let every = Duration::from_secs(1);
    let r = soak::soak(
        &cfg,
        &bench,
        Rung::full_chain(),
        40.0,
        Duration::from_secs(4),
        every,
    );
    bench.down();
    let r = r.unwrap();
    // 4 s measured + 0.5 s warmup + the run's lead-in and grace: at least five samples.
    assert!(r.samples.len() >= 5, "{} samples", r.samples.len());
    for (i, s) in r.samples.iter().enumerate() {
        assert!((s.t_s - i as f64).abs() < 1e-9, "sample {i} at {}", s.t_s);
        assert!(s.rss_kib > 0 && s.fds > 0, "{s:?}");
        assert!(s.metrics_ok, "admin /metrics answered: {s:?}");
    }
    assert!(r
        .samples
        .iter()
        .any(|s| s.upstream_conns > 0 && s.conns_reused_total > 0.0));
    assert_eq!(r.trends.len(), 3);
    let dir = cfg.out.join("soak");
    let csv = std::fs::read_to_string(dir.join("soak.csv")).unwrap();
    assert_eq!(csv.lines().count(), r.samples.len() + 1);
    assert!(csv.starts_with("t_s,rss_kib,fds,upstream_conns"));
    let md = std::fs::read_to_string(dir.join("soak.md")).unwrap();
    assert!(
        md.contains("Verdict:") && md.contains("| open fds |"),
        "{md}"
    );
    assert!(dir.join("soak.json").is_file());
    let svg = well_formed_svg(&dir.join("soak.svg"));
    assert!(svg.contains("RSS (MiB)") && svg.contains("event-loop lag"));
    clean(&cfg);
}

const PERF_SCRIPT: &str = "\
ringgate-w0  4242/4243  100.000001:     250000 cpu-clock:
\tffffffff81000001 tcp_sendmsg+0x2d ([kernel.kallsyms])
\tffffffff81000002 __x64_sys_sendto+0x10 ([kernel.kallsyms])
\t          55aa01 ringgate::send+0x11 (/usr/bin/ringgate)
\t          55aa02 ringgate::main+0x22 (/usr/bin/ringgate)

ringgate-w0  4242/4243  100.000251:     250000 cpu-clock:
\t          55aa03 ringgate::parse+0x5 (/usr/bin/ringgate)
\t          55aa02 ringgate::main+0x22 (/usr/bin/ringgate)

ringgate-w0  4242/4243  100.000501:     250000 cpu-clock:
\t          55aa03 ringgate::parse+0x9 (/usr/bin/ringgate)
\t          55aa02 ringgate::main+0x30 (/usr/bin/ringgate)

admin thread  4242/4250  100.000751:     250000 cpu-clock:
\t               0 [unknown] ([unknown])
";

#[test]
fn flame_graph_folds_perf_script_and_draws_every_frame_to_scale() {
    let stacks = flame::fold_perf_script(PERF_SCRIPT);
    assert_eq!(
        stacks,
        vec![
            ("admin thread;[unknown]".to_string(), 1),
            ("ringgate-w0;ringgate::main;ringgate::parse".to_string(), 2),
            (
                "ringgate-w0;ringgate::main;ringgate::send;__x64_sys_sendto [k];tcp_sendmsg [k]"
                    .to_string(),
                1
            ),
        ]
    );
    assert_eq!(flame::parse_folded(&flame::folded_text(&stacks)), stacks);
    let (selfs, total) = flame::self_time(&stacks);
    assert_eq!(total, 4);
    assert_eq!(selfs[0], ("ringgate::parse".to_string(), 2));
    assert_eq!(flame::kernel_samples(&stacks), 1);
    let svg = flame::svg("test", &stacks);
    for (frame, n) in [
        ("ringgate-w0", 3),
        ("ringgate::main", 3),
        ("ringgate::parse", 2),
        ("tcp_sendmsg [k]", 1),
        ("admin thread", 1),
    ] {
        assert!(
            svg.contains(&format!("<title>{frame} ({n} samples")),
            "{frame}: {svg}"
        );
    }
    // 4 samples over 1180 px: a frame of 3 samples is 885 px wide, one of 2 is 590.
    assert!(
        svg.contains(r#"width="885.00""#) && svg.contains(r#"width="590.00""#),
        "{svg}"
    );
    // Root frames at the bottom, each level one row up.
    let y = |frame: &str| -> f64 {
        let at = svg.find(&format!("<title>{frame} (")).unwrap();
        let rest = &svg[at..];
        let v = rest.split("y=\"").nth(1).unwrap();
        v[..v.find('"').unwrap()].parse().unwrap()
    };
    assert!(y("ringgate-w0") > y("ringgate::main") && y("ringgate::main") > y("ringgate::parse"));
}

#[test]
fn profile_at_a_rate_writes_the_flame_graph_and_names_the_bound() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = profile::perf_usable(&std::env::temp_dir()) {
        println!("skipped: perf is unusable here: {why}");
        return;
    }
    let cfg = config("profile", 40.0, Duration::from_secs(2));
    let bench = stand(&cfg, Rung::Passthrough);
    let p = profile::profile(&cfg, &bench, Rung::Passthrough, 40.0, "fp", true);
    bench.down();
    let p = p.unwrap();
    assert!(p.samples > 0 && !p.top.is_empty(), "{p:?}");
    assert!(p.kernel_samples <= p.samples);
    assert!(
        p.bound.contains("kernel") || p.bound.contains("user space"),
        "{}",
        p.bound
    );
    let dir = cfg.out.join("profile");
    let svg = well_formed_svg(&dir.join("flame.svg"));
    assert!(svg.contains("<title>"));
    let folded = std::fs::read_to_string(dir.join("profile.folded")).unwrap();
    assert_eq!(
        flame::parse_folded(&folded)
            .iter()
            .map(|s| s.1)
            .sum::<u64>(),
        p.samples
    );
    let md = std::fs::read_to_string(dir.join("profile.md")).unwrap();
    assert!(md.contains("What bounds it") && md.contains("| frame (self time) |"));
    clean(&cfg);
}

#[test]
fn rolling_restart_hands_both_gateways_over_under_load_with_no_client_error() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = config("rolling", 60.0, Duration::from_secs(6));
    // The full chain: TLS listeners handed over, readiness seen on the admin API.
    let bench = stand(&cfg, Rung::full_chain());
    let r = rolling::rolling(&cfg, &bench, Rung::full_chain(), 60.0, None);
    bench.down();
    let r = r.unwrap();
    assert_eq!(r.handoffs.len(), 2);
    for h in &r.handoffs {
        assert!(h.completed, "{h:?}");
        assert_ne!(h.old_pid, h.new_pid);
        let accepted = h.accepted_before.unwrap_or(0);
        assert!(
            accepted > 0,
            "the load reached gateway {}: {h:?}",
            h.gateway
        );
    }
    assert_ne!(r.handoffs[0].listen, r.handoffs[1].listen);
    assert!(r.run.counts.completed > 0);
    assert_eq!(
        r.client_errors, 0,
        "{:?} {:?}",
        r.run.counts.error_kinds, r.run.counts.statuses
    );
    let md = std::fs::read_to_string(cfg.out.join("rolling").join("rolling.md")).unwrap();
    assert!(md.contains("**Client-visible errors: 0**"), "{md}");
    clean(&cfg);
}
