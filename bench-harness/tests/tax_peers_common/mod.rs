//! Shared helpers of the tax-peer tests (`tax_peers.rs`, `tax_peer_features.rs`): scratch
//! folders, a certificate and JWT key, named stub upstreams, starting a peer, one request.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringbench::compare::procs::{free_port, which, Proc};
use ringbench::tax::peers::{self, haproxy, nginx, JwtKey, JwtSetup, Peer, PeerSetup};
use ringbench::tax::topology::{self, PathMatch, Route, Topology};

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringbench-peers-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn have(program: &str) -> bool {
    let found = which(program).is_some();
    if !found {
        println!("skipped: {program} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// A self-signed P-256 certificate and its key, written into `dir`: the TLS listener's and the
/// JWT signer's (its public key, `pub.pem` beside them, verifies ES256 tokens).
pub fn cert_and_key(dir: &Path) -> (PathBuf, PathBuf) {
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

pub fn setup(dir: &Path, cert: &Path, key: &Path) -> PeerSetup {
    PeerSetup {
        dir: dir.to_path_buf(),
        jwt: JwtSetup {
            keys: vec![JwtKey {
                kid: "k1".into(),
                alg: "ES256".into(),
                key: key.with_file_name("pub.pem").display().to_string(),
            }],
            anonymous_routes: vec!["health".into()],
            issuer: Some("tax-issuer".into()),
            audience: None,
        },
        limit_rps: peers::DEFAULT_LIMIT_RPS,
        access_log: dir.join("access.log"),
        tls_cert: cert.to_path_buf(),
        tls_key: key.to_path_buf(),
    }
}

/// Sends one request with `connection: close` (the kind's headers, `extra`, a body of its size);
/// returns the response head, lowercase.
pub fn request(addr: SocketAddr, k: &topology::RequestKind, extra: &[(&str, &str)]) -> String {
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

/// Stops a process even when an assertion fails first.
pub struct StopOnDrop(pub Option<Proc>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.stop(Duration::from_secs(5));
        }
    }
}

/// One stub per upstream, named after it, on its replica ports.
pub fn named_stubs(t: &Topology) -> (Vec<ringbench::upstream::UpstreamHandle>, Vec<SocketAddr>) {
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

pub fn route(id: &str, path: PathMatch, upstream: usize) -> Route {
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
pub fn overlapping() -> Topology {
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

/// The ringgate binary beside the test's target directory (or `RINGGATE_BIN`), if built.
pub fn ringgate_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGGATE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap();
    let beside = exe.parent()?.parent()?.join("ringgate");
    beside.is_file().then_some(beside)
}

/// Starts `peer` with features `f` on `t` (not a rung: any combination, so nginx's limit,
/// resilience, observe and TLS are tested without the auth it lacks).
pub fn start_with(
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

pub fn status(head: &str) -> u16 {
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

pub fn svc00_status(t: &Topology) -> topology::RequestKind {
    t.requests
        .iter()
        .find(|k| k.name == "svc00 other")
        .unwrap()
        .clone()
}
