//! The client side of a connection: a plain TCP socket or a TLS session over one.
//!
//! The request loop and the exchange read and write through this one type, so HTTP/1.1 runs
//! the same code over TLS; the match per call is all plain connections pay for it.

use crate::engine::drain::DrainSignal;
use crate::engine::h2::stream::H2Stream;
use crate::engine::io::ops::ReadFail;
use crate::engine::io::stream::ByteStream;
use crate::tls::{CertIdentity, TlsConn};
use monoio::net::TcpStream;
use std::time::Duration;

/// How long an idle keep-alive connection may still bring a request once the worker drains.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(500);

/// A client connection's byte stream.
pub(crate) enum Downstream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS, past its handshake.
    Tls(Box<TlsConn>),
    /// One HTTP/2 stream, rendered as an HTTP/1.1 exchange.
    H2(Box<H2Stream>),
    /// Handed over (to a tunnel); reads end, writes fail.
    Closed,
    /// No client: a background cache refresh's. Reads end, writes are dropped.
    Sink,
}

impl Downstream {
    /// `https` over TLS, else `http` (`X-Forwarded-Proto`).
    pub(crate) fn proto(&self) -> &'static str {
        match self {
            Downstream::Plain(_) | Downstream::Closed | Downstream::Sink => "http",
            Downstream::Tls(_) => "https",
            Downstream::H2(s) => s.proto(),
        }
    }

    /// The verified client certificate's identity, if any.
    pub(crate) fn identity(&self) -> Option<&CertIdentity> {
        match self {
            Downstream::Plain(_) | Downstream::Closed | Downstream::Sink => None,
            Downstream::Tls(t) => t.identity(),
            Downstream::H2(s) => s.identity(),
        }
    }

    /// The request an HTTP/2 stream carried has ended (answered or refused).
    pub(crate) fn h2_head_done(&mut self) {
        if let Downstream::H2(s) = self {
            s.head_done();
        }
    }

    /// An HTTP/2 stream's request body as frames (see [`H2Stream::take_body`]).
    pub(crate) fn take_h2_body(&mut self) -> Option<h2::RecvStream> {
        match self {
            Downstream::H2(s) => s.take_body(),
            _ => None,
        }
    }

    /// Ends the connection politely: a TLS session says `close_notify`.
    pub(crate) async fn close(&mut self) {
        match self {
            // Boxed: the TLS flush's state would otherwise size every connection's future.
            Downstream::Tls(t) => Box::pin(t.close()).await,
            Downstream::H2(s) => s.close(),
            Downstream::Plain(_) | Downstream::Closed | Downstream::Sink => {}
        }
    }

    /// Waits, holding no buffer, until the client has something to read: up to `timeout`, and,
    /// between requests (`drain` given), until the worker drains plus a short grace (a client
    /// about to send its next request gets it served with `Connection: close` instead of racing
    /// a close; a quiet one is let go). A readiness wait consumes nothing, so giving it up loses
    /// no byte. Bytes already decrypted (a pipelined request over TLS) are ready at once.
    pub(crate) async fn wait_readable(
        &mut self,
        timeout: Duration,
        drain: Option<&DrainSignal>,
    ) -> Result<(), ReadFail> {
        let ready = match self {
            Downstream::Plain(s) => until_stopped(s.readable(false), timeout, drain).await,
            // The head is rendered already; after it, the stream is done.
            Downstream::H2(_) if drain.is_none() => return Ok(()),
            Downstream::H2(_) | Downstream::Closed | Downstream::Sink => return Err(ReadFail::Eof),
            Downstream::Tls(t) => {
                if t.has_plaintext() {
                    return Ok(());
                }
                t.release_buffers();
                until_stopped(t.readable(), timeout, drain).await
            }
        };
        match ready {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(ReadFail::Io(e)),
            None => Err(ReadFail::Timeout),
        }
    }
}

impl ByteStream for Downstream {
    async fn read_append(
        &mut self,
        buf: Vec<u8>,
        timeout: Option<Duration>,
    ) -> (Result<usize, ReadFail>, Vec<u8>) {
        match self {
            Downstream::Plain(s) => s.read_append(buf, timeout).await,
            Downstream::Tls(t) => ByteStream::read_append(&mut **t, buf, timeout).await,
            Downstream::H2(s) => ByteStream::read_append(&mut **s, buf, timeout).await,
            Downstream::Closed | Downstream::Sink => (Err(ReadFail::Eof), buf),
        }
    }

    async fn write_range(
        &mut self,
        buf: Vec<u8>,
        start: usize,
        end: usize,
        timeout: Duration,
    ) -> (std::io::Result<()>, Vec<u8>) {
        match self {
            Downstream::Plain(s) => s.write_range(buf, start, end, timeout).await,
            Downstream::Tls(t) => ByteStream::write_range(&mut **t, buf, start, end, timeout).await,
            Downstream::H2(s) => ByteStream::write_range(&mut **s, buf, start, end, timeout).await,
            Downstream::Closed => (Err(std::io::ErrorKind::NotConnected.into()), buf),
            Downstream::Sink => (Ok(()), buf),
        }
    }

    fn reset_on_close(&mut self) {
        match self {
            Downstream::Plain(s) => s.reset_on_close(),
            Downstream::Tls(t) => ByteStream::reset_on_close(&mut **t),
            Downstream::H2(s) => ByteStream::reset_on_close(&mut **s),
            Downstream::Closed | Downstream::Sink => {}
        }
    }
}

/// Runs `wait` until `timeout`, or until the worker drains (`drain`) and a short grace passes;
/// `None` when stopped first. One timer serves both ends (it is moved earlier when the drain
/// begins): a timer entry is cache-line padded, and this future is all an idle connection's task
/// holds while it waits.
async fn until_stopped<T>(
    wait: impl std::future::Future<Output = T>,
    timeout: Duration,
    drain: Option<&DrainSignal>,
) -> Option<T> {
    use std::future::Future;
    use std::task::Poll;
    let deadline = std::time::Instant::now() + timeout;
    let mut wait = std::pin::pin!(wait);
    let mut timer = std::pin::pin!(monoio::time::sleep_until(deadline.into()));
    let mut drained = std::pin::pin!(drain.map(DrainSignal::wait));
    let mut draining = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = wait.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if !draining {
            if let Some(d) = drained.as_mut().as_pin_mut() {
                if d.poll(cx).is_ready() {
                    draining = true;
                    let grace = std::time::Instant::now() + DRAIN_IDLE_GRACE;
                    if grace < deadline {
                        timer.as_mut().reset(grace.into());
                    }
                }
            }
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
