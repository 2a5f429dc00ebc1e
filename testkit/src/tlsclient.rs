//! A blocking TLS client for tests (rustls over a std socket): picks SNI, trusts a test CA,
//! optionally presents a client certificate, keeps a session store across connections (to test
//! resumption), and speaks enough HTTP/1.1 to read a response with a length.

use crate::client::{Client, Response};
use crate::pki::CertFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::Write;
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
        Ok(TlsSession { c: Client::over(s) })
    }
}

/// A connected TLS session, read and written with the raw test client.
pub struct TlsSession {
    c: Client<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsSession {
    /// The certificate the server presented (DER of the leaf).
    pub fn peer_cert(&self) -> Vec<u8> {
        self.c
            .stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// The handshake resumed a session.
    pub fn resumed(&self) -> bool {
        matches!(
            self.c.stream.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The negotiated version is TLS 1.3.
    pub fn is_tls13(&self) -> bool {
        self.c.stream.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// The ALPN protocol agreed on.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.c.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The TLS stream itself (for another protocol on top: a WebSocket client). Bytes already
    /// read past the last response are dropped.
    pub fn into_stream(self) -> StreamOwned<ClientConnection, TcpStream> {
        self.c.stream
    }

    /// Sends raw bytes.
    pub fn send(&mut self, raw: &[u8]) -> Result<(), String> {
        self.c
            .stream
            .write_all(raw)
            .and_then(|()| self.c.stream.flush())
            .map_err(|e| format!("write: {e}"))
    }

    /// `GET path` with `Host: host` (keep-alive), then reads the response.
    pub fn get(&mut self, host: &str, path: &str) -> Result<Response, String> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        self.response()
    }

    /// Reads one response (to a GET).
    pub fn response(&mut self) -> Result<Response, String> {
        self.c
            .try_response_to("GET")
            .ok_or_else(|| "closed or refused before a response".to_string())
    }
}
