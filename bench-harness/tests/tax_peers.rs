//! Peers on the tax ladder: the generated nginx and HAProxy configs pass the proxies' own checks
//! on every rung they support (with a real certificate and JWT key), every request kind of the
//! topology reaches its upstream through each of them, overlapping routes go where ringgate
//! sends them, and `tax` with `--peers` writes their rows.
//!
//! nginx and HAProxy come from `scripts/test.sh`'s installs; a test whose proxy is missing prints
//! why and returns without checking.
#![allow(clippy::unwrap_used)]

mod tax_peers_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringbench::compare::procs::{free_port, which, Proc};
use ringbench::tax::peers::bench::{start_peer, PeerBench};
use ringbench::tax::peers::{self, haproxy, nginx, Peer, PeerSetup};
use ringbench::tax::topology::{self, Topology, DEFAULT_REPLICAS, DEFAULT_SEED, DEFAULT_UPSTREAMS};
use ringbench::tax::Rung;
use tax_peers_common::*;

fn check(program: &str, args: &[String]) {
    let out = std::process::Command::new(which(program).unwrap())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    // A warning is a config that does not do what it says (a key file not found, a rule that
    // can never run): as wrong as an error here.
    assert!(
        !text.contains("WARNING") && !text.contains("[warn]"),
        "{program} {args:?}: {text}"
    );
}

#[test]
fn generated_configs_pass_the_proxies_own_checks_on_every_rung_they_support() {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let endpoints = topology::fixed_endpoints(&t, 19000);
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let dir = scratch("check");
    let (cert, key) = cert_and_key(&dir);
    let mut checked = 0;
    for rung in Rung::ALL {
        let Some(f) = rung.features() else { continue };
        if peers::supports(Peer::Nginx, rung) && have("nginx") {
            let s = setup(&dir.join(format!("nginx-{}", rung.name())), &cert, &key);
            let conf = nginx::write(&t, listen, &endpoints, f, &s).unwrap();
            let mut args = nginx::args(&s.dir, &conf);
            args.insert(0, "-t".into());
            check("nginx", &args);
            checked += 1;
        }
        if peers::supports(Peer::Haproxy, rung) && have("haproxy") {
            let s = setup(&dir.join(format!("haproxy-{}", rung.name())), &cert, &key);
            let conf = haproxy::write(&t, listen, &endpoints, f, &s).unwrap();
            check(
                "haproxy",
                &["-c".into(), "-f".into(), conf.display().to_string()],
            );
            checked += 1;
        }
    }
    println!("{checked} configs checked");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The upstream a request kind must reach: its service, or the bulk route's upstream.
fn expected_upstream(t: &Topology, k: &topology::RequestKind) -> String {
    if k.name.starts_with("svc") {
        return k.name[..5].to_string();
    }
    let route = if k.name.starts_with("upload") {
        "uploads"
    } else if k.name.starts_with("sse") {
        "streams"
    } else {
        "downloads"
    };
    let r = t.routes.iter().find(|r| r.id == route).unwrap();
    t.upstreams[r.upstream].clone()
}

#[test]
fn every_request_kind_reaches_its_upstream_through_nginx_and_haproxy() {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let (stubs, endpoints) = named_stubs(&t);
    let dir = scratch("route");
    for peer in [Peer::Nginx, Peer::Haproxy] {
        if !have(peer.name()) {
            continue;
        }
        let b = PeerBench {
            topology: &t,
            endpoints: &endpoints,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
            setup: PeerSetup {
                dir: dir.join(peer.name()),
                ..PeerSetup::default()
            },
        };
        let (p, _) = start_peer(peer, Rung::Passthrough, &b, "").unwrap();
        let _stop = StopOnDrop(Some(p));
        for k in &t.requests {
            let head = request(b.listen, k, &[]);
            let want = expected_upstream(&t, k);
            assert!(
                head.starts_with("http/1.1 200"),
                "{peer:?} {}: {head}",
                k.name
            );
            assert!(
                head.contains(&format!("x-upstream: {want}")),
                "{peer:?} {}: {head}",
                k.name
            );
        }
        // Nothing routes `/nowhere`, and a prefix holds at a segment boundary only.
        for path in ["/nowhere", "/svc00x/status"] {
            let mut k = t.requests[0].clone();
            k.path = path.into();
            k.headers.clear();
            let head = request(b.listen, &k, &[]);
            assert!(head.starts_with("http/1.1 404"), "{peer:?} {path}: {head}");
        }
    }
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (method, host, path, x-tenant, the upstream that answers or `None` for 404).
const PRECEDENCE_CASES: &[(&str, &str, &str, &str, Option<&str>)] = &[
    ("GET", "a.test", "/api/x", "", Some("up0")),
    ("GET", "a.test", "/api", "", Some("up0")),
    ("GET", "a.test", "/apix", "", None),
    ("GET", "a.test", "/api/v2/x", "", Some("up1")),
    ("GET", "a.test", "/api/v2/items/7", "", Some("up2")),
    ("GET", "a.test", "/api/v2/items/7", "t1", Some("up3")),
    ("GET", "a.test", "/api/v2/items/7", "t2", Some("up2")),
    ("GET", "h.test", "/api/v2/items/7", "", Some("up4")),
    ("GET", "h.test:8080", "/api/v2", "", Some("up4")),
    ("GET", "h.test", "/api/v2/items/7", "t1", Some("up3")),
    ("POST", "a.test", "/api/v2/items/special", "", Some("up5")),
    ("GET", "a.test", "/api/v2/items/special", "", Some("up2")),
    ("GET", "a.test", "/files/a/b", "", Some("up0")),
    ("GET", "a.test", "/files/", "", None),
    ("GET", "h.test", "/other", "", None),
];

fn check_precedence(who: &str, addr: SocketAddr) {
    for (method, host, path, tenant, want) in PRECEDENCE_CASES {
        let mut k = topology::RequestKind {
            name: path.to_string(),
            weight: 1.0,
            method,
            host: host.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body_bytes: 0,
            group: "api",
        };
        if !tenant.is_empty() {
            k.headers.push(("x-tenant".into(), tenant.to_string()));
        }
        let head = request(addr, &k, &[]);
        let case = format!("{who}: {method} {host} {path} x-tenant={tenant:?}");
        match want {
            Some(up) => {
                assert!(head.starts_with("http/1.1 200"), "{case}: {head}");
                let line = format!("x-upstream: {up}");
                assert!(head.lines().any(|l| l == line), "{case}: {head}");
            }
            None => assert!(head.starts_with("http/1.1 404"), "{case}: {head}"),
        }
    }
}

#[test]
fn precedence_sends_overlapping_requests_where_ringgate_does() {
    let t = overlapping();
    let (stubs, endpoints) = named_stubs(&t);
    let dir = scratch("precedence");
    // ringgate itself first: the expectations are its behaviour, not only the peers'.
    match ringgate_bin() {
        Some(bin) => {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let config = dir.join("gateway.toml");
            std::fs::write(&config, topology::gateway_toml(&t, listen, &endpoints)).unwrap();
            let args = vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ];
            let p = Proc::start(
                "ringgate",
                "",
                &bin.display().to_string(),
                &args,
                &dir.join("rg.log"),
            )
            .unwrap();
            let _stop = StopOnDrop(Some(p));
            ringbench::compare::procs::wait_http_ok(listen, "/api", Duration::from_secs(15))
                .unwrap();
            check_precedence("ringgate", listen);
        }
        None => println!("ringgate not built: checking the peers against the expected table only"),
    }
    for peer in [Peer::Nginx, Peer::Haproxy] {
        if !have(peer.name()) {
            continue;
        }
        let b = PeerBench {
            topology: &t,
            endpoints: &endpoints,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
            setup: PeerSetup {
                dir: dir.join(peer.name()),
                ..PeerSetup::default()
            },
        };
        let (p, _) = start_peer(peer, Rung::Passthrough, &b, "").unwrap();
        let _stop = StopOnDrop(Some(p));
        check_precedence(peer.name(), b.listen);
    }
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tax_with_peers_writes_a_row_per_supported_peer_and_rung() {
    let (Some(ringgate), true, true) = (ringgate_bin(), have("nginx"), have("haproxy")) else {
        println!("skipped: needs the ringgate binary, nginx and haproxy");
        return;
    };
    let out = scratch("ladder");
    let cfg = ringbench::tax::TaxConfig {
        name: "t".into(),
        out: out.clone(),
        seed: DEFAULT_SEED,
        upstreams: DEFAULT_UPSTREAMS,
        replicas: DEFAULT_REPLICAS,
        rungs: vec![Rung::Direct, Rung::Passthrough],
        rate: 40.0,
        reps: 1,
        duration: Duration::from_millis(1000),
        warmup: Duration::from_millis(200),
        generator_cpus: None,
        target_cpus: String::new(),
        upstream_cpus: String::new(),
        conns: 4,
        ringgate,
        ringbench: Some(PathBuf::from(env!("CARGO_BIN_EXE_ringbench"))),
        command_line: "ringbench tax --peers nginx,haproxy".into(),
        thresholds: ringbench::run::Thresholds::default(),
        peers: vec![Peer::Nginx, Peer::Haproxy],
        alloc_ringgate: None,
    };
    let md = ringbench::tax::tax(&cfg).unwrap();
    for row in [
        "| direct | - |",
        "| passthrough | ringgate |",
        "| passthrough | nginx |",
        "| passthrough | haproxy |",
    ] {
        assert!(md.contains(row), "{row}: {md}");
    }
    let dir = out.join("t");
    for f in [
        "runs/nginx-passthrough-r1.json",
        "runs/haproxy-passthrough-r1.json",
        "peers/nginx-passthrough-nginx.conf",
        "peers/haproxy-passthrough-haproxy.cfg",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    for peer in ["nginx", "haproxy"] {
        let run: ringbench::run::RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("runs/{peer}-passthrough-r1.json"))).unwrap(),
        )
        .unwrap();
        assert!(run.counts.completed > 0, "{peer}");
        assert_eq!(
            run.counts.success, run.counts.completed,
            "{peer}: {:?}",
            run.counts.statuses
        );
        // The peer's processes (nginx's master and worker) are accounted as the target.
        assert!(run.target_cpu.is_some(), "{peer}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// Sends only the head of an upload declaring `len` bytes and returns the status of the answer
/// (a refusal comes before any body is sent).
fn declared_upload_status(addr: SocketAddr, len: u64) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("POST /upload/big HTTP/1.1\r\nhost: api.tax.test\r\ncontent-length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0)
}

#[test]
fn an_upload_past_the_routes_limit_is_refused_by_ringgate_and_both_peers() {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let limit = t.routes.iter().find(|r| r.id == "uploads").unwrap();
    let over = limit.max_body_bytes.unwrap() + 1;
    let (stubs, endpoints) = named_stubs(&t);
    let dir = scratch("limit413");
    if let Some(bin) = ringgate_bin() {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let config = dir.join("gateway.toml");
        std::fs::write(&config, topology::gateway_toml(&t, listen, &endpoints)).unwrap();
        let args = vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ];
        let log = dir.join("rg.log");
        let p = Proc::start("ringgate", "", &bin.display().to_string(), &args, &log).unwrap();
        let _stop = StopOnDrop(Some(p));
        ringbench::compare::procs::wait_http_ok(listen, "/healthz", Duration::from_secs(15))
            .unwrap();
        assert_eq!(declared_upload_status(listen, over), 413, "ringgate");
    }
    for peer in [Peer::Nginx, Peer::Haproxy] {
        if !have(peer.name()) {
            continue;
        }
        let b = PeerBench {
            topology: &t,
            endpoints: &endpoints,
            listen: SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
            setup: PeerSetup {
                dir: dir.join(peer.name()),
                ..PeerSetup::default()
            },
        };
        let (p, _) = start_peer(peer, Rung::Passthrough, &b, "").unwrap();
        let _stop = StopOnDrop(Some(p));
        assert_eq!(declared_upload_status(b.listen, over), 413, "{peer:?}");
    }
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
