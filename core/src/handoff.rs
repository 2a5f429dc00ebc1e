//! Zero-downtime binary upgrade: the old process hands its listening sockets to the new one.
//!
//! Re-binding is not an option: closing a reuseport listener resets the connections waiting in its
//! accept queue, so the very sockets must change hands. The old process runs a [`HandoffServer`]
//! on a Unix socket; the new process calls [`take_over`], which receives duplicates of every
//! per-worker listener (SCM_RIGHTS), starts serving on them, and then calls [`Takeover::ready`];
//! the old process sees [`HandoffServer::taken`] fire, drains and exits. Until `ready`, the old
//! process keeps serving: a taker that dies or times out leaves the server available for another
//! attempt.
//!
//! # Protocol (version 1)
//!
//! 1. Server -> taker: one JSON line, at most [`MAX_HEADER`] bytes:
//!    `{"v":1,"pid":1234,"groups":[{"addr":"127.0.0.1:8080","count":2},...]}`.
//! 2. Server -> taker: the sockets of all groups, in header order, in chunks of at most 253
//!    (the kernel's `SCM_MAX_FD`); each chunk is one `sendmsg` of the single byte `F` carrying one
//!    `SCM_RIGHTS` message.
//! 3. Taker -> server: `ready\n`, once it serves on the sockets (the server waits for it up to its
//!    ready timeout, 30 s by default).
//! 4. Server: removes its socket file, stops accepting, answers `ok\n`, and fires `taken`.
//!
//! Both ends check that the peer runs as the same user (or root), on top of the socket file's 0600
//! mode, and the taker checks each received descriptor: a TCP stream socket, listening
//! (`SO_ACCEPTCONN`), bound to the address its header names.
//!
//! # What the old process must not do after a handoff
//!
//! The sockets are *shared* with the new process, not copied: socket options and the file status
//! flags (`O_NONBLOCK`) are common to both, and so is [`crate::listener::stop_accepting`], whose
//! `shutdown(SHUT_RD)` closes the listening socket itself and resets its accept queue, in the new
//! process too. After `taken` fires, the old process must stop its accepts without it (drop its
//! descriptors, stop re-arming accepts) and never call [`crate::shutdown::Shutdown::begin`] with
//! handed-over listeners registered.

use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, recvmsg, send, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    UnixAddr,
};
use serde::{Deserialize, Serialize};
use socket2::{Protocol, SockRef, Type};
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The protocol version this build speaks (the `v` of the header).
pub const PROTOCOL_VERSION: u32 = 1;
/// How long a [`HandoffServer`] waits for a taker's `ready` by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest header line a taker accepts, newline excluded.
pub const MAX_HEADER: usize = 64 * 1024;
/// The most sockets one handoff may carry.
pub const MAX_SOCKETS: usize = 65_536;

/// The kernel's limit of descriptors per `SCM_RIGHTS` message (`SCM_MAX_FD`).
const FDS_PER_MESSAGE: usize = 253;
/// The one data byte that carries each chunk of descriptors.
const CHUNK_MARK: u8 = b'F';
const READY: &[u8] = b"ready\n";
const OK: &[u8] = b"ok\n";
/// Bounds each send of the server (a few KiB at most, so it blocks only on a stuck peer).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a handoff failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// No handoff server answers on the path (no old process, or a stale socket file).
    #[error("no handoff server answers on {path}: {source}")]
    NoServer {
        /// The socket path.
        path: PathBuf,
        /// The cause (`NotFound` or `ConnectionRefused`).
        source: io::Error,
    },
    /// Another process already serves handoffs on the path.
    #[error("another process already answers on {0}")]
    InUse(PathBuf),
    /// The peer broke the protocol.
    #[error("handoff protocol error: {0}")]
    Protocol(String),
    /// The peer did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A descriptor is not a listening TCP socket bound to its group's address.
    #[error("socket {index} of {addr} cannot be handed over: {reason}")]
    NotListening {
        /// The group's address.
        addr: SocketAddr,
        /// The descriptor's index in its group.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The peer runs as another user (and not as root).
    #[error("the peer runs as uid {0}, neither ours nor root")]
    ForeignPeer(u32),
    /// The old process did not confirm `ready`: it may still be serving on the sockets.
    #[error("the old process did not confirm the handoff: {0}")]
    Unconfirmed(String),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> HandoffError {
    let context = context.into();
    move |source| HandoffError::Io { context, source }
}

/// Maps a send/receive error to [`HandoffError::Timeout`] when a socket timeout expired.
fn transfer_error(e: io::Error, context: &str, waiting_for: &'static str) -> HandoffError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandoffError::Timeout(waiting_for),
        _ => HandoffError::Io {
            context: context.to_owned(),
            source: e,
        },
    }
}

/// The sockets of one configured listen address: one per worker.
#[derive(Debug)]
pub struct ListenerGroup {
    /// The address the sockets are bound to; the taker checks each socket's local address against
    /// it (port 0 matches any port on the same IP).
    pub addr: SocketAddr,
    /// Duplicates of every per-worker reuseport socket of the address, owned by the server.
    pub fds: Vec<OwnedFd>,
}

impl ListenerGroup {
    /// Duplicates `listeners` (e.g. a group from [`crate::listener::bind_group`], before the
    /// workers take them) into a group for `addr`.
    pub fn duplicate(addr: SocketAddr, listeners: &[TcpListener]) -> Result<Self, HandoffError> {
        let fds = listeners
            .iter()
            .map(|l| l.as_fd().try_clone_to_owned())
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_error(format!("duplicating the listeners of {addr}")))?;
        Ok(Self { addr, fds })
    }
}

/// The first line of the protocol.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    v: u32,
    pid: u32,
    groups: Vec<GroupHeader>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupHeader {
    addr: SocketAddr,
    count: usize,
}

/// What the server thread shares with its handle.
#[derive(Debug, Default)]
struct Status {
    taken: AtomicBool,
    last_failure: Mutex<Option<String>>,
}

impl Status {
    fn fail(&self, why: String) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// The old process's end: serves its listening sockets to one taker at a time, from its own thread.
///
/// Dropping it stops the thread and removes the socket file, if the file is still the one it bound.
#[derive(Debug)]
pub struct HandoffServer {
    path: PathBuf,
    /// (device, inode) of the socket file we bound, so we never remove a successor's file.
    identity: (u64, u64),
    taken: Receiver<()>,
    status: Arc<Status>,
    /// Dropping it wakes the thread to stop.
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl HandoffServer {
    /// Binds the handoff socket at `path` (mode 0600) and serves `groups` from a thread named
    /// `ringgate-handoff`, waiting up to [`DEFAULT_READY_TIMEOUT`] for a taker's `ready`.
    ///
    /// A socket file already at `path` is replaced only when no process answers on it; every
    /// descriptor must be a listening TCP socket bound to its group's address.
    pub fn bind(path: &Path, groups: Vec<ListenerGroup>) -> Result<Self, HandoffError> {
        Self::bind_with_timeout(path, groups, DEFAULT_READY_TIMEOUT)
    }

    /// [`HandoffServer::bind`] with another timeout for the taker's `ready`.
    pub fn bind_with_timeout(
        path: &Path,
        groups: Vec<ListenerGroup>,
        ready_timeout: Duration,
    ) -> Result<Self, HandoffError> {
        for g in &groups {
            for (index, fd) in g.fds.iter().enumerate() {
                check_listener(fd.as_fd(), g.addr, index)?;
            }
        }
        let header = encode_header(&groups)?;
        let listener = bind_socket(path)?;
        let identity = file_identity(path).ok_or_else(|| HandoffError::Io {
            context: format!("{} vanished right after bind", path.display()),
            source: io::ErrorKind::NotFound.into(),
        })?;
        let started = (|| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_error(format!("chmod 0600 {}", path.display())))?;
            listener
                .set_nonblocking(true)
                .map_err(io_error("setting the handoff socket nonblocking"))?;
            let (stop, stop_rx) = UnixStream::pair().map_err(io_error("creating a wake pair"))?;
            let (tx, taken) = crossbeam_channel::bounded(1);
            let status = Arc::new(Status::default());
            let server = ServerThread {
                listener,
                stop: stop_rx,
                groups,
                header,
                ready_timeout,
                path: path.to_path_buf(),
                identity,
                status: status.clone(),
                taken: tx,
            };
            let thread = std::thread::Builder::new()
                .name("ringgate-handoff".into())
                .spawn(move || server.run())
                .map_err(io_error("spawning the handoff thread"))?;
            Ok(Self {
                path: path.to_path_buf(),
                identity,
                taken,
                status,
                stop: Some(stop),
                thread: Some(thread),
            })
        })();
        if started.is_err() {
            remove_if_ours(path, identity);
        }
        started
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives `()` once, when a taker said `ready`: the old process should drain and exit.
    ///
    /// For a control thread's `select!`. The channel disconnects only when the server thread ended,
    /// which happens after that message or when the server is dropped.
    pub fn taken(&self) -> &Receiver<()> {
        &self.taken
    }

    /// Waits up to `timeout` for a handoff; true once one happened (also when [`Self::taken`]
    /// already delivered it). Consumes the message of [`Self::taken`].
    pub fn wait_taken(&self, timeout: Duration) -> bool {
        if self.taken.try_recv().is_ok() || self.is_taken() {
            return true;
        }
        // Disconnected (the thread ended) returns at once; the flag then tells why it ended.
        self.taken.recv_timeout(timeout).is_ok() || self.is_taken()
    }

    /// True once a taker said `ready`.
    pub fn is_taken(&self) -> bool {
        self.status.taken.load(Ordering::Acquire)
    }

    /// Why the last failed attempt failed (a taker that left, timed out or broke the protocol).
    pub fn last_failure(&self) -> Option<String> {
        self.status
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for HandoffServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        remove_if_ours(&self.path, self.identity);
    }
}

/// Binds a Unix listener at `path`, replacing a socket file that nobody answers on.
fn bind_socket(path: &Path) -> Result<UnixListener, HandoffError> {
    let ctx = || format!("binding the handoff socket {}", path.display());
    match UnixListener::bind(path) {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        Err(e) => return Err(io_error(ctx())(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_error(ctx()))?;
    if !meta.file_type().is_socket() {
        return Err(HandoffError::Io {
            context: format!("{} exists and is not a socket", path.display()),
            source: io::ErrorKind::AlreadyExists.into(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(HandoffError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .map_err(io_error(format!("removing stale {}", path.display())))?;
            UnixListener::bind(path).map_err(io_error(ctx()))
        }
        Err(e) => Err(io_error(format!("probing {}", path.display()))(e)),
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn remove_if_ours(path: &Path, identity: (u64, u64)) {
    if file_identity(path) == Some(identity) {
        let _ = std::fs::remove_file(path);
    }
}

fn encode_header(groups: &[ListenerGroup]) -> Result<Vec<u8>, HandoffError> {
    let header = Header {
        v: PROTOCOL_VERSION,
        pid: std::process::id(),
        groups: groups
            .iter()
            .map(|g| GroupHeader {
                addr: g.addr,
                count: g.fds.len(),
            })
            .collect(),
    };
    let total: usize = groups.iter().map(|g| g.fds.len()).sum();
    if total > MAX_SOCKETS {
        return Err(HandoffError::Protocol(format!(
            "{total} sockets, more than the {MAX_SOCKETS} a handoff carries"
        )));
    }
    let mut line = serde_json::to_vec(&header)
        .map_err(|e| HandoffError::Protocol(format!("encoding the header: {e}")))?;
    if line.len() > MAX_HEADER {
        return Err(HandoffError::Protocol(format!(
            "header of {} bytes, more than {MAX_HEADER}",
            line.len()
        )));
    }
    line.push(b'\n');
    Ok(line)
}

/// Checks that `fd` is a listening TCP socket bound to `addr` (any port when `addr` has port 0).
fn check_listener(fd: BorrowedFd<'_>, addr: SocketAddr, index: usize) -> Result<(), HandoffError> {
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
fn check_peer(conn: &UnixStream) -> Result<(), HandoffError> {
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
enum Wait {
    Readable,
    Stop,
    Timeout,
}

/// Waits until `fd` is readable, `stop` is readable or hung up, or `deadline` passes.
fn wait_readable(
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
fn send_bytes(
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
fn send_fds(conn: &UnixStream, fds: &[RawFd]) -> Result<(), HandoffError> {
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
fn adopt_received_fd(raw: RawFd) -> Option<OwnedFd> {
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
fn recv_with_fds(
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

/// The server's thread.
struct ServerThread {
    listener: UnixListener,
    stop: UnixStream,
    groups: Vec<ListenerGroup>,
    header: Vec<u8>,
    ready_timeout: Duration,
    path: PathBuf,
    identity: (u64, u64),
    status: Arc<Status>,
    taken: Sender<()>,
}

/// How a session with a taker ended, when it did not fail.
enum Session {
    Ready,
    Stopped,
}

impl ServerThread {
    fn run(self) {
        loop {
            match wait_readable(self.listener.as_fd(), self.stop.as_fd(), None) {
                Ok(Wait::Stop) => return,
                Ok(Wait::Readable) | Ok(Wait::Timeout) => {}
                Err(e) => {
                    self.status.fail(e.to_string());
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            let conn = match self.listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on a readable listener.
                    self.status.fail(format!("accepting a taker: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            match self.serve(&conn) {
                Ok(Session::Ready) => {
                    remove_if_ours(&self.path, self.identity);
                    drop(self.listener);
                    let _ = send_bytes(&conn, OK, "the taker to read ok");
                    let _ = self.taken.send(());
                    self.status.taken.store(true, Ordering::Release);
                    return;
                }
                Ok(Session::Stopped) => return,
                Err(e) => self.status.fail(e.to_string()),
            }
        }
    }

    /// Sends the header and the sockets to one taker and waits for its `ready`.
    fn serve(&self, conn: &UnixStream) -> Result<Session, HandoffError> {
        conn.set_nonblocking(false)
            .map_err(io_error("setting a taker connection blocking"))?;
        conn.set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(io_error("setting a send timeout"))?;
        check_peer(conn)?;
        send_bytes(conn, &self.header, "the taker to read the header")?;
        let raws: Vec<RawFd> = self
            .groups
            .iter()
            .flat_map(|g| g.fds.iter().map(|fd| fd.as_raw_fd()))
            .collect();
        send_fds(conn, &raws)?;
        let deadline = Instant::now() + self.ready_timeout;
        let mut got = Vec::with_capacity(READY.len());
        while got.len() < READY.len() {
            match wait_readable(conn.as_fd(), self.stop.as_fd(), Some(deadline))? {
                Wait::Stop => return Ok(Session::Stopped),
                Wait::Timeout => return Err(HandoffError::Timeout("the taker's ready")),
                Wait::Readable => {}
            }
            let mut buf = [0u8; 8];
            let want = READY.len() - got.len();
            let n = match (&mut &*conn).read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("reading the taker's ready")(e)),
            };
            if n == 0 {
                return Err(HandoffError::Protocol(
                    "the taker left before saying ready".into(),
                ));
            }
            got.extend_from_slice(&buf[..n]);
            if !READY.starts_with(&got) {
                return Err(HandoffError::Protocol(format!(
                    "expected ready, got {:?}",
                    String::from_utf8_lossy(&got)
                )));
            }
        }
        Ok(Session::Ready)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::{bind_group, stop_accepting, ListenOptions};
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    use std::sync::atomic::AtomicUsize;

    const LONG: Duration = Duration::from_secs(10);

    fn temp_socket(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "ringgate-handoff-{}-{name}-{n}.sock",
            std::process::id()
        ))
    }

    fn group(count: usize) -> Vec<TcpListener> {
        bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            count,
            ListenOptions { backlog: 64 },
        )
        .expect("bind")
    }

    fn dup_group(ls: &[TcpListener]) -> ListenerGroup {
        ListenerGroup::duplicate(ls[0].local_addr().expect("addr"), ls).expect("dup")
    }

    /// Accepts one connection on whichever listener the reuseport hash chose, and reads `want`.
    fn accept_and_read(ls: &[TcpListener], want: &[u8]) {
        let start = Instant::now();
        loop {
            for l in ls {
                l.set_nonblocking(true).expect("nonblocking");
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        s.set_read_timeout(Some(LONG)).expect("timeout");
                        let mut got = vec![0u8; want.len()];
                        s.read_exact(&mut got).expect("read");
                        assert_eq!(got, want);
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("accept: {e}"),
                }
            }
            assert!(start.elapsed() < LONG, "no connection arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn connect_and_write(addr: impl ToSocketAddrs, bytes: &[u8]) -> TcpStream {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(bytes).expect("write");
        c
    }

    #[test]
    fn handoff_moves_a_group_with_its_queued_connections() {
        let old = group(2);
        let addr = old[0].local_addr().expect("addr");
        let path = temp_socket("full");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Queued before the handoff, accepted by nobody yet.
        let _early = connect_and_write(addr, b"early");
        let p = path.clone();
        let taker = std::thread::spawn(move || take_over(&p, LONG).expect("take over"));
        let mut t = taker.join().expect("taker thread");
        assert_eq!(t.pid, std::process::id());
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].0, addr);
        let taken = std::mem::take(&mut t.groups[0].1);
        assert_eq!(taken.len(), 2);
        for l in &taken {
            assert_eq!(l.local_addr().expect("addr"), addr);
        }
        accept_and_read(&taken, b"early");
        let _late = connect_and_write(addr, b"late");
        accept_and_read(&taken, b"late");
        assert!(!server.is_taken());

        t.ready().expect("ready");
        assert!(server.wait_taken(LONG));
        assert_eq!(server.taken().try_recv().ok(), None, "delivered once");
        assert!(server.is_taken());
        assert!(!path.exists(), "socket file removed after the handoff");
        // The old copies are still there and still the same sockets.
        assert_eq!(old[1].local_addr().expect("addr"), addr);
        drop(old);
        let _after = connect_and_write(addr, b"after");
        accept_and_read(&taken, b"after");
        drop(server);
    }

    #[test]
    fn taken_fires_on_the_channel() {
        let old = group(1);
        let path = temp_socket("chan");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        let p = path.clone();
        let taker = std::thread::spawn(move || take_over(&p, LONG).expect("take").ready());
        crossbeam_channel::select! {
            recv(server.taken()) -> r => assert!(r.is_ok()),
            default(LONG) => panic!("taken did not fire"),
        }
        taker.join().expect("taker").expect("ready");
    }

    #[test]
    fn a_taker_that_leaves_without_ready_allows_another_attempt() {
        let old = group(2);
        let path = temp_socket("retry");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        let first = take_over(&path, LONG).expect("first");
        drop(first);
        let start = Instant::now();
        while server.last_failure().is_none() {
            assert!(start.elapsed() < LONG, "the failure was not recorded");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!server.is_taken());
        assert!(path.exists());
        let second = take_over(&path, LONG).expect("second");
        assert_eq!(second.groups[0].1.len(), 2);
        second.ready().expect("ready");
        assert!(server.wait_taken(LONG));
    }

    #[test]
    fn a_taker_that_times_out_is_told_and_the_server_stays_available() {
        let old = group(1);
        let path = temp_socket("slow");
        let server = HandoffServer::bind_with_timeout(
            &path,
            vec![dup_group(&old)],
            Duration::from_millis(50),
        )
        .expect("server");
        let slow = take_over(&path, LONG).expect("take");
        let start = Instant::now();
        while server.last_failure().is_none() {
            assert!(start.elapsed() < LONG, "the timeout was not recorded");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(server
            .last_failure()
            .unwrap_or_default()
            .contains("timed out"));
        match slow.ready() {
            Err(HandoffError::Unconfirmed(_)) => {}
            other => panic!("expected Unconfirmed, got {other:?}"),
        }
        assert!(!server.is_taken());
        take_over(&path, LONG)
            .expect("again")
            .ready()
            .expect("ready");
        assert!(server.wait_taken(LONG));
    }

    #[test]
    fn the_server_rejects_garbage_instead_of_ready() {
        let old = group(1);
        let path = temp_socket("garbage-ready");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        let mut c = UnixStream::connect(&path).expect("connect");
        c.write_all(b"steady\n").expect("write");
        c.set_read_timeout(Some(LONG)).expect("timeout");
        // The server closes the connection: read until EOF (received descriptors close with `c`).
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
        assert!(server
            .last_failure()
            .unwrap_or_default()
            .contains("expected ready"));
        assert!(!server.is_taken());
        take_over(&path, LONG)
            .expect("take")
            .ready()
            .expect("ready");
        assert!(server.wait_taken(LONG));
    }

    /// A fake old process: sends `data` then, if any, `fds` in chunks, then half-closes.
    fn fake_server(name: &str, data: Vec<u8>, fds: Vec<OwnedFd>) -> (PathBuf, JoinHandle<()>) {
        let path = temp_socket(name);
        let l = UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().expect("accept");
            let _ = send_bytes(&c, &data, "test");
            let raws: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let _ = send_fds(&c, &raws);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = (&c).read_to_end(&mut sink);
        });
        (path, t)
    }

    fn expect_protocol_error(data: Vec<u8>, fds: Vec<OwnedFd>, needle: &str) {
        let (path, t) = fake_server("fake", data, fds);
        match take_over(&path, LONG) {
            Err(HandoffError::Protocol(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected a protocol error with {needle:?}, got {other:?}"),
        }
        t.join().expect("fake server");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_headers_are_rejected() {
        expect_protocol_error(b"not json\n".to_vec(), vec![], "invalid header");
        expect_protocol_error(
            b"{\"v\":2,\"pid\":1,\"groups\":[]}\n".to_vec(),
            vec![],
            "version 2",
        );
        expect_protocol_error(vec![b'x'; MAX_HEADER + 10], vec![], "longer than");
        expect_protocol_error(
            b"{\"v\":1,\"pid\":1,\"groups\":[{\"addr\":\"127.0.0.1:1\",\"count\":18446744073709551615},{\"addr\":\"127.0.0.1:1\",\"count\":1}]}\n"
                .to_vec(),
            vec![],
            "more than",
        );
        expect_protocol_error(b"{\"v\":1".to_vec(), vec![], "before sending its header");
        expect_protocol_error(
            b"{\"v\":1,\"pid\":1,\"groups\":[]}\nhello".to_vec(),
            vec![],
            "unexpected data",
        );
    }

    #[test]
    fn wrong_socket_counts_are_rejected() {
        let ls = group(1);
        let addr = ls[0].local_addr().expect("addr");
        let header = |n: usize| {
            format!("{{\"v\":1,\"pid\":1,\"groups\":[{{\"addr\":\"{addr}\",\"count\":{n}}}]}}\n")
                .into_bytes()
        };
        let g = ListenerGroup::duplicate(addr, &[ls[0].try_clone().expect("dup")]).expect("dup");
        expect_protocol_error(header(2), g.fds, "after 1 of 2");
        let g = ListenerGroup::duplicate(
            addr,
            &[ls[0].try_clone().expect("a"), ls[0].try_clone().expect("b")],
        )
        .expect("dup");
        expect_protocol_error(header(1), g.fds, "received 2 sockets");
    }

    #[test]
    fn a_socket_that_is_not_a_matching_listener_is_rejected() {
        let ls = group(1);
        let addr = ls[0].local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let header =
            format!("{{\"v\":1,\"pid\":1,\"groups\":[{{\"addr\":\"{addr}\",\"count\":1}}]}}\n");
        let (path, t) = fake_server(
            "notlistening",
            header.into_bytes(),
            vec![OwnedFd::from(client)],
        );
        match take_over(&path, LONG) {
            Err(HandoffError::NotListening { reason, .. }) => {
                assert!(reason.contains("SO_ACCEPTCONN"), "{reason}")
            }
            other => panic!("expected NotListening, got {other:?}"),
        }
        t.join().expect("fake");
        let _ = std::fs::remove_file(&path);

        let other = group(1);
        let header =
            format!("{{\"v\":1,\"pid\":1,\"groups\":[{{\"addr\":\"{addr}\",\"count\":1}}]}}\n");
        let fd = other[0].as_fd().try_clone_to_owned().expect("dup");
        let (path, t) = fake_server("wrongaddr", header.into_bytes(), vec![fd]);
        match take_over(&path, LONG) {
            Err(HandoffError::NotListening { reason, .. }) => {
                assert!(reason.contains("bound to"), "{reason}")
            }
            other => panic!("expected NotListening, got {other:?}"),
        }
        t.join().expect("fake");
        let _ = std::fs::remove_file(&path);

        // The server refuses such descriptors up front.
        let client = TcpStream::connect(addr).expect("connect");
        let bad = ListenerGroup {
            addr,
            fds: vec![OwnedFd::from(client)],
        };
        assert!(matches!(
            HandoffServer::bind(&temp_socket("badgroup"), vec![bad]),
            Err(HandoffError::NotListening { .. })
        ));
    }

    #[test]
    fn three_hundred_sockets_cross_in_chunks() {
        let ls = group(1);
        let addr = ls[0].local_addr().expect("addr");
        let fds = (0..300)
            .map(|_| ls[0].as_fd().try_clone_to_owned().expect("dup"))
            .collect::<Vec<_>>();
        let more = (0..7)
            .map(|_| ls[0].as_fd().try_clone_to_owned().expect("dup"))
            .collect::<Vec<_>>();
        let path = temp_socket("many");
        let server = HandoffServer::bind(
            &path,
            vec![
                ListenerGroup { addr, fds },
                ListenerGroup { addr, fds: more },
            ],
        )
        .expect("server");
        let t = take_over(&path, LONG).expect("take");
        assert_eq!(t.groups.len(), 2);
        assert_eq!(t.groups[0].1.len(), 300);
        assert_eq!(t.groups[1].1.len(), 7);
        assert!(t
            .groups
            .iter()
            .flat_map(|g| &g.1)
            .all(|l| l.local_addr().expect("addr") == addr));
        t.ready().expect("ready");
        assert!(server.wait_taken(LONG));
    }

    #[test]
    fn the_socket_file_is_managed() {
        // Drop removes the file.
        let old = group(1);
        let path = temp_socket("drop");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        assert!(path.exists());
        assert!(!server.wait_taken(Duration::from_millis(1)));
        drop(server);
        assert!(!path.exists());

        // A stale socket file (nobody answers) is replaced.
        drop(UnixListener::bind(&path).expect("stale"));
        assert!(path.exists());
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("over stale");

        // A live one is not.
        match HandoffServer::bind(&path, vec![dup_group(&old)]) {
            Err(HandoffError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        assert!(path.exists());

        // A successor's file at the same path survives our drop.
        std::fs::remove_file(&path).expect("rm");
        let successor = UnixListener::bind(&path).expect("successor");
        drop(server);
        assert!(path.exists());
        drop(successor);
        std::fs::remove_file(&path).expect("rm");

        // A file that is not a socket is left alone.
        std::fs::write(&path, b"keep").expect("write");
        assert!(matches!(
            HandoffServer::bind(&path, vec![dup_group(&old)]),
            Err(HandoffError::Io { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"keep");
        std::fs::remove_file(&path).expect("rm");

        // No server at all.
        assert!(matches!(
            take_over(&path, LONG),
            Err(HandoffError::NoServer { .. })
        ));
    }

    /// Documents why the old process must not call `stop_accepting` after a handoff: the socket is
    /// shared, and shutting it for reading closes it for the new process too.
    #[test]
    fn stop_accepting_on_an_old_copy_closes_the_taken_socket() {
        let old = group(1);
        let path = temp_socket("trap");
        let server = HandoffServer::bind(&path, vec![dup_group(&old)]).expect("server");
        let mut t = take_over(&path, LONG).expect("take");
        let taken = std::mem::take(&mut t.groups[0].1);
        t.ready().expect("ready");
        assert!(server.wait_taken(LONG));
        assert!(SockRef::from(&taken[0]).is_listener().expect("acceptconn"));
        stop_accepting(&old[0]);
        assert!(!SockRef::from(&taken[0]).is_listener().expect("acceptconn"));
    }
}
