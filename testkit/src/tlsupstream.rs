//! An HTTPS server for tests (rustls over std sockets, a thread per connection): by default it
//! answers every keep-alive request with `200` and a body naming the SNI it saw and whether the
//! client presented a certificate ([`tls_upstream`]); [`tls_server`] answers with a handler of
//! the caller's. Counts handshakes.

use crate::pki::CertFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A running HTTPS upstream.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// Completed handshakes so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// What a handler is told of one request.
pub struct Seen<'a> {
    /// The SNI of the connection (`-` without one).
    pub sni: &'a str,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
    /// The request head (through its blank line).
    pub head: &'a str,
    /// The request body (by its `content-length`).
    pub body: &'a [u8],
}

/// Answers one request: `(status, body)`.
pub type Handler = Arc<dyn Fn(&Seen<'_>) -> (u16, String) + Send + Sync>;

/// Starts one serving `cert`; with `client_ca`, clients must present a certificate it signed.
/// Every request is answered `200 sni=<sni> client_cert=<bool>`.
pub fn tls_upstream(cert: &CertFiles, client_ca: Option<&Path>) -> TlsUpstream {
    tls_server(
        cert,
        client_ca,
        Arc::new(|s: &Seen<'_>| (200, format!("sni={} client_cert={}", s.sni, s.client_cert))),
    )
}

/// Starts one serving `cert` (and asking for client certificates signed by `client_ca`), each
/// request answered by `handler`.
pub fn tls_server(cert: &CertFiles, client_ca: Option<&Path>, handler: Handler) -> TlsUpstream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("ca") {
                roots.add(c.expect("ca pem")).expect("ca add");
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let chain = CertificateDer::pem_file_iter(&cert.cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(&cert.key).expect("key");
    let config = Arc::new(b.with_single_cert(chain, key).expect("server config"));
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let config = config.clone();
            let count = count.clone();
            let handler = handler.clone();
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut t = rustls::StreamOwned::new(conn, s);
                while t.conn.is_handshaking() {
                    if t.conn.complete_io(&mut t.sock).is_err() {
                        return;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let sni = t.conn.server_name().unwrap_or("-").to_string();
                let client_cert = t.conn.peer_certificates().is_some_and(|c| !c.is_empty());
                let mut carry = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    while !carry.windows(4).any(|w| w == b"\r\n\r\n") {
                        match t.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => carry.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = carry
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(0, |p| p + 4);
                    let head = String::from_utf8_lossy(&carry[..end]).into_owned();
                    let length = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while carry.len() < end + length {
                        match t.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => carry.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = handler(&Seen {
                        sni: &sni,
                        client_cert,
                        head: &head,
                        body: &carry[end..end + length],
                    });
                    carry.drain(..end + length);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if t.write_all(resp.as_bytes())
                        .and_then(|()| t.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    TlsUpstream { addr, handshakes }
}
