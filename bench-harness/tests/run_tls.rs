//! `ringbench run` over https: a tiny rustls server in the test (blocking sockets, a thread per
//! connection, a throwaway CA made with rcgen) answers every request on keep-alive connections.
//! Checked: requests succeed with a verified certificate, `requests_per_conn` opens a connection
//! (and a handshake) per request, resumption happens only when allowed, TLS 1.2 resumes too, and
//! handshake failures are counted as `tls` errors. Timing is never asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{accounted, run_config};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ringbench::run::{self, RunReport, TlsOptions, TlsVersion};
use ringbench::upstream::{self, UpstreamConfig};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A throwaway CA written as PEM into a temporary directory (removed on drop).
struct Ca {
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ringbench-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Self { dir, issuer }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test's HTTPS server: its address, the CA that signed its certificate, requests answered.
struct TlsServer {
    addr: SocketAddr,
    ca: Ca,
    served: Arc<AtomicU64>,
}

fn spawn_tls_server() -> TlsServer {
    let ca = Ca::new("ringbench test CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = Arc::new(
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&served);
    // Detached: it lives until the test process ends.
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            let count = Arc::clone(&count);
            std::thread::spawn(move || serve(sock, config, &count));
        }
    });
    TlsServer { addr, ca, served }
}

/// Answers every request head on one keep-alive connection until the client goes away.
fn serve(sock: TcpStream, config: Arc<ServerConfig>, served: &AtomicU64) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = sock.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, sock);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if tls.write_all(RESPONSE).and_then(|()| tls.flush()).is_err() {
                return;
            }
            served.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn run_tls(server: &TlsServer, tls: TlsOptions, requests_per_conn: u64, rate: f64) -> RunReport {
    let mut cfg = run_config(
        &format!("https://{}/", server.addr),
        rate,
        Duration::from_secs(1),
    );
    cfg.tls = Some(tls);
    cfg.requests_per_conn = requests_per_conn;
    accounted(run::run(&cfg).unwrap())
}

/// Every scheduled request answered 200 over TLS.
fn all_succeeded(r: &RunReport) {
    assert!(r.counts.scheduled > 0);
    assert_eq!(
        r.counts.success, r.counts.scheduled,
        "{:?} {:?}",
        r.counts, r.counts.error_kinds
    );
    assert_eq!(r.counts.statuses.get("200"), Some(&r.counts.scheduled));
}

#[test]
fn https_keep_alive_requests_succeed_with_a_verified_certificate() {
    let server = spawn_tls_server();
    let r = run_tls(&server, TlsOptions::with_ca(server.ca.path()), 0, 200.0);
    all_succeeded(&r);
    assert_eq!(r.counts.scheduled, 200);
    assert_eq!(server.served.load(Ordering::SeqCst), 200);
    // Keep-alive: a handful of connections, each one handshake.
    let g = &r.generator;
    assert_eq!(g.tls_handshakes, g.connections);
    assert!(g.connections < 50, "{g:?}");
    let table = r.table();
    assert!(table.contains("tls handshakes"), "{table}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["tls"]["version"], "any");
    assert_eq!(json["generator"]["tls_handshakes"], g.tls_handshakes);
}

#[test]
fn one_request_per_connection_handshakes_per_request_and_resumes_only_when_allowed() {
    let server = spawn_tls_server();
    let conns = run_config("https://127.0.0.1:1/", 1.0, Duration::from_secs(1)).conns as u64;

    let r = run_tls(&server, TlsOptions::with_ca(server.ca.path()), 1, 200.0);
    all_succeeded(&r);
    let g = &r.generator;
    let n = r.counts.scheduled;
    // One connection and one handshake per request (plus at most the ones opened up front).
    assert!(
        (n..=n + conns).contains(&g.tls_handshakes),
        "{n} requests, {g:?}"
    );
    assert_eq!(g.connections, g.tls_handshakes);
    assert!(g.tls_resumed > 0, "{g:?}");
    // Handshakes inside the window are timed (the ones opened up front are not).
    assert!(r.latency.tls_handshake.count >= n - conns.min(n));
    assert!(r.table().contains("1 request(s) each"));
    println!("{}", r.table());

    let mut opts = TlsOptions::with_ca(server.ca.path());
    opts.resume = false;
    let r = run_tls(&server, opts, 1, 200.0);
    all_succeeded(&r);
    let g = &r.generator;
    assert!((n..=n + conns).contains(&g.tls_handshakes), "{g:?}");
    assert_eq!(g.tls_resumed, 0, "{g:?}");
}

#[test]
fn insecure_tls12_with_another_sni_resumes_by_session_id() {
    let server = spawn_tls_server();
    // The certificate names neither this SNI nor anything the client trusts: --insecure.
    let opts = TlsOptions {
        sni: Some("bench.invalid".into()),
        version: TlsVersion::Tls12,
        ..TlsOptions::insecure()
    };
    let r = run_tls(&server, opts, 1, 100.0);
    all_succeeded(&r);
    let g = &r.generator;
    assert!(g.tls_handshakes >= r.counts.scheduled, "{g:?}");
    assert!(g.tls_resumed > 0, "{g:?}");
}

#[test]
fn failed_handshakes_are_tls_errors() {
    // A server whose certificate chains to a CA the client does not trust.
    let server = spawn_tls_server();
    let stranger = Ca::new("a CA nobody trusts");
    let mut cfg = run_config(
        &format!("https://{}/", server.addr),
        100.0,
        Duration::from_millis(500),
    );
    cfg.tls = Some(TlsOptions::with_ca(stranger.path()));
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert_eq!(r.counts.errors, r.counts.scheduled, "{:?}", r.counts);
    assert!(
        r.counts.error_kinds.keys().all(|k| k == "tls"),
        "{:?}",
        r.counts.error_kinds
    );
    assert_eq!(server.served.load(Ordering::SeqCst), 0);

    // A plaintext HTTP server on an https URL.
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    cfg.target = run::Target::parse(&format!("https://{}/", up.addr())).unwrap();
    cfg.tls = Some(TlsOptions::insecure());
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.completed, 0);
    assert_eq!(r.counts.errors, r.counts.scheduled, "{:?}", r.counts);
    assert!(
        r.counts.error_kinds.keys().all(|k| k == "tls"),
        "{:?}",
        r.counts.error_kinds
    );
}

#[test]
fn https_without_tls_options_is_refused_before_the_run() {
    let cfg = run_config("https://127.0.0.1:1/", 100.0, Duration::from_millis(200));
    let err = run::run(&cfg).unwrap_err().to_string();
    assert!(err.contains("--ca") && err.contains("--insecure"), "{err}");
    let mut cfg = run_config("https://127.0.0.1:1/", 100.0, Duration::from_millis(200));
    cfg.tls = Some(TlsOptions::with_ca("/nonexistent/ca.pem"));
    let err = run::run(&cfg).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn plain_http_with_one_request_per_connection_opens_a_connection_per_request() {
    let up = upstream::spawn(UpstreamConfig::default()).unwrap();
    let mut cfg = run_config(
        &format!("http://{}/", up.addr()),
        200.0,
        Duration::from_secs(1),
    );
    cfg.requests_per_conn = 1;
    let r = accounted(run::run(&cfg).unwrap());
    assert_eq!(r.counts.success, r.counts.scheduled, "{:?}", r.counts);
    let n = r.counts.scheduled;
    let conns = cfg.conns as u64;
    assert!(
        (n..=n + conns).contains(&r.generator.connections),
        "{n} requests, {:?}",
        r.generator
    );
    assert_eq!(r.generator.tls_handshakes, 0);
    assert!(r.tls.is_none());
}
