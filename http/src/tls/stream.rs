//! One TLS connection on a worker: the handshake, then application data in and out, with
//! rustls driven by hand over monoio's ownership-passing socket I/O.
//!
//! Ciphertext read from the socket lands in `rx` and is fed to rustls; plaintext is copied from
//! rustls straight into the caller's buffer (one copy, the one decryption needs anyway).
//! Plaintext to send is handed to rustls in slices no larger than its send buffer, encrypted
//! into `tx` and written, so a large body never makes the connection hold more than one buffer
//! of ciphertext. Every wait is bounded by the caller's timeout.

use super::identity::CertIdentity;
use super::upstream_fail::UpstreamTlsFail;
use crate::engine::io::ops::{read_append, read_cancelable, write_all, ReadFail};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Room for the largest TLS record (16 KiB of payload plus header and tag) with space to spare.
const RX_BYTES: usize = 18 * 1024;
/// How long a closing connection may take to send its `close_notify`.
const CLOSE_GRACE: Duration = Duration::from_millis(50);

/// Why a handshake did not complete. The names are the `reason` label of
/// `ringgate_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The client did not finish within the header timeout.
    Timeout,
    /// The client closed the connection.
    Eof,
    /// The socket failed.
    Io,
    /// The client spoke plain HTTP to a TLS port.
    PlainHttp,
    /// Not TLS, or a malformed or out-of-order message.
    BadMessage,
    /// No ALPN protocol in common.
    NoAlpn,
    /// No version or cipher suite in common.
    Incompatible,
    /// Client certificate required and none presented.
    ClientCertMissing,
    /// The client's certificate did not verify.
    ClientCertInvalid,
    /// The client aborted with an alert (typically: it did not trust our certificate).
    AlertReceived,
    /// SNI is strict and the name matched no certificate.
    UnknownSni,
    /// Anything else rustls refused.
    Other,
}

impl FailReason {
    /// Every reason, in metric order.
    pub const ALL: [FailReason; 12] = [
        FailReason::Timeout,
        FailReason::Eof,
        FailReason::Io,
        FailReason::PlainHttp,
        FailReason::BadMessage,
        FailReason::NoAlpn,
        FailReason::Incompatible,
        FailReason::ClientCertMissing,
        FailReason::ClientCertInvalid,
        FailReason::AlertReceived,
        FailReason::UnknownSni,
        FailReason::Other,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Timeout => "timeout",
            FailReason::Eof => "eof",
            FailReason::Io => "io",
            FailReason::PlainHttp => "plain_http",
            FailReason::BadMessage => "bad_message",
            FailReason::NoAlpn => "no_alpn",
            FailReason::Incompatible => "incompatible",
            FailReason::ClientCertMissing => "client_cert_missing",
            FailReason::ClientCertInvalid => "client_cert_invalid",
            FailReason::AlertReceived => "alert_received",
            FailReason::UnknownSni => "unknown_sni",
            FailReason::Other => "other",
        }
    }

    fn of(e: &rustls::Error) -> FailReason {
        use rustls::Error as E;
        match e {
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::DecryptError
            | E::PeerMisbehaved(_) => FailReason::BadMessage,
            E::NoApplicationProtocol => FailReason::NoAlpn,
            E::PeerIncompatible(_) => FailReason::Incompatible,
            E::NoCertificatesPresented => FailReason::ClientCertMissing,
            E::InvalidCertificate(_) => FailReason::ClientCertInvalid,
            E::AlertReceived(_) => FailReason::AlertReceived,
            E::General(s) if s.contains("no server certificate") => FailReason::UnknownSni,
            _ => FailReason::Other,
        }
    }
}

/// A handshake that did not complete.
#[derive(Debug)]
pub enum HandshakeFail {
    /// The first bytes were a plain HTTP request: the socket is handed back so the caller can
    /// answer 400 in clear text, as a client that got the scheme wrong expects.
    PlainHttp(TcpStream),
    /// Anything else; the connection is done.
    Failed(FailReason),
}

/// A TLS connection past its handshake.
pub struct TlsConn {
    tcp: TcpStream,
    /// The session: the server side of a client connection, or the client side of an upstream
    /// one.
    tls: Connection,
    /// Ciphertext read and not yet given to rustls.
    rx: Vec<u8>,
    /// Ciphertext to write (reused).
    tx: Vec<u8>,
    identity: Option<CertIdentity>,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("alpn", &self.tls.alpn_protocol())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TlsConn {
    /// Runs the server side of a handshake on `tcp`, within `timeout`.
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> Result<TlsConn, HandshakeFail> {
        let tls =
            ServerConnection::new(config).map_err(|e| HandshakeFail::Failed(FailReason::of(&e)))?;
        let mut c = TlsConn {
            tcp,
            tls: Connection::Server(tls),
            rx: Vec::with_capacity(RX_BYTES),
            tx: Vec::new(),
            identity: None,
        };
        match c.handshake(Instant::now() + timeout, true, &mut None).await {
            Ok(()) => {}
            Err(HandshakeFail::Failed(FailReason::PlainHttp)) => {
                return Err(HandshakeFail::PlainHttp(c.tcp))
            }
            Err(e) => return Err(e),
        }
        c.identity = c
            .tls
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| CertIdentity::from_der(leaf.as_ref()));
        Ok(c)
    }

    /// Runs the client side of a handshake on `tcp` (a connection to an upstream) with server
    /// name `name`, within `timeout`.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<TlsConn, io::Error> {
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut c = TlsConn {
            tcp,
            tls: Connection::Client(tls),
            rx: Vec::with_capacity(RX_BYTES),
            tx: Vec::new(),
            identity: None,
        };
        let mut why = None;
        let fail = match c.handshake(Instant::now() + timeout, false, &mut why).await {
            Ok(()) => return Ok(c),
            Err(_) if why.is_some() => why
                .as_ref()
                .map_or(UpstreamTlsFail::Handshake, UpstreamTlsFail::of),
            Err(HandshakeFail::Failed(FailReason::Timeout)) => UpstreamTlsFail::Timeout,
            Err(HandshakeFail::Failed(FailReason::Eof | FailReason::Io)) => UpstreamTlsFail::Closed,
            Err(_) => UpstreamTlsFail::Handshake,
        };
        Err(fail.into_io())
    }

    /// Drives the handshake to its end by `deadline`. `server`: the peer is a client (a plain
    /// HTTP request is told apart). The error rustls reported, if any, is left in `why`.
    async fn handshake(
        &mut self,
        deadline: Instant,
        server: bool,
        why: &mut Option<rustls::Error>,
    ) -> Result<(), HandshakeFail> {
        let c = self;
        let mut first = server;
        while c.tls.is_handshaking() {
            if c.tls.wants_write() {
                c.flush(deadline)
                    .await
                    .map_err(|_| HandshakeFail::Failed(FailReason::Io))?;
                continue;
            }
            if c.rx.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(HandshakeFail::Failed(FailReason::Timeout));
                }
                let (res, rx) =
                    read_append(&mut c.tcp, std::mem::take(&mut c.rx), Some(left)).await;
                c.rx = rx;
                match res {
                    Ok(_) => {}
                    Err(ReadFail::Timeout) => {
                        return Err(HandshakeFail::Failed(FailReason::Timeout))
                    }
                    Err(ReadFail::Eof) => return Err(HandshakeFail::Failed(FailReason::Eof)),
                    Err(ReadFail::Io(_)) => return Err(HandshakeFail::Failed(FailReason::Io)),
                }
                // A TLS record starts with 0x16 (handshake); an upper-case letter is a method.
                if first && c.rx.first().is_some_and(u8::is_ascii_uppercase) {
                    // The caller, which owns the socket, hands it back.
                    return Err(HandshakeFail::Failed(FailReason::PlainHttp));
                }
                first = false;
            }
            if let Err(e) = c.feed() {
                // rustls queued an alert telling the peer why; send it, briefly.
                let _ = c.flush(Instant::now() + CLOSE_GRACE).await;
                return Err(HandshakeFail::Failed(match e {
                    Feed::Tls(e) => {
                        let r = FailReason::of(&e);
                        *why = Some(e);
                        r
                    }
                    Feed::Stalled => FailReason::Other,
                }));
            }
        }
        // Whatever the handshake left to send (TLS 1.3 session tickets).
        if c.tls.wants_write() && c.flush(deadline).await.is_err() {
            return Err(HandshakeFail::Failed(FailReason::Io));
        }
        Ok(())
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// True when nothing waits to be read and the peer has not closed, checked without reading
    /// (a pooled upstream connection: see [`crate::engine::io::peek::is_quiet`]). Ciphertext already read and
    /// not yet decrypted counts as waiting.
    pub fn is_quiet(&mut self) -> bool {
        !self.has_plaintext() && crate::engine::io::peek::is_quiet(&self.tcp)
    }

    /// The handshake resumed an earlier session (a ticket).
    pub fn resumed(&self) -> bool {
        matches!(
            self.tls.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// TLS 1.3 (else 1.2).
    pub fn is_tls13(&self) -> bool {
        self.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// The verified client certificate's identity (mTLS), if the client presented one.
    pub fn identity(&self) -> Option<&CertIdentity> {
        self.identity.as_ref()
    }

    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Plaintext is already decrypted and waiting (a pipelined request).
    pub fn has_plaintext(&mut self) -> bool {
        !self.rx.is_empty() || matches!(self.tls.reader().fill_buf(), Ok(b) if !b.is_empty())
    }

    /// Reads plaintext into the spare capacity of `buf`, within `timeout`. Returns the byte
    /// count (never 0: a closed session is [`ReadFail::Eof`]).
    pub async fn read_append(
        &mut self,
        mut buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(0) => {}
                other => return (other, buf),
            }
            if self.tls.wants_write() {
                let d = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
                if let Err(e) = self.flush(d).await {
                    return (Err(ReadFail::Io(e)), buf);
                }
            }
            if self.rx.is_empty() {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) {
                    return (Err(ReadFail::Timeout), buf);
                }
                if self.rx.capacity() == 0 {
                    self.rx.reserve_exact(RX_BYTES);
                }
                let (res, rx) =
                    read_append(&mut self.tcp, std::mem::take(&mut self.rx), left).await;
                self.rx = rx;
                if let Err(f) = res {
                    return (Err(f), buf);
                }
            }
            if let Err(e) = self.feed() {
                let _ = self.flush(Instant::now() + CLOSE_GRACE).await;
                return (Err(ReadFail::Io(e.into_io())), buf);
            }
        }
    }

    /// Gives up the ciphertext buffers while the connection is idle (nothing read waits in the
    /// receive buffer; the send buffer is empty between writes): an idle connection holds none of
    /// its own, the next read or write takes new ones. (rustls keeps its own record buffer.)
    pub fn release_buffers(&mut self) {
        if self.rx.is_empty() {
            self.rx = Vec::new();
        }
        if self.tx.is_empty() {
            self.tx = Vec::new();
        }
    }

    /// Waits until the socket has something to read (or is closed), holding no buffer.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable(false).await
    }

    /// Writes `buf[start..end]` completely, within `timeout`.
    pub async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut off = start;
        while off < end {
            match self.tls.writer().write(&buf[off..end]) {
                Ok(n) => off += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush(deadline).await {
                return (Err(e), buf);
            }
        }
        (Ok(()), buf)
    }

    /// Sends `close_notify`, briefly (the connection is going away either way).
    pub async fn close(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush(Instant::now() + CLOSE_GRACE).await;
    }

    /// Moves decrypted bytes into `buf`'s spare capacity. `Ok(0)`: none yet.
    fn take_plaintext(&mut self, buf: &mut Vec<u8>) -> Result<usize, ReadFail> {
        take_plaintext(&mut self.tls, buf)
    }

    /// Gives rustls the ciphertext in `rx`.
    fn feed(&mut self) -> Result<(), Feed> {
        feed(&mut self.tls, &mut self.rx)
    }

    /// The socket, the session, and ciphertext read but not yet given to rustls: for a protocol
    /// driven by poll-style I/O (HTTP/2).
    pub fn into_parts(self) -> (TcpStream, Connection, Vec<u8>) {
        (self.tcp, self.tls, self.rx)
    }

    /// Splits the connection for a tunnel: each half on its own task-free future, sharing the
    /// session (borrowed only between awaits). Any plaintext already decrypted stays readable.
    pub fn into_split(self) -> (TlsReadHalf, TlsWriteHalf) {
        let tls = Rc::new(RefCell::new(self.tls));
        let (r, w) = monoio::io::Splitable::into_split(self.tcp);
        (
            TlsReadHalf {
                tcp: r,
                tls: tls.clone(),
                rx: self.rx,
            },
            TlsWriteHalf {
                tcp: w,
                tls,
                tx: self.tx,
            },
        )
    }

    /// Writes everything rustls has queued, by `deadline`.
    async fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        encrypt(&mut self.tls, &mut self.tx)?;
        if self.tx.is_empty() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let (res, mut tx) = write_all(&mut self.tcp, std::mem::take(&mut self.tx), left).await;
        tx.clear();
        self.tx = tx;
        res
    }
}

pub(crate) enum Feed {
    Tls(rustls::Error),
    Stalled,
}

impl Feed {
    fn into_io(self) -> io::Error {
        match self {
            Feed::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            Feed::Stalled => io::Error::other("tls receive buffer stalled"),
        }
    }
}

/// Moves decrypted bytes into `buf`'s spare capacity. `Ok(0)`: none yet.
fn take_plaintext(tls: &mut Connection, buf: &mut Vec<u8>) -> Result<usize, ReadFail> {
    let mut total = 0;
    let mut reader = tls.reader();
    while buf.len() < buf.capacity() {
        match reader.fill_buf() {
            Ok([]) if total == 0 => return Err(ReadFail::Eof),
            Ok([]) => break,
            Ok(chunk) => {
                let n = chunk.len().min(buf.capacity() - buf.len());
                buf.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) if total > 0 => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ReadFail::Eof),
            Err(e) => return Err(ReadFail::Io(e)),
        }
    }
    Ok(total)
}

/// Gives rustls the ciphertext in `rx` (what it took is removed).
fn feed(tls: &mut Connection, rx: &mut Vec<u8>) -> Result<(), Feed> {
    let mut used = 0;
    while used < rx.len() {
        let mut src = &rx[used..];
        match tls.read_tls(&mut src) {
            Ok(0) => break,
            Ok(n) => used += n,
            // Its buffer is full: plaintext must be taken first.
            Err(_) => break,
        }
        tls.process_new_packets().map_err(Feed::Tls)?;
    }
    if used == 0 && !rx.is_empty() {
        // All plaintext was taken, so rustls refusing more ciphertext cannot resolve.
        return Err(Feed::Stalled);
    }
    rx.drain(..used);
    Ok(())
}

/// Encrypts what rustls has queued into `tx`.
fn encrypt(tls: &mut Connection, tx: &mut Vec<u8>) -> io::Result<()> {
    while tls.wants_write() {
        tls.write_tls(tx)?;
    }
    Ok(())
}

/// The read side of a TLS connection split for a tunnel (see [`TlsConn::into_split`]).
pub struct TlsReadHalf {
    tcp: OwnedReadHalf<TcpStream>,
    tls: Rc<RefCell<Connection>>,
    rx: Vec<u8>,
}

/// The write side of a TLS connection split for a tunnel.
pub struct TlsWriteHalf {
    tcp: OwnedWriteHalf<TcpStream>,
    tls: Rc<RefCell<Connection>>,
    tx: Vec<u8>,
}

impl TlsReadHalf {
    /// Reads plaintext into the spare capacity of `buf`, waiting at most `timeout` for the
    /// socket; the wait is cancelled cleanly, so no received byte is lost. `Ok(n)`, `n > 0`.
    pub async fn read_append(
        &mut self,
        mut buf: Vec<u8>,
        timeout: Duration,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        loop {
            match take_plaintext(&mut self.tls.borrow_mut(), &mut buf) {
                Ok(0) => {}
                other => return (other, buf),
            }
            if self.rx.is_empty() {
                if self.rx.capacity() == 0 {
                    self.rx.reserve_exact(RX_BYTES);
                }
                let rx = std::mem::take(&mut self.rx);
                let (res, rx) = read_cancelable(&mut self.tcp, rx, timeout).await;
                self.rx = rx;
                if let Err(f) = res {
                    return (Err(f), buf);
                }
            }
            let fed = feed(&mut self.tls.borrow_mut(), &mut self.rx);
            if let Err(e) = fed {
                return (Err(ReadFail::Io(e.into_io())), buf);
            }
        }
    }
}

impl TlsWriteHalf {
    /// Encrypts and writes `buf[start..end]`, within `timeout`.
    pub async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut off = start;
        // Also flushes what the read side left queued (a key update answer) when nothing is
        // to be written.
        loop {
            {
                let mut tls = self.tls.borrow_mut();
                if off < end {
                    match tls.writer().write(&buf[off..end]) {
                        Ok(n) => off += n,
                        Err(e) => return (Err(e), buf),
                    }
                }
                if let Err(e) = encrypt(&mut tls, &mut self.tx) {
                    return (Err(e), buf);
                }
            }
            if !self.tx.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                let tx = std::mem::take(&mut self.tx);
                let (res, mut tx) = write_all(&mut self.tcp, tx, left).await;
                tx.clear();
                self.tx = tx;
                if let Err(e) = res {
                    return (Err(e), buf);
                }
            }
            if off >= end {
                return (Ok(()), buf);
            }
        }
    }

    /// Sends `close_notify` and shuts the socket's write side.
    pub async fn shutdown(&mut self) {
        self.tls.borrow_mut().send_close_notify();
        let (_, _) = self.write_range(Vec::new(), 0, 0, CLOSE_GRACE).await;
        let _ = monoio::io::AsyncWriteRent::shutdown(&mut self.tcp).await;
    }
}
