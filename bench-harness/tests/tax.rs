//! `ringbench tax`: the seeded topology is deterministic, has the size and match kinds the tax
//! table needs, matches the copy shipped in the repo, validates with `ringgate check`, and the
//! command runs the direct and passthrough rungs end to end and writes a complete report.
//!
//! The ringgate binary is found from `RINGGATE_BIN`, else beside the test's target directory
//! (`target/debug/ringgate`, built by `cargo build -p ringgate-tools`); a missing binary fails the
//! tests that need it, saying so, rather than skipping them.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringbench::tax::topology::{self, DEFAULT_REPLICAS, DEFAULT_SEED, DEFAULT_UPSTREAMS};
use ringbench::tax::{self, Rung, TaxConfig};

fn ringgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGGATE_BIN") {
        return PathBuf::from(p);
    }
    // The test runs from target/debug/deps/; the workspace's binaries are in target/debug/.
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

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/tax-topology")
}

fn shipped_texts() -> (String, String) {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let endpoints = topology::fixed_endpoints(&t, 19000);
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    (
        topology::gateway_toml(&t, listen, &endpoints),
        topology::scenario_toml(&t),
    )
}

#[test]
fn one_seed_gives_byte_identical_files_and_another_seed_does_not() {
    let a = shipped_texts();
    let b = shipped_texts();
    assert_eq!(a, b);
    let t = topology::generate(DEFAULT_SEED + 1, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    assert_ne!(topology::scenario_toml(&t), a.1);
}

#[test]
fn shipped_files_are_the_default_generation() {
    let (gateway, scenario) = shipped_texts();
    let dir = shipped_dir();
    assert_eq!(
        std::fs::read_to_string(dir.join("gateway.toml")).unwrap(),
        gateway,
        "regenerate: ringbench tax --emit bench-harness/scenarios/tax-topology"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("scenario.toml")).unwrap(),
        scenario,
        "regenerate: ringbench tax --emit bench-harness/scenarios/tax-topology"
    );
}

#[test]
fn topology_has_the_size_and_every_match_kind() {
    let (gateway, _) = shipped_texts();
    let doc: toml::Table = toml::from_str(&gateway).unwrap();
    let upstreams = doc["upstreams"].as_array().unwrap();
    assert!(upstreams.len() >= 10, "{} upstreams", upstreams.len());
    let names: Vec<&str> = upstreams
        .iter()
        .map(|u| {
            assert_eq!(u["endpoints"].as_array().unwrap().len(), 3);
            u["name"].as_str().unwrap()
        })
        .collect();
    let routes = doc["routes"].as_array().unwrap();
    assert!(routes.len() >= 50, "{} routes", routes.len());
    for r in routes {
        assert!(names.contains(&r["upstream"].as_str().unwrap()), "{r:?}");
    }
    let has = |f: &dyn Fn(&toml::Value) -> bool| routes.iter().filter(|r| f(r)).count();
    assert!(has(&|r| r.get("hosts").is_some()) >= 10);
    assert!(has(&|r| r.get("headers").is_some()) >= 10);
    assert!(has(&|r| r.get("methods").is_some()) >= 10);
    assert!(has(&|r| r["path"].get("template").is_some()) >= 10);
    assert!(has(&|r| r["path"].get("prefix").is_some()) >= 10);
    // Every replica is a distinct port.
    let mut all: Vec<&str> = upstreams
        .iter()
        .flat_map(|u| u["endpoints"].as_array().unwrap())
        .map(|e| e.as_str().unwrap())
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n);

    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let total: f64 = t.requests.iter().map(|k| k.weight).sum();
    let share = |f: &dyn Fn(&topology::RequestKind) -> bool| {
        t.requests
            .iter()
            .filter(|k| f(k))
            .map(|k| k.weight)
            .sum::<f64>()
            / total
    };
    let large = share(&|k| k.body_bytes >= 1 << 20 || k.name.starts_with("download"));
    let new_conn = share(&|k| {
        k.headers
            .iter()
            .any(|(n, v)| n == "connection" && v == "close")
    });
    let streams = share(&|k| k.name.contains("stream"));
    assert!((0.005..0.1).contains(&large), "large bodies {large}");
    assert!(
        (0.01..0.2).contains(&new_conn),
        "new connections {new_conn}"
    );
    assert!((0.005..0.1).contains(&streams), "streams {streams}");
    assert!(1.0 - large - streams > 0.8, "mostly small requests");
}

#[test]
fn shipped_scenario_compiles_for_the_generator() {
    let target = ringbench::run::Target::parse("http://127.0.0.1:8080/").unwrap();
    let plan =
        ringbench::run::Plan::from_scenario(&shipped_dir().join("scenario.toml"), &target).unwrap();
    assert!(plan.kinds.len() >= 60);
}

#[test]
fn generated_config_passes_ringgate_check() {
    let dir = std::env::temp_dir().join(format!("ringbench-tax-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (gateway, _) = shipped_texts();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, gateway).unwrap();
    let out = std::process::Command::new(ringgate_bin())
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("upstreams=12 endpoints=36 routes=76"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tax_runs_direct_and_passthrough_and_writes_a_complete_report() {
    let out = std::env::temp_dir().join(format!("ringbench-tax-test-{}", std::process::id()));
    let cfg = TaxConfig {
        name: "t".into(),
        out: out.clone(),
        seed: DEFAULT_SEED,
        upstreams: DEFAULT_UPSTREAMS,
        replicas: DEFAULT_REPLICAS,
        rungs: vec![Rung::Direct, Rung::Passthrough],
        rate: 40.0,
        reps: 1,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        generator_cpus: None,
        target_cpus: String::new(),
        upstream_cpus: String::new(),
        conns: 4,
        ringgate: ringgate_bin(),
        ringbench: Some(PathBuf::from(env!("CARGO_BIN_EXE_ringbench"))),
        command_line: "ringbench tax --name t".into(),
        thresholds: ringbench::run::Thresholds::default(),
        peers: Vec::new(),
        alloc_ringgate: None,
    };
    let md = tax::tax(&cfg).unwrap();
    assert!(
        md.contains("| direct |") && md.contains("| passthrough |"),
        "{md}"
    );
    let dir = out.join("t");
    for f in [
        "command.txt",
        "gateway.toml",
        "scenario.toml",
        "summary.md",
        "summary.json",
        "runs/direct-r1.json",
        "runs/passthrough-r1.json",
        "plots/spectrum.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["rung"], "direct");
    assert_eq!(rows[1]["rung"], "passthrough");
    for key in ["added_p50_ns", "added_p99_ns", "added_p999_ns"] {
        assert!(rows[1][key].is_number(), "{key}");
    }
    assert!(rows[1]["target_cpu_us"]["median"].is_number());
    for rung in ["direct", "passthrough"] {
        let run: ringbench::run::RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("runs/{rung}-r1.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(run.counts.scheduled, 60, "{rung}");
        assert!(run.counts.completed > 0, "{rung}");
        // Every request kind routes: through the gateway nothing is unmatched (404) or refused.
        assert_eq!(
            run.counts.success, run.counts.completed,
            "{rung}: {:?}",
            run.counts.statuses
        );
        assert!(run.target_cpu.is_some(), "{rung}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// Sends one request with `connection: close` and returns the response head.
fn request_head(addr: SocketAddr, k: &topology::RequestKind) -> String {
    use std::io::{Read, Write};
    let path = k.path.replace("${ids}", "42").replace("${terms}", "x");
    let mut req = format!("{} {path} HTTP/1.1\r\nhost: {}\r\n", k.method, k.host);
    for (n, v) in k.headers.iter().filter(|(n, _)| n != "connection") {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        k.body_bytes
    ));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&vec![b'a'; k.body_bytes]).unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).unwrap();
    let text = String::from_utf8_lossy(&data);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Stops the gateway even when an assertion fails first (a dropped `Child` keeps running).
struct StopOnDrop(Option<ringbench::compare::procs::Proc>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

#[test]
fn every_service_request_reaches_its_upstream_through_ringgate() {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    // One stub per upstream, named after it, on its three replica ports.
    let stubs: Vec<_> = t
        .upstreams
        .iter()
        .map(|name| {
            ringbench::upstream::spawn(ringbench::upstream::UpstreamConfig {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], 0)); t.replicas],
                name: name.clone(),
                body_bytes: 64,
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let endpoints: Vec<SocketAddr> = stubs.iter().flat_map(|s| s.addrs().to_vec()).collect();
    let listen = SocketAddr::from((
        [127, 0, 0, 1],
        ringbench::compare::procs::free_port().unwrap(),
    ));
    let dir = std::env::temp_dir().join(format!("ringbench-tax-route-{}", std::process::id()));
    let (config, _) = tax::write_topology(&t, &dir, listen, &endpoints).unwrap();
    let gateway = StopOnDrop(Some(
        ringbench::compare::procs::Proc::start(
            "ringgate",
            "",
            &ringgate_bin().display().to_string(),
            &[
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            &dir.join("ringgate.log"),
        )
        .unwrap(),
    ));
    ringbench::compare::procs::wait_http_ok(listen, "/healthz", Duration::from_secs(15)).unwrap();
    let mut checked = 0;
    for k in t.requests.iter().filter(|k| k.name.starts_with("svc")) {
        let head = request_head(listen, k);
        let svc = &k.name[..5];
        assert!(head.starts_with("http/1.1 200"), "{}: {head}", k.name);
        assert!(
            head.contains(&format!("x-upstream: {svc}")),
            "{}: {head}",
            k.name
        );
        checked += 1;
    }
    drop(gateway);
    for s in stubs {
        s.stop();
    }
    assert!(checked >= 60, "{checked}");
    std::fs::remove_dir_all(&dir).unwrap();
}
