//! The one error type of the core crate: everything that can go wrong while starting workers.

use std::net::SocketAddr;

/// Why the runtime layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The perf profile file could not be read.
    #[error("cannot read perf profile {path}: {source}")]
    ProfileRead {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The perf profile is not valid; every problem is listed with its path.
    #[error("invalid perf profile:\n  {}", .0.join("\n  "))]
    ProfileInvalid(Vec<String>),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process already listens on the address (SO_REUSEPORT would silently share it).
    #[error("{0} is already in use by another process")]
    AddressInUse(SocketAddr),
    /// A worker thread could not be started.
    #[error("cannot start worker {index}: {source}")]
    Spawn {
        /// The worker index.
        index: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// The profile names CPUs this process may not run on.
    #[error("cpu {0} is not available to this process (allowed: {1:?})")]
    CpuUnavailable(usize, Vec<usize>),
}
