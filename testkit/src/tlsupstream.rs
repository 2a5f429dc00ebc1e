//! An HTTPS upstream for tests (rustls over std sockets, a thread per connection): answers
//! every keep-alive request with `200` and a body naming the SNI it saw and whether the client
//! presented a certificate; counts handshakes.

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

/// Starts one serving `cert`; with `client_ca`, clients must present a certificate it signed.
pub fn tls_upstream(cert: &CertFiles, client_ca: Option<&Path>) -> TlsUpstream {
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
                    carry.drain(..end);
                    let body = format!("sni={sni} client_cert={client_cert}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
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
