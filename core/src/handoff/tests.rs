//! The handoff end to end over real sockets, and the taker against malformed servers.

use super::transfer::{send_bytes, send_fds};
use super::*;
use crate::listener::{bind_group, stop_accepting, ListenOptions};
use socket2::SockRef;
use std::io::Read;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

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
    let server =
        HandoffServer::bind_with_timeout(&path, vec![dup_group(&old)], Duration::from_millis(50))
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
