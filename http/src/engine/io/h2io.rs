//! The byte stream under an HTTP/2 connection, in the poll-style I/O (tokio's traits) the `h2`
//! crate speaks: monoio's poll-io socket, with a cleartext prefix already read (the h2c
//! preface) or a rustls session that finished its handshake on rent I/O.
//!
//! HTTP/1.1 stays on rent I/O; only connections that negotiated `h2` pay for this mode.

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::Connection;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Ciphertext read per socket read (a TLS record with room).
const RX_BYTES: usize = 18 * 1024;

/// A connection's stream for `h2`.
pub(crate) enum H2Io {
    /// Cleartext; `prefix[pos..]` was read before the switch and is served first.
    Plain {
        io: TcpStreamPoll,
        prefix: Vec<u8>,
        pos: usize,
    },
    /// TLS past its handshake.
    Tls(Box<TlsIo>),
}

/// A rustls session over a poll-io socket.
pub(crate) struct TlsIo {
    io: TcpStreamPoll,
    tls: Connection,
    /// Ciphertext read buffer (`rx[rx_start..rx_end]` not yet given to rustls).
    rx: Box<[u8]>,
    rx_start: usize,
    rx_end: usize,
    /// Ciphertext to write; `tx[tx_pos..]` is unsent.
    tx: Vec<u8>,
    tx_pos: usize,
    /// The peer closed the socket.
    eof: bool,
}

impl H2Io {
    /// Cleartext, with `prefix` already read.
    pub(crate) fn plain(io: TcpStreamPoll, prefix: Vec<u8>) -> Self {
        H2Io::Plain { io, prefix, pos: 0 }
    }

    /// TLS, with `pending` ciphertext already read and not yet given to rustls.
    pub(crate) fn tls(io: TcpStreamPoll, tls: Connection, pending: &[u8]) -> Self {
        let mut rx = vec![0u8; RX_BYTES.max(pending.len())].into_boxed_slice();
        rx[..pending.len()].copy_from_slice(pending);
        H2Io::Tls(Box::new(TlsIo {
            io,
            tls,
            rx,
            rx_start: 0,
            rx_end: pending.len(),
            tx: Vec::new(),
            tx_pos: 0,
            eof: false,
        }))
    }
}

impl TlsIo {
    /// Writes queued ciphertext; `Ready(Ok)` once all of it is out.
    fn poll_flush_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tx)?;
        }
        while self.tx_pos < self.tx.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.tx[self.tx_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx_pos += n;
        }
        self.tx.clear();
        self.tx_pos = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.tls.reader().read(out.initialize_unfilled()) {
                Ok(n) => {
                    out.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(()));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            // Answers rustls owes the peer (key updates) go out before waiting.
            if self.tls.wants_write() {
                let _ = self.poll_flush_tx(cx)?;
            }
            if self.rx_start == self.rx_end {
                let mut rb = ReadBuf::new(&mut self.rx);
                ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    self.eof = true;
                    // Tells rustls the transport ended (a missing close_notify shows as EOF).
                    let _ = self.tls.read_tls(&mut &[][..]);
                    continue;
                }
                self.rx_start = 0;
                self.rx_end = n;
            }
            let mut src = &self.rx[self.rx_start..self.rx_end];
            let before = src.len();
            match self.tls.read_tls(&mut src) {
                Ok(_) => self.rx_start += before - src.len(),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Send the alert rustls queued, then fail.
                let _ = self.poll_flush_tx(cx);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Backpressure: what was encrypted before must be out first.
        ready!(self.poll_flush_tx(cx))?;
        let n = self.tls.writer().write(buf)?;
        // Start sending now; what does not fit waits for the next call or the flush.
        if let Poll::Ready(Err(e)) = self.poll_flush_tx(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tls.send_close_notify();
        ready!(self.poll_flush_tx(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            H2Io::Plain { io, prefix, pos } => {
                if *pos < prefix.len() {
                    let n = out.remaining().min(prefix.len() - *pos);
                    out.put_slice(&prefix[*pos..*pos + n]);
                    *pos += n;
                    if *pos == prefix.len() {
                        *prefix = Vec::new();
                        *pos = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
                Pin::new(io).poll_read(cx, out)
            }
            H2Io::Tls(t) => t.poll_read(cx, out),
        }
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            H2Io::Plain { io, .. } => Pin::new(io).poll_write(cx, buf),
            H2Io::Tls(t) => t.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            H2Io::Plain { io, .. } => Pin::new(io).poll_flush(cx),
            H2Io::Tls(t) => {
                ready!(t.poll_flush_tx(cx))?;
                Pin::new(&mut t.io).poll_flush(cx)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            H2Io::Plain { io, .. } => Pin::new(io).poll_shutdown(cx),
            H2Io::Tls(t) => t.poll_shutdown(cx),
        }
    }
}
