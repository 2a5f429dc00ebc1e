//! Moving bytes and descriptors over the Unix socket, for both ends: bounded waits,
//! `SCM_RIGHTS` chunks, and the checks on the peer and on each descriptor received.

use super::{io_error, transfer_error, HandoffError, CHUNK_MARK, FDS_PER_MESSAGE};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmsg, send, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    UnixAddr,
};
use socket2::{Protocol, SockRef, Type};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Checks that `fd` is a listening TCP socket bound to `addr` (any port when `addr` has port 0).
pub(super) fn check_listener(
    fd: BorrowedFd<'_>,
    addr: SocketAddr,
    index: usize,
) -> Result<(), HandoffError> {
    let bad = |reason: String| HandoffError::NotListening {
        addr,
        index,
        reason,
    };
    let s = SockRef::from(&fd);
    match s.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(t) => return Err(bad(format!("socket type {t:?}, not a stream"))),
        Err(e) => return Err(bad(format!("not a socket ({e})"))),
    }
    match s.protocol() {
        Ok(Some(p)) if p == Protocol::TCP => {}
        Ok(p) => return Err(bad(format!("protocol {p:?}, not TCP"))),
        Err(e) => return Err(bad(format!("SO_PROTOCOL: {e}"))),
    }
    match s.is_listener() {
        Ok(true) => {}
        Ok(false) => return Err(bad("not listening (SO_ACCEPTCONN is 0)".into())),
        Err(e) => return Err(bad(format!("SO_ACCEPTCONN: {e}"))),
    }
    let local = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| bad("no inet local address".into()))?;
    if local == addr || (addr.port() == 0 && local.ip() == addr.ip()) {
        Ok(())
    } else {
        Err(bad(format!("bound to {local}")))
    }
}

/// Fails unless the peer of `conn` runs as our effective user or as root.
pub(super) fn check_peer(conn: &UnixStream) -> Result<(), HandoffError> {
    let cred = getsockopt(conn, sockopt::PeerCredentials)
        .map_err(|e| io_error("SO_PEERCRED")(e.into()))?;
    let uid = cred.uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        Ok(())
    } else {
        Err(HandoffError::ForeignPeer(uid))
    }
}

/// What a wait for readability saw.
pub(super) enum Wait {
    Readable,
    Stop,
    Timeout,
}

/// Waits until `fd` is readable, `stop` is readable or hung up, or `deadline` passes.
pub(super) fn wait_readable(
    fd: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> Result<Wait, HandoffError> {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Wait::Timeout);
                }
                // Rounded up to 1 ms so that a sub-millisecond rest does not spin.
                PollTimeout::try_from(left.max(Duration::from_millis(1)))
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(Wait::Stop);
                }
                return Ok(Wait::Readable);
            }
            Err(e) => return Err(io_error("poll")(e.into())),
        }
    }
}

/// Sends all of `bytes` (MSG_NOSIGNAL: a vanished peer is an error, not a signal).
pub(super) fn send_bytes(
    conn: &UnixStream,
    mut bytes: &[u8],
    waiting_for: &'static str,
) -> Result<(), HandoffError> {
    while !bytes.is_empty() {
        match send(conn.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => {
                return Err(HandoffError::Protocol("the peer stopped reading".into()));
            }
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(transfer_error(e.into(), "sending", waiting_for)),
        }
    }
    Ok(())
}

/// Sends `fds` in chunks of at most [`FDS_PER_MESSAGE`], one `F` byte per chunk.
pub(super) fn send_fds(conn: &UnixStream, fds: &[RawFd]) -> Result<(), HandoffError> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        let mark = [CHUNK_MARK];
        let iov = [IoSlice::new(&mark)];
        let rights = [ControlMessage::ScmRights(chunk)];
        loop {
            match sendmsg::<UnixAddr>(
                conn.as_raw_fd(),
                &iov,
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(1) => break,
                Ok(n) => {
                    return Err(HandoffError::Protocol(format!(
                        "sendmsg of a chunk sent {n} bytes, not 1"
                    )))
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(transfer_error(
                        e.into(),
                        "sending sockets",
                        "the taker to read the sockets",
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Takes ownership of a descriptor that `recvmsg` just installed in this process.
#[allow(unsafe_code)]
pub(super) fn adopt_received_fd(raw: RawFd) -> Option<OwnedFd> {
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` comes from an SCM_RIGHTS message that recvmsg has just decoded: the kernel
    // installed it as a new descriptor of this process, which nothing else refers to or will
    // close, and each one is adopted exactly once (the decoded Vec is consumed here). So the
    // OwnedFd is its only owner. Exercised by every take_over test.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// One `recvmsg` (blocking, bounded by the socket's read timeout): the data goes to `buf`, the
/// received descriptors (close-on-exec) to `fds`. Returns the data length, 0 at end of stream.
pub(super) fn recv_with_fds(
    conn: &UnixStream,
    buf: &mut [u8],
    cmsg: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, HandoffError> {
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut *cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(transfer_error(
                    e.into(),
                    "receiving the handoff",
                    "the handoff header and sockets",
                ))
            }
        };
        let bytes = msg.bytes;
        // Truncated control data means descriptors were lost (our buffer fits SCM_MAX_FD of them).
        let cmsgs = msg
            .cmsgs()
            .map_err(|_| HandoffError::Protocol("control data truncated".into()))?;
        let mut invalid = false;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raws) = c {
                for raw in raws {
                    match adopt_received_fd(raw) {
                        Some(fd) => fds.push(fd),
                        None => invalid = true,
                    }
                }
            }
        }
        if invalid {
            return Err(HandoffError::Protocol(
                "received an invalid descriptor".into(),
            ));
        }
        return Ok(bytes);
    }
}
