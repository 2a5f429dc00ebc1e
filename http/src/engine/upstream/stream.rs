//! The upstream side of an exchange: a cleartext connection, or a TLS session over one when the
//! upstream says so (`[upstreams.tls]`). Pooled and reused the same way either way; the exchange
//! reads and writes through this one type.

use crate::engine::io::ops::{connect, ReadFail};
use crate::engine::io::stream::ByteStream;
use crate::gateway::UpstreamTls;
use crate::tls::TlsConn;
use monoio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A connection to an upstream endpoint.
pub enum UpStream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS, past its handshake.
    Tls(Box<TlsConn>),
}

impl UpStream {
    /// Connects to `addr` (and runs the TLS handshake when `tls` is given), all within
    /// `timeout`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        tls: Option<&UpstreamTls>,
        timeout: Duration,
    ) -> io::Result<UpStream> {
        let start = Instant::now();
        let tcp = connect(addr, timeout).await?;
        match tls {
            None => Ok(UpStream::Plain(tcp)),
            Some(t) => {
                let left = timeout.saturating_sub(start.elapsed());
                let conn =
                    TlsConn::connect(tcp, t.config.clone(), t.server_name.clone(), left).await?;
                Ok(UpStream::Tls(Box::new(conn)))
            }
        }
    }

    /// True when nothing waits to be read and the peer has not closed (an idle pooled
    /// connection still good to reuse).
    pub(crate) fn is_quiet(&mut self) -> bool {
        match self {
            UpStream::Plain(s) => crate::engine::io::peek::is_quiet(s),
            UpStream::Tls(t) => t.is_quiet(),
        }
    }
}

impl ByteStream for UpStream {
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        match self {
            UpStream::Plain(s) => s.read_append(buf, timeout).await,
            UpStream::Tls(t) => ByteStream::read_append(&mut **t, buf, timeout).await,
        }
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        match self {
            UpStream::Plain(s) => s.write_range(buf, start, end, timeout).await,
            UpStream::Tls(t) => ByteStream::write_range(&mut **t, buf, start, end, timeout).await,
        }
    }

    fn reset_on_close(&mut self) {
        match self {
            UpStream::Plain(s) => s.reset_on_close(),
            UpStream::Tls(t) => ByteStream::reset_on_close(&mut **t),
        }
    }
}
