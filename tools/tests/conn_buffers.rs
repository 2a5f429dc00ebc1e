//! Per-connection memory on demand (issue 14 item 5): an idle keep-alive connection, and a new
//! one that has sent nothing yet, hold no connection buffer. Checked through the admin API's
//! `ringgate_conn_buffers_in_use` gauge on the real binary (memory figures are in
//! perf-reports/0007-hardening/idle-memory.md, not asserted here).

use ringgate_testkit::client::{metric, Client};
use ringgate_testkit::files::TempFile;
use ringgate_testkit::gateway::{free_port, ChildGateway};
use ringgate_testkit::stub::stub;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// A gateway child with one worker of the given driver, its admin API on `admin`.
fn gateway(up: SocketAddr, admin: SocketAddr, driver: &str) -> (ChildGateway, TempFile, TempFile) {
    let cfg = TempFile::new(
        &format!("conn-buffers-{driver}.toml"),
        &format!(
            "version = \"t\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"{admin}\"\n\
             [[upstreams]]\nname = \"up\"\nendpoints = [\"{up}\"]\n\
             [[routes]]\nid = \"all\"\npath = {{ prefix = \"/\" }}\nupstream = \"up\"\n"
        ),
    );
    let profile = TempFile::new(
        &format!("conn-buffers-{driver}.profile.toml"),
        &format!("[workers]\ncount = 1\npin = false\n[io]\ndriver = \"{driver}\"\n"),
    );
    let gw = ChildGateway::spawn(
        BIN,
        &["serve", "--config", cfg.arg(), "--profile", profile.arg()],
    );
    (gw, cfg, profile)
}

/// Waits until the admin API's `series` reads `want` (scrapes lag the workers by a tick).
fn wait_metric(admin: SocketAddr, series: &str, want: f64) {
    let t0 = Instant::now();
    loop {
        let v = metric(admin, series);
        if v == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{series} is {v}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn idle_connections_hold_no_buffer(driver: &str) {
    const KEPT: usize = 2000;
    const SILENT: usize = 500;
    let up = stub("s");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (gw, _cfg, _profile) = gateway(up.addr(), admin, driver);
    // Keep-alive connections that each had one request answered, then went quiet.
    let mut kept = Vec::with_capacity(KEPT);
    for _ in 0..KEPT {
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.get_with("/x", &[]).status, 200);
        kept.push(c);
    }
    // New connections that have sent nothing.
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(gw.addr).expect("connect"))
        .collect();
    let open = (KEPT + SILENT) as f64;
    wait_metric(admin, "ringgate_worker_connections{", open);
    wait_metric(admin, "ringgate_conn_buffers_in_use", 0.0);

    // A request in progress holds its buffers; they go back when it is answered.
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.write_all(b"GET /partial HTTP/1.1\r\nHost: t\r\n")
        .expect("part of a head");
    wait_metric(admin, "ringgate_conn_buffers_in_use", 3.0);
    s.write_all(b"\r\n").expect("rest of the head");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = [0u8; 12];
    s.read_exact(&mut got).expect("response");
    assert_eq!(&got, b"HTTP/1.1 200");
    wait_metric(admin, "ringgate_conn_buffers_in_use", 0.0);

    // Every kept connection still serves (the buffers come back on demand), pipelined too.
    for c in kept.iter_mut().step_by(100) {
        c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().status, 200);
        assert_eq!(c.response().status, 200);
    }
    wait_metric(admin, "ringgate_conn_buffers_in_use", 0.0);
    drop(silent);
    drop(kept);
    drop(s);
    wait_metric(admin, "ringgate_worker_connections{", 0.0);
    wait_metric(admin, "ringgate_conn_buffers_in_use", 0.0);
}

#[test]
fn idle_and_silent_connections_hold_no_buffer_io_uring() {
    idle_connections_hold_no_buffer("auto");
}

#[test]
fn idle_and_silent_connections_hold_no_buffer_epoll() {
    idle_connections_hold_no_buffer("epoll");
}

/// An idle connection is its task's state: the task future stays small (a bound on a type's
/// layout, not a timing). The request loop's serving part is boxed, so only the idle wait, the
/// connection's struct and a few words live in the task. Before: 14,720 bytes (release layout),
/// 4,736 in the test build.
#[test]
fn the_connection_task_is_small() {
    let size = ringgate_http::engine::connection_task_size::<ringgate::snapshot::Snapshot>();
    eprintln!("connection task future: {size} bytes");
    assert!(size <= 3 * 1024, "connection task future is {size} bytes");
}
