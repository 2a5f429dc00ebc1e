//! Socket helpers over monoio's ownership-passing I/O, each bounded by a timeout.
//!
//! monoio reads fill a buffer from its start, so appending passes `slice_mut(len..capacity)`;
//! writes of part of a buffer pass `slice(a..b)`; both hand the buffer back. A timeout drops the
//! in-flight operation (best-effort cancel, which may lose bytes already received): every caller
//! closes the connection after a timeout, so nothing lost matters.

use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use std::io;
use std::time::Duration;

/// How a read ended, when it did not bring bytes.
#[derive(Debug)]
pub enum ReadFail {
    /// The peer closed its side (read returned 0).
    Eof,
    /// The timeout passed.
    Timeout,
    /// The socket failed.
    Io(io::Error),
}

/// Reads into the spare capacity of `buf` (after its current length). Returns the byte count
/// (never 0: zero is [`ReadFail::Eof`]).
pub async fn read_append(
    s: &mut impl AsyncReadRent,
    buf: Vec<u8>,
    timeout: Option<Duration>,
) -> (Result<usize, ReadFail>, Vec<u8>) {
    let len = buf.len();
    let cap = buf.capacity();
    debug_assert!(len < cap, "read_append needs spare capacity");
    let op = s.read(buf.slice_mut(len..cap));
    let (res, slice) = match timeout {
        Some(t) => match monoio::time::timeout(t, op).await {
            Ok(r) => r,
            // The buffer went with the cancelled op; hand back a fresh one of the same size.
            Err(_) => return (Err(ReadFail::Timeout), Vec::with_capacity(cap)),
        },
        None => op.await,
    };
    let buf = slice.into_inner();
    match res {
        Ok(0) => (Err(ReadFail::Eof), buf),
        Ok(n) => (Ok(n), buf),
        Err(e) => (Err(ReadFail::Io(e)), buf),
    }
}

/// Reads into the spare capacity of `buf`, waiting at most `timeout`. Unlike [`read_append`],
/// a timeout cancels the read and waits for the cancellation, so bytes that arrived meanwhile
/// are kept: for waits that may be retried (a tunnel's idle check).
pub async fn read_cancelable(
    s: &mut impl CancelableAsyncReadRent,
    buf: Vec<u8>,
    timeout: Duration,
) -> (Result<usize, ReadFail>, Vec<u8>) {
    read_cancelable_until(s, buf, monoio::time::sleep(timeout)).await
}

/// Reads into the spare capacity of `buf` until `stop` completes, then cancels the read
/// cleanly (waiting for the cancellation, so no received byte is lost). A stopped read is
/// [`ReadFail::Timeout`].
pub async fn read_cancelable_until(
    s: &mut impl CancelableAsyncReadRent,
    buf: Vec<u8>,
    stop: impl std::future::Future<Output = ()>,
) -> (Result<usize, ReadFail>, Vec<u8>) {
    let len = buf.len();
    let cap = buf.capacity();
    debug_assert!(len < cap, "read_cancelable needs spare capacity");
    let canceller = Canceller::new();
    let read = s.cancelable_read(buf.slice_mut(len..cap), canceller.handle());
    let mut read = std::pin::pin!(read);
    let done: Option<(io::Result<usize>, SliceMut<Vec<u8>>)> = monoio::select! {
        r = &mut read => Some(r),
        _ = stop => None,
    };
    let (res, slice) = match done {
        Some(r) => r,
        None => {
            let _ = canceller.cancel();
            read.await
        }
    };
    let buf = slice.into_inner();
    match res {
        Ok(0) => (Err(ReadFail::Eof), buf),
        Ok(n) => (Ok(n), buf),
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => (Err(ReadFail::Timeout), buf),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => (Err(ReadFail::Timeout), buf),
        Err(e) => (Err(ReadFail::Io(e)), buf),
    }
}

/// Writes `buf[range]` completely, within `timeout`.
pub async fn write_range(
    s: &mut impl AsyncWriteRentExt,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    let cap = buf.capacity();
    if start == end {
        return (Ok(()), buf);
    }
    let op = s.write_all(buf.slice(start..end));
    match monoio::time::timeout(timeout, op).await {
        Ok((res, slice)) => (res.map(|_| ()), slice.into_inner()),
        Err(_) => (
            Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
            Vec::with_capacity(cap),
        ),
    }
}

/// Writes all of `buf`.
pub async fn write_all(
    s: &mut impl AsyncWriteRentExt,
    buf: Vec<u8>,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    let end = buf.len();
    write_range(s, buf, 0, end, timeout).await
}

/// Makes the coming close of `sock` send a reset instead of a FIN.
///
/// A response whose end is marked by closing the connection (an HTTP/1.0 client, or an upstream
/// body without a length) must not look complete when the upstream broke off in the middle: a
/// FIN would tell the client it has the whole body, a reset tells it the body was cut.
#[allow(unsafe_code)]
pub fn reset_on_close(sock: &impl std::os::fd::AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `sock` owns an open socket for the duration of the call (it is borrowed); the option
    // value points at a live `linger` of exactly the length passed. Failure leaves the default
    // (a FIN), which is what happened before; there is nothing else to do about it.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match monoio::time::timeout(timeout, TcpStream::connect_addr(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}
