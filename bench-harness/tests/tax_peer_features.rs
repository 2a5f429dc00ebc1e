//! Peers' features and allocation counting: limit, resilience, observe and TLS work through
//! nginx and HAProxy; HAProxy's auth rung admits a valid JWT (signed in the test with PyJWT) and
//! refuses missing, expired, unknown-key, forged and other-issuer ones; a normal ringgate build
//! answers SIGUSR2 saying it does not count allocations, and (ignored unless given a
//! `count-alloc` build) the allocation pass gives allocations per request.
//!
//! A test whose proxy (or python3 with PyJWT) is missing prints why and returns.
#![allow(clippy::unwrap_used)]

mod tax_peers_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringbench::compare::procs::{free_port, Proc};
use ringbench::tax::peers::Peer;
use ringbench::tax::topology::{self, DEFAULT_REPLICAS, DEFAULT_SEED, DEFAULT_UPSTREAMS};
use ringbench::tax::Rung;
use tax_peers_common::*;

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
        // nginx flushes its log buffer every second; HAProxy writes when the stream ends.
        let t0 = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("/svc00/status") {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{peer:?} access log: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(g);
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

/// A JWT signed by PyJWT with the PEM key `key` (ES256), `kid`, `exp` seconds from now and
/// issuer `iss`.
fn token(key: &Path, kid: &str, exp_in: i64, iss: &str) -> Option<String> {
    let script = "import jwt, sys, time\n\
        key = open(sys.argv[1]).read()\n\
        claims = {'sub': 'tax', 'iss': sys.argv[4], 'exp': int(time.time()) + int(sys.argv[3])}\n\
        print(jwt.encode(claims, key, algorithm='ES256', headers={'kid': sys.argv[2]}))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(key)
        .arg(kid)
        .arg(exp_in.to_string())
        .arg(iss)
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
    let Some(valid) = token(&key, "k1", 300, "tax-issuer") else {
        println!("skipped: python3 with PyJWT and cryptography is needed to sign test tokens");
        return;
    };
    let expired = token(&key, "k1", -60, "tax-issuer").unwrap();
    let unknown_kid = token(&key, "k9", 300, "tax-issuer").unwrap();
    let forged = token(&forger, "k1", 300, "tax-issuer").unwrap();
    let other_issuer = token(&key, "k1", 300, "someone-else").unwrap();
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
        ("other issuer", Some(&other_issuer)),
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

#[test]
fn haproxy_takes_anonymity_from_the_route_a_request_is_routed_to() {
    if !have("haproxy") {
        return;
    }
    let dir = scratch("jwt-precedence");
    let (cert, key) = cert_and_key(&dir);
    let t = topology::generate(DEFAULT_SEED, DEFAULT_UPSTREAMS, DEFAULT_REPLICAS);
    let (stubs, endpoints) = named_stubs(&t);
    // The ladder's setup: every public route of the topology anonymous, among them each
    // service's catch-all prefix (`/svc00`), which the item routes outrank.
    let mut s = setup(&dir, &cert, &key);
    s.jwt.anonymous_routes = t
        .routes
        .iter()
        .filter(|r| !r.auth)
        .map(|r| r.id.clone())
        .collect();
    let (_g, addr) = start_with(
        Peer::Haproxy,
        Rung::Auth.features().unwrap(),
        &t,
        &endpoints,
        s,
    );
    let kind = |name: &str| t.requests.iter().find(|k| k.name == name).unwrap().clone();
    let mut item = kind("svc00 get item");
    item.headers.clear();
    // Matched by the catch-all too, but routed to the item route, which wants a token (it got
    // through before the fix).
    assert_eq!(
        status(&request(addr, &item, &[])),
        401,
        "item without a token"
    );
    let mut search = kind("svc00 search");
    search.headers.clear();
    assert_eq!(status(&request(addr, &search, &[])), 200, "public search");
    drop(_g);
    for s in stubs {
        s.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
