//! One byte-stream contract for every transport the engine reads and writes: a cleartext
//! socket, a TLS session, one HTTP/2 stream. The connection loop, the exchange and the relay are
//! written against it; the client side ([`super::downstream::Downstream`]) and the upstream side
//! ([`crate::engine::upstream::stream::UpStream`]) are enums of transports that pass each call to
//! the transport they hold, so each transport's reading and writing is written once, here or in
//! its own module.
//!
//! Reads append into the spare capacity of an owned buffer and give it back (the ring owns a
//! buffer while a read is in flight); writes send a range of an owned buffer completely.

use super::ops::{self, ReadFail};
use crate::engine::h2::stream::H2Stream;
use crate::tls::TlsConn;
use monoio::net::TcpStream;
use std::io;
use std::time::Duration;

/// A byte stream the engine reads and writes.
pub(crate) trait ByteStream {
    /// Reads into the spare capacity of `buf` (after its length), within `timeout`: the byte
    /// count, never 0 (the end is [`ReadFail::Eof`]).
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>);

    /// Writes `buf[start..end]` completely, within `timeout`.
    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>);

    /// Makes the coming close abortive (a cut response must not look complete).
    fn reset_on_close(&mut self);

    /// Writes all of `buf`, within `timeout`.
    async fn write_all(&mut self, buf: Vec<u8>, timeout: Duration) -> (io::Result<()>, Vec<u8>) {
        let end = buf.len();
        self.write_range(buf, 0, end, timeout).await
    }
}

impl ByteStream for TcpStream {
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        ops::read_append(self, buf, timeout).await
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        ops::write_range(self, buf, start, end, timeout).await
    }

    fn reset_on_close(&mut self) {
        ops::reset_on_close(self);
    }
}

impl ByteStream for TlsConn {
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        TlsConn::read_append(self, buf, timeout).await
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        TlsConn::write_range(self, buf, start, end, timeout).await
    }

    fn reset_on_close(&mut self) {
        ops::reset_on_close(self.tcp());
    }
}

impl ByteStream for H2Stream {
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        H2Stream::read_append(self, buf, timeout).await
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (io::Result<()>, Vec<u8>) {
        H2Stream::write_range(self, buf, start, end, timeout).await
    }

    /// A stream is cut with `RST_STREAM` when it closes.
    fn reset_on_close(&mut self) {
        self.abort();
    }
}
