//! The new process's end: connects, receives and checks the header and the sockets, and says
//! `ready` once it serves on them.

use super::transfer::{check_listener, check_peer, recv_with_fds, send_bytes};
use super::{
    io_error, transfer_error, HandoffError, Header, CHUNK_MARK, FDS_PER_MESSAGE, MAX_HEADER,
    MAX_SOCKETS, OK, PROTOCOL_VERSION, READY,
};
use socket2::SockRef;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The new process's end: the listeners it received, and the connection on which it says `ready`.
///
/// Move the listeners out (`std::mem::take(&mut takeover.groups)`), start serving on them, then
/// call [`Takeover::ready`]. Dropping it without `ready` aborts the handoff: the old process keeps
/// serving and stays available for another attempt.
#[derive(Debug)]
pub struct Takeover {
    /// Per listen address, in the old process's order, its listening sockets (nonblocking).
    pub groups: Vec<(SocketAddr, Vec<TcpListener>)>,
    /// The old process's pid, as its header says.
    pub pid: u32,
    conn: UnixStream,
    timeout: Duration,
}

impl Takeover {
    /// Tells the old process that the new one serves, and waits (up to the `take_over` timeout) for
    /// its `ok`. The old process then drains and exits.
    ///
    /// Fails with [`HandoffError::Unconfirmed`] when the old process closed without `ok`: it gave
    /// up on this attempt (its ready timeout) and may still be serving on the shared sockets.
    pub fn ready(self) -> Result<(), HandoffError> {
        self.conn
            .set_write_timeout(Some(self.timeout))
            .map_err(io_error("setting a send timeout"))?;
        self.conn
            .set_read_timeout(Some(self.timeout))
            .map_err(io_error("setting a read timeout"))?;
        send_bytes(&self.conn, READY, "the old process to read ready").map_err(|e| match e {
            HandoffError::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => {
                HandoffError::Unconfirmed("it closed the connection".into())
            }
            other => other,
        })?;
        let mut got = Vec::with_capacity(OK.len());
        while got.len() < OK.len() {
            let mut buf = [0u8; 4];
            let want = OK.len() - got.len();
            let n = match (&mut &self.conn).read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(HandoffError::Unconfirmed("it reset the connection".into()))
                }
                Err(e) => {
                    return Err(transfer_error(e, "reading ok", "the old process's ok"));
                }
            };
            if n == 0 {
                return Err(HandoffError::Unconfirmed(
                    "it closed the connection without ok".into(),
                ));
            }
            got.extend_from_slice(&buf[..n]);
            if !OK.starts_with(&got) {
                return Err(HandoffError::Protocol(format!(
                    "expected ok, got {:?}",
                    String::from_utf8_lossy(&got)
                )));
            }
        }
        Ok(())
    }
}

/// Connects to the old process's [`HandoffServer`] at `path` and receives its listening sockets,
/// all within `timeout`.
///
/// Each socket is checked (a listening TCP socket bound to its group's address) and set
/// nonblocking, as [`crate::listener::bind_group`] leaves its sockets; `TCP_NODELAY` is set again
/// so that accepted sockets inherit it. Both are properties of the shared socket, already set by
/// the old process when it bound them with `bind_group`.
pub fn take_over(path: &Path, timeout: Duration) -> Result<Takeover, HandoffError> {
    let timeout = timeout.max(Duration::from_millis(1));
    let deadline = Instant::now() + timeout;
    let conn = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => HandoffError::NoServer {
            path: path.to_path_buf(),
            source: e,
        },
        _ => io_error(format!("connecting to {}", path.display()))(e),
    })?;
    check_peer(&conn)?;
    let (header, fds) = receive(&conn, deadline)?;
    let mut fds = fds.into_iter();
    let mut groups = Vec::with_capacity(header.groups.len());
    for g in &header.groups {
        let mut listeners = Vec::with_capacity(g.count);
        for index in 0..g.count {
            let fd = fds.next().ok_or_else(|| {
                HandoffError::Protocol("fewer sockets than the header counts".into())
            })?;
            check_listener(fd.as_fd(), g.addr, index)?;
            let l = TcpListener::from(fd);
            let setup = |e| HandoffError::NotListening {
                addr: g.addr,
                index,
                reason: format!("cannot set options: {e}"),
            };
            l.set_nonblocking(true).map_err(setup)?;
            SockRef::from(&l).set_tcp_nodelay(true).map_err(setup)?;
            listeners.push(l);
        }
        groups.push((g.addr, listeners));
    }
    Ok(Takeover {
        groups,
        pid: header.pid,
        conn,
        timeout,
    })
}

/// Reads the header line and all the sockets it announces.
fn receive(conn: &UnixStream, deadline: Instant) -> Result<(Header, Vec<OwnedFd>), HandoffError> {
    let mut line = Vec::new();
    let mut header: Option<(Header, usize)> = None;
    let mut fds = Vec::new();
    let mut cmsg = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let mut buf = [0u8; 4096];
    loop {
        if fds.len() > MAX_SOCKETS {
            return Err(HandoffError::Protocol(format!(
                "more than {MAX_SOCKETS} sockets"
            )));
        }
        if let Some((_, total)) = &header {
            if fds.len() > *total {
                return Err(HandoffError::Protocol(format!(
                    "received {} sockets, the header counts {total}",
                    fds.len()
                )));
            }
            if fds.len() == *total {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandoffError::Timeout("the handoff header and sockets"));
        }
        conn.set_read_timeout(Some(left))
            .map_err(io_error("setting a read timeout"))?;
        let n = recv_with_fds(conn, &mut buf, &mut cmsg, &mut fds)?;
        if n == 0 {
            return Err(HandoffError::Protocol(match &header {
                None => "the server closed before sending its header".into(),
                Some((_, total)) => {
                    format!("the server closed after {} of {total} sockets", fds.len())
                }
            }));
        }
        let mut rest = &buf[..n];
        if header.is_none() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    header = Some(parse_header(&line)?);
                }
                None => {
                    line.extend_from_slice(rest);
                    rest = &[];
                }
            }
            if line.len() > MAX_HEADER {
                return Err(HandoffError::Protocol(format!(
                    "header longer than {MAX_HEADER} bytes"
                )));
            }
        }
        if rest.iter().any(|b| *b != CHUNK_MARK) {
            return Err(HandoffError::Protocol(
                "unexpected data after the header".into(),
            ));
        }
    }
    match header {
        Some((h, _)) => Ok((h, fds)),
        None => Err(HandoffError::Protocol("no header".into())),
    }
}

/// Parses and validates a header line; returns it with its total socket count.
fn parse_header(line: &[u8]) -> Result<(Header, usize), HandoffError> {
    if line.len() > MAX_HEADER {
        return Err(HandoffError::Protocol(format!(
            "header longer than {MAX_HEADER} bytes"
        )));
    }
    let h: Header = serde_json::from_slice(line)
        .map_err(|e| HandoffError::Protocol(format!("invalid header: {e}")))?;
    if h.v != PROTOCOL_VERSION {
        return Err(HandoffError::Protocol(format!(
            "header version {}, this build speaks {PROTOCOL_VERSION}",
            h.v
        )));
    }
    let total = h
        .groups
        .iter()
        .try_fold(0usize, |acc, g| acc.checked_add(g.count))
        .filter(|t| *t <= MAX_SOCKETS)
        .ok_or_else(|| HandoffError::Protocol(format!("more than {MAX_SOCKETS} sockets")))?;
    Ok((h, total))
}
