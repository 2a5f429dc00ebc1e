//! A blocking TLS client for tests (rustls over a std socket): picks SNI, trusts a test CA,
//! optionally presents a client certificate, keeps a session store across connections (to test
//! resumption), and speaks enough HTTP/1.1 to read a response with a length.

use crate::pki::CertFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A client config: trusted CA, versions, ALPN, optional client certificate, resumption store.
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

/// What a TLS client can be asked for.
#[derive(Default)]
pub struct Options<'a> {
    /// Present this certificate.
    pub client_cert: Option<&'a CertFiles>,
    /// Only TLS 1.2.
    pub tls12_only: bool,
    /// ALPN protocols to offer.
    pub alpn: &'a [&'a str],
}

impl TlsClient {
    /// A client trusting `ca` (PEM).
    pub fn new(ca: &Path, opts: &Options<'_>) -> Self {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("ca file") {
            roots.add(c.expect("ca pem")).expect("ca cert");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let b = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match opts.client_cert {
            Some(c) => {
                let chain = CertificateDer::pem_file_iter(&c.cert)
                    .expect("cert file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert pem");
                let key = PrivateKeyDer::from_pem_file(&c.key).expect("key pem");
                b.with_client_auth_cert(chain, key).expect("client cert")
            }
            None => b.with_no_client_auth(),
        };
        config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// Connects to `addr` with server name `sni` and completes the handshake.
    pub fn connect(&self, addr: SocketAddr, sni: &str) -> Result<TlsSession, String> {
        let sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
        sock.set_nodelay(true).ok();
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(TlsSession {
            s,
            carry: Vec::new(),
        })
    }
}

/// A connected TLS session.
pub struct TlsSession {
    s: StreamOwned<ClientConnection, TcpStream>,
    carry: Vec<u8>,
}

/// A response read off a TLS session.
#[derive(Debug)]
pub struct TlsResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl TlsResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TlsSession {
    /// The certificate the server presented (DER of the leaf).
    pub fn peer_cert(&self) -> Vec<u8> {
        self.s
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// The handshake resumed a session.
    pub fn resumed(&self) -> bool {
        matches!(
            self.s.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The negotiated version is TLS 1.3.
    pub fn is_tls13(&self) -> bool {
        self.s.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// The ALPN protocol agreed on.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.s.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The TLS stream itself (for another protocol on top: a WebSocket client). Bytes already
    /// read past the last response are dropped.
    pub fn into_stream(self) -> StreamOwned<ClientConnection, TcpStream> {
        self.s
    }

    /// Sends raw bytes.
    pub fn send(&mut self, raw: &[u8]) -> Result<(), String> {
        self.s.write_all(raw).map_err(|e| format!("write: {e}"))?;
        self.s.flush().map_err(|e| format!("flush: {e}"))
    }

    /// `GET path` with `Host: host` (keep-alive), then reads the response.
    pub fn get(&mut self, host: &str, path: &str) -> Result<TlsResponse, String> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        self.response()
    }

    /// Reads one response framed by `Content-Length`.
    pub fn response(&mut self) -> Result<TlsResponse, String> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) =
                r.parse(&self.carry).map_err(|e| e.to_string())?
            {
                let status = r.code.unwrap_or(0);
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.carry.len() < n + len {
                    self.fill()?;
                }
                let body = self.carry[n..n + len].to_vec();
                self.carry.drain(..n + len);
                return Ok(TlsResponse {
                    status,
                    headers,
                    body,
                });
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 * 1024];
        match self.s.read(&mut buf) {
            Ok(0) => Err("closed".into()),
            Ok(n) => {
                self.carry.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}
