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

mod server;
mod taker;
#[cfg(test)]
mod tests;
mod transfer;

pub use server::HandoffServer;
pub use taker::{take_over, Takeover};

use serde::{Deserialize, Serialize};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

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
