//! `ringbench tax`: the seeded topology is deterministic, has the size and match kinds the tax
//! table needs, matches the copy shipped in the repo, every rung's config validates with
//! `ringgate check`, the command runs all seven rungs end to end and writes a complete report
//! (expected 401s and 429s apart from failures, the key rotation seen), and through the real
//! gateway the rotation retires the oldest key's tokens and admits the new key's.
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
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let endpoints = topology::fixed_endpoints(&t, 19000);
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    for rung in &Rung::ALL[2..] {
        let edge = tax::stand::rung_edge(&tax::stand::emitted_edge(), *rung).unwrap();
        let name = tax::stand::config_name(*rung);
        assert_eq!(
            std::fs::read_to_string(dir.join(&name)).unwrap(),
            topology::rung_toml(&t, listen, &endpoints, Some(&edge)),
            "{name}: regenerate: ringbench tax --emit bench-harness/scenarios/tax-topology"
        );
    }
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
fn generated_config_of_every_rung_passes_ringgate_check() {
    let dir = std::env::temp_dir().join(format!("ringbench-tax-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let endpoints = topology::fixed_endpoints(&t, 19000);
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    // The emitted folder: every rung's config, the JWKS, the certificate (paths relative to it).
    tax::stand::emit(&t, &dir, listen, &endpoints).unwrap();
    let mut checked = Vec::new();
    for rung in Rung::ALL.iter().skip(1) {
        let name = tax::stand::config_name(*rung);
        let out = std::process::Command::new(ringgate_bin())
            .current_dir(&dir)
            .arg("check")
            .arg("--config")
            .arg(&name)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name}: {text}");
        assert!(
            text.contains("upstreams=12 endpoints=36 routes=76"),
            "{name}: {text}"
        );
        let f = rung.features().unwrap();
        let store = if f.limit {
            "rate_limits=1 rate_limit_store=redis"
        } else {
            "rate_limits=0"
        };
        assert!(text.contains(store), "{name}: {text}");
        let config = std::fs::read_to_string(dir.join(&name)).unwrap();
        for (on, section) in [
            (f.auth, "[auth.jwt]"),
            (f.resilience, "[upstreams.circuit_breaker]"),
            (f.resilience, "[routes.retry]"),
            (f.observe, "[access_log]"),
            (f.tls, "[listeners.tls]"),
        ] {
            assert_eq!(config.contains(section), on, "{name}: {section}");
        }
        checked.push(name);
    }
    assert_eq!(checked.len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn row(rows: &[serde_json::Value], rung: Rung) -> &serde_json::Value {
    rows.iter().find(|r| r["rung"] == rung.name()).unwrap()
}

fn sum(rows: &[serde_json::Value], rungs: &[Rung], key: &str) -> u64 {
    rungs
        .iter()
        .map(|r| row(rows, *r)["accounting"][key].as_u64().unwrap())
        .sum()
}

#[test]
fn tax_runs_every_rung_and_writes_a_complete_report() {
    let out = std::env::temp_dir().join(format!("ringbench-tax-test-{}", std::process::id()));
    let cfg = TaxConfig {
        name: "t".into(),
        out: out.clone(),
        seed: DEFAULT_SEED,
        upstreams: DEFAULT_UPSTREAMS,
        replicas: DEFAULT_REPLICAS,
        rungs: Rung::ALL.to_vec(),
        rate: 100.0,
        reps: 1,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
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
    for rung in Rung::ALL {
        assert!(md.contains(&format!("| {} |", rung.name())), "{md}");
    }
    let dir = out.join("t");
    let mut files = vec![
        "command.txt".to_string(),
        "scenario.toml".into(),
        "jwks.json".into(),
        "tokens/jwt.txt".into(),
        "tls/cert.pem".into(),
        "summary.md".into(),
        "summary.json".into(),
        "plots/spectrum.svg".into(),
    ];
    for rung in Rung::ALL {
        files.push(format!("runs/{}-r1.json", rung.name()));
        if rung != Rung::Direct {
            files.push(tax::stand::config_name(rung));
        }
    }
    for f in &files {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["rung"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        Rung::ALL.iter().map(|r| r.name()).collect::<Vec<_>>()
    );
    for (r, rung) in rows.iter().zip(Rung::ALL) {
        for key in [
            "added_p50_ns",
            "added_p99_ns",
            "added_p999_ns",
            "share_401",
            "share_429",
        ] {
            assert!(r[key].is_number(), "{key}");
        }
        assert!(r["target_cpu_us"]["median"].is_number());
        // Each request group's latency, the small API requests apart from bulk and streams.
        let groups: Vec<&str> = r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(groups, ["api", "bulk", "stream"], "{}", rung.name());
        // Every answer is what its kind expects: nothing unmatched, no valid token refused, no
        // bad token admitted, no 5xx, no transport error.
        assert_eq!(r["failures"], 0, "{}: {r}", rung.name());
        let f = rung.features().unwrap_or_default();
        assert_eq!(r["rotations"], u64::from(f.auth), "{}", rung.name());
        assert_eq!(
            r["share_401"].as_f64().unwrap() > 0.0,
            f.auth,
            "{}",
            rung.name()
        );
    }
    let auth_rungs = &Rung::ALL[2..];
    // The rotation happened: the new key's tokens were refused before it and accepted after,
    // the dropped key's the other way round.
    for key in ["next_key_401", "next_key_ok", "retiring_ok", "retiring_401"] {
        assert!(sum(rows, auth_rungs, key) > 0, "{key}: {md}");
    }
    // The noisy consumer met its limit.
    assert!(sum(rows, &Rung::ALL[3..], "status_429") > 0, "{md}");
    assert_eq!(sum(rows, &Rung::ALL[..3], "status_429"), 0, "{md}");
    for rung in Rung::ALL {
        let run: ringbench::run::RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("runs/{}-r1.json", rung.name()))).unwrap(),
        )
        .unwrap();
        assert_eq!(run.counts.scheduled, 300, "{}", rung.name());
        assert!(run.counts.completed > 0, "{}", rung.name());
        assert!(run.target_cpu.is_some(), "{}", rung.name());
        assert_eq!(run.tls.is_some(), rung == Rung::Tls, "{}", rung.name());
        if rung == Rung::Tls {
            // The share of clients that do not keep alive brings handshakes into the mix.
            assert!(run.generator.tls_handshakes > 4, "{:?}", run.generator);
        }
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

/// GET `path` with `Bearer token` on a new connection; returns the status.
fn get_status(addr: SocketAddr, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: api.tax.test\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).unwrap();
    String::from_utf8_lossy(&data)[9..12].parse().unwrap()
}

#[test]
fn the_rotation_retires_the_oldest_keys_tokens_and_admits_the_new_keys() {
    let t = topology::generate(DEFAULT_SEED, 2, 1);
    let stub = ringbench::upstream::spawn(ringbench::upstream::UpstreamConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0)); 2],
        name: "stub".into(),
        body_bytes: 16,
        ..Default::default()
    })
    .unwrap();
    let endpoints = stub.addrs().to_vec();
    let free = || {
        SocketAddr::from((
            [127, 0, 0, 1],
            ringbench::compare::procs::free_port().unwrap(),
        ))
    };
    let (listen, admin) = (free(), free());
    let dir = std::env::temp_dir().join(format!("ringbench-tax-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keys = tax::auth::Keyring::generate().unwrap();
    let jwks = dir.join("jwks.json");
    tax::auth::replace_file(&jwks, &keys.jwks_before()).unwrap();
    let edge = tax::features::Edge {
        features: Rung::Auth.features().unwrap(),
        admin,
        jwks: jwks.display().to_string(),
        ..tax::stand::emitted_edge()
    };
    let config = dir.join("gateway-auth.toml");
    std::fs::write(
        &config,
        topology::rung_toml(&t, listen, &endpoints, Some(&edge)),
    )
    .unwrap();
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
    ringbench::compare::procs::wait_http_ok(admin, "/healthz", Duration::from_secs(15)).unwrap();
    let exp = tax::auth::unix_now() + 600;
    // ES256 (the oldest), ES384 and ES256 (kept), ES384 (the new key).
    let [oldest, kept_384, kept, next] =
        [0, 1, 2, 3].map(|i| keys.token(i, "user-1", exp, None).unwrap());
    let path = format!("/{}/items/7", t.upstreams[0]);
    // Before: the oldest key and a kept one are accepted (and so cached), the new key refused.
    // Each twice, so the answers come from both the first check and the cache.
    for _ in 0..2 {
        assert_eq!(
            get_status(listen, &path, &oldest),
            200,
            "oldest key, before"
        );
        assert_eq!(get_status(listen, &path, &kept), 200, "kept key, before");
        assert_eq!(
            get_status(listen, &path, &kept_384),
            200,
            "kept ES384 key, before"
        );
        assert_eq!(get_status(listen, &path, &next), 401, "new key, before");
    }
    // A public route needs no token at all.
    assert_eq!(
        get_status(listen, &format!("/{}/search?q=x", t.upstreams[0]), ""),
        200
    );
    let answer = tax::auth::rotate(&keys, &jwks, admin).unwrap();
    assert!(answer.contains("changed"), "{answer}");
    for _ in 0..2 {
        assert_eq!(get_status(listen, &path, &oldest), 401, "oldest key, after");
        assert_eq!(get_status(listen, &path, &kept), 200, "kept key, after");
        assert_eq!(
            get_status(listen, &path, &kept_384),
            200,
            "kept ES384 key, after"
        );
        assert_eq!(get_status(listen, &path, &next), 200, "new key, after");
    }
    drop(gateway);
    stub.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
