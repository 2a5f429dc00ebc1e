//! HTTPS for the generator: the client configuration one run shares across its threads, and the
//! non-blocking rustls I/O a TLS [`Conn`](super::conn::Conn) does instead of plain socket reads
//! and writes.
//!
//! # Why it exists
//! To measure TLS termination (the CPU a proxy spends per request against nginx's at the same
//! offered rate), the generator must speak TLS itself, with control over what it costs the
//! server: keep-alive or a new handshake per request (`--requests-per-conn`), resumed or full
//! handshakes (`--tls-resume`), TLS 1.2 or 1.3 (`--tls-version`).
//!
//! # How it fits the epoll loop
//! rustls does no I/O of its own: a `ClientConnection` per connection is fed with `read_tls` from
//! the non-blocking socket and drained with `write_tls`, and plaintext moves through `reader()`
//! and `writer()`. The functions here follow the socket's rules exactly as the plaintext path
//! does (`WouldBlock` means "wait for epoll", never a blocking call), so the response reader sees
//! the same plaintext bytes as over TCP. A connection counts as connected for dispatch only once
//! its handshake is done; until then requests queue as they do behind a TCP connect.
//!
//! # One configuration per run
//! [`TlsClient::new`] builds a single `Arc<ClientConfig>` on the ring provider for the whole run;
//! every generator thread clones the `Arc`, so the configuration's resumption store (session
//! tickets and ids) is shared and a new connection on any thread can resume a session another
//! thread's connection obtained.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{HandshakeKind, SignatureScheme, SupportedProtocolVersion};
use thiserror::Error;

use super::plan::Target;

/// A TLS setup that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The CA bundle could not be read or parsed.
    #[error("--ca {path}: {reason}")]
    Ca {
        /// File.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The server name (from `--sni` or the URL host) is neither a DNS name nor an IP address.
    #[error("server name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
}

/// Which protocol versions the client offers (`--tls-version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    Tls13,
    /// Both; the server picks (1.3 when it can).
    #[default]
    Any,
}

impl TlsVersion {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &TLS12,
            TlsVersion::Tls13 => &TLS13,
            TlsVersion::Any => rustls::ALL_VERSIONS,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
            TlsVersion::Any => "any",
        }
    }
}

/// How the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates in this PEM bundle (`--ca`).
    Ca(PathBuf),
    /// Not at all (`--insecure`): see [`InsecureBenchmarkVerifier`].
    Insecure,
}

/// The TLS options of a run (only for `https://` targets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// Certificate verification.
    pub verify: Verify,
    /// Server name to send and verify (`--sni`); default: the URL's host.
    pub sni: Option<String>,
    /// Resume sessions on new connections (`--tls-resume on`); off makes every handshake full.
    pub resume: bool,
    /// Protocol versions offered.
    pub version: TlsVersion,
}

impl TlsOptions {
    /// Options that verify against `ca`, with resumption on and any version.
    pub fn with_ca(ca: impl Into<PathBuf>) -> Self {
        Self {
            verify: Verify::Ca(ca.into()),
            sni: None,
            resume: true,
            version: TlsVersion::Any,
        }
    }

    /// Options that skip verification, with resumption on and any version.
    pub fn insecure() -> Self {
        Self {
            verify: Verify::Insecure,
            ..Self::with_ca(PathBuf::new())
        }
    }

    /// One line for the report, e.g. `tls any, resume on, ca certs/ca.pem`.
    pub fn describe(&self) -> String {
        format!(
            "tls {}, resume {}, {}{}",
            self.version.name(),
            if self.resume { "on" } else { "off" },
            match &self.verify {
                Verify::Ca(p) => format!("ca {}", p.display()),
                Verify::Insecure => "insecure".to_string(),
            },
            self.sni
                .as_ref()
                .map_or(String::new(), |s| format!(", sni {s}"))
        )
    }
}

/// What every TLS connection of a run is made from: one shared configuration and the server
/// name.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// Shared by all threads (its resumption store too).
    pub config: Arc<ClientConfig>,
    /// Sent as SNI (unless it is an IP address) and verified against the certificate.
    pub server_name: ServerName<'static>,
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    Ok(roots)
}

impl TlsClient {
    /// Builds the run's client configuration for `target` (call once per run).
    pub fn new(opts: &TlsOptions, target: &Target) -> Result<Self, TlsError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(opts.version.versions())?;
        let mut config = match &opts.verify {
            Verify::Ca(path) => builder
                .with_root_certificates(load_roots(path)?)
                .with_no_client_auth(),
            Verify::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(InsecureBenchmarkVerifier::new(
                    provider,
                )))
                .with_no_client_auth(),
        };
        if !opts.resume {
            config.resumption = Resumption::disabled();
        }
        let name = opts.sni.as_deref().unwrap_or(&target.server_host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A new client connection (its ClientHello is queued, not yet sent).
    pub fn connection(&self) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), self.server_name.clone())
    }
}

/// A certificate verifier that accepts any certificate for any name. **For benchmarks only**
/// (`--insecure`): it lets the generator talk to a server with a throwaway self-signed
/// certificate without a CA file, and must never guard real traffic.
///
/// Like `curl -k`, it skips only the certificate checks (chain, name, validity); the handshake
/// signature is still verified with the certificate's key, so the client does the same
/// cryptographic work as a verifying client and the server's CPU per handshake is unchanged.
#[derive(Debug)]
pub struct InsecureBenchmarkVerifier {
    provider: Arc<CryptoProvider>,
}

impl InsecureBenchmarkVerifier {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ServerCertVerifier for InsecureBenchmarkVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// True for an error the TLS layer raised (bad record, alert from the server, failed
/// verification), as opposed to a socket error or a malformed HTTP response.
pub fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// Writes queued TLS records to the socket. `Ok(true)`: nothing left; `Ok(false)`: the socket
/// would block with records still queued.
fn flush(tls: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Processes records already read; on a protocol error, tries to send rustls' alert first.
fn process(tls: &mut ClientConnection, sock: &TcpStream) -> io::Result<usize> {
    match tls.process_new_packets() {
        Ok(state) => Ok(state.plaintext_bytes_to_read()),
        Err(e) => {
            let _ = flush(tls, sock);
            Err(tls_error(e))
        }
    }
}

/// Drives the handshake as far as the socket allows. `Ok(true)`: done (and its last flight
/// sent); `Ok(false)`: waiting for the socket (read, or write when [`wants_write`] says so).
///
/// [`wants_write`]: ClientConnection::wants_write
pub fn handshake(tls: &mut ClientConnection, mut sock: &TcpStream) -> io::Result<bool> {
    loop {
        if !flush(tls, sock)? {
            return Ok(false);
        }
        if !tls.is_handshaking() {
            return Ok(true);
        }
        match tls.read_tls(&mut sock) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ))
            }
            Ok(_) => {
                process(tls, sock)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// True when the finished handshake resumed a session.
pub fn resumed(tls: &ClientConnection) -> bool {
    tls.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// The TLS side of [`Conn::write_pending`](super::conn::Conn::write_pending): hands
/// `wbuf[*wpos..]` to rustls as plaintext and writes the records. `Ok(true)` once everything is
/// on the socket.
pub fn write(
    tls: &mut ClientConnection,
    sock: &TcpStream,
    wbuf: &[u8],
    wpos: &mut usize,
) -> io::Result<bool> {
    loop {
        if *wpos < wbuf.len() {
            // Takes what fits under rustls' buffer limit; the rest goes after the next flush.
            *wpos += tls.writer().write(&wbuf[*wpos..])?;
        }
        if !flush(tls, sock)? {
            return Ok(false);
        }
        if *wpos >= wbuf.len() {
            return Ok(true);
        }
    }
}

/// The TLS side of [`Conn::read_some`](super::conn::Conn::read_some): fills `buf` with
/// plaintext. `Ok(None)`: no plaintext until the socket is readable again; `Ok(Some(0))`: the
/// server closed (with or without `close_notify`: many servers skip it, and the response framing
/// tells a cut-off response anyway).
pub fn read(
    tls: &mut ClientConnection,
    mut sock: &TcpStream,
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    let mut eof = false;
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if eof {
            return Ok(Some(0));
        }
        match tls.read_tls(&mut sock) {
            Ok(0) => eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        process(tls, sock)?;
        // Records the server may ask us to answer (a key update): sent now if the socket takes
        // them, else ahead of the next request.
        if tls.wants_write() {
            let _ = flush(tls, sock);
        }
    }
}

/// True when rustls holds decrypted bytes nobody has read (after a response ended: the server
/// sent more than was asked for).
pub fn plaintext_pending(tls: &mut ClientConnection) -> bool {
    tls.process_new_packets()
        .map_or(true, |s| s.plaintext_bytes_to_read() > 0)
}

/// Queues a `close_notify` and sends it if the socket takes it now (best effort: the connection
/// is being dropped either way).
pub fn close_notify(tls: &mut ClientConnection, sock: &TcpStream) {
    tls.send_close_notify();
    let _ = flush(tls, sock);
}
