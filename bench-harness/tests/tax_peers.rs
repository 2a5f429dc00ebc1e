//! Peers on the tax ladder: the generated nginx and HAProxy configs pass the proxies' own checks
//! on every rung they support (with a real certificate and JWT key), every request kind of the
//! topology reaches its upstream through each of them, and HAProxy's auth rung admits a valid
//! JWT (signed in the test with PyJWT) and refuses missing, expired, unknown-key and forged ones.
//!
//! nginx and HAProxy come from `scripts/test.sh`'s installs; a test whose proxy (or python3 with
//! PyJWT) is missing prints why and returns without checking.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringbench::compare::procs::{free_port, which, Proc};
use ringbench::tax::peers::bench::{start_peer, PeerBench};
use ringbench::tax::peers::{self, haproxy, nginx, JwtKey, JwtSetup, Peer, PeerSetup};
use ringbench::tax::topology::{
    self, PathMatch, Route, Topology, DEFAULT_REPLICAS, DEFAULT_SEED, DEFAULT_UPSTREAMS,
};
use ringbench::tax::Rung;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringbench-peers-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have(program: &str) -> bool {
    let found = which(program).is_some();
    if !found {
        println!("skipped: {program} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// A self-signed P-256 certificate and its key, written into `dir`: the TLS listener's and the
/// JWT signer's (its public key, `pub.pem` beside them, verifies ES256 tokens).
fn cert_and_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(dir.join("pub.pem"), key.public_key_pem()).unwrap();
    (c, k)
}

fn setup(dir: &Path, cert: &Path, key: &Path) -> PeerSetup {
    PeerSetup {
        dir: dir.to_path_buf(),
        jwt: JwtSetup {
            keys: vec![JwtKey {
                kid: "k1".into(),
                alg: "ES256".into(),
                key: key.with_file_name("pub.pem").display().to_string(),
            }],
            anonymous_routes: vec!["health".into()],
        },
        limit_rps: peers::DEFAULT_LIMIT_RPS,
        access_log: dir.join("access.log"),
        tls_cert: cert.to_path_buf(),
        tls_key: key.to_path_buf(),
    }
}

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

/// Sends one request with `connection: close`; returns the response head (lowercase) and its
/// body length.
fn request(addr: SocketAddr, k: &topology::RequestKind, extra: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let path = k.path.replace("${ids}", "42").replace("${terms}", "x");
    let mut req = format!("{} {path} HTTP/1.1\r\nhost: {}\r\n", k.method, k.host);
    for (n, v) in k.headers.iter().filter(|(n, _)| n != "connection") {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        k.body_bytes
    ));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
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

/// Stops a process even when an assertion fails first.
struct StopOnDrop(Option<Proc>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

/// One stub per upstream, named after it, on its replica ports.
fn named_stubs(t: &Topology) -> (Vec<ringbench::upstream::UpstreamHandle>, Vec<SocketAddr>) {
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
    let endpoints = stubs.iter().flat_map(|s| s.addrs().to_vec()).collect();
    (stubs, endpoints)
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

fn route(id: &str, path: PathMatch, upstream: usize) -> Route {
    Route {
        id: id.into(),
        hosts: Vec::new(),
        path,
        methods: Vec::new(),
        headers: Vec::new(),
        priority: 0,
        upstream,
        max_body_bytes: None,
    }
}

/// Routes that overlap and go to different upstreams, so that only the right precedence
/// (priority, host, path specificity, declaration order) sends each request where ringgate does.
fn overlapping() -> Topology {
    let pre = |p: &str| PathMatch::Prefix(p.into());
    let tpl = |p: &str| PathMatch::Template(p.into());
    let mut tenant = route("tenant", pre("/api"), 3);
    tenant.headers = vec![("x-tenant".into(), "t1".into())];
    tenant.priority = 5;
    let mut host = route("host", pre("/api"), 4);
    host.hosts = vec!["h.test".into()];
    let mut special = route(
        "special",
        PathMatch::Exact("/api/v2/items/special".into()),
        5,
    );
    special.methods = vec!["POST"];
    Topology {
        seed: 0,
        upstreams: (0..6).map(|i| format!("up{i}")).collect(),
        replicas: 1,
        routes: vec![
            route("api", pre("/api"), 0),
            route("v2", pre("/api/v2"), 1),
            route("item", tpl("/api/v2/items/{id}"), 2),
            tenant,
            host,
            special,
            route("files", tpl("/files/{*rest}"), 0),
        ],
        requests: Vec::new(),
        pools: Vec::new(),
    }
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

/// The ringgate binary beside the test's target directory (or `RINGGATE_BIN`), if built.
fn ringgate_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGGATE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap();
    let beside = exe.parent()?.parent()?.join("ringgate");
    beside.is_file().then_some(beside)
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

#[test]
fn a_normal_build_says_it_does_not_count_allocations() {
    let Some(bin) = ringgate_bin() else {
        println!("skipped: the ringgate binary is not built");
        return;
    };
    let t = overlapping();
    let (stubs, endpoints) = named_stubs(&t);
    let dir = scratch("nocount");
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
    let pid = p.pid();
    let _stop = StopOnDrop(Some(p));
    ringbench::compare::procs::wait_http_ok(listen, "/api", Duration::from_secs(15)).unwrap();
    let e = ringbench::tax::peers::bench::read_allocations(pid, &log).unwrap_err();
    assert!(e.contains("not a --features count-alloc build"), "{e}");
    // SIGUSR2 left it serving.
    ringbench::compare::procs::wait_http_ok(listen, "/api", Duration::from_secs(5)).unwrap();
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run with `RINGGATE_ALLOC_BIN=<a ringgate built with --features count-alloc>` and `--ignored`
/// (a second build of ringgate is too slow for every test run).
#[test]
#[ignore = "needs RINGGATE_ALLOC_BIN: a ringgate built with --features count-alloc"]
fn the_alloc_pass_gives_allocations_per_request() {
    let alloc = PathBuf::from(std::env::var_os("RINGGATE_ALLOC_BIN").expect("RINGGATE_ALLOC_BIN"));
    let out = scratch("alloc");
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
        warmup: Duration::from_millis(300),
        generator_cpus: None,
        target_cpus: String::new(),
        upstream_cpus: String::new(),
        conns: 4,
        ringgate: ringgate_bin().expect("the ringgate binary"),
        ringbench: Some(PathBuf::from(env!("CARGO_BIN_EXE_ringbench"))),
        command_line: "ringbench tax --alloc-ringgate".into(),
        thresholds: ringbench::run::Thresholds::default(),
        peers: Vec::new(),
        alloc_ringgate: Some(alloc),
    };
    let md = ringbench::tax::tax(&cfg).unwrap();
    println!("{md}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("t").join("summary.json")).unwrap())
            .unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert!(rows[0]["allocs_per_req"].is_null(), "direct has no gateway");
    let a = rows[1]["allocs_per_req"].as_f64().unwrap();
    // New connections, 1-10 MiB bodies and streams cannot all be served without allocating.
    assert!(a > 0.0, "{a}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Starts `peer` with features `f` on `t` (not a rung: any combination, so nginx's limit,
/// resilience, observe and TLS are tested without the auth it lacks).
fn start_with(
    peer: Peer,
    f: ringbench::tax::Features,
    t: &Topology,
    endpoints: &[SocketAddr],
    s: PeerSetup,
) -> (StopOnDrop, SocketAddr) {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let (bin, args) = match peer {
        Peer::Nginx => {
            let conf = nginx::write(t, listen, endpoints, f, &s).unwrap();
            ("nginx", nginx::args(&s.dir, &conf))
        }
        _ => {
            let conf = haproxy::write(t, listen, endpoints, f, &s).unwrap();
            ("haproxy", haproxy::args(&conf))
        }
    };
    let log = s.dir.join(format!("{bin}.log"));
    let p = Proc::start(
        bin,
        "",
        &which(bin).unwrap().display().to_string(),
        &args,
        &log,
    )
    .unwrap();
    let stop = StopOnDrop(Some(p));
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{bin} did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (stop, listen)
}

fn status(head: &str) -> u16 {
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn svc00_status(t: &Topology) -> topology::RequestKind {
    t.requests
        .iter()
        .find(|k| k.name == "svc00 other")
        .unwrap()
        .clone()
}

#[test]
fn limit_resilience_observe_and_tls_work_through_both_peers() {
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let (stubs, mut endpoints) = named_stubs(&t);
    // svc00's second replica is a port nobody listens on.
    endpoints[1] = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let dir = scratch("features");
    let (cert, key) = cert_and_key(&dir);
    let k = svc00_status(&t);
    let none = ringbench::tax::Features::default();
    for peer in [Peer::Nginx, Peer::Haproxy] {
        if !have(peer.name()) {
            continue;
        }
        let sub = |name: &str| {
            let mut s = setup(&dir.join(format!("{}-{name}", peer.name())), &cert, &key);
            s.limit_rps = 2;
            s
        };
        // Without resilience the dead replica fails its share; with it, every request lands.
        let (_g, addr) = start_with(peer, none, &t, &endpoints, sub("plain"));
        let codes: Vec<u16> = (0..6).map(|_| status(&request(addr, &k, &[]))).collect();
        assert!(codes.iter().any(|c| *c >= 500), "{peer:?} plain: {codes:?}");
        drop(_g);
        let f = ringbench::tax::Features {
            resilience: true,
            ..none
        };
        let (_g, addr) = start_with(peer, f, &t, &endpoints, sub("resilience"));
        let codes: Vec<u16> = (0..6).map(|_| status(&request(addr, &k, &[]))).collect();
        assert!(
            codes.iter().all(|c| *c == 200),
            "{peer:?} resilience: {codes:?}"
        );
        drop(_g);
        // A limit of 2 requests per second refuses a burst of 8 in part.
        let f = ringbench::tax::Features {
            limit: true,
            resilience: true,
            ..none
        };
        let (_g, addr) = start_with(peer, f, &t, &endpoints, sub("limit"));
        let codes: Vec<u16> = (0..8).map(|_| status(&request(addr, &k, &[]))).collect();
        assert!(
            codes.contains(&429) && codes.contains(&200),
            "{peer:?} limit: {codes:?}"
        );
        drop(_g);
        // Observe: each request leaves an access log line.
        let f = ringbench::tax::Features {
            observe: true,
            resilience: true,
            ..none
        };
        let s = sub("observe");
        let log = match peer {
            Peer::Nginx => s.access_log.clone(),
            _ => s.dir.join("haproxy.log"),
        };
        let (g, addr) = start_with(peer, f, &t, &endpoints, s);
        assert_eq!(status(&request(addr, &k, &[])), 200);
        // nginx flushes its log buffer at least every second, and on exit.
        drop(g);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("/svc00/status"),
            "{peer:?} access log: {text}"
        );
        // TLS: the listener speaks TLS with the given certificate.
        let f = ringbench::tax::Features {
            tls: true,
            resilience: true,
            ..none
        };
        let (_g, addr) = start_with(peer, f, &t, &endpoints, sub("tls"));
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "host: api.tax.test",
            ])
            .arg(format!("https://{addr}/svc00/status"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{peer:?} tls");
    }
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JWT signed by PyJWT with the PEM key `key` (ES256), `kid` and `exp` seconds from now.
fn token(key: &Path, kid: &str, exp_in: i64) -> Option<String> {
    let script = "import jwt, sys, time\n\
        key = open(sys.argv[1]).read()\n\
        claims = {'sub': 'tax', 'exp': int(time.time()) + int(sys.argv[3])}\n\
        print(jwt.encode(claims, key, algorithm='ES256', headers={'kid': sys.argv[2]}))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(key)
        .arg(kid)
        .arg(exp_in.to_string())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn haproxys_auth_rung_admits_valid_jwts_only_and_anonymous_routes_freely() {
    if !have("haproxy") {
        return;
    }
    let dir = scratch("jwt");
    let (cert, key) = cert_and_key(&dir);
    let other = scratch("jwt-other");
    let (_, forger) = cert_and_key(&other);
    let Some(valid) = token(&key, "k1", 300) else {
        println!("skipped: python3 with PyJWT and cryptography is needed to sign test tokens");
        return;
    };
    let expired = token(&key, "k1", -60).unwrap();
    let unknown_kid = token(&key, "k9", 300).unwrap();
    let forged = token(&forger, "k1", 300).unwrap();
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let (stubs, endpoints) = named_stubs(&t);
    let f = Rung::Auth.features().unwrap();
    let (_g, addr) = start_with(Peer::Haproxy, f, &t, &endpoints, setup(&dir, &cert, &key));
    let k = svc00_status(&t);
    let bearer = |tok: &str| format!("Bearer {tok}");
    let head = request(addr, &k, &[("authorization", &bearer(&valid))]);
    assert!(head.starts_with("http/1.1 200"), "valid: {head}");
    assert!(head.lines().any(|l| l == "x-upstream: svc00"), "{head}");
    for (what, tok) in [
        ("none", None),
        ("expired", Some(&expired)),
        ("unknown kid", Some(&unknown_kid)),
        ("forged", Some(&forged)),
    ] {
        let auth = tok.map(|t| bearer(t));
        let extra: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        assert_eq!(status(&request(addr, &k, &extra)), 401, "{what}");
    }
    // The health route is anonymous.
    let health = topology::RequestKind {
        path: "/healthz".into(),
        ..k.clone()
    };
    assert_eq!(
        status(&request(addr, &health, &[])),
        200,
        "anonymous health"
    );
    drop(_g);
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}
