//! Whether an idle socket is still a healthy keep-alive connection: nothing to read, not closed.
//! One non-blocking `recv(MSG_PEEK)`, no data copied (see the pool's checkout in
//! `upstream/pool.rs` for why the gateway asks).

use std::os::fd::AsRawFd;

/// True when `sock` has nothing to read and is not closed: the state of a healthy idle
/// keep-alive connection.
#[allow(unsafe_code)]
pub fn is_quiet(sock: &impl AsRawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: `sock` owns an open socket for the duration of this call (it is borrowed), `byte`
    // is a valid writable buffer of the length passed, and MSG_DONTWAIT makes the call return at
    // once whatever the socket's blocking mode; MSG_PEEK leaves any data in the socket.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

#[cfg(test)]
mod tests {
    use super::is_quiet;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (c, s)
    }

    /// Whether `c` stops being quiet within a deadline (loopback delivers in microseconds).
    fn becomes_unquiet(c: &TcpStream) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if !is_quiet(c) {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    #[test]
    fn an_idle_connection_is_quiet() {
        let (c, _s) = pair();
        assert!(is_quiet(&c));
    }

    #[test]
    fn stray_bytes_make_a_connection_unusable_and_stay_unread() {
        let (c, mut s) = pair();
        s.write_all(b"evil").expect("write");
        assert!(becomes_unquiet(&c), "stray bytes were not seen");
        assert!(!is_quiet(&c), "peeking consumed nothing");
    }

    #[test]
    fn a_closed_peer_makes_a_connection_unusable() {
        let (c, s) = pair();
        drop(s);
        assert!(becomes_unquiet(&c), "the peer's FIN was not seen");
    }
}
