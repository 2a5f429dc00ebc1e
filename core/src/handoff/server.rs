//! The old process's end: the server thread that hands the listening sockets to one taker
//! at a time, and the socket file it binds and removes.

use super::transfer::{check_listener, check_peer, send_bytes, send_fds, wait_readable, Wait};
use super::{
    io_error, GroupHeader, HandoffError, Header, ListenerGroup, DEFAULT_READY_TIMEOUT, MAX_HEADER,
    MAX_SOCKETS, OK, PROTOCOL_VERSION, READY, SEND_TIMEOUT,
};
use crossbeam_channel::{Receiver, Sender};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
