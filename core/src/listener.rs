//! Per-core listeners: one SO_REUSEPORT socket per worker and address.
//!
//! Each worker accepts on its own socket, so no accept queue or lock is shared between cores; the
//! kernel spreads new connections across the group by a hash of the 4-tuple. Two traps are
//! handled here. `SO_REUSEPORT` lets a *second* ringgate process join the group silently and
//! steal half the connections, so before binding we probe the address with a plain bind, which
//! fails while anyone listens there. And port 0 is resolved once, by the first socket, so that all
//! workers share the port the kernel picked.

use crate::error::CoreError;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// Options of a listener group.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// The listen backlog of each socket.
    pub backlog: u32,
}

/// Binds `count` reuseport listeners on `addr` (all on the same port when `addr` has port 0).
///
/// Accepted sockets inherit `TCP_NODELAY` from the listener on Linux, which saves a syscall per
/// connection.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    opts: ListenOptions,
) -> Result<Vec<TcpListener>, CoreError> {
    let bind_err = |source| CoreError::Bind { addr, source };
    if addr.port() != 0 {
        probe_free(addr)?;
    }
    let mut out = Vec::with_capacity(count);
    let mut actual = addr;
    for _ in 0..count.max(1) {
        let s = Socket::new(
            Domain::for_address(actual),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(bind_err)?;
        s.set_reuse_address(true).map_err(bind_err)?;
        s.set_reuse_port(true).map_err(bind_err)?;
        s.set_tcp_nodelay(true).map_err(bind_err)?;
        s.set_nonblocking(true).map_err(bind_err)?;
        if actual.is_ipv6() {
            s.set_only_v6(true).map_err(bind_err)?;
        }
        s.bind(&actual.into()).map_err(bind_err)?;
        let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
        s.listen(backlog).map_err(bind_err)?;
        let l: TcpListener = s.into();
        if actual.port() == 0 {
            actual = l.local_addr().map_err(bind_err)?;
        }
        out.push(l);
    }
    Ok(out)
}

/// Fails with [`CoreError::AddressInUse`] when another socket listens on `addr`.
fn probe_free(addr: SocketAddr) -> Result<(), CoreError> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|source| CoreError::Bind { addr, source })?;
    // SO_REUSEADDR (not REUSEPORT): ignores TIME_WAIT leftovers but still fails on a listener.
    let _ = s.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = s.set_only_v6(true);
    }
    match s.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(CoreError::AddressInUse(addr)),
        Err(source) => Err(CoreError::Bind { addr, source }),
    }
}

/// Stops a listener from accepting: a pending `accept` on it returns an error at once, on io_uring
/// and epoll alike, without cancelling the operation (monoio 0.2.4 leaks the fd of a cancelled
/// accept that had completed).
pub fn stop_accepting(l: &TcpListener) {
    let _ = SockRef::from(l).shutdown(std::net::Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_group_shares_one_port() {
        let g = bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            3,
            ListenOptions { backlog: 16 },
        )
        .expect("bind");
        let ports: Vec<u16> = g
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
    }

    #[test]
    fn a_second_process_on_the_port_is_detected() {
        let first = bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            1,
            ListenOptions { backlog: 16 },
        )
        .expect("bind");
        let addr = first[0].local_addr().expect("addr");
        match bind_group(addr, 2, ListenOptions { backlog: 16 }) {
            Err(CoreError::AddressInUse(a)) => assert_eq!(a, addr),
            other => panic!("expected AddressInUse, got {other:?}"),
        }
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let g = bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            1,
            ListenOptions { backlog: 16 },
        )
        .expect("bind");
        g[0].set_nonblocking(false).expect("blocking");
        let addr = g[0].local_addr().expect("addr");
        let _c = std::net::TcpStream::connect(addr).expect("connect");
        let (s, _) = g[0].accept().expect("accept");
        assert!(s.nodelay().expect("nodelay"));
    }

    #[test]
    fn stop_accepting_wakes_a_blocked_accept() {
        let g = bind_group(
            "127.0.0.1:0".parse().expect("addr"),
            1,
            ListenOptions { backlog: 16 },
        )
        .expect("bind");
        let l = g.into_iter().next().expect("one listener");
        l.set_nonblocking(false).expect("blocking");
        let dup = l.try_clone().expect("dup");
        let t = std::thread::spawn(move || l.accept().is_err());
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop_accepting(&dup);
        assert!(
            t.join().expect("accept thread"),
            "accept must fail after stop_accepting"
        );
    }
}
